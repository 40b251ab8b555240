"""frontend_bridge/wire: the shapes the platform writes on ComfyUI's behalf, held to what a
ComfyUI server answers (its /queue, /history, POST /prompt refusals and the Jobs API)."""

import pytest

from frontend_bridge import wire
from jobs.models import FINAL_STATES, Job, JobState

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}
OUTPUTS = {"2": {"images": [{"filename": "t_00001_.png", "subfolder": "", "type": "output"}]}}


@pytest.fixture
def job(participants):
    return Job.submit(participants[0], SIMPLE, client_id="tab-1", extra_data={"extra_pnginfo": {"workflow": {}}})


def test_a_queue_entry_is_comfyuis_five_fields_with_the_tabs_client_id(job):
    number, prompt_id, prompt, extra, outputs = wire.queue_item(job)
    assert (number, prompt_id, prompt) == (job.number, str(job.id), SIMPLE)
    assert extra == {"extra_pnginfo": {"workflow": {}}, "client_id": "tab-1"}
    assert outputs == job.outputs_to_execute


@pytest.mark.parametrize("state, status_str, completed", [("completed", "success", True), ("failed", "error", False)])
def test_a_history_entry_has_comfyuis_status_block_and_the_outputs_meta(job, state, status_str, completed):
    messages = [["execution_start", {"prompt_id": str(job.id)}]]
    Job.objects.filter(pk=job.pk).update(state=state, outputs=OUTPUTS, messages=messages)
    job.refresh_from_db()
    entry = wire.history_entry(job)
    assert entry["status"] == {"status_str": status_str, "completed": completed, "messages": messages}
    assert entry["outputs"] == OUTPUTS and entry["meta"] == {"2": {"node_id": "2", "display_node": "2"}}
    assert wire.job_entry(job, full=True)["execution_status"] == entry["status"], "one status block for both APIs"


def test_an_open_run_has_no_status_block_yet(job):
    assert wire.run_status(job) == {} and wire.job_entry(job, full=True)["execution_status"] == {}


def test_a_refusal_is_comfyuis_error_shape():
    assert wire.submit_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", "x") == {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "x",
            "extra_info": {},
        },
        "node_errors": {},
    }


def test_every_job_state_has_a_jobs_api_status_and_every_status_its_states():
    assert set(wire.JOB_STATUS) == set(JobState)
    assert sorted(s for states in wire.STATES_OF.values() for s in states) == sorted(JobState)
    assert list(wire.STATES_OF) == ["pending", "in_progress", "completed", "failed", "cancelled"]
    assert all(wire.JOB_STATUS[state] == state for state in FINAL_STATES)


def test_a_timed_out_job_reaches_its_tab_as_comfyuis_error_then_the_notice():
    said = wire.job_update({"prompt_id": "p", "state": JobState.FAILED, "reason": "Timed out after 60 s", "error": ""})
    assert [m["type"] for m in said] == ["execution_error", "executing", "workshop.notice"]
    assert said[0]["data"]["exception_message"] == "Timed out after 60 s"
    assert said[-1]["data"]["text"] == "Your job failed: Timed out after 60 s"


def test_the_instructors_announcement_and_pushed_workflow_have_their_own_types():
    assert wire.announcement({"id": 1, "text": "Break", "at": "t"})["type"] == "workshop.announcement"
    assert wire.workflow_pushed({"path": "workshop/x.json", "name": "x", "open": True}) == {
        "type": "workshop.workflow",
        "data": {"path": "workshop/x.json", "name": "x", "open": True},
    }
