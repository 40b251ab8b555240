"""The instructor's console: each lever through the admin's test client, each one reaching the
participant's socket (a Channels communicator on the real routing) with its reason. Real
PostgreSQL and Redis; the GPU worker speaks the worker API as gpuworker does."""

import asyncio
import copy
import io
import json
import time

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.admin.models import LogEntry
from django.contrib.auth import authenticate, get_user_model
from django.test import Client

from jobs import dispatcher
from jobs.models import (
    PRIORITY_NEXT,
    PRIORITY_NOW,
    PRIORITY_RESUME,
    SAID_CANCELLED,
    SAID_DEMO,
    SAID_NEXT,
    SAID_REQUEUED,
    Announcement,
    Job,
    JobState,
    QueueSettings,
)
from tests.test_lifecycle import SIMPLE, call, make_worker

pytestmark = pytest.mark.django_db(transaction=True)


def router():
    from workshop.asgi import websocket_urlpatterns

    return URLRouter(websocket_urlpatterns)


def socket_hears(user, path, action, predicate, timeout=10.0):
    """Open `path` as `user`, do `action` (sync, in a thread), and return the first message
    that satisfies `predicate` (and every one before it)."""

    async def main():
        comm = WebsocketCommunicator(router(), path)
        comm.scope["user"] = user
        connected, _ = await comm.connect(timeout=10)
        assert connected, f"{path} refused {user}"
        seen = []
        try:
            if action is not None:
                await database_sync_to_async(action)()
            while True:
                raw = await comm.receive_from(timeout)
                message = json.loads(raw)
                seen.append(message)
                if predicate(message):
                    return seen
        finally:
            await comm.disconnect()

    return asyncio.run(main())


def notice_for(job):
    return lambda m: m["type"] == "workshop.notice" and m["data"]["prompt_id"] == str(job.pk)


@pytest.fixture
def instructor(participants):
    client = Client()
    client.force_login(get_user_model().objects.get(username="instructor"))
    return client


@pytest.fixture
def alice(participants):
    return participants[0].owner


def act(client, path, **body):
    answer = client.post(
        f"/admin/console/{path}", data=json.dumps(body), content_type="application/json", HTTP_ACCEPT="application/json"
    )
    return answer


def logged(text):
    return LogEntry.objects.filter(change_message__icontains=text).exists()


def start_on(job, worker):
    dispatcher.dispatch()
    job.refresh_from_db()
    assert job.worker_id == worker.pk, "the job went to the worker"
    assert job.mark_running(worker, job.run)
    return job


def test_cancel_a_waiting_job_tells_its_participant_and_is_logged(instructor, participants, alice):
    job = Job.submit(participants[0], SIMPLE)
    seen = socket_hears(
        alice, "/user/001/ws?clientId=t", lambda: act(instructor, f"jobs/{job.pk}/cancel"), notice_for(job)
    )
    assert seen[-1]["data"] == {"prompt_id": str(job.pk), "state": "cancelled", "text": SAID_CANCELLED}
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.cancelled_by == "instructor"
    assert logged("Cancelled user001's job #0")


def test_cancel_a_running_job_stops_it_on_the_gpu_then_tells_the_participant(client, instructor, participants, alice):
    gpu = make_worker("gpu-1")
    job = start_on(Job.submit(participants[0], SIMPLE), gpu)
    answer = act(instructor, f"jobs/{job.pk}/cancel")
    assert answer.status_code == 200 and answer.json()["ok"]
    beat = call(client, gpu, "heartbeat", {"status": "busy", "job_id": str(job.pk), "run": job.run}).json()
    assert beat["cancel"] == "cancel", "the worker is told to stop ComfyUI"

    def worker_confirms():
        call(client, gpu, f"jobs/{job.pk}/finish", {"run": job.run, "status": "interrupted"})

    seen = socket_hears(alice, "/user/001/ws?clientId=t", worker_confirms, notice_for(job))
    assert seen[-1]["data"]["text"] == SAID_CANCELLED and seen[-1]["data"]["state"] == "cancelled"
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


