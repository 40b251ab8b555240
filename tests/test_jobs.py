"""Job states, the dispatcher and the worker API, against the real PostgreSQL and Redis."""

import json
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone
from rq.serializers import JSONSerializer

from gpuworker import protocol
from jobs import dispatcher, rq
from jobs.models import PRIORITY_RESUME, Job, JobState, QueueSettings, Worker

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def queue_job(workspace, **fields):
    return Job.submit(workspace, SIMPLE, **fields)


def start(job, worker):
    assert job.mark_dispatched(worker)
    assert job.mark_running(worker, job.run)
    return job


def dispatched_ids():
    return list(Job.objects.filter(state=JobState.DISPATCHED).values_list("id", flat=True))


def auth(worker):
    return {"HTTP_AUTHORIZATION": f"Bearer {worker.token}"}


# --- transitions ---------------------------------------------------------------------------


def test_a_job_runs_on_one_worker_only(participants, online_worker):
    job = queue_job(participants[0])
    other, _ = Worker.create_with_token("gpu-other")
    assert job.mark_dispatched(online_worker)
    assert not job.mark_dispatched(other), "a second dispatch of the same job changes nothing"
    first, second = Job.objects.get(pk=job.pk), Job.objects.get(pk=job.pk)
    assert first.mark_running(online_worker, job.run)
    assert not second.mark_running(other, job.run), "another worker cannot start it too"
    assert first.mark_running(online_worker, job.run), "the same worker repeating 'started' is fine"
    assert not first.mark_running(online_worker, job.run - 1), "an earlier run cannot start"
    assert Job.objects.get(pk=job.pk).worker == online_worker


def test_a_finished_job_cannot_end_twice(participants, online_worker):
    job = start(queue_job(participants[0]), online_worker)
    assert job.mark_completed({"2": {"images": []}}, [], 1.0)
    stale = Job.objects.get(pk=job.pk)
    assert not stale.mark_failed("late error report")
    assert not stale.mark_cancelled()
    assert Job.objects.get(pk=job.pk).state == JobState.COMPLETED


def test_cancel_of_a_waiting_job_ends_it_at_once(participants):
    job = queue_job(participants[0])
    assert job.cancel()
    assert job.state == JobState.CANCELLED and job.finished_at


def test_cancel_of_a_running_job_signals_its_worker(participants, online_worker, clean_redis):
    job = start(queue_job(participants[0]), online_worker)
    assert job.cancel()
    assert job.state == JobState.RUNNING and job.cancel_requested == "cancel", "it ends when the GPU confirms"
    assert clean_redis.get(protocol.CANCEL_KEY.format(protocol.run_id(job.pk, job.run))) == b"cancel"


def test_lost_job_goes_back_to_the_front_then_fails_after_max_attempts(participants, online_worker):
    QueueSettings.objects.update_or_create(pk=1, defaults={"max_attempts": 2})
    job = queue_job(participants[0])
    for _attempt in (1, 2):
        start(job, online_worker)
        job.lose_run(job.run, "GPU worker stopped answering", crash=True)
    assert job.attempts == 1 and job.run == 2
    assert job.state == JobState.FAILED
    assert "gave up after 2 attempts" in job.error


# --- dispatcher ------------------------------------------------------------------------------


def test_nothing_is_dispatched_without_an_online_worker(participants, clean_redis):
    queue_job(participants[0])
    dispatcher.dispatch()
    assert dispatched_ids() == []


def test_dispatch_fills_free_slots_only_and_puts_json_payload_on_rq(participants, online_worker, clean_redis):
    first = queue_job(participants[0])
    queue_job(participants[1])
    with django_capture_on_commit():
        dispatcher.dispatch()
    assert dispatched_ids() == [first.pk], "one worker: one job"
    dispatcher.dispatch()
    assert dispatched_ids() == [first.pk], "the slot is taken"
    queue = rq.queue_for(online_worker)
    assert queue.job_ids == [protocol.run_id(first.pk, 1)], "on the chosen worker's own queue"
    rq_job = queue.fetch_job(protocol.run_id(first.pk, 1))
    assert rq_job.func_name == "gpuworker.tasks.run_job"
    payload = rq_job.args[0]
    assert (
        payload["prompt"] == SIMPLE
        and payload["workspace"] == "001"
        and payload["attempt"] == 1
        and payload["run"] == 1
    )
    assert "token" not in json.dumps(payload)
    assert isinstance(rq_job.serializer(), JSONSerializer) or rq_job.serializer is JSONSerializer


