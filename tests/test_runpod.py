"""RunPod serverless through the same queue: a real gpuworker process with `provider = "runpod"`
against a double of RunPod's endpoint API, whose handler runs each job on a ComfyUI double."""

import json
from contextlib import contextmanager

import pytest
import requests

from jobs.models import Job, JobState, QueueSettings, Worker
from tests.conftest import WORKFLOWS, wait_until
from tests.runpod_double import RunpodDouble
from tests.test_e2e import finished, post_prompt, receive_until

pytestmark = pytest.mark.e2e

SIMPLE = json.loads((WORKFLOWS / "simple.json").read_text())


def prompt(n: int) -> dict:
    changed = json.loads(json.dumps(SIMPLE))
    changed["1"]["inputs"]["color"] = n
    return changed


def provider_file(runpod, tmp_path, concurrency=1, **timeouts) -> str:
    """The endpoint has no /object_info: the operator saves its image's once."""
    catalog = tmp_path / "object_info.json"
    catalog.write_text(json.dumps(requests.get(runpod.comfy.url + "/object_info", timeout=10).json()))
    table = "\n".join(f"{k} = {v}" for k, v in {"poll": 0.2, "problem_probe": 1, **timeouts}.items())
    return (
        f'provider = "runpod"\nconcurrency = {concurrency}\nprice_per_hour = 2.5\n\n'
        f'[runpod]\nendpoint = "{runpod.endpoint}"\napi_key = "${{RUNPOD_API_KEY}}"\nobject_info = "{catalog}"\n\n'
        f"[timeouts]\n{table}\n"
    )


@contextmanager
def runpod_tab(live_app, tmp_path, name, **double):
    """A RunPod endpoint's double with a worker in front of it, and user001's tab on its socket:
    (the double, the logged-in session, the socket)."""
    with RunpodDouble(**double) as runpod:
        with live_app.gpu_worker(name=name, config=provider_file(runpod, tmp_path), env={"RUNPOD_API_KEY": runpod.key}):
            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                yield runpod, alice, ws


def output_file(workspace, job):
    item = next(iter(job.outputs.values()))["images"][0]
    return workspace.root / "output" / item.get("subfolder", "") / item["filename"]


@pytest.mark.parametrize("outputs", ["base64", "url"])
def test_a_run_on_runpod_with_a_cold_start_and_its_outputs(live_app, participants, tmp_path, outputs):
    with RunpodDouble(cold_start=1.5, outputs=outputs, step_time=0.05, steps=3, output_dir=tmp_path / "gpu") as runpod:
        with live_app.gpu_worker(
            name="runpod-1", config=provider_file(runpod, tmp_path), env={"RUNPOD_API_KEY": runpod.key}
        ):
            worker = Worker.objects.get(name="runpod-1")
            assert worker.provider == "runpod" and worker.price_per_hour == 2.5
            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                prompt_id = post_prompt(alice, live_app, "001", prompt(9))
                seen = receive_until(ws, finished(prompt_id), timeout=30)
    types = [m["type"] for m in seen if (m.get("data") or {}).get("prompt_id") == prompt_id]
    assert types.index("workshop.gpu_starting") < types.index("execution_start") < types.index("execution_success")
    assert "progress" in types, "the handler's streamed progress reaches the browser"
    executed = next(m for m in seen if m["type"] == "executed")
    job = Job.objects.get(pk=prompt_id)
    assert job.state == JobState.COMPLETED and job.cold_start_seconds >= 1.0
    assert executed["data"]["output"] == next(iter(job.outputs.values()))
    (made,) = [p for p in runpod.comfy.output_dir.rglob("*.png")]
    assert output_file(participants[0], job).read_bytes() == made.read_bytes(), "the file, byte for byte"
    if outputs == "url":
        assert runpod.counters["bucket_gets"] == 1 and runpod.bucket_auth == [None], "the API key stays with RunPod"
    history = alice.get(f"{live_app.url}/user/001/api/history/{prompt_id}", timeout=10).json()[prompt_id]
    assert history["status"]["status_str"] == "success"


def test_cancel_on_runpod_cancels_the_remote_job(live_app, participants, tmp_path):
    with runpod_tab(live_app, tmp_path, "runpod-2", step_time=0.2, steps=50) as (runpod, alice, ws):
        prompt_id = post_prompt(alice, live_app, "001", prompt(2))
        receive_until(ws, lambda m: m["type"] == "progress" and m["data"].get("prompt_id") == prompt_id)
        alice.post(f"{live_app.url}/user/001/api/interrupt", json={"prompt_id": prompt_id}, timeout=10)
        receive_until(ws, lambda m: m["type"] == "execution_interrupted" and m["data"]["prompt_id"] == prompt_id)
    assert Job.objects.get(pk=prompt_id).state == JobState.CANCELLED
    assert runpod.counters["cancels"] >= 1 and runpod.comfy.interrupts, "stopped on the GPU too"


def test_a_refused_runpod_key_fails_no_job(live_app, participants, tmp_path):
    with RunpodDouble(step_time=0.02, steps=2) as runpod:
        with live_app.gpu_worker(
            name="runpod-3", config=provider_file(runpod, tmp_path), env={"RUNPOD_API_KEY": "rp-wrong"}, online=False
        ):
            wait_until(lambda: Worker.objects.get(name="runpod-3").problem, message="the worker to say why")
            problem = Worker.objects.get(name="runpod-3").problem
            assert "HTTP 401" in problem and "rp-wrong" not in problem
            alice = live_app.login("user001")
            prompt_id = post_prompt(alice, live_app, "001", prompt(3))
            assert Job.objects.get(pk=prompt_id).state == JobState.QUEUED
            runpod.key = "rp-wrong"
            wait_until(
                lambda: Job.objects.get(pk=prompt_id).state == JobState.COMPLETED,
                timeout=30,
                message="the job to run once the key works",
            )
    assert runpod.counters["runs"] == 1


def test_a_run_past_the_job_timeout_ends_as_timed_out(live_app, participants, tmp_path):
    QueueSettings.objects.update_or_create(pk=1, defaults={"job_timeout": 1})
    with runpod_tab(live_app, tmp_path, "runpod-4", step_time=0.2, steps=50) as (_, alice, ws):
        prompt_id = post_prompt(alice, live_app, "001", prompt(4))
        seen = receive_until(
            ws, lambda m: m["type"] == "execution_error" and m["data"]["prompt_id"] == prompt_id, timeout=30
        )
    assert "Timed out after 1 s" in seen[-1]["data"]["exception_message"]
    assert Job.objects.get(pk=prompt_id).state == JobState.FAILED


def test_the_providers_concurrency_is_honoured(live_app, participants, tmp_path):
    with RunpodDouble(workers=3, step_time=0.1, steps=10) as runpod:
        with live_app.gpu_worker(
            name="runpod-5", config=provider_file(runpod, tmp_path, concurrency=2), env={"RUNPOD_API_KEY": runpod.key}
        ):
            assert Worker.objects.get(name="runpod-5").capacity == 2
            sessions = {slug: live_app.login(f"user{slug}") for slug in ("001", "002", "003")}
            ids = [post_prompt(s, live_app, slug, prompt(10 + n)) for n, (slug, s) in enumerate(sessions.items())]
            peak = 0

            def all_done():
                nonlocal peak
                peak = max(peak, Job.objects.filter(state=JobState.RUNNING).count())
                return Job.objects.filter(pk__in=ids, state=JobState.COMPLETED).count() == 3

            wait_until(all_done, timeout=60, message="three jobs")
    assert peak == 2 and runpod.in_progress_peak == 2, "two in flight at once, never three"