def test_run_next_moves_the_job_to_position_one_for_the_participant(instructor, participants):
    first = Job.submit(participants[1], SIMPLE)
    later = Job.submit(participants[0], SIMPLE)
    before = instructor.get("/admin/console/state").json()["waiting"]
    assert [w["id"] for w in before] == [str(first.pk), str(later.pk)]

    def is_first(m):
        return m["type"] == "workshop.queue" and m["data"]["waiting"] and m["data"]["waiting"][0]["position"] == 1

    seen = socket_hears(
        participants[0].owner, "/user/001/ws?clientId=t", lambda: act(instructor, f"jobs/{later.pk}/next"), is_first
    )
    assert any(m["type"] == "workshop.notice" and m["data"]["text"] == SAID_NEXT for m in seen)
    after = instructor.get("/admin/console/state").json()["waiting"]
    assert [w["id"] for w in after] == [str(later.pk), str(first.pk)]
    assert after[0]["priority"] == "next" and after[0]["position"] == 1
    assert logged("runs next")


def test_run_now_pauses_the_newest_run_which_continues_first_after_the_demo(client, instructor, participants, alice):
    gpu = make_worker("gpu-1")
    victim = start_on(Job.submit(participants[0], SIMPLE), gpu)
    demo_workspace = participants[2]
    demo = Job.submit(demo_workspace, SIMPLE)
    answer = act(instructor, f"jobs/{demo.pk}/now")
    assert answer.status_code == 200 and "1 running job(s) paused" in answer.json()["message"]
    victim.refresh_from_db()
    assert victim.cancel_requested == "interrupt"

    def worker_stops_it():
        call(client, gpu, f"jobs/{victim.pk}/finish", {"run": victim.run, "status": "interrupted"})

    seen = socket_hears(alice, "/user/001/ws?clientId=t", worker_stops_it, notice_for(victim))
    assert seen[-1]["data"] == {"prompt_id": str(victim.pk), "state": "queued", "text": SAID_DEMO}
    victim.refresh_from_db()
    demo.refresh_from_db()
    assert victim.state == JobState.QUEUED and victim.priority == PRIORITY_RESUME
    # The demo holds the GPU now; the victim is next in line.
    assert demo.state == JobState.DISPATCHED and demo.worker_id == gpu.pk and demo.priority == PRIORITY_NOW
    waiting = instructor.get("/admin/console/state").json()["waiting"]
    assert waiting[0]["id"] == str(victim.pk) and waiting[0]["priority"] == "resumes first"
    assert demo.mark_running(gpu, demo.run)
    call(client, gpu, f"jobs/{demo.pk}/finish", {"run": demo.run, "status": "success", "outputs": {}})
    victim.refresh_from_db()
    assert victim.state == JobState.DISPATCHED and victim.run == 2, "the interrupted job runs again at once"
    assert victim.mark_running(gpu, victim.run)
    call(client, gpu, f"jobs/{victim.pk}/finish", {"run": victim.run, "status": "success", "outputs": {}})
    victim.refresh_from_db()
    demo.refresh_from_db()
    assert victim.state == demo.state == JobState.COMPLETED
    assert demo.started_at < victim.started_at and (victim.interruptions, victim.attempts) == (1, 0)


def test_requeue_puts_a_failed_job_back_with_fresh_attempts_and_says_so(instructor, participants, alice):
    job = Job.submit(participants[0], SIMPLE)
    Job.objects.filter(pk=job.pk).update(state=JobState.FAILED, error="GPU worker lost", attempts=3)
    assert instructor.get("/admin/console/state").json()["failed"][0]["id"] == str(job.pk)
    seen = socket_hears(
        alice, "/user/001/ws?clientId=t", lambda: act(instructor, f"jobs/{job.pk}/requeue"), notice_for(job)
    )
    assert seen[-1]["data"]["text"] == SAID_REQUEUED
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.attempts == 0 and job.error == "" and job.finished_at is None
    assert act(instructor, f"jobs/{job.pk}/requeue").status_code == 409, "a waiting job is not re-queued twice"


def test_cancel_all_waiting_jobs_of_one_participant(instructor, participants):
    mine = [Job.submit(participants[0], SIMPLE) for _ in range(3)]
    theirs = Job.submit(participants[1], SIMPLE)
    answer = act(instructor, "workspaces/001/cancel-waiting")
    assert answer.json()["message"] == "Cancelled 3 waiting job(s) of user001."
    assert {Job.objects.get(pk=j.pk).state for j in mine} == {JobState.CANCELLED}
    assert Job.objects.get(pk=theirs.pk).state == JobState.QUEUED


