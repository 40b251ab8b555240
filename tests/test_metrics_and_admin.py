"""/metrics (Prometheus text, read by prometheus_client's own parser) and the admin's defects
an instructor met: the add-job page, raw numbers, times to the minute, a clipped field."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from gpuworker.protocol import ran_from_cache
from jobs import queue
from jobs.models import Job, JobState
from tests.test_lifecycle import SIMPLE, call, make_worker


@pytest.fixture
def staff(participants):
    client = Client()
    client.force_login(get_user_model().objects.get(username="instructor"))
    return client


def scrape(client, **headers) -> dict:
    answer = client.get("/metrics", **headers)
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_parse_and_move_when_a_job_completes(client, staff, participants, settings):
    gpu = make_worker("gpu-1")
    before = scrape(staff)
    assert before[("workshop_jobs", (("state", "completed"),))] == 0
    assert before[("workshop_workers", (("state", "idle"),))] == 1
    job = Job.submit(participants[0], SIMPLE)
    assert scrape(staff)[("workshop_queue_depth", ())] == 1
    from tests.test_lifecycle import started

    started(job, gpu)
    call(client, gpu, f"jobs/{job.pk}/finish", {"run": job.run, "status": "success", "outputs": {}, "gpu_seconds": 42})
    after = scrape(staff)
    assert after[("workshop_jobs", (("state", "completed"),))] == 1
    assert after[("workshop_queue_depth", ())] == 0
    assert after[("workshop_gpu_busy_seconds_total", (("worker", "gpu-1"),))] == 42
    assert after[("workshop_job_run_seconds_count", ())] == 1 and after[("workshop_job_run_seconds_sum", ())] == 42
    assert after[("workshop_job_wait_seconds_count", ())] == 1


def test_refused_requests_are_counted_by_reason_across_processes(client, staff, participants):
    alice = Client()
    alice.force_login(participants[0].owner)
    before = scrape(staff)[("workshop_requests_refused_total", (("reason", "bad_input"),))]
    alice.post("/user/001/api/prompt", data="{nope", content_type="application/json")
    after = scrape(staff)[("workshop_requests_refused_total", (("reason", "bad_input"),))]
    assert after == before + 1


def test_metrics_need_staff_or_the_token(client, participants, settings):
    assert client.get("/metrics").status_code == 401
    alice = Client()
    alice.force_login(participants[0].owner)
    assert alice.get("/metrics").status_code == 401
    settings.METRICS_TOKEN = "scrape-me-please"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert "workshop_jobs" in str(scrape(client, HTTP_AUTHORIZATION="Bearer scrape-me-please"))


def test_jobs_cannot_be_added_by_hand_and_the_lists_speak_plainly(staff, participants):
    job = Job.submit(participants[0], SIMPLE)
    job.run_next()
    assert staff.get("/admin/jobs/job/add/").status_code == 403
    jobs_page = staff.get("/admin/jobs/job/").content.decode()
    assert "Add job" not in jobs_page and ">next<" in jobs_page
    from django.utils import timezone

    assert timezone.localtime(job.created_at).strftime("%Y-%m-%d %H:%M:%S") in jobs_page, "times to the second"
    workspaces = staff.get("/admin/accounts/workspace/").content.decode()
    assert "5.0\xa0GB" in workspaces and "5368709120" not in workspaces
    change = staff.get(f"/admin/accounts/workspace/{participants[0].pk}/change/").content.decode()
    assert "007 is served at /user/007/" in change
    settings_page = staff.get("/admin/jobs/queuesettings/1/change/").content.decode()
    assert 'name="max_prompt_bytes"' in settings_page and "width: 12em" in settings_page


def test_rq_dashboard_pages_load_admin_actions_without_the_dropped_plugin(staff):
    for path in ("/admin/rq/queues/0/", "/admin/rq/queues/0/finished/", "/admin/rq/queues/0/failed/"):
        answer = staff.get(path)
        assert answer.status_code == 200, path
        page = answer.content.decode()
        assert ".actions()" not in page and "admin/js/actions.js" in page, path


def test_cached_re_runs_do_not_make_etas_shrink(participants):
    prompt_ids = list(SIMPLE)
    for secs, cached in ((60.0, False), (62.0, False), (0.05, True), (0.04, True), (0.03, True)):
        job = Job.submit(participants[0], SIMPLE, workflow_name="wf")
        messages = [["execution_cached", {"nodes": prompt_ids if cached else [], "prompt_id": str(job.pk)}]]
        Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING)
        job.refresh_from_db()
        job.mark_completed({}, messages, secs)
    per_workflow, overall = queue.estimates()
    assert per_workflow["wf"] == 61.0 and overall == 61.0
    assert ran_from_cache(SIMPLE, [["execution_cached", {"nodes": ["1", "2"]}]])
    assert not ran_from_cache(SIMPLE, [["execution_cached", {"nodes": ["1"]}]])
    assert not ran_from_cache(SIMPLE, json.loads("[]"))


def test_the_console_is_the_first_thing_on_the_admin_index(staff):
    page = staff.get("/admin/").content.decode()
    assert page.index('id="workshop-console"') < page.index('class="app-jobs module')
    assert 'href="/admin/console/"' in page


@pytest.mark.django_db(transaction=True)
def test_open_websockets_are_counted_across_processes(participants):
    """The gauge reads the channel layer's queue group in Redis, which every Daphne shares."""
    import asyncio

    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from workshop.asgi import websocket_urlpatterns
    from workshop.metrics import _from_redis

    async def main():
        opened = []
        for workspace in participants[:2]:
            comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/user/{workspace.slug}/ws?clientId=m")
            comm.scope["user"] = workspace.owner
            assert (await comm.connect(timeout=10))[0]
            opened.append(comm)
        from asgiref.sync import sync_to_async

        during = (await sync_to_async(_from_redis)())[0]
        for comm in opened:
            await comm.disconnect()
        after = (await sync_to_async(_from_redis)())[0]
        return during, after

    assert asyncio.run(main()) == (2, 0)
