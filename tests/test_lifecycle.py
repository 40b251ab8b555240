"""One lifecycle for a job: fenced runs, leases, crashes apart from interrupts, final cancels,
the instructor's levers, out-of-memory retries, fair GPU accounting. Real PostgreSQL and Redis;
each test is one of the defects seen when the GPU host misbehaved."""

import json
from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from gpuworker import protocol
from jobs import dispatcher, rq
from jobs.models import (
    PRIORITY_NEXT,
    PRIORITY_RESUME,
    Job,
    JobState,
    QueueSettings,
    Worker,
    usage_today,
)

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def make_worker(name, **fields):
    worker, token = Worker.create_with_token(name, **fields)
    worker.beat(status="idle")
    worker.token = token
    return worker


@pytest.fixture
def gpu(db):
    return make_worker("gpu-1")


def call(client, worker, path, body=None, method="post", **params):
    url = f"/api/worker/{path}"
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    kwargs = {"HTTP_AUTHORIZATION": f"Bearer {worker.token}"}
    if method == "put":
        return client.put(url, data=body or b"", content_type="application/octet-stream", **kwargs)
    return client.post(url, data=json.dumps(body or {}), content_type="application/json", **kwargs)


def dispatch():
    with TestCase.captureOnCommitCallbacks(execute=True):
        dispatcher.dispatch()


def started(job, worker):
    dispatch()
    job.refresh_from_db()
    assert job.worker_id == worker.pk
    assert job.mark_running(worker, job.run)
    return job


def expire(job):
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_a_late_report_from_a_run_taken_away_changes_nothing_and_says_stop(client, participants, gpu):
    job = started(Job.submit(participants[0], SIMPLE), gpu)
    expire(job)
    dispatcher.reap()  # the worker went silent: its run is over, the job waits at the front
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.priority == PRIORITY_RESUME and job.attempts == 1

    late_output = call(client, gpu, f"jobs/{job.pk}/outputs", b"png", method="put", filename="x.png", run=1)
    late_finish = call(client, gpu, f"jobs/{job.pk}/finish", {"run": 1, "status": "error", "error": {}})
    late_events = call(client, gpu, f"jobs/{job.pk}/events", {"run": 1, "events": []})
    for answer in (late_output, late_finish, late_events):
        assert answer.status_code == 409 and answer.json()["stop"] is True
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and not job.error.startswith("GPU worker error")
    assert not participants[0].file_path("output", "x.png").exists()

    started(job, gpu)  # … and it runs again, as run 2
    done = call(client, gpu, f"jobs/{job.pk}/finish", {"run": 2, "status": "success", "outputs": {}})
    assert done.json()["state"] == "completed"


def test_a_heartbeat_renews_the_lease_of_the_run_it_names_only(client, participants, gpu):
    job = started(Job.submit(participants[0], SIMPLE), gpu)
    expire(job)
    answer = call(client, gpu, "heartbeat", {"status": "busy", "job_id": str(job.pk), "run": job.run}).json()
    assert answer["stop"] is False
    assert dispatcher.reap()["requeued"] == 0, "the renewed lease kept the run"
    stale = call(client, gpu, "heartbeat", {"status": "busy", "job_id": str(job.pk), "run": job.run + 7}).json()
    assert stale["stop"] is True, "a run that is not the job's current one is told to stop"


def test_a_run_that_never_started_costs_no_attempt(participants, gpu):
    job = Job.submit(participants[0], SIMPLE)
    dispatch()
    job.refresh_from_db()
    Worker.objects.filter(pk=gpu.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=1))
    expire(job)
    dispatcher.reap()
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.attempts == 0


def test_cancel_is_final_even_when_the_worker_died(participants, gpu):
    job = started(Job.submit(participants[0], SIMPLE), gpu)
    assert job.cancel()
    expire(job)
    dispatcher.reap()
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED, "the reaper must not bring a cancelled job back"