def test_pause_and_resume_reach_every_badge(instructor, participants, alice):
    Job.submit(participants[0], SIMPLE)

    def paused(value):
        return lambda m: m["type"] == "workshop.queue" and m["data"]["paused"] is value

    socket_hears(alice, "/user/001/ws?clientId=t", lambda: act(instructor, "pause"), paused(True))
    assert QueueSettings.get().paused and logged("The queue is paused")
    assert instructor.get("/admin/console/state").json()["paused"] is True
    socket_hears(alice, "/user/001/ws?clientId=t", lambda: act(instructor, "resume"), paused(False))
    assert not QueueSettings.get().paused and logged("The queue runs again")


def test_a_policy_switch_changes_the_order_shown(instructor, participants):
    QueueSettings.get().set_policy("fifo")
    a1, a2 = Job.submit(participants[0], SIMPLE), Job.submit(participants[0], SIMPLE)
    b1 = Job.submit(participants[1], SIMPLE)
    order = lambda: [w["id"] for w in instructor.get("/admin/console/state").json()["waiting"]]  # noqa: E731
    assert order() == [str(a1.pk), str(a2.pk), str(b1.pk)]
    assert act(instructor, "policy", policy="round_robin").status_code == 200
    assert order() == [str(a1.pk), str(b1.pk), str(a2.pk)]
    assert QueueSettings.get().policy == "round_robin" and logged("Policy: Round robin")
    assert act(instructor, "policy", policy="lottery").status_code == 400


def test_the_console_socket_is_staff_only_and_hears_every_change(participants):
    instructor = get_user_model().objects.get(username="instructor")
    seen = socket_hears(
        instructor, "/ws/console", lambda: Job.submit(participants[0], SIMPLE), lambda m: m["type"] == "changed"
    )
    assert seen[-1]["what"] == "queue"

    async def refused():
        comm = WebsocketCommunicator(router(), "/ws/console")
        comm.scope["user"] = participants[0].owner
        connected, code = await comm.connect(timeout=10)
        return connected, code

    assert asyncio.run(refused()) == (False, 4403)


def test_the_console_socket_still_hears_changes_long_after_it_opened(participants, settings, monkeypatch):
    """The channel layer forgets a group's member after group_expiry; an open console joins
    again and again, so it is never deaf. (It joined once, and went deaf a minute after it
    opened: the live queue froze with 20 participants.) The expiry is shortened here."""
    from jobs import consumers

    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["group_expiry"] = 1
    settings.CHANNEL_LAYERS = layers
    monkeypatch.setattr(consumers, "REJOIN_SECONDS", 0.3)
    instructor = get_user_model().objects.get(username="instructor")

    def after_the_expiry():
        time.sleep(2.5)  # waits out the expiry itself: there is no event for it
        Job.submit(participants[0], SIMPLE)

    seen = socket_hears(instructor, "/ws/console", after_the_expiry, lambda m: m["type"] == "changed")
    assert seen[-1]["what"] == "queue"


def test_an_announcement_reaches_open_workspaces_and_those_who_join_later(instructor, participants, alice):
    seen = socket_hears(
        alice,
        "/user/001/ws?clientId=t",
        lambda: act(instructor, "announce", text="Break until 11:00"),
        lambda m: m["type"] == "workshop.announcement",
    )
    assert seen[-1]["data"]["text"] == "Break until 11:00"
    later = socket_hears(
        participants[1].owner, "/user/002/ws?clientId=late", None, lambda m: m["type"] == "workshop.announcement"
    )
    assert later[-1]["data"]["text"] == "Break until 11:00"
    act(instructor, "announce", text="")
    assert Announcement.current() is None
    assert act(instructor, "announce", text="x" * 501).status_code == 400


def test_a_pushed_workflow_lands_in_every_sidebar_and_open_tabs_hear_of_it(instructor, participants, alice):
    graph = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4}

    def push():
        upload = io.BytesIO(json.dumps(graph).encode())
        upload.name = "Exercise 2.json"
        return instructor.post("/admin/console/workflows/", {"file": upload, "open_now": "on"})

    seen = socket_hears(alice, "/user/001/ws?clientId=t", push, lambda m: m["type"] == "workshop.workflow")
    assert seen[-1]["data"] == {"path": "workflows/workshop/Exercise 2.json", "name": "Exercise 2", "open": True}
    for workspace in participants:
        owner = Client()
        owner.force_login(workspace.owner)
        listing = owner.get(f"/user/{workspace.slug}/api/userdata?dir=workflows&recurse=true&split=false").json()
        assert "workshop/Exercise 2.json" in listing
        content = owner.get(f"/user/{workspace.slug}/api/userdata/workflows%2Fworkshop%2FExercise%202.json")
        assert content.status_code == 200
        assert json.loads(b"".join(content.streaming_content))["nodes"] == graph["nodes"]
    bad = io.BytesIO(b'{"not": "a workflow"}')
    bad.name = "x.json"
    assert (
        instructor.post("/admin/console/workflows/", {"file": bad}, follow=True).content.count(
            b"Not a ComfyUI workflow"
        )
        == 1
    )


