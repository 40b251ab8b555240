"""`manage.py workshop_doctor` names the model files each workshop workflow needs."""
import io

import pytest
from django.core.management import call_command

from jobs.models import Catalog, Worker

LTX2 = {"checkpoints": ["ltx-2-19b-dev-fp8.safetensors", "ltx-2-19b-distilled.safetensors"],
        "text_encoders": ["gemma_3_12B_it_fp4_mixed.safetensors"],
        "loras": ["ltx-2-19b-distilled-lora-384.safetensors", "ltx-2-19b-lora-camera-control-dolly-left.safetensors"],
        "latent_upscale_models": ["ltx-2-spatial-upscaler-x2-1.0.safetensors"]}


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
    Catalog.objects.create(worker=worker, comfyui_version=version, data={"model_files": model_files})


@pytest.mark.django_db
def test_a_gpu_host_with_every_ltx2_file_passes():
    publish("0.38.1", LTX2)
    code, text = doctor()
    assert code == 0, text
    assert "workflow video_ltx2_t2v.json needs:" in text
    assert "ok     models/checkpoints/ltx-2-19b-dev-fp8.safetensors" in text
    assert "ok   workflow hello.json: needs no model files" in text


@pytest.mark.django_db
def test_a_missing_model_file_and_an_old_comfyui_are_named():
    files = {**LTX2, "text_encoders": []}
    publish("0.3.64", files)
    code, text = doctor()
    assert code == 1
    assert "FAIL   models/text_encoders/gemma_3_12B_it_fp4_mixed.safetensors (not on the GPU host)" in text
    assert "ComfyUI 0.3.64 is outside the supported 0.8.0 – 0.38.x" in text


@pytest.mark.django_db
def test_without_any_gpu_host_it_says_so():
    code, text = doctor()
    assert code == 1 and "no GPU worker has published its ComfyUI catalog yet" in text
    assert "(no GPU host to ask)" in text
