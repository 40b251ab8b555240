"""Keeps the processes of `scripts/run` running: each in a process group of its own, its output
prefixed with its name (and copied to var/log/<name>.log); one that exits is started again with
backoff, and says so. SIGTERM or SIGINT stops them all, last started first, and only says
"nothing left running" once every process group is really gone.

    python scripts/supervise.py --log-dir var/log --ready URL NAME='command args' ...
"""

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request

BACKOFF_MAX = 30.0
STEADY = 60.0  # seconds of uptime after which a crash is "new" and the backoff starts again


class Child:
    def __init__(self, name: str, cmd: list[str], log_dir: str):
        self.name, self.cmd = name, cmd
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.backoff = 1.0
        self.restart_at: float | None = None

    def start(self):
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, bufsize=0
        )
        self.started = time.monotonic()
        threading.Thread(target=self._copy, args=(self.proc,), daemon=True).start()

    def _copy(self, proc):
        with open(self.log_path, "ab") as log:
            for line in iter(proc.stdout.readline, b""):
                log.write(line)
                log.flush()
                sys.stdout.buffer.write(f"[{self.name}] ".encode() + line)
                sys.stdout.flush()

    def group_alive(self) -> bool:
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def stop(self, grace: float = 10.0):
        if self.proc is None:
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.proc.poll() is None or self.group_alive()):
            time.sleep(0.1)
        if self.group_alive():
            say(f"{self.name} did not stop within {grace:.0f} s; killing it")
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def say(text: str):
    print(f"==> {text}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-dir", default="var/log")
    parser.add_argument("--ready", help="URL that answers once the platform is up")
    parser.add_argument("--ready-message", default="")
    parser.add_argument("procs", nargs="+", help="NAME='command'")
    args = parser.parse_args(argv)
    os.makedirs(args.log_dir, exist_ok=True)
    children = []
    for spec in args.procs:
        name, _, command = spec.partition("=")
        children.append(Child(name, shlex.split(command), args.log_dir))

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.set())

    for child in children:
        child.start()
    ready = not args.ready
    while not stopping.wait(0.2):
        if not ready:
            try:
                ready = urllib.request.urlopen(args.ready, timeout=1).status == 200
            except Exception:
                pass
            if ready and args.ready_message:
                print(args.ready_message, flush=True)
        now = time.monotonic()
        for child in children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    say(f"restarting {child.name}")
                    child.start()
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if child.group_alive():  # what it started lives on (a work horse): not a clean state
                os.killpg(child.proc.pid, signal.SIGKILL)
            if now - child.started > STEADY:
                child.backoff = 1.0
            say(f"{child.name} exited with code {code}; restarting it in {child.backoff:g} s (log: {child.log_path})")
            child.restart_at = now + child.backoff
            child.backoff = min(child.backoff * 2, BACKOFF_MAX)

    say("stopping")
    for child in reversed(children):
        child.stop()
    left = [c.name for c in children if c.group_alive()]
    if left:
        say("still running: " + ", ".join(left))
        return 1
    say("stopped; nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