def test_participants_grid_shows_usage_and_the_levers_work(instructor, participants):
    workspace = participants[0]
    (workspace.root / "output" / "pic.png").write_bytes(b"x" * 3 * 1024 * 1024)
    job = Job.submit(workspace, SIMPLE)
    Job.objects.filter(pk=job.pk).update(
        state=JobState.COMPLETED,
        gpu_seconds=125.0,
        outputs={"2": {"images": [{"filename": "pic.png", "subfolder": "", "type": "output"}]}},
        finished_at=job.created_at,
    )
    page = instructor.get("/admin/console/participants/").content.decode()
    assert "user001" in page and "3.0 MB of 5.0 GB" in page and "GPU: 125 s" in page
    assert "/user/001/api/view?filename=pic.png" in page and "1 done" in page

    opened = instructor.post("/admin/console/workspaces/001/open")
    assert opened.status_code == 302 and opened["Location"] == "/user/001/?workshop_help=1"
    assert logged("Opened the workspace of user001 in help mode")

    reset = instructor.post("/admin/console/workspaces/001/reset-password").content.decode()
    password = reset.split('<code class="new-password">')[1].split("</code>")[0]
    assert authenticate(username="user001", password=password) is not None
    assert authenticate(username="user001", password="pw") is None and logged("Reset the password of user001")

    instructor.post("/admin/console/workspaces/001/limits", {"max_waiting_jobs": "2", "gpu_budget_minutes": "2"})
    workspace.refresh_from_db()
    assert (workspace.max_waiting_jobs, workspace.gpu_budget_seconds) == (2, 120)
    owner = Client()
    owner.force_login(workspace.owner)
    refused = owner.post("/user/001/api/prompt", data=json.dumps({"prompt": SIMPLE}), content_type="application/json")
    assert refused.status_code == 429 and "GPU budget of 2 min" in refused.json()["error"]["message"]


def test_the_demo_workspace_jumps_the_queue_when_asked(instructor, participants):
    from django.core.management import call_command

    get_user_model().objects.filter(username="instructor").delete()
    call_command("workshop_setup", "--users", "1", "--sheet", str(participants[0].root.parent), stdout=io.StringIO())
    staff = get_user_model().objects.get(username="instructor")
    instructor.force_login(staff)
    demo = staff.workspace
    assert demo.slug == "demo"
    waiting = Job.submit(participants[0], SIMPLE)
    instructor.post(f"/admin/console/workspaces/{demo.slug}/limits", {"jumps_queue": "on"})
    mine = Job.submit(type(demo).objects.get(pk=demo.pk), SIMPLE)
    assert mine.priority == PRIORITY_NEXT
    assert [w["id"] for w in instructor.get("/admin/console/state").json()["waiting"]] == [
        str(mine.pk),
        str(waiting.pk),
    ]


def test_console_pages_are_staff_only_and_posts_need_the_csrf_token(participants):
    job = Job.submit(participants[0], SIMPLE)
    participant = Client()
    participant.force_login(participants[1].owner)
    for path in (
        "/admin/console/",
        "/admin/console/state",
        "/admin/console/participants/",
        "/admin/console/costs/",
        "/admin/console/charts/",
        "/admin/console/workflows/",
    ):
        assert participant.get(path).status_code == 302, path
    assert participant.post(f"/admin/console/jobs/{job.pk}/cancel").status_code == 302
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(get_user_model().objects.get(username="instructor"))
    assert strict.post(f"/admin/console/jobs/{job.pk}/cancel").status_code == 403
    job.refresh_from_db()
    assert job.state == JobState.QUEUED


