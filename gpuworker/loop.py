"""RQ's work loop for one GPU slot, started again whenever Redis goes away under it."""

import logging
import threading
import time
import uuid

import redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from .process import CURRENT, WorkerProcess

log = logging.getLogger("gpuworker")


class GpuWorker(SimpleWorker):
    """RQ's worker without a fork: the job runs in this process, so killing it (kill -9 or
    not) has one outcome, and the heartbeat thread beside the job proves the job is alive.
    It hands its worker process (settings, provider) to the job function it runs."""

    process: WorkerProcess

    def perform_job(self, job, queue) -> bool:
        token = CURRENT.set(self.process)
        try:
            return super().perform_job(job, queue)
        finally:
            CURRENT.reset(token)

    def handle_warm_shutdown_request(self):
        super().handle_warm_shutdown_request()
        # A job the worker is doing goes back to the queue at the front, stopped on ComfyUI.
        self.process.shutdown.set()


class ThreadGpuWorker(GpuWorker):
    """One more slot of a worker with `concurrency` above 1: the same, in a thread. Signals
    reach the main thread's worker only, and RQ's alarm-based job timeout works only there."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self):
        pass


def wait_for_redis(connection, stop: threading.Event) -> None:
    delay = 0.5
    while not stop.is_set():
        try:
            connection.ping()
            return
        except redis.RedisError as exc:
            print(f"gpuworker: Redis unavailable ({exc.__class__.__name__}); retrying in {delay:.1f} s", flush=True)
            stop.wait(delay)
            delay = min(delay * 2, 5.0)


def work(process: WorkerProcess, queue_name: str, stop: threading.Event, worker_class=GpuWorker) -> None:
    """RQ's work loop, started again whenever it quits without being asked to (Redis went away
    under it, mid-job or between jobs): Redis is disposable."""
    settings = process.settings
    connection = redis.Redis.from_url(
        settings.redis, socket_timeout=30, socket_connect_timeout=5, health_check_interval=15
    )
    pause = 1.0
    while not stop.is_set():
        wait_for_redis(connection, stop)
        queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
        # RQ needs a unique name per live process; a restart must not collide with the old entry.
        worker = worker_class(
            [queue], connection=connection, serializer=JSONSerializer, name=f"{settings.name}.{uuid.uuid4().hex[:6]}"
        )
        worker.process = process
        started = time.monotonic()
        try:
            worker.work(burst=settings.burst, logging_level="INFO", with_scheduler=False)
        except redis.RedisError as exc:
            # RQ's loop quit, then its goodbye to Redis (register_death) found Redis gone: a
            # Redis restarting twice in a row did that, and the process exited. The goodbye
            # also skipped stopping its pubsub thread, which would retry Redis forever.
            print(f"gpuworker: RQ's loop ended with Redis away ({exc.__class__.__name__})", flush=True)
            if worker.pubsub_thread is not None:
                worker.pubsub_thread.stop()
                worker.pubsub_thread.join(timeout=5)
        if worker._stop_requested or process.shutdown.is_set() or settings.burst or stop.is_set():
            return
        pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 30.0)
        print(f"gpuworker: RQ's loop quit (Redis lost?); starting it again in {pause:g} s", flush=True)
        stop.wait(pause)
