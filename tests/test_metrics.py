"""/metrics (workshop.metrics): Prometheus text, read by prometheus_client's own parser, counted across processes."""

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from jobs.models import Job
from tests.test_lifecycle import SIMPLE, call, make_worker


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