def test_instructor_interrupts_never_use_up_attempts(client, participants, gpu):
    QueueSettings.objects.update_or_create(pk=1, defaults={"max_attempts": 3})
    job = Job.submit(participants[0], SIMPLE)
    for run in (1, 2, 3, 4):
        started(job, gpu)
        assert job.interrupt_for_demo()
        answer = call(client, gpu, f"jobs/{job.pk}/finish", {"run": run, "status": "interrupted", "error": {}})
        assert answer.json()["state"] == "queued"
        job.refresh_from_db()
    assert (job.interruptions, job.attempts, job.priority) == (4, 0, PRIORITY_RESUME)


def test_crashes_use_up_attempts_and_the_job_then_fails_with_the_reason(participants, gpu):
    QueueSettings.objects.update_or_create(pk=1, defaults={"max_attempts": 2})
    job = Job.submit(participants[0], SIMPLE)
    for _ in range(2):
        started(job, gpu)
        job.lose_run(job.run, "GPU worker gpu-1 stopped answering during the run", crash=True)
    assert job.state == JobState.FAILED and "gave up after 2 attempts" in job.error


def test_a_disabled_worker_gets_no_job_and_gives_back_what_it_was_sent(client, participants, gpu):
    spare = make_worker("gpu-2")
    first = Job.submit(participants[0], SIMPLE)
    dispatch()
    first.refresh_from_db()
    sent_to = gpu if first.worker_id == gpu.pk else spare
    Worker.objects.filter(pk=sent_to.pk).update(enabled=False)
    answer = call(client, sent_to, f"jobs/{first.pk}/started", {"run": first.run})
    assert answer.status_code == 409 and answer.json()["stop"]
    first.refresh_from_db()
    assert first.state in (JobState.QUEUED, JobState.DISPATCHED) and first.attempts == 0
    for n in range(3):
        Job.submit(participants[n], {**SIMPLE, "1": {**SIMPLE["1"], "inputs": {**SIMPLE["1"]["inputs"], "color": n}}})
        dispatch()
    assert not Job.objects.filter(worker=sent_to, state__in=["dispatched", "running"]).exists()


def test_a_rotated_token_stops_the_old_process_and_costs_no_attempt(client, participants, gpu):
    job = started(Job.submit(participants[0], SIMPLE), gpu)
    _, new_token = Worker.create_with_token("gpu-1")
    assert call(client, gpu, "heartbeat", {"status": "busy"}).status_code == 401, "the old token no longer works"
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.attempts == 0
    gpu.token = new_token
    assert call(client, gpu, "heartbeat", {"status": "idle"}).status_code == 200


