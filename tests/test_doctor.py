"""`manage.py workshop_doctor` names the model files each workshop workflow needs."""

import io

import pytest
from django.core.management import call_command

from jobs.models import Catalog, Worker

LTX2 = {
    "checkpoints": ["ltx-2-19b-dev-fp8.safetensors", "ltx-2-19b-distilled.safetensors"],
    "text_encoders": ["gemma_3_12B_it_fp4_mixed.safetensors"],
    "loras": ["ltx-2-19b-distilled-lora-384.safetensors", "ltx-2-19b-lora-camera-control-dolly-left.safetensors"],
    "latent_upscale_models": ["ltx-2-spatial-upscaler-x2-1.0.safetensors"],
}


def doctor():
    out = io.StringIO()
    try:
        call_command("workshop_doctor", stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue()


def publish(version, model_files):
    worker, _ = Worker.create_with_token("gpu-1")
    worker.beat(status="idle")
    Catalog.objects.create(worker=worker, comfyui_version=version, data={"model_files": model_files})


@pytest.fixture(autouse=True)
def production(settings):
    """A real workshop's settings: its host name, behind TLS."""
    settings.ALLOWED_HOSTS = ["workshop.example.org"]
    settings.BEHIND_PROXY = settings.SESSION_COOKIE_SECURE = True
    settings.DEBUG = False
    settings.MIN_FREE_DISK_BYTES = 0


@pytest.mark.django_db
def test_a_gpu_host_with_every_ltx2_file_passes():
    publish("0.38.1", LTX2)
    code, text = doctor()
    assert code == 0, text
    assert "workflow video_ltx2_t2v.json needs:" in text
    assert "ok     models/checkpoints/ltx-2-19b-dev-fp8.safetensors" in text
    assert "ok   workflow hello.json: needs no model files" in text
    assert "ComfyUI 0.38.1: supported, not tried itself; nearest tried 0.28.0" in text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "version, said",
    [
        ("0.28.0", "ComfyUI 0.28.0: tried with the platform (a real server"),
        ("0.8.0", "ComfyUI 0.8.0: tried with the platform (a real server"),
        (
            "0.12.3",
            "ComfyUI 0.12.3: supported, not tried itself; nearest tried 0.8.0. Differences from 0.8.0: "
            "an unknown node class is refused as missing_node_type",
        ),
    ],
)
def test_each_worker_says_which_comfyui_it_runs_and_whether_it_was_tried(version, said):
    publish(version, LTX2)
    code, text = doctor()
    assert code == 0, text
    assert said in text


@pytest.mark.django_db
def test_a_missing_model_file_and_an_old_comfyui_are_named():
    files = {**LTX2, "text_encoders": []}
    publish("0.3.64", files)
    code, text = doctor()
    assert code == 1
    assert "FAIL   models/text_encoders/gemma_3_12B_it_fp4_mixed.safetensors (not on the GPU host)" in text
    assert "ComfyUI 0.3.64 is outside the supported 0.8.0 to 0.38.x" in text


@pytest.mark.django_db
def test_without_any_gpu_host_it_says_so():
    code, text = doctor()
    assert code == 1 and "no GPU worker has published its ComfyUI catalog yet" in text
    assert "(no GPU host to ask)" in text


@pytest.mark.django_db
def test_each_setting_a_real_workshop_needs_is_named_with_its_fix(settings):
    publish("0.38.1", LTX2)
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    settings.BEHIND_PROXY = False
    settings.MIN_FREE_DISK_BYTES = 10**18
    code, text = doctor()
    assert code == 1
    assert "FAIL ALLOWED_HOSTS = 127.0.0.1, localhost: set it to the workshop's host name" in text
    assert "FAIL HTTPS is off: set BEHIND_TLS_PROXY=true and SECURE_COOKIES=true" in text
    assert "free space or move WORKSHOP_DATA_DIR" in text
    assert "ok   Redis at" in text and "ok   GPU worker(s) online: gpu-1" in text


@pytest.mark.django_db
def test_a_worker_that_stopped_beating_is_no_live_worker(settings):
    publish("0.38.1", LTX2)
    Worker.objects.update(last_heartbeat=None)
    code, text = doctor()
    assert code == 1 and "FAIL no GPU worker is online: start one" in text


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("0.28.0", (0, 28, 0)),
        ("v0.28.0", (0, 28, 0)),
        ("0.28.0-rc1", (0, 28, 0)),
        ("0.3.40-12-gabc", (0, 3, 40)),
        ("0.38", (0, 38, 0)),
        ("", (0, 0, 0)),
    ],
)
def test_a_release_is_read_from_its_leading_digits(text, parsed):
    from frontend_bridge.releases import supported, version_tuple

    assert version_tuple(text) == parsed
    assert supported("0.38.99-rc1") and not supported("0.3.40-12-gabc")


@pytest.mark.django_db
def test_a_secret_or_database_file_readable_by_others_is_named_with_its_fix(settings, tmp_path):
    publish("0.38.1", LTX2)
    settings.VAR_DIR = settings.CREDENTIALS_DIR = tmp_path
    key, sheet = tmp_path / "secret_key", tmp_path / "credentials.csv"
    key.write_text("k" * 50)
    sheet.write_text("username,password,url\n")
    key.chmod(0o600)
    sheet.chmod(0o644)
    code, text = doctor()
    assert code == 1 and f"readable by other users of this host: {sheet}: chmod 600 {sheet}" in text
    sheet.chmod(0o600)
    assert "readable by their owner only" in doctor()[1]
