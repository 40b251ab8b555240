"""`manage.py workshop_rehearsal` against a live platform: real GPU worker processes in front of
ComfyUI doubles, one with the LTX-2 model files, one whose ComfyUI is stopped."""

import io
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from jobs.models import Job, Worker
from tests.conftest import free_port, wait_until

# Where a GPU host keeps the files of the LTX-2 text-to-video template.
LTX2_FILES = {
    "checkpoints": ["ltx-2-19b-dev-fp8.safetensors"],
    "text_encoders": ["gemma_3_12B_it_fp4_mixed.safetensors"],
    "latent_upscale_models": ["ltx-2-spatial-upscaler-x2-1.0.safetensors"],
    "loras": ["ltx-2-19b-distilled-lora-384.safetensors", "ltx-2-19b-lora-camera-control-dolly-left.safetensors"],
}

pytestmark = pytest.mark.e2e


def rehearse(*args) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("workshop_rehearsal", *args, stdout=out)
        return 0, out.getvalue()
    except SystemExit as exc:
        return exc.code, out.getvalue()


def test_a_stopped_comfyui_and_missing_models_are_named_with_their_fixes(live_app, participants, tmp_path):
    from scripts.comfyui_double import ComfyUIDouble

    before = set(get_user_model().objects.values_list("username", flat=True))
    jobs_before = Job.objects.count()
    report = tmp_path / "report.md"
    with (
        ComfyUIDouble(version="0.8.0", model_files=LTX2_FILES, step_time=0.01, steps=1) as ready,
        ComfyUIDouble(version="0.8.0", step_time=0.01, steps=1) as bare,
        ComfyUIDouble(version="0.8.0", step_time=0.01, steps=1) as stopped,
        live_app.gpu_worker(ready.url, name="gpu-a"),
        live_app.gpu_worker(bare.url, name="gpu-b"),
        live_app.gpu_worker(stopped.url, name="gpu-c"),
    ):
        stopped.stop()
        wait_until(
            lambda: Worker.objects.get(name="gpu-c").status == "comfyui_unreachable",
            timeout=30,
            message="gpu-c to find its ComfyUI gone",
        )
        wait_until(
            lambda: "its ComfyUI does not answer" in Worker.objects.get(name="gpu-c").problem,
            timeout=30,
            message="gpu-c to say why it takes no jobs (the console shows it)",
        )
        Worker.create_with_token("gpu-never")  # registered with a token, never started
        code, text = rehearse(
            "--no-browser",
            "--workflow",
            "video_ltx2_t2v",
            "--report",
            str(report),
            "--timeout",
            "60",
            "--worker-wait",
            "1",
        )

    assert code == 1 and "NOT READY: 3 problem(s)" in text, text
    assert "waiting up to 1 s for worker gpu-never to come online" in text
    assert (
        "FAIL worker gpu-never is online: no heartbeat: the worker is not running, or it waits for its ComfyUI" in text
    )
    assert "FAIL worker gpu-c is online: its ComfyUI does not answer" in text
    assert "fix: start ComfyUI at" in text
    assert "ok   workflow video_ltx2_t2v.json has its models on gpu-a" in text
    assert "FAIL workflow video_ltx2_t2v.json has its models on gpu-b: 5 file(s) needed" in text
    assert "copy to the GPU host of gpu-b: models/checkpoints/ltx-2-19b-dev-fp8.safetensors" in text
    for worker in ("gpu-a", "gpu-b"):
        assert f"ok   a model-free run on {worker}:" in text
    markdown = report.read_text()
    assert markdown.startswith("# Workshop rehearsal: NOT READY") and "## To fix" in markdown
    assert markdown.count("**FAIL**") == 3
    assert set(get_user_model().objects.values_list("username", flat=True)) == before, "test accounts removed"
    assert Job.objects.count() == jobs_before, "and their jobs"
    assert not list((tmp_path / "data" / "workspaces").glob("rh*")), "and their files"


def test_a_worker_still_waiting_for_its_comfyui_is_given_time_to_come_online(live_app, participants, tmp_path):
    """Right after `scripts/run` or a compose up a worker may still wait for its ComfyUI: the
    rehearsal says so and waits, instead of failing the worker."""
    from django.db import connection

    from scripts.comfyui_double import ComfyUIDouble

    port = free_port()
    comfy = ComfyUIDouble(version="0.8.0", step_time=0.01, steps=1, port=port)
    out, result = io.StringIO(), {}

    def run():
        try:
            call_command(
                "workshop_rehearsal",
                "--no-browser",
                "--workflow",
                "hello",
                "--timeout",
                "60",
                "--report",
                str(tmp_path / "report.md"),
                stdout=out,
            )
            result["code"] = 0
        except SystemExit as exc:
            result["code"] = exc.code
        finally:
            connection.close()

    with live_app.gpu_worker(f"http://127.0.0.1:{port}", name="gpu-late", online=False):
        rehearsal = threading.Thread(target=run)
        rehearsal.start()
        try:
            wait_until(
                lambda: "waiting up to 60 s for worker gpu-late to come online" in out.getvalue(),
                timeout=60,
                message="the rehearsal to wait for gpu-late",
            )
            comfy.start()
            rehearsal.join(180)
        finally:
            comfy.stop()
    text = out.getvalue()
    assert "ok   worker gpu-late is online: ComfyUI 0.8.0" in text, text
    assert "ok   a model-free run on gpu-late:" in text, text
    assert result["code"] == 0, text
