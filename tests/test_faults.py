"""Faults: Redis restarting empty and the app restarting lose no job and no worker report.

These tests start their own redis-server / Daphne on free ports and never touch the shared ones.
"""

import json
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from gpuworker import protocol
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
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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
    assert queue() == [protocol.run_id(job.pk, 1)]

    state["proc"].kill()  # Redis dies with the job in it …
    state["proc"].wait()
    state["proc"] = start()  # … and comes back empty.
    assert queue() == []

    assert dispatcher.reap()["reenqueued"] == 1
    assert queue() == [protocol.run_id(job.pk, 1)], "the database knew the job; RQ has it again"
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


class ResettingProxy:
    """A TCP hop in front of ComfyUI that can behave like a ComfyUI being killed: every open
    connection is reset, and for a while each new one is accepted and reset at once (a dying
    process still accepts; its kernel then answers with a reset, mid-handshake)."""

    def __init__(self, target_port: int):
        self.target_port, self.resetting, self.pairs = target_port, False, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _reset(conn):
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        except OSError:
            pass

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.resetting:
                self._reset(conn)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.pairs.append((conn, upstream))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for conn in (source, sink):
            self._reset(conn)

    def cut(self, seconds: float):
        self.resetting = True
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for conn, upstream in pairs:
            self._reset(conn)
            self._reset(upstream)
        threading.Timer(seconds, lambda: setattr(self, "resetting", False)).start()

    def close(self):
        self.listener.close()


def test_a_comfyui_that_resets_its_socket_mid_handshake_costs_the_run_nothing(live_app, participants, double):
    """ComfyUI's connections reset for 3 s, the socket's reconnections reset mid-handshake,
    while ComfyUI itself keeps the prompt: the worker reconnects and follows the run to its end,
    and the participant's tab hears its success once. (The handshake's reset was not counted
    as the host's fault, and failed the job: the fault suite's 'ComfyUI killed' under load.)"""
    from tests.test_e2e import SIMPLE, finished, post_prompt, receive_until

    double.steps, double.step_time = 30, 0.1
    proxy = ResettingProxy(int(double.url.rsplit(":", 1)[1]))
    try:
        with live_app.gpu_worker(proxy.url):
            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                prompt_id = post_prompt(alice, live_app, "001", SIMPLE)
                receive_until(ws, lambda m: m["type"] == "progress" and m["data"].get("prompt_id") == prompt_id)
                proxy.cut(3.0)
                seen = receive_until(ws, finished(prompt_id), timeout=60)
                more = []
                try:
                    while True:
                        raw = ws.recv(timeout=1.0)
                        if isinstance(raw, str):
                            more.append(json.loads(raw))
                except TimeoutError:
                    pass
        job = Job.objects.get(pk=prompt_id)
        assert job.state == JobState.COMPLETED and job.attempts == 0, (job.state, job.error)
        successes = [m for m in seen + more if m["type"] == "execution_success"]
        assert len(successes) == 1
    finally:
        proxy.close()


def test_the_work_loop_survives_rq_saying_goodbye_to_a_redis_that_is_gone(own_redis, settings):
    """RQ's loop quits (here: an error it does not handle) while Redis is down, and its
    teardown's write to Redis fails too: the gpuworker process must start the loop again once
    Redis is back, not exit. (Redis restarting three times in a row under load did this.)"""
    from gpuworker.config import WorkerSettings
    from gpuworker.loop import ThreadGpuWorker, work
    from gpuworker.process import WorkerProcess

    state, start = own_redis
    stop = threading.Event()
    loops, threads = [], []

    class QuitsOnceWithRedisGone(ThreadGpuWorker):  # in a thread of this test
        def dequeue_job_and_maintain_ttl(self, *args, **kwargs):
            loops.append(self.name)
            threads.append(self.pubsub_thread)
            if len(loops) == 1:
                state["proc"].kill()  # Redis goes away …
                state["proc"].wait()
                raise RuntimeError("RQ's loop quits")  # … as RQ's loop quits: its teardown meets no Redis
            stop.set()
            self.request_stop(None, None)
            return None

    worker = WorkerSettings(name="gpu-loop", app="http://app", token="wt_x", redis=settings.REDIS_URL)
    process = WorkerProcess(worker, provider=None)  # type: ignore[arg-type]  # the loop never runs a job here
    thread = threading.Thread(target=work, args=(process, "gpu.loop", stop, QuitsOnceWithRedisGone), daemon=True)
    thread.start()
    port = int(worker.redis.rsplit(":", 1)[1].split("/")[0])
    wait_until(lambda: len(loops) == 1 and not _ping(port), timeout=20, message="the loop to quit with Redis gone")
    state["proc"] = start()  # Redis is back
    thread.join(timeout=60)
    assert not thread.is_alive() and len(loops) == 2, "the loop started again once Redis was back"
    assert threads[0] is not None and not threads[0].is_alive(), (
        "the first loop's pubsub thread was stopped, not left retrying a Redis"
    )