def test_a_late_priority_job_jumps_ahead_of_earlier_ones(participants, online_worker):
    queue_job(participants[0])
    urgent = queue_job(participants[1])
    Job.objects.filter(pk=urgent.pk).update(priority=10)
    with django_capture_on_commit():
        dispatcher.dispatch()
    assert dispatched_ids() == [urgent.pk]


def test_paused_queue_dispatches_nothing(participants, online_worker):
    QueueSettings.objects.update_or_create(pk=1, defaults={"paused": True})
    queue_job(participants[0])
    dispatcher.dispatch()
    assert dispatched_ids() == []


def test_reconcile_re_enqueues_what_redis_lost(participants, online_worker, clean_redis):
    job = queue_job(participants[0])
    with django_capture_on_commit():
        dispatcher.dispatch()
    clean_redis.flushdb()  # Redis restarted empty
    counts = dispatcher.reap()
    assert counts["reenqueued"] == 1
    assert rq.queue_for(online_worker).job_ids == [protocol.run_id(job.pk, 1)]
    assert Job.objects.get(pk=job.pk).state == JobState.DISPATCHED


def test_reconcile_requeues_the_job_of_a_dead_worker_at_the_front(participants, online_worker):
    job = queue_job(participants[0])
    later = queue_job(participants[1])
    start(job, online_worker)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    Worker.objects.filter(pk=online_worker.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
    counts = dispatcher.reap()
    job.refresh_from_db()
    assert counts["requeued"] == 1
    assert job.state == JobState.QUEUED and job.priority == PRIORITY_RESUME and job.attempts == 1
    from jobs.queue import snapshot

    assert [w.id for w in snapshot().ordered] == [str(job.pk), str(later.pk)]


def django_capture_on_commit():
    """Run on_commit callbacks inside a test transaction, as a real commit would."""
    from django.test import TestCase

    return TestCase.captureOnCommitCallbacks(execute=True)


# --- worker API ----------------------------------------------------------------------------


def test_worker_api_refuses_unknown_tokens(client, db):
    answer = client.post(
        "/api/worker/heartbeat", data="{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer nope"
    )
    assert answer.status_code == 401


def test_started_on_a_cancelled_job_tells_the_worker_not_to_run(client, participants, online_worker):
    job = queue_job(participants[0])
    job.mark_dispatched(online_worker)
    job.cancel()
    answer = client.post(
        f"/api/worker/jobs/{job.pk}/started",
        data=json.dumps({"run": job.run}),
        content_type="application/json",
        **auth(online_worker),
    )
    assert answer.status_code == 409 and answer.json()["state"] == "cancelled" and answer.json()["stop"]


def test_output_upload_is_idempotent_and_never_overwrites_another_jobs_file(client, participants, online_worker):
    workspace = participants[0]
    jobs = []
    for _ in range(2):
        online_worker.capacity = 2
        online_worker.save()
        jobs.append(start(queue_job(workspace), online_worker))
    url = "/api/worker/jobs/{}/outputs?filename=ComfyUI_00001_.png&subfolder=&type=output&run=1"
    put = lambda job, data: client.put(url.format(job.pk), data=data, content_type="image/png", **auth(online_worker))  # noqa: E731
    first = put(jobs[0], b"one").json()
    again = put(jobs[0], b"one").json()
    second = put(jobs[1], b"two").json()
    assert first == again == {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}
    assert second["filename"] == "ComfyUI_00001_ (1).png", "another job's same name gets ComfyUI's own suffix"
    assert workspace.file_path("output", first["filename"]).read_bytes() == b"one"
    assert workspace.file_path("output", second["filename"]).read_bytes() == b"two"


def test_an_output_in_parts_appears_whole_only_with_its_last_part(client, participants, online_worker, settings):
    workspace = participants[0]
    job = start(queue_job(workspace), online_worker)
    url = f"/api/worker/jobs/{job.pk}/outputs?filename=clip.mp4&subfolder=&type=output&run=1"

    def put(offset, data, final):
        return client.put(
            f"{url}&offset={offset}&final={int(final)}",
            data=data,
            content_type="application/octet-stream",
            **auth(online_worker),
        )

    assert put(0, b"aaaa", False).json() == {"received": 4}
    assert put(0, b"AAAA", False).json() == {"received": 4}, "a part sent again replaces itself"
    gap = put(9, b"zz", False)
    assert gap.status_code == 409 and "resend from 4" in gap.json()["error"]
    assert not workspace.file_path("output", "clip.mp4").exists(), "nothing shows before the last part"
    assert put(4, b"bbbb", False).json() == {"received": 8}
    assert put(8, b"cc", True).json() == {"filename": "clip.mp4", "subfolder": "", "type": "output"}
    assert workspace.file_path("output", "clip.mp4").read_bytes() == b"AAAAbbbbcc"
    assert [p.name for p in (workspace.root / "output").iterdir()] == ["clip.mp4"], "no part file is left"

    settings.MAX_OUTPUT_BYTES = 6
    assert put(0, b"1234", False).status_code == 200
    too_big = put(4, b"5678", True)
    assert too_big.status_code == 413
    assert workspace.file_path("output", "clip.mp4").read_bytes() == b"AAAAbbbbcc", "the stored file is untouched"
    assert [p.name for p in (workspace.root / "output").iterdir()] == ["clip.mp4"]


def test_output_upload_cannot_escape_the_workspace(client, participants, online_worker):
    job = start(queue_job(participants[0]), online_worker)
    answer = client.put(
        f"/api/worker/jobs/{job.pk}/outputs?filename=x.png&subfolder=../../002/output&type=output&run=1",
        data=b"x",
        content_type="image/png",
        **auth(online_worker),
    )
    assert answer.status_code == 400
    assert not participants[1].file_path("output", "x.png").exists()


def test_finish_twice_is_answered_but_changes_nothing(client, participants, online_worker):
    job = start(queue_job(participants[0]), online_worker)
    body = {"run": 1, "status": "success", "outputs": {"2": {"images": []}}, "messages": [], "gpu_seconds": 2.5}
    for _ in range(2):
        answer = client.post(
            f"/api/worker/jobs/{job.pk}/finish",
            data=json.dumps(body),
            content_type="application/json",
            **auth(online_worker),
        )
        assert answer.status_code == 200 and answer.json()["state"] == "completed"
    late = client.post(
        f"/api/worker/jobs/{job.pk}/finish",
        data=json.dumps({"run": 1, "status": "error", "error": {}}),
        content_type="application/json",
        **auth(online_worker),
    )
    assert late.json()["state"] == "completed"


def test_inputs_are_served_only_when_the_job_reads_them(client, participants, online_worker):
    workspace = participants[0]
    workspace.file_path("input", "cat.png").write_bytes(b"cat")
    workspace.file_path("input", "secret.png").write_bytes(b"secret")
    job = queue_job(workspace, inputs=[{"filename": "cat.png", "subfolder": "", "type": "input"}])
    base = f"/api/worker/jobs/{job.pk}/inputs"
    before = client.get(base, {"filename": "cat.png", "type": "input", "run": 1}, **auth(online_worker))
    assert before.status_code == 409, "not before the job was sent to this worker"
    start(job, online_worker)
    ok = client.get(base, {"filename": "cat.png", "type": "input", "run": 1}, **auth(online_worker))
    assert ok.status_code == 200 and b"".join(ok.streaming_content) == b"cat"
    assert (
        client.get(base, {"filename": "secret.png", "type": "input", "run": 1}, **auth(online_worker)).status_code
        == 404
    )


# --- workshop_setup ------------------------------------------------------------------------


def test_workshop_setup_creates_accounts_once_and_prints_no_password(db, tmp_path, capsys):
    from django.contrib.auth import get_user_model

    call_command("workshop_setup", users=3, sheet=str(tmp_path))
    out = capsys.readouterr().out
    sheet = tmp_path / "credentials.csv"
    rows = sheet.read_text().splitlines()
    assert rows[0] == "username,password,url" and len(rows) == 5  # instructor + 3
    user, password, url = rows[3].split(",")
    assert url.endswith("/user/002/") and password not in out and "credentials.html" in out
    assert get_user_model().objects.get(username=user).check_password(password)
    assert get_user_model().objects.get(username="instructor").workspace.slug == "demo"

    call_command("workshop_setup", users=4, sheet=str(tmp_path))
    rows_after = sheet.read_text().splitlines()
    assert rows_after[:5] == rows and len(rows_after) == 6, "only user004 is new; old passwords unchanged"
    assert get_user_model().objects.get(username=user).check_password(password)
    assert get_user_model().objects.get(username="instructor").is_staff


def test_a_worker_cannot_end_or_fill_another_workers_job(client, participants, online_worker):
    intruder, intruder_token = Worker.create_with_token("intruder")
    job = start(queue_job(participants[0]), online_worker)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {intruder_token}"}
    finish = client.post(
        f"/api/worker/jobs/{job.pk}/finish",
        data=json.dumps({"run": 1, "status": "success"}),
        content_type="application/json",
        **headers,
    )
    upload = client.put(
        f"/api/worker/jobs/{job.pk}/outputs?filename=x.png&type=output&run=1",
        data=b"x",
        content_type="image/png",
        **headers,
    )
    assert finish.status_code == upload.status_code == 409
    assert Job.objects.get(pk=job.pk).state == JobState.RUNNING
    assert not participants[0].file_path("output", "x.png").exists()


def test_two_tabs_pressing_run_at_once_cannot_pass_the_waiting_limit(transactional_db, participants):
    import threading

    from django.db import connection

    from jobs.models import SubmitError

    QueueSettings.objects.update_or_create(pk=1, defaults={"max_waiting_per_user": 1})
    barrier = threading.Barrier(4)
    outcomes = []

    def press_run():
        try:
            barrier.wait()
            Job.submit(participants[0], SIMPLE)
            outcomes.append("queued")
        except SubmitError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=press_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["queued", "refused", "refused", "refused"]
    assert Job.objects.filter(workspace=participants[0]).count() == 1


def test_a_cold_serverless_gpu_adds_its_start_to_the_eta_and_a_warm_one_does_not(participants):
    from jobs.queue import snapshot

    worker, _ = Worker.create_with_token("modal-1")
    worker.beat(status="idle", serverless=True)
    QueueSettings.get()
    QueueSettings.objects.update(paused=True)  # jobs wait: only the estimate is looked at
    for seconds in (30.0, 50.0, 40.0):  # three earlier cold starts on this worker
        done = queue_job(participants[1], workflow_name="hello")
        Job.objects.filter(pk=done.pk).update(
            state=JobState.COMPLETED,
            worker=worker,
            gpu_seconds=20.0,
            cold_start_seconds=seconds,
            started_at=timezone.now() - timedelta(hours=1),
            finished_at=timezone.now() - timedelta(hours=1),
        )
    first, second = queue_job(participants[0], workflow_name="hello"), queue_job(participants[2], workflow_name="hello")
    cold = snapshot()
    assert cold.etas[str(first.pk)] == 40.0, "the median cold start comes first"
    assert cold.etas[str(second.pk)] == 60.0, "then the 20 s run before it"
    QueueSettings.get().set_warm(1)
    assert snapshot().etas[str(first.pk)] == 0.0, "kept warm: no cold start"
    QueueSettings.get().set_warm(0)
    Job.objects.filter(pk=done.pk).update(finished_at=timezone.now() - timedelta(seconds=5))
    assert snapshot().etas[str(first.pk)] == 0.0, "it ran a moment ago: still warm"


def test_a_beats_warm_seconds_are_stored_with_the_beat_itself(client, online_worker, monkeypatch):
    """Whoever sees a heartbeat (its last_heartbeat) sees the warm time it reported: the two
    are one write. They were two, and a reader between them on a busy machine saw the beat
    without its warm time (the 'no warm cost once it is off' failure under load)."""
    Worker.objects.filter(pk=online_worker.pk).update(serverless=True, warm_seconds=10.0)
    seen = {}
    real_share = Worker.warm_share

    def share_after_the_commit(worker):  # runs once the beat is committed
        row = Worker.objects.get(pk=worker.pk)
        seen["warm_seconds"] = row.warm_seconds
        return real_share(worker)

    monkeypatch.setattr(Worker, "warm_share", share_after_the_commit)
    answer = client.post(
        "/api/worker/heartbeat",
        data=json.dumps({"status": "idle", "warm_seconds": 2.5}),
        content_type="application/json",
        **auth(online_worker),
    )
    assert answer.status_code == 200
    assert seen["warm_seconds"] == 12.5
