"""The queue's housekeeping loop: repairs what Redis or a dead worker lost, then dispatches.

Submissions and worker reports dispatch at once on their own; this loop is the safety net
(Redis flushed, a worker killed mid-job, a job past its timeout) and runs every --interval s.
"""

import signal
import threading
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from accounts.own_model_uploads import expire_unfinished
from jobs import events
from jobs.dispatcher import reap

ANNOUNCE_EVERY = 5  # loops
EXPIRE_EVERY = 60  # loops: abandoned model uploads are looked for about once a minute


class Command(BaseCommand):
    help = "Run the dispatcher loop (reconcile Redis and workers with the database, dispatch)."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--once", action="store_true", help="One pass, then exit")

    def handle(self, *args, interval, once, **options):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        if not once:
            self.stdout.write(f"dispatcher: checking every {interval:g} s (Ctrl-C to stop)")
        beats = 0
        while not stop.is_set():
            started = time.monotonic()
            close_old_connections()
            try:
                counts = reap()
                beats += 1
                if beats % ANNOUNCE_EVERY == 0:
                    # The queue as it stands, now and then: a browser that missed a push while
                    # Redis was away catches up without reloading.
                    events.queue_changed()
                if beats % EXPIRE_EVERY == 1:
                    expired = expire_unfinished()
                    if expired:
                        self.stdout.write(f"dispatcher: removed {expired} abandoned model upload(s)")
            except Exception as exc:  # Keep looping: the database or Redis may be restarting.
                self.stderr.write(f"dispatcher: {exc}")
            else:
                if any(counts.values()):
                    self.stdout.write(
                        f"dispatcher: re-enqueued {counts['reenqueued']}, lost runs put back {counts['requeued']}, "
                        f"timed out {counts['timed_out']}"
                    )
                    self.stdout.flush()
            if once:
                break
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        self.stdout.write("dispatcher: stopped")
