"""What the threads of one worker process share: its settings, its provider, the runs in
flight, and the flags that stop it. One object, made by `gpuworker.__main__` and handed to the
heartbeat and to each RQ slot; the slot hands it to the job function through `CURRENT`."""

import logging
import os
import signal
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import WorkerSettings

if TYPE_CHECKING:  # types only: providers builds the runs, which read this object
    from .providers import Provider
    from .tasks import RunStops

log = logging.getLogger("gpuworker")


@dataclass(eq=False)
class WorkerProcess:
    settings: WorkerSettings
    provider: "Provider"
    # The runs this process is doing (one per slot thread), for the heartbeat: RQ's SimpleWorker
    # runs each job in a thread of this process, so the heartbeat proves the job's process alive.
    active: "dict[int, RunStops]" = field(default_factory=dict)
    shutdown: threading.Event = field(default_factory=threading.Event)
    revoked: threading.Event = field(default_factory=threading.Event)
    # Why this worker's GPU cannot take jobs (its credentials were refused), until a probe works.
    problem: str | None = None

    def revoke(self) -> None:
        """The app refused our token: nothing this process does can count any more, so it stops."""
        if self.revoked.is_set():
            return
        self.revoked.set()
        log.error(
            "the app refused this worker's token (it was rotated or revoked): stopping. "
            "Start the worker again with the new token from `manage.py worker_token`."
        )
        self.shutdown.set()
        os.kill(os.getpid(), signal.SIGTERM)


# The process of the RQ slot running the current job (set around each job by gpuworker.loop).
CURRENT: ContextVar[WorkerProcess] = ContextVar("gpuworker_process")
