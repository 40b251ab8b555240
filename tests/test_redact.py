"""Errors a participant sees name no GPU host path and no other participant's file (jobs.redact)."""

import json

from jobs.models import Job
from tests.conftest import post_json, worker_with_token

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def test_errors_a_participant_sees_name_no_gpu_host_path_and_no_other_files(alice, client, participants):
    gpu = worker_with_token("gpu-1")
    job = Job.submit(participants[0], SIMPLE)
    assert job.mark_dispatched(gpu) and job.mark_running(gpu, job.run)
    secret_dir = "/srv/gpu-host-7/ComfyUI"
    error = {
        "exception_type": "OSError",
        "exception_message": f"[Errno 36] File name too long: '{secret_dir}/output/{'a' * 300}_00001_.png'",
        "traceback": [f'  File "{secret_dir}/execution.py", line 496, in execute\n'],
        "node_errors": {
            "5": {
                "class_type": "LoadImage",
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "image: 'mine.png' not in ['user002_holiday.png', 'user003_face.png']",
                        "extra_info": {
                            "input_name": "image",
                            "input_config": [["user002_holiday.png"], {"image_upload": True}],
                        },
                    }
                ],
            }
        },
    }
    end = [{"type": "execution_error", "data": {"prompt_id": str(job.pk), "node_id": "5", **error}}]
    answer = post_json(
        client,
        f"/api/worker/jobs/{job.pk}/finish",
        {"run": job.run, "status": "error", "error": error, "end": end},
        **gpu.headers,
    )
    assert answer.status_code == 200
    seen = json.dumps([alice.get("/user/001/api/history").json(), alice.get(f"/user/001/api/jobs/{job.pk}").json()])
    assert "File name too long" in seen, seen
    assert "gpu-host-7" not in seen and "/srv" not in seen
    assert "user002" not in seen and "user003" not in seen
    job.refresh_from_db()
    assert "gpu-host-7" not in json.dumps([job.error, job.end_messages, job.node_errors])
