"""The whole platform as real processes, for fault injection (tests/test_fault_suite.py) and
the soak benchmark (bench/soak.py): its own redis-server, Daphne, the dispatcher loop, and
GPU workers each in front of its own ComfyUI double process. Any of them can be killed with
any signal and started again on the same port.

Participants are simulated like browsers: logged in over HTTP, each with a websocket that
reconnects on its own (as the ComfyUI frontend does) and records every message it gets.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from jobs.models import FINAL_STATES, Job, JobState, Worker
from tests.conftest import ROOT, child_env, free_port, wait_until


def prompt_for(n: int, steps_nodes: int = 1) -> dict:
    """A model-free prompt unique to `n` (no cache hit between jobs)."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": n}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"fault{n}"}},
    }


@dataclass
class Proc:
    name: str
    cmd: list
    env: dict
    log: Path
    popen: subprocess.Popen | None = None
    restarts: int = 0

    def start(self):
        out = open(self.log, "ab")
        self.popen = subprocess.Popen(
            self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig):
        os.killpg(self.popen.pid, sig)

    def kill(self):
        if self.alive:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def stop(self):
        if self.alive:
            try:
                os.killpg(self.popen.pid, signal.SIGCONT)
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass

    def tail(self, n=3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


class Browser:
    """One participant's tab: a session and a websocket that reconnects when dropped."""

    def __init__(self, platform, username, slug):
        self.platform, self.slug = platform, slug
        self.session = platform.login(username)
        self.messages: list[dict] = []
        self.connects = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True, name=f"ws-{slug}")
        self.thread.start()
        wait_until(lambda: self.connects > 0, timeout=20, message=f"websocket of {slug}")

    def _listen(self):
        from websockets.sync.client import connect

        while not self.stop.is_set():
            cookie = "; ".join(f"{k}={v}" for k, v in self.session.cookies.items())
            try:
                with connect(
                    f"{self.platform.ws_url}/user/{self.slug}/ws?clientId=tab-{self.slug}",
                    additional_headers={"Cookie": cookie, "Origin": self.platform.url},
                    open_timeout=5,
                ) as ws:
                    self.connects += 1
                    while not self.stop.is_set():
                        try:
                            raw = ws.recv(timeout=0.5)
                        except TimeoutError:
                            continue
                        if isinstance(raw, str):
                            with self.lock:
                                self.messages.append(json.loads(raw))
            except Exception:
                time.sleep(0.1)

    def submit(self, prompt: dict) -> str:
        deadline = time.monotonic() + 60
        while True:  # the app may be restarting: the browser's Run button is pressed again
            try:
                answer = self.session.post(
                    f"{self.platform.url}/user/{self.slug}/api/prompt",
                    json={"prompt": prompt, "client_id": f"tab-{self.slug}"},
                    timeout=10,
                )
                if answer.status_code < 500:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the app did not take the prompt within 60 s")
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        return answer.json()["prompt_id"]

    def count(self, kind: str, prompt_id: str) -> int:
        with self.lock:
            return sum(
                1
                for m in self.messages
                if m.get("type") == kind and (m.get("data") or {}).get("prompt_id") == prompt_id
            )

    def close(self):
        self.stop.set()
        self.thread.join(5)