def test_run_now_interrupts_only_when_no_gpu_is_free(client, participants, gpu):
    from django.test import Client

    instructor = Client()
    instructor.login(username="instructor", password="pw")
    running = started(Job.submit(participants[0], SIMPLE), gpu)
    make_worker("gpu-2")  # an idle GPU
    demo = Job.submit(
        participants[2], {**SIMPLE, "1": {**SIMPLE["1"], "inputs": {**SIMPLE["1"]["inputs"], "color": 9}}}
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        instructor.post("/admin/jobs/job/", {"action": "run_now", "_selected_action": [str(demo.pk)]})
    running.refresh_from_db()
    assert running.cancel_requested == "", "a GPU was free: nobody is interrupted"

    Worker.objects.filter(name="gpu-2").update(enabled=False)
    demo2 = Job.submit(
        participants[1], {**SIMPLE, "1": {**SIMPLE["1"], "inputs": {**SIMPLE["1"]["inputs"], "color": 8}}}
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        instructor.post("/admin/jobs/job/", {"action": "run_now", "_selected_action": [str(demo2.pk)]})
    assert Job.objects.filter(state=JobState.RUNNING, cancel_requested="interrupt").count() == 1


def test_run_next_goes_ahead_of_jobs_that_came_back(participants, gpu):
    from jobs.queue import snapshot

    back = started(Job.submit(participants[0], SIMPLE), gpu)
    back.lose_run(back.run, "GPU worker stopped answering", crash=True)
    normal = Job.submit(
        participants[1], {**SIMPLE, "1": {**SIMPLE["1"], "inputs": {**SIMPLE["1"]["inputs"], "color": 5}}}
    )
    nxt = Job.submit(participants[2], {**SIMPLE, "1": {**SIMPLE["1"], "inputs": {**SIMPLE["1"]["inputs"], "color": 6}}})
    Job.objects.filter(pk=nxt.pk).update(priority=PRIORITY_NEXT)
    assert [w.id for w in snapshot().ordered] == [str(nxt.pk), str(back.pk), str(normal.pk)]


def test_comfyui_unreachable_puts_the_job_back_and_stops_the_worker_taking_jobs(client, participants, gpu):
    job = started(Job.submit(participants[0], SIMPLE), gpu)
    answer = call(
        client,
        gpu,
        f"jobs/{job.pk}/finish",
        {
            "run": job.run,
            "status": "lost",
            "reason": "the GPU host's ComfyUI stopped answering",
            "crash": False,
            "comfyui_unreachable": True,
        },
    )
    assert answer.json()["state"] == "queued"
    job.refresh_from_db()
    worker = Worker.objects.get(pk=gpu.pk)
    assert job.attempts == 0 and not worker.is_online and worker.health == "ComfyUI unreachable"
    dispatch()
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED, "no job for a worker whose ComfyUI is down"
    call(client, gpu, "heartbeat", {"status": "idle"})  # ComfyUI answers again
    assert Worker.objects.get(pk=gpu.pk).is_online


def test_out_of_memory_gets_one_more_try_on_the_gpu_with_most_free_memory(client, participants, gpu):
    small = gpu
    Worker.objects.filter(pk=small.pk).update(vram_free=8 << 30)
    job = started(Job.submit(participants[0], SIMPLE), small)
    big = make_worker("gpu-big", vram_free=70 << 30)
    mid = make_worker("gpu-mid", vram_free=20 << 30)
    oom = {
        "exception_type": "torch.OutOfMemoryError",
        "exception_message": "Allocation on device 0 would exceed allowed memory",
    }
    answer = call(client, small, f"jobs/{job.pk}/finish", {"run": job.run, "status": "error", "error": oom})
    assert answer.json()["state"] == "queued"
    dispatch()
    job.refresh_from_db()
    assert job.worker_id == big.pk, f"retried on {job.worker}, not the GPU with the most free memory"
    assert mid.pk != job.worker_id
    assert job.mark_running(big, job.run)
    again = call(client, big, f"jobs/{job.pk}/finish", {"run": job.run, "status": "error", "error": oom})
    assert again.json()["state"] == "failed"
    job.refresh_from_db()
    assert job.error.startswith("The GPU ran out of memory twice")


def test_partial_execution_targets_travel_with_the_job(client, participants, gpu):
    client.login(username="user001", password="pw")
    answer = client.post(
        "/user/001/api/prompt",
        data=json.dumps({"prompt": SIMPLE, "partial_execution_targets": ["2"]}),
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.content
    job = Job.objects.get(pk=answer.json()["prompt_id"])
    assert job.submit_fields == {"partial_execution_targets": ["2"]}
    dispatch()
    job.refresh_from_db()
    assert rq.payload_for(job)["submit_fields"] == {"partial_execution_targets": ["2"]}


def test_fair_share_does_not_bill_model_loading(participants, gpu):
    first = started(Job.submit(participants[0], SIMPLE), gpu)
    first.mark_completed({}, [], gpu_seconds=40.0, load_seconds=30.0, run=first.run)
    second = started(Job.submit(participants[1], SIMPLE), gpu)
    second.mark_completed({}, [], gpu_seconds=10.0, load_seconds=0.0, run=second.run)
    usage = usage_today()
    assert usage["001"].gpu_seconds == usage["002"].gpu_seconds == 10.0, "loading the model was billed to nobody"


def _job_update_heard(job, reap):
    """What the participant's tabs hear of `job` when `reap` runs: ComfyUI's messages for the
    job.update event the workspace's group receives."""
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from frontend_bridge import wire
    from jobs import events

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.group_name(job.workspace.slug), channel)
    with TestCase.captureOnCommitCallbacks(execute=True):
        reap()

    async def next_message():
        return await asyncio.wait_for(layer.receive(channel), 5)

    received = async_to_sync(next_message)()
    while received["type"] != "job.update":
        received = async_to_sync(next_message)()
    return wire.job_update(received["job"])


def test_the_reaper_tells_the_participant_why_their_job_came_back(participants, gpu, settings):
    job = started(Job.submit(participants[0], SIMPLE), gpu)
    expire(job)
    messages = _job_update_heard(job, dispatcher.reap)
    notice = messages[-1]
    assert notice["type"] == "workshop.notice" and notice["data"]["state"] == "queued"
    assert "stopped answering" in notice["data"]["text"] and "front of the queue" in notice["data"]["text"]
    assert {"type": "executing", "data": {"node": None, "display_node": None, "prompt_id": str(job.pk)}} in messages


def test_a_run_the_worker_never_ended_times_out_and_its_tab_hears_it(participants, gpu, clean_redis):
    """The worker ignored the interrupt (or went silent with its lease renewed): past the job
    timeout and its grace the reaper fails the job, the participant's tab gets ComfyUI's end
    of it, and the worker is asked to stop the run as a timeout."""
    job = started(Job.submit(participants[0], SIMPLE), gpu)
    timeout = QueueSettings.get().job_timeout
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=timeout + 121))
    messages = _job_update_heard(job, dispatcher.reap)
    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.error == f"Timed out after {timeout} s"
    kinds = [m["type"] for m in messages]
    assert kinds == ["execution_error", "executing", "workshop.notice"], kinds
    assert messages[0]["data"]["exception_message"] == f"Timed out after {timeout} s"
    assert clean_redis.get(protocol.CANCEL_KEY.format(protocol.run_id(job.pk, job.run))) == b"timeout"


