"""The per-workspace ComfyUI API: shapes as ComfyUI returns them, and isolation."""

import pytest

from jobs.models import Job, JobState, QueueSettings
from tests.conftest import COMFYUI_NO_PROMPT, post_json

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def test_prompt_is_queued_with_comfyui_answer(alice, participants):
    answer = post_json(alice, "/user/001/api/prompt", {"prompt": SIMPLE, "client_id": "tab-1"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["number"] == 0 and body["node_errors"] == {}
    job = Job.objects.get(pk=body["prompt_id"])
    assert job.workspace == participants[0] and job.state == JobState.QUEUED and job.client_id == "tab-1"
    again = post_json(alice, "/user/001/api/prompt", {"prompt": SIMPLE})
    assert again.json()["number"] == 1


def test_prompt_without_prompt_is_comfyuis_no_prompt_error(alice):
    answer = post_json(alice, "/user/001/api/prompt", {"client_id": "x"})
    assert answer.status_code == 400
    assert answer.json() == COMFYUI_NO_PROMPT
    assert not Job.objects.exists()


def test_prompt_with_no_output_node_is_refused(alice, db):
    from jobs.models import Catalog, Worker

    worker, _ = Worker.create_with_token("w")
    Catalog.objects.create(
        worker=worker,
        object_info={
            "EmptyImage": {"input": {"required": {}}, "output": ["IMAGE"], "output_node": False},
            "SaveImage": {"input": {"required": {"images": ["IMAGE"]}}, "output": [], "output_node": True},
        },
    )
    answer = post_json(alice, "/user/001/api/prompt", {"prompt": {"1": SIMPLE["1"]}})
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "prompt_no_outputs"
    assert not Job.objects.exists()


def test_waiting_limit_is_a_clear_error(alice, participants):
    QueueSettings.objects.update_or_create(pk=1, defaults={"max_waiting_per_user": 2})
    for _ in range(2):
        assert post_json(alice, "/user/001/api/prompt", {"prompt": SIMPLE}).status_code == 200
    answer = post_json(alice, "/user/001/api/prompt", {"prompt": SIMPLE})
    assert answer.status_code == 429
    assert "limit is 2" in answer.json()["error"]["message"]
    assert Job.objects.count() == 2


def test_oversized_prompt_is_refused(alice):
    QueueSettings.objects.update_or_create(pk=1, defaults={"max_prompt_bytes": 1000})
    big = {"prompt": SIMPLE, "extra_data": {"extra_pnginfo": {"workflow": {"pad": "x" * 2000}}}}
    answer = post_json(alice, "/user/001/api/prompt", big)
    assert answer.status_code == 413 and "KB" in answer.json()["error"]["message"]
    assert not Job.objects.exists()


def test_comfy_org_tokens_are_never_stored(alice):
    body = {"prompt": SIMPLE, "extra_data": {"auth_token_comfy_org": "secret", "api_key_comfy_org": "k", "keep": 1}}
    prompt_id = post_json(alice, "/user/001/api/prompt", body).json()["prompt_id"]
    assert Job.objects.get(pk=prompt_id).extra_data == {"keep": 1}


def test_queue_and_prompt_show_only_own_jobs(alice, participants):
    mine = post_json(alice, "/user/001/api/prompt", {"prompt": SIMPLE, "client_id": "c"}).json()["prompt_id"]
    Job.submit(participants[1], SIMPLE)
    queue = alice.get("/user/001/api/queue").json()
    assert queue["queue_running"] == []
    assert [item[1] for item in queue["queue_pending"]] == [mine]
    number, prompt_id, prompt, extra, outputs = queue["queue_pending"][0]
    assert prompt == SIMPLE and extra["client_id"] == "c"
    assert alice.get("/user/001/api/prompt").json() == {"exec_info": {"queue_remaining": 1}}


def test_history_in_comfyui_format(alice, participants):
    job = Job.submit(participants[0], SIMPLE)
    Job.objects.filter(pk=job.pk).update(
        state=JobState.COMPLETED,
        outputs={"2": {"images": [{"filename": "t_00001_.png", "subfolder": "", "type": "output"}]}},
    )
    history = alice.get("/user/001/api/history?max_items=64").json()
    entry = history[str(job.pk)]
    assert entry["prompt"][1] == str(job.pk) and entry["prompt"][2] == SIMPLE
    assert entry["outputs"]["2"]["images"][0]["filename"] == "t_00001_.png"
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert alice.get("/user/001/api/history/not-a-uuid").json() == {}
    post_json(alice, "/user/001/api/history", {"delete": [str(job.pk)]})
    assert alice.get("/user/001/api/history").json() == {}


def test_participants_cannot_reach_other_workspaces(client, participants):
    job = Job.submit(participants[0], SIMPLE)
    participants[0].file_path("output", "a.png").write_bytes(b"png")
    client.login(username="user002", password="pw")
    assert client.get("/user/001/api/queue").status_code == 404
    assert client.get(f"/user/001/api/history/{job.pk}").status_code == 404
    assert client.get("/user/001/api/view?filename=a.png&type=output").status_code == 404
    assert post_json(client, "/user/001/api/prompt", {"prompt": SIMPLE}).status_code == 404
    assert post_json(client, "/user/002/api/interrupt", {"prompt_id": str(job.pk)}).status_code == 200
    assert post_json(client, "/user/002/api/queue", {"delete": [str(job.pk)]}).status_code == 200
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED, "nobody else can cancel user001's job"


def test_staff_can_reach_any_workspace(client, participants):
    client.login(username="instructor", password="pw")
    assert client.get("/user/001/api/queue").status_code == 200


def test_anonymous_gets_401(client, participants):
    assert client.get("/user/001/api/queue").status_code == 401


@pytest.mark.parametrize(
    "params, status",
    [
        ({"filename": "a.png", "type": "output"}, 200),
        ({"filename": "../a.png", "type": "output"}, 400),
        ({"filename": "a.png", "type": "output", "subfolder": "../../002/output"}, 400),
        ({"filename": "/etc/passwd", "type": "output"}, 400),
        ({"filename": "a.png", "type": "models"}, 400),
        ({"filename": "missing.png", "type": "output"}, 404),
    ],
)
def test_view_serves_only_workspace_files(alice, participants, params, status):
    participants[0].file_path("output", "a.png").write_bytes(b"\x89PNG")
    participants[1].file_path("output", "a.png").write_bytes(b"other")
    answer = alice.get("/user/001/api/view", params)
    assert answer.status_code == status
    if status == 200:
        assert b"".join(answer.streaming_content) == b"\x89PNG"


def test_view_refuses_links_out_of_the_workspace(alice, participants, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    participants[0].file_path("output", "link.png").symlink_to(secret)
    assert alice.get("/user/001/api/view?filename=link.png&type=output").status_code == 400


def test_cancel_own_queued_job_through_queue_delete(alice, participants):
    prompt_id = post_json(alice, "/user/001/api/prompt", {"prompt": SIMPLE}).json()["prompt_id"]
    assert post_json(alice, "/user/001/api/queue", {"delete": [prompt_id]}).status_code == 200
    assert Job.objects.get(pk=prompt_id).state == JobState.CANCELLED


def test_videos_can_be_seeked_with_range_requests(alice, participants):
    participants[0].file_path("output", "clip.mp4").write_bytes(b"0123456789")
    whole = alice.get("/user/001/api/view?filename=clip.mp4&type=output")
    assert whole["Accept-Ranges"] == "bytes" and whole["Content-Type"] == "video/mp4"
    part = alice.get("/user/001/api/view?filename=clip.mp4&type=output", HTTP_RANGE="bytes=2-5")
    assert part.status_code == 206 and part["Content-Range"] == "bytes 2-5/10"
    assert b"".join(part.streaming_content) == b"2345"
    tail = alice.get("/user/001/api/view?filename=clip.mp4&type=output", HTTP_RANGE="bytes=-3")
    assert b"".join(tail.streaming_content) == b"789"