@dataclass
class Platform:
    settings: object
    tmp: Path
    workers: int = 2
    step_time: float = 0.05
    steps: int = 10
    lease_seconds: int = 10
    procs: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)

    def __post_init__(self):
        if not shutil.which("redis-server"):
            import pytest

            pytest.skip("redis-server is not installed")
        self.redis_port, self.app_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.app_port}"
        self.ws_url = self.url.replace("http", "ws", 1)
        self.settings.REDIS_URL = f"redis://127.0.0.1:{self.redis_port}/0"
        self.settings.LEASE_SECONDS = self.lease_seconds
        layers = json.loads(json.dumps(self.settings.CHANNEL_LAYERS))
        layers["default"]["CONFIG"]["hosts"][0]["address"] = self.settings.REDIS_URL
        self.settings.CHANNEL_LAYERS = layers  # this process's announcements reach the same Redis
        self.env = child_env(self.settings, LEASE_SECONDS=str(self.lease_seconds))
        py = sys.executable
        self.procs["redis"] = Proc(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            self.env,
            self.tmp / "redis.log",
        )
        self.procs["daphne"] = Proc(
            "daphne",
            [py, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.app_port), "workshop.asgi:application"],
            self.env,
            self.tmp / "daphne.log",
        )
        self.procs["dispatcher"] = Proc(
            "dispatcher", [py, "manage.py", "dispatcher", "--interval", "0.5"], self.env, self.tmp / "dispatcher.log"
        )
        for n in range(1, self.workers + 1):
            port = free_port()
            (self.tmp / f"comfy-{n}").mkdir(exist_ok=True)
            self.procs[f"comfyui-{n}"] = Proc(
                f"comfyui-{n}",
                [
                    py,
                    "-m",
                    "scripts.comfyui_double",
                    "--port",
                    str(port),
                    "--step-time",
                    str(self.step_time),
                    "--steps",
                    str(self.steps),
                    "--no-cache",
                    "--output-dir",
                    str(self.tmp / f"comfy-{n}"),
                ],
                self.env,
                self.tmp / f"comfyui-{n}.log",
            )
            self.procs[f"comfyui-{n}"].port = port

    # --- processes ---

    def worker_cmd(self, n: int) -> list:
        return [
            sys.executable,
            "-m",
            "gpuworker",
            "--redis",
            self.settings.REDIS_URL,
            "--app",
            self.url,
            "--comfyui",
            f"http://127.0.0.1:{self.procs[f'comfyui-{n}'].port}",
            "--name",
            f"gpu-{n}",
            "--app-retry",
            "120",
        ]

    def worker_env(self, n: int) -> dict:
        return {**self.env, "GPUWORKER_TOKEN": self.tokens[n]}

    def start(self):
        self.procs["redis"].start()
        wait_until(self.redis_up, timeout=10, message="redis-server")
        self.procs["daphne"].start()
        self.wait_app()
        self.procs["dispatcher"].start()
        for n in range(1, self.workers + 1):
            self.procs[f"comfyui-{n}"].start()
        for n in range(1, self.workers + 1):
            self.start_comfy(n)
            _, self.tokens[n] = Worker.create_with_token(f"gpu-{n}")
            self.procs[f"gpu-{n}"] = Proc(
                f"gpu-{n}", self.worker_cmd(n), self.worker_env(n), self.tmp / f"gpu-{n}.log"
            ).start()
        for n in range(1, self.workers + 1):
            self.wait_worker(n)
        return self

    def restart(self, name: str):
        proc = self.procs[name]
        proc.kill()
        if name.startswith("gpu-"):
            proc.cmd, proc.env = self.worker_cmd(int(name.split("-")[1])), self.worker_env(int(name.split("-")[1]))
        proc.restarts += 1
        proc.start()
        if name == "redis":
            wait_until(self.redis_up, timeout=10, message="redis-server")
        elif name == "daphne":
            self.wait_app()
        elif name.startswith("comfyui-"):
            self.wait_comfy(int(name.split("-")[1]))
        elif name.startswith("gpu-"):
            self.wait_worker(int(name.split("-")[1]))

    def redis_up(self) -> bool:
        try:
            return redis.Redis(port=self.redis_port, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def wait_app(self):
        def up():
            try:
                return requests.get(f"{self.url}/health", timeout=1).status_code == 200
            except requests.RequestException:
                assert self.procs["daphne"].alive, self.procs["daphne"].tail()
                return False

        wait_until(up, timeout=30, message="daphne")

    def start_comfy(self, n: int, tries: int = 3):
        """Up on its port; a port another process took since free_port() chose it (the double
        exits with EADDRINUSE) is chosen again, before any worker is bound to it."""
        proc = self.procs[f"comfyui-{n}"]
        for _ in range(tries - 1):
            try:
                return self.wait_comfy(n)
            except AssertionError:
                if proc.alive or "Address already in use" not in proc.tail():
                    raise
            proc.port = free_port()
            proc.cmd[proc.cmd.index("--port") + 1] = str(proc.port)
            proc.start()
        return self.wait_comfy(n)

    def wait_comfy(self, n: int):
        proc = self.procs[f"comfyui-{n}"]

        def up():
            if not proc.alive and "Address already in use" in proc.tail():
                raise AssertionError(f"comfyui-{n}: its port was taken")
            try:
                return requests.get(f"http://127.0.0.1:{self.procs[f'comfyui-{n}'].port}/system_stats", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(up, timeout=20, message=f"comfyui-{n}")

    def wait_worker(self, n: int):
        proc = self.procs[f"gpu-{n}"]

        def online():
            assert proc.alive, proc.tail()
            return Worker.objects.get(name=f"gpu-{n}").is_online

        wait_until(online, timeout=30, message=f"gpu-{n} online")

    def stop(self):
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(4000)}" for p in self.procs.values())

    # --- participants ---

    def login(self, username: str) -> requests.Session:
        session = requests.Session()
        page = session.get(f"{self.url}/accounts/login/", timeout=10)
        answer = session.post(
            f"{self.url}/accounts/login/",
            allow_redirects=False,
            timeout=10,
            data={"username": username, "password": "pw", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{self.url}/accounts/login/"},
        )
        assert page.ok and answer.status_code == 302, f"login of {username}"
        return session

    def comfy_history(self, n: int) -> dict:
        try:
            return requests.get(f"http://127.0.0.1:{self.procs[f'comfyui-{n}'].port}/history", timeout=5).json()
        except requests.RequestException:
            return {}

    def completions_on_comfyui(self) -> dict[int, int]:
        """How often each prompt (by its unique color) ran to success on any ComfyUI."""
        done: dict[int, int] = {}
        for n in range(1, self.workers + 1):
            for entry in self.comfy_history(n).values():
                if (entry.get("status") or {}).get("status_str") == "success":
                    color = entry["prompt"][2]["1"]["inputs"]["color"]
                    done[color] = done.get(color, 0) + 1
        return done


def recovered(job, run_before: int) -> bool:
    """The job a fault hit has recovered: a new run of it started, or it ended."""
    now = Job.objects.get(pk=job.pk)
    return now.state in FINAL_STATES or (now.run > run_before and now.state == JobState.RUNNING)