def test_cost_per_participant_and_in_all_with_a_csv(instructor, participants):
    gpu = make_worker("gpu-1")
    type(gpu).objects.filter(pk=gpu.pk).update(price_per_hour=3.6)
    for workspace, secs in ((participants[0], 1000.0), (participants[1], 500.0)):
        job = Job.submit(workspace, SIMPLE)
        Job.objects.filter(pk=job.pk).update(state=JobState.COMPLETED, gpu_seconds=secs, worker=gpu)
    page = instructor.get("/admin/console/costs/").content.decode()
    assert "user001 (001)" in page and "1.00" in page and "1.50" in page
    rows = instructor.get("/admin/console/costs/?format=csv").content.decode().splitlines()
    assert rows[0] == "workspace,username,jobs,gpu_seconds,cost_USD"
    assert rows[1] == "001,user001,1,1000.0,1.0000" and rows[-1] == "total,,2,1500.0,1.5000"


def test_charts_are_svg_without_script(instructor, participants):
    gpu = make_worker("gpu-1")
    job = start_on(Job.submit(participants[0], SIMPLE), gpu)
    Job.objects.filter(pk=job.pk).update(gpu_seconds=30.0)
    page = instructor.get("/admin/console/charts/?hours=1").content.decode()
    charts = page.split('<div class="charts">', 1)[1].split("</div>", 1)[0]
    assert charts.count("<figure><svg") == 4 and "<script" not in charts
    for title in ("Waiting jobs", "Wait per job", "GPU busy share per worker", "GPU seconds per participant"):
        assert title in page
    assert "gpu-1" in page and "001" in page


def test_keep_serverless_gpus_warm_from_a_time_and_share_them_out(instructor, participants):
    from django.utils import timezone

    from jobs.models import Worker, WorkerStatus

    answer = act(instructor, "warm", count=3, **{"from": "09:00", "until": "08:00"})
    assert (
        answer.status_code == 200
        and answer.json()["message"] == "Keeping 3 serverless GPUs warm from 09:00 until 08:00."
    )
    row = QueueSettings.get()
    assert row.warm_until - row.warm_from == timezone.timedelta(hours=23), "until a time before from: the next day"
    assert row.warm_now(row.warm_from - timezone.timedelta(minutes=1)) == 0 and row.warm_now(row.warm_from) == 3
    assert logged("Keeping 3 serverless GPUs warm")

    act(instructor, "warm", count=3)  # "Warm up now", with no end
    assert QueueSettings.get().warm_now() == 3
    nothing = instructor.get("/admin/console/state").json()["warm"]
    assert nothing["now"] == 0 and nothing["serverless"] == 0, "no serverless worker: none is kept warm"
    now = timezone.now()
    a = Worker.create_with_token("sls-a", status=WorkerStatus.IDLE, last_heartbeat=now, serverless=True, capacity=2)[0]
    b = Worker.create_with_token("sls-b", status=WorkerStatus.IDLE, last_heartbeat=now, serverless=True, capacity=2)[0]
    local = Worker.create_with_token("h100", status=WorkerStatus.IDLE, last_heartbeat=now)[0]
    assert (a.warm_share(), b.warm_share(), local.warm_share()) == (2, 1, 0)
    state = instructor.get("/admin/console/state").json()
    assert state["warm"] == {"count": 3, "now": 3, "serverless": 4, "from": "", "until": ""}

    assert act(instructor, "warm", count=99).status_code == 400
    assert act(instructor, "warm", count=1, **{"from": "noon"}).status_code == 400
    act(instructor, "warm", count=0)
    assert QueueSettings.get().warm_now() == 0 and a.warm_share() == 0


def test_recent_actions_on_the_admin_index_say_which_lever_was_used(instructor, participants):
    job = Job.submit(participants[0], SIMPLE)
    assert instructor.post(f"/admin/console/jobs/{job.pk}/next").status_code in (200, 302)
    assert instructor.post(f"/admin/console/jobs/{job.pk}/cancel").status_code in (200, 302)
    sidebar = instructor.get("/admin/").content.decode().split('id="recent-actions-module"', 1)[1]
    assert "Cancelled user001&#x27;s job #0." in sidebar and "user001&#x27;s job #0 runs next." in sidebar
    assert sidebar.index("Cancelled") < sidebar.index("runs next"), "newest first"


@pytest.mark.parametrize(
    "target, lands",
    [
        ("https://evil.example/", "/admin/console/"),
        ("//evil.example/x", "/admin/console/"),
        ("/admin/console/participants/", "/admin/console/participants/"),
        ("javascript:alert(1)", "/admin/console/"),
    ],
)
def test_after_an_action_the_console_never_follows_next_to_another_site(instructor, target, lands):
    answer = instructor.post("/admin/console/resume", {"next": target})
    assert answer.status_code == 302 and answer["Location"] == lands
