"""The Jobs API (`/api/jobs`), which frontend 1.53 reads the queue and the history from: upstream's
shape (comfy_execution/jobs.py), pagination, filters, both cancel endpoints, and isolation."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job, JobState

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {}}, "3": {"class_type": "SaveImage", "inputs": {}}}


def make(workspace, state, minutes_ago, number=0, outputs=None, workflow_id="wf-a", **fields):
    now = timezone.now()
    return Job.objects.create(
        workspace=workspace,
        state=state,
        number=number,
        prompt=PROMPT,
        extra_data={"extra_pnginfo": {"workflow": {"id": workflow_id, "nodes": []}}},
        created_at=now - timedelta(minutes=minutes_ago),
        started_at=now - timedelta(minutes=minutes_ago) if state != JobState.QUEUED else None,
        finished_at=now - timedelta(minutes=minutes_ago - 1) if state in ("completed", "failed", "cancelled") else None,
        outputs=outputs or {},
        **fields,
    )


@pytest.fixture
def jobs(participants):
    alice_ws, bob_ws = participants[0], participants[1]
    image = {
        "3": {
            "images": [
                {"filename": "a_00001_.png", "subfolder": "", "type": "output"},
                {"filename": "a_00002_.png", "subfolder": "", "type": "output"},
            ]
        },
        "9": {"text": ["a caption"]},
    }
    made = {
        "done": make(alice_ws, JobState.COMPLETED, 50, 0, image),
        "broken": make(alice_ws, JobState.FAILED, 40, 1, error="CUDA out of memory", workflow_id="wf-b"),
        "stopped": make(alice_ws, JobState.CANCELLED, 30, 2),
        "running": make(alice_ws, JobState.RUNNING, 20, 3),
        "waiting": make(alice_ws, JobState.QUEUED, 10, 4),
        "bobs": make(bob_ws, JobState.COMPLETED, 5, 0, image),
    }
    (alice_ws.root / "output" / "a_00001_.png").write_bytes(b"\x89PNG 12345")
    return made


def test_the_list_has_upstreams_shape_newest_first(alice, jobs):
    body = alice.get("/user/001/api/jobs").json()
    assert [j["id"] for j in body["jobs"]] == [
        str(jobs[k].pk) for k in ("waiting", "running", "stopped", "broken", "done")
    ]
    assert [j["status"] for j in body["jobs"]] == ["pending", "in_progress", "cancelled", "failed", "completed"]
    assert body["pagination"] == {"offset": 0, "limit": None, "total": 5, "has_more": False}
    done = body["jobs"][-1]
    assert done["create_time"] == int(jobs["done"].created_at.timestamp() * 1000)
    # Like upstream, only file entries count: the text output is not one.
    assert done["outputs_count"] == 2 and done["previewable_outputs_count"] == 2
    assert done["preview_output"] == {
        "filename": "a_00001_.png",
        "subfolder": "",
        "type": "output",
        "nodeId": "3",
        "mediaType": "images",
    }
    assert done["workflow_id"] == "wf-a" and done["priority"] == 0
    assert "outputs" not in done, "the list leaves the outputs to the detail"


def test_a_failed_job_carries_an_execution_error_the_frontend_can_parse(alice, jobs):
    broken = alice.get(f"/user/001/api/jobs/{jobs['broken'].pk}").json()
    error = broken["execution_error"]
    assert error["exception_message"] == "CUDA out of memory"
    assert all(isinstance(error[k], str) for k in ("node_id", "node_type", "exception_message", "exception_type"))
    assert error["traceback"] == [] and broken["status"] == "failed"


@pytest.mark.parametrize(
    "query, expected",
    [
        ("status=completed,failed,cancelled", ["stopped", "broken", "done"]),
        ("status=in_progress,pending", ["waiting", "running"]),
        ("status=completed&workflow_id=wf-a", ["done"]),
        ("workflow_id=wf-b", ["broken"]),
        ("sort_order=asc&limit=2", ["done", "broken"]),
        ("limit=2&offset=2", ["stopped", "broken"]),
        ("offset=-4&limit=1", ["waiting"]),
    ],
)
def test_filters_sorting_and_pages(alice, jobs, query, expected):
    body = alice.get(f"/user/001/api/jobs?{query}").json()
    assert [j["id"] for j in body["jobs"]] == [str(jobs[k].pk) for k in expected]


def test_has_more_tells_the_next_page(alice, jobs):
    first = alice.get("/user/001/api/jobs?limit=3").json()["pagination"]
    last = alice.get("/user/001/api/jobs?limit=3&offset=3").json()["pagination"]
    assert first == {"offset": 0, "limit": 3, "total": 5, "has_more": True}
    assert last == {"offset": 3, "limit": 3, "total": 5, "has_more": False}


@pytest.mark.parametrize(
    "query, message",
    [
        (
            "status=done",
            "Invalid status value(s): done. Valid values: pending, in_progress, completed, failed, cancelled",
        ),
        ("limit=0", "limit must be a positive integer"),
        ("limit=ten", "limit must be an integer"),
        ("offset=x", "offset must be an integer"),
        ("sort_by=name", "sort_by must be 'created_at' or 'execution_duration'"),
        ("sort_order=up", "sort_order must be 'asc' or 'desc'"),
    ],
)
def test_bad_parameters_get_upstreams_400(alice, jobs, query, message):
    answer = alice.get(f"/user/001/api/jobs?{query}")
    assert answer.status_code == 400 and answer.json() == {"error": message}


def test_detail_carries_outputs_and_the_workflow_to_reopen(alice, jobs):
    detail = alice.get(f"/user/001/api/jobs/{jobs['done'].pk}").json()
    assert detail["outputs"] == jobs["done"].outputs
    assert detail["workflow"]["extra_data"]["extra_pnginfo"]["workflow"]["id"] == "wf-a"
    assert detail["execution_status"]["status_str"] == "success"


def test_assets_list_the_runs_files_page_by_page(alice, jobs):
    body = alice.get(f"/user/001/api/jobs/{jobs['done'].pk}/assets?limit=2").json()
    assert body["job_id"] == str(jobs["done"].pk)
    assert [a["name"] for a in body["assets"]] == ["a_00001_.png", "a_00002_.png"]
    first = body["assets"][0]
    assert first["preview_url"] == "/user/001/api/view?filename=a_00001_.png&subfolder=&type=output"
    assert first["size"] == 10 and first["mime_type"] == "image/png" and first["node_id"] == "3"
    assert body["pagination"] == {"offset": 0, "limit": 2, "total": 2, "has_more": False}


def test_another_workspaces_jobs_are_never_seen_nor_touched(alice, jobs):
    listed = json.dumps(alice.get("/user/001/api/jobs").json())
    assert str(jobs["bobs"].pk) not in listed
    for path in ("", "/assets"):
        assert alice.get(f"/user/001/api/jobs/{jobs['bobs'].pk}{path}").status_code == 404
    assert alice.get("/user/002/api/jobs").status_code == 404
    assert alice.post(f"/user/001/api/jobs/{jobs['bobs'].pk}/cancel").status_code == 404
    answer = alice.post(
        "/user/001/api/jobs/cancel",
        data=json.dumps({"job_ids": [str(jobs["bobs"].pk)]}),
        content_type="application/json",
    )
    assert answer.json() == {"cancelled": []}
    assert alice.get("/user/001/api/jobs/not-a-uuid").status_code == 404


def test_cancel_one_and_many(alice, jobs, participants):
    other = make(participants[0], JobState.QUEUED, 1, 5)
    answer = alice.post(f"/user/001/api/jobs/{jobs['waiting'].pk}/cancel")
    assert answer.status_code == 200 and answer.json() == {"cancelled": [str(jobs["waiting"].pk)]}
    jobs["waiting"].refresh_from_db()
    assert jobs["waiting"].state == JobState.CANCELLED
    assert alice.post(f"/user/001/api/jobs/{jobs['done'].pk}/cancel").json() == {"cancelled": []}
    many = alice.post(
        "/user/001/api/jobs/cancel",
        data=json.dumps({"job_ids": [str(other.pk), str(jobs["done"].pk)]}),
        content_type="application/json",
    )
    assert many.json() == {"cancelled": [str(other.pk)]}
    other.refresh_from_db()
    assert other.state == JobState.CANCELLED


@pytest.mark.parametrize("body", [{}, {"job_ids": []}, {"job_ids": "x"}, {"job_ids": [1]}, [], "x"])
def test_cancel_many_refuses_a_bad_body(alice, jobs, body):
    answer = alice.post("/user/001/api/jobs/cancel", data=json.dumps(body), content_type="application/json")
    assert answer.status_code == 400 and "job_ids" in answer.json()["error"]


def test_cleared_history_is_gone_from_the_jobs_api_too(alice, jobs):
    alice.post("/user/001/api/history", data=json.dumps({"clear": True}), content_type="application/json")
    statuses = [j["status"] for j in alice.get("/user/001/api/jobs").json()["jobs"]]
    assert statuses == ["pending", "in_progress"]


def test_history_pages_with_offset_like_comfyui(alice, jobs):
    oldest_first = [str(jobs[k].pk) for k in ("done", "broken", "stopped")]
    assert list(alice.get("/user/001/api/history").json()) == oldest_first
    assert list(alice.get("/user/001/api/history?max_items=2").json()) == oldest_first[1:]
    assert list(alice.get("/user/001/api/history?max_items=1&offset=1").json()) == oldest_first[1:2]
    assert list(alice.get("/user/001/api/history?offset=2").json()) == oldest_first[2:]
    assert alice.get("/user/001/api/history?max_items=-1").json() == {}
    assert alice.get("/user/001/api/history?max_items=x").status_code == 400


def test_features_switch_off_what_a_workshop_does_not_run(alice):
    features = alice.get("/user/001/api/features").json()
    assert features["assets"] is False and features["show_signin_button"] is False
    assert features["node_replacements"] is True
    assert alice.get("/user/001/api/node_replacements").json() == {}
    assert alice.get("/user/001/api/global_subgraphs").json() == {}


def test_a_refusal_by_the_gpu_hosts_comfyui_outlines_its_node():
    """A rule the bridge does not know: ComfyUI's own 400 comes back as the run's error, on the
    node ComfyUI named, with every node error in the message."""
    from frontend_bridge import wire

    error = wire.job_update(
        {
            "prompt_id": "p1",
            "state": "failed",
            "reason": "",
            "error": "#2 X: Value not in list",
            "node_errors": {"2": {"class_type": "ResizeImageMaskNode", "errors": []}},
        }
    )[0]
    assert error["type"] == "execution_error"
    assert error["data"]["node_id"] == "2" and error["data"]["node_type"] == "ResizeImageMaskNode"
    assert error["data"]["exception_message"] == "#2 X: Value not in list"
