"""gpuworker never needs Django: it runs on the GPU host with requirements-gpuworker.txt only.

Every check here runs gpuworker in a fresh interpreter in which importing django, channels,
django_rq or daphne fails, up to a whole `python -m gpuworker` process taking a job from Redis
(its forked work horse inherits the same import blocker) and being stopped with SIGTERM.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("django", "channels", "django_rq", "daphne")

BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys

    class NoDjango(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {FORBIDDEN!r}:
                raise ImportError(f"gpuworker must not import {{name}}")
            return None

    sys.meta_path.insert(0, NoDjango())
    """
)


def cli_code(argv: list[str]) -> str:
    """`python -m gpuworker ARGV` behind the blocker."""
    return BLOCKER + textwrap.dedent(f"""
        import runpy
        sys.argv = ["gpuworker", *{argv!r}]
        runpy.run_module("gpuworker", run_name="__main__", alter_sys=True)
        """)


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUWORKER_", "DJANGO_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def python(code: str, timeout=60, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=clean_env(**env))


# The suite's autouse fixtures need Django and the test Redis: nothing here does.
@pytest.fixture(autouse=True)
def own_data_dir():
    yield


@pytest.fixture(autouse=True)
def clean_redis():
    yield


def test_the_blocker_refuses_django():
    for name in FORBIDDEN:
        result = python(BLOCKER + f"import {name}")
        assert result.returncode != 0
        assert f"gpuworker must not import {name}" in result.stderr


def test_gpuworker_imports_nothing_of_django():
    result = python(
        BLOCKER
        + "import gpuworker, gpuworker.app, gpuworker.comfy, gpuworker.throttle, gpuworker.tasks, gpuworker.__main__\n"
        + "from gpuworker.tasks import run_job\n"
        + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_command_line_works_without_django():
    helped = python(cli_code(["--help"]))
    assert helped.returncode == 0, helped.stderr
    assert "--comfyui" in helped.stdout and "--header" in helped.stdout

    missing = python(cli_code([]))
    assert missing.returncode == 2
    assert "missing --redis, --app, --token, --comfyui" in missing.stderr

    runpod = python(cli_code(["--provider", "runpod"]))
    assert runpod.returncode == 1
    assert "provider 'runpod' is not supported yet" in runpod.stderr


def test_settings_from_the_environment_reach_the_command_line():
    result = python(cli_code(["--comfyui-wait", "0.5"]), GPUWORKER_REDIS="redis://127.0.0.1:1/0",
                    GPUWORKER_APP="http://127.0.0.1:1", GPUWORKER_TOKEN="t", GPUWORKER_COMFYUI="http://127.0.0.1:1")
    assert result.returncode == 1
    assert "ComfyUI at http://127.0.0.1:1 did not answer within 0.5 s" in result.stderr


# --- a whole worker process --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of this test's own (RQ needs a real one)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    import redis

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def worker_process(argv, log_path):
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", cli_code(argv)], cwd=ROOT, env=clean_env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def enqueue(redis_url, queue, prompt, **extra) -> dict:
    import redis
    from rq import Queue
    from rq.serializers import JSONSerializer

    job = {"job_id": str(uuid.uuid4()), "workspace": "001", "prompt": prompt,
           "extra_data": {"extra_pnginfo": {"workflow": {}}}, "inputs": [], "timeout": 120, "attempt": 1, **extra}
    Queue(queue, connection=redis.Redis.from_url(redis_url), serializer=JSONSerializer).enqueue(
        "gpuworker.tasks.run_job", job, job_id=job["job_id"], job_timeout=600)
    return job


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16711680}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw_cli"}},
}