def test_run_now_takes_the_gpu_from_a_run_dispatched_a_moment_ago(client, participants, gpu):
    """The GPU had just been given to the next run (dispatched, not started) when the instructor
    pressed Run now: that run gives way at once and comes back first; the demo goes to the GPU.
    (It waited behind the whole next run before.)"""
    from django.test import Client

    instructor = Client()
    instructor.login(username="instructor", password="pw")
    with TestCase.captureOnCommitCallbacks(execute=True):
        just_sent = Job.submit(participants[0], SIMPLE)
    just_sent.refresh_from_db()
    assert just_sent.state == JobState.DISPATCHED and just_sent.worker_id == gpu.pk
    demo = Job.submit(
        participants[2], {**SIMPLE, "1": {**SIMPLE["1"], "inputs": {**SIMPLE["1"]["inputs"], "color": 7}}}
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        answer = instructor.post(f"/admin/console/jobs/{demo.pk}/now", HTTP_ACCEPT="application/json")
    assert "1 running job(s) paused" in answer.json()["message"]
    just_sent.refresh_from_db()
    demo.refresh_from_db()
    assert demo.state == JobState.DISPATCHED and demo.worker_id == gpu.pk
    assert just_sent.state == JobState.QUEUED and just_sent.priority == PRIORITY_RESUME
    assert (just_sent.attempts, just_sent.interruptions) == (0, 1)
    late = call(client, gpu, f"jobs/{just_sent.pk}/started", {"run": just_sent.run})
    assert late.status_code == 409, "the worker that had taken it is told the run is not its own"
