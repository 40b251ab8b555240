"""Faults: Redis restarting empty and the app restarting lose no job and no worker report.

These tests start their own redis-server / Daphne on free ports and never touch the shared ones.
"""
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

from jobs import dispatcher, rq
from jobs.models import Job, JobState, Worker
from tests.conftest import child_env, free_port, process, wait_until

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


@pytest.fixture
def own_redis(tmp_path, settings):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = free_port()

    def start():
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _ping(port), timeout=10, message="redis-server to start")
        return proc

    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    state = {"proc": start()}
    yield state, start
    state["proc"].terminate()
    state["proc"].wait()


def _ping(port):
    import redis

    try:
        return redis.Redis(port=port, socket_timeout=0.5).ping()
    except redis.ConnectionError:
        return False


def test_redis_restarting_empty_loses_no_job(participants, own_redis):
    state, start = own_redis
    worker, _ = Worker.create_with_token("gpu-1")
    worker.beat("idle")
    job = Job.submit(participants[0], SIMPLE)
    with _on_commit():
        dispatcher.dispatch()
    queue = lambda: rq.queue_for(worker).job_ids  # noqa: E731
    assert queue() == [rq.rq_id(job.pk, 1)]

    state["proc"].kill()  # Redis dies with the job in it …
    state["proc"].wait()
    state["proc"] = start()  # … and comes back empty.
    assert queue() == []

    assert dispatcher.reap()["reenqueued"] == 1
    assert queue() == [rq.rq_id(job.pk, 1)], "the database knew the job; RQ has it again"
    assert Job.objects.get(pk=job.pk).state == JobState.DISPATCHED


def _on_commit():
    from django.test import TestCase

    return TestCase.captureOnCommitCallbacks(execute=True)


@pytest.mark.e2e
def test_worker_calls_wait_for_the_app_to_come_back(transactional_db, settings, tmp_path):
    """gpuworker's app client keeps retrying while the app restarts, then gets through."""
    from gpuworker.app import AppClient

    _, token = Worker.create_with_token("gpu-1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = AppClient(url, token, retry_seconds=60)
    result = {}

    def beat():
        started = time.monotonic()
        result["answer"] = client.heartbeat("idle")
        result["seconds"] = time.monotonic() - started

    import logging

    failed_once = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record):
            if "failed" in record.getMessage():
                failed_once.set()

    handler = Seen()
    logging.getLogger("gpuworker.app").addHandler(handler)
    caller = threading.Thread(target=beat)
    caller.start()
    assert failed_once.wait(10), "the call should fail while the app is down"
    logging.getLogger("gpuworker.app").removeHandler(handler)
    cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "workshop.asgi:application"]
    with process(cmd, child_env(settings), tmp_path / "daphne.log"):
        caller.join(60)
        assert not caller.is_alive(), "the call never got through"
    assert result["answer"]["ok"] is True
    assert result["seconds"] > 0
    assert Worker.objects.get(name="gpu-1").is_online