def test_a_worker_process_publishes_registers_and_runs_a_job_without_django(redis_url, tmp_path):
    from tests.comfyui_double import ComfyUIDouble
    from tests.test_gpuworker_comfy import AppDouble

    queue = f"gpu-{uuid.uuid4().hex[:6]}"
    with ComfyUIDouble(step_time=0.01, steps=2) as comfyui, AppDouble() as app:
        job = enqueue(redis_url, queue, SIMPLE)
        argv = ["--redis", redis_url, "--app", app.url, "--token", "tok", "--comfyui", comfyui.url,
                "--queue", queue, "--name", "gpu-test", "--burst"]
        log = tmp_path / "worker.log"
        with worker_process(argv, log) as proc:
            proc.wait(60)
        output = log.read_text()
        assert proc.returncode == 0, output

    order = [path for _, path, *_ in app.calls]
    assert order.index("catalog") < order.index("register"), "catalog first: prompts are checked against it"
    (catalog,) = app.json_bodies("catalog")
    assert {"object_info", "comfyui_version", "system_stats", "embeddings", "models", "model_files",
            "extensions", "workflow_templates"} <= set(catalog)
    assert "SaveImage" in catalog["object_info"] and catalog["comfyui_version"]
    assert "argv" not in catalog["system_stats"]["system"]
    assert f"gpuworker gpu-test: ready. ComfyUI {catalog['comfyui_version']} at {comfyui.url}" in output
    assert f"queue '{queue}'" in output
    (register,) = app.json_bodies("register")
    assert register == {"name": "gpu-test", "provider": "comfyui", "comfyui_url": comfyui.url,
                        "version": catalog["comfyui_version"], "capacity": 1}

    # The job ran in the forked work horse, which found its settings in the environment.
    (finish,) = app.json_bodies(f"jobs/{job['job_id']}/finish")
    assert finish["status"] == "success", finish
    assert finish["outputs"]["3"]["images"][0]["filename"] == "s-gw_cli_00001_.png"
    events = [e for body in app.json_bodies("/events") for e in body["events"]]
    assert {e["data"]["prompt_id"] for e in events} == {job["job_id"]}
    assert app.json_bodies("heartbeat")[-1] == {"status": "offline", "job_id": None}
    assert "stopped" in output


def test_sigterm_gives_the_running_job_back_and_frees_comfyui(redis_url, tmp_path):
    from tests.comfyui_double import ComfyUIDouble
    from tests.test_gpuworker_comfy import AppDouble

    queue = f"gpu-{uuid.uuid4().hex[:6]}"
    with ComfyUIDouble(step_time=0.02, steps=2000) as comfyui, AppDouble() as app:  # 40 s per node
        job = enqueue(redis_url, queue, SIMPLE)
        argv = ["--redis", redis_url, "--app", app.url, "--token", "tok", "--comfyui", comfyui.url,
                "--queue", queue, "--name", "gpu-term"]
        log = tmp_path / "worker.log"
        with worker_process(argv, log) as proc:
            prompt_id = comfyui.wait_running(30)
            assert prompt_id, log.read_text()
            time.sleep(0.5)  # the horse records the prompt id right after submitting it
            stopped_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
            took = time.monotonic() - stopped_at
            output = log.read_text()
        assert proc.returncode == 0, output
        assert took < 10, output
        assert comfyui.wait_finished(prompt_id, 5), "ComfyUI was interrupted, not left running an orphan"
        assert (prompt_id in [p for _, p in comfyui.interrupts]), comfyui.interrupts

    assert f"job {job['job_id']} goes back to the queue" in output
    assert app.of(f"jobs/{job['job_id']}/started")
    assert not app.of(f"jobs/{job['job_id']}/finish"), "no result: the app requeues the job of a worker gone offline"
    assert app.json_bodies("heartbeat")[-1]["status"] == "offline"


def test_a_config_file_alone_configures_the_worker(redis_url, tmp_path):
    """The serverless shape: provider, URL and auth headers in one file."""
    from tests.comfyui_double import ComfyUIDouble
    from tests.test_gpuworker_comfy import AppDouble

    queue = f"gpu-{uuid.uuid4().hex[:6]}"
    with ComfyUIDouble(step_time=0.01, steps=1) as comfyui, AppDouble() as app:
        config = tmp_path / "worker.toml"
        config.write_text(
            f'provider = "comfyui"\nredis = "{redis_url}"\napp = "{app.url}"\ntoken = "tok"\nqueue = "{queue}"\n'
            f'[comfyui]\nurl = "{comfyui.url}"\nheaders = {{ Authorization = "Bearer serverless-key" }}\n'
        )
        job = enqueue(redis_url, queue, SIMPLE)
        log = tmp_path / "worker.log"
        with worker_process(["--config", str(config), "--burst"], log) as proc:
            proc.wait(60)
        assert proc.returncode == 0, log.read_text()
    (finish,) = app.json_bodies(f"jobs/{job['job_id']}/finish")
    assert finish["status"] == "success"
    assert app.json_bodies("register")[0]["comfyui_url"] == comfyui.url
