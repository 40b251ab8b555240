"""`manage.py workshop_status`: the class's state in text and JSON, and a non-zero exit when
something is down (the doctor names it)."""

import json
import shutil
import subprocess

import pytest

from jobs.models import Job
from tests.conftest import free_port, run_command, wait_until

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


@pytest.fixture
def own_redis(settings):
    """A redis-server of this test's own, which the test may stop."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    import redis

    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def up():
        try:
            return redis.Redis.from_url(url).ping()
        except redis.ConnectionError:
            return False

    wait_until(up, timeout=10, message="redis-server")
    settings.REDIS_URL = url
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_status_with_a_worker_online_says_ok_in_text_and_json(participants, online_worker):
    Job.submit(participants[0], SIMPLE)
    code, text = run_command("workshop_status")
    assert code == 0, text
    assert "ok   worker     gpu-1: idle, heartbeat" in text and "1 queued" in text
    assert "oldest     workspace 001 #0, waiting" in text
    code, raw = run_command("workshop_status", "--json")
    report = json.loads(raw)
    assert code == 0 and report["ok"] is True
    assert report["database"]["ok"] and report["redis"]["ok"]
    assert report["workers"][0]["name"] == "gpu-1" and report["workers"][0]["online"] is True
    assert report["queue"]["by_state"]["queued"] == 1 and report["queue"]["oldest_waiting"]["workspace"] == "001"
    assert report["disk"]["free_bytes"] > 0


def test_with_redis_stopped_status_exits_non_zero_and_doctor_names_redis(participants, online_worker, own_redis):
    assert run_command("workshop_status", "--json")[0] == 0
    own_redis.kill()
    own_redis.wait()
    code, raw = run_command("workshop_status", "--json")
    report = json.loads(raw)
    assert code == 1 and report["ok"] is False and report["redis"]["ok"] is False
    code, text = run_command("workshop_status")
    assert code == 1 and "DOWN redis" in text
    code, text = run_command("workshop_doctor")
    assert code == 1
    assert "FAIL Redis at redis://127.0.0.1:" in text and "start it, or fix REDIS_URL" in text


def test_status_without_any_worker_online_exits_non_zero(participants):
    code, text = run_command("workshop_status")
    assert code == 1 and "none registered" in text
