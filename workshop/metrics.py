"""`/metrics` in Prometheus' text format (prometheus_client).

Every figure is read at scrape time from what all processes share, PostgreSQL and Redis, so
any number of Daphne processes answer the same: jobs and workers from the database, websocket
connections from the channel layer's `queue` group (every open socket is a member, renewed
every few seconds), and refused requests from a Redis hash each process adds to.
"""

import hmac
import time

from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Count, F, Sum
from django.http import HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from jobs import events, rq
from jobs.models import Job, JobState, Worker

WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800)
REFUSED_KEY = "metrics:refused"
REASONS = {
    400: "bad_input",
    401: "unauthenticated",
    403: "forbidden",
    405: "method",
    409: "conflict",
    413: "too_large",
    429: "throttled",
}


def count_refusal(status: int) -> None:
    """One refused request (4xx other than 404), by reason, for every process to see."""
    reason = REASONS.get(status)
    if reason is None:
        return

    try:
        rq.connection().hincrby(_key(REFUSED_KEY), reason, 1)
    except Exception:  # Metrics never fail a request.
        pass


def _key(name: str) -> str:
    return f"{settings.CHANNELS_PREFIX}:{name}"


def _histogram(name, doc, values, buckets):
    counts = []
    for bound in buckets:
        counts.append((str(float(bound)), sum(1 for v in values if v <= bound)))
    counts.append(("+Inf", len(values)))
    total = sum(values)
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], counts, total)
    return family


class WorkshopCollector:
    def collect(self):

        jobs = GaugeMetricFamily("workshop_jobs", "Jobs by state", labels=["state"])
        counts = dict(Job.objects.values_list("state").annotate(n=Count("id")))
        for state in JobState.values:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        yield GaugeMetricFamily(
            "workshop_queue_depth", "Jobs waiting in the queue", value=counts.get(JobState.QUEUED, 0)
        )

        started = Job.objects.filter(started_at__isnull=False).annotate(wait=F("started_at") - F("created_at"))
        waits = [w.total_seconds() for w in started.values_list("wait", flat=True) if w is not None]
        yield _histogram("workshop_job_wait_seconds", "Seconds from submit to start on a GPU", waits, WAIT_BUCKETS)
        runs = list(Job.objects.filter(gpu_seconds__isnull=False).values_list("gpu_seconds", flat=True))
        yield _histogram("workshop_job_run_seconds", "GPU seconds per finished job", runs, RUN_BUCKETS)

        workers = GaugeMetricFamily("workshop_workers", "GPU workers by state", labels=["state"])
        by_state: dict[str, int] = {}
        for worker in Worker.objects.all():
            by_state[worker.health] = by_state.get(worker.health, 0) + 1
        for state in ("idle", "busy", "ComfyUI unreachable", "offline", "disabled"):
            workers.add_metric([state], by_state.get(state, 0))
        yield workers

        busy = CounterMetricFamily(
            "workshop_gpu_busy_seconds", "GPU seconds of finished jobs, per worker", labels=["worker"]
        )
        for name, secs in (
            Job.objects.filter(worker__isnull=False).values_list("worker__name").annotate(s=Sum("gpu_seconds"))
        ):
            busy.add_metric([name], secs or 0.0)
        yield busy

        sockets, refused = _from_redis()
        yield GaugeMetricFamily(
            "workshop_websocket_connections", "Open browser websockets, all processes", value=sockets
        )
        family = CounterMetricFamily("workshop_requests_refused", "Requests refused, by reason", labels=["reason"])
        for reason in REASONS.values():
            family.add_metric([reason], refused.get(reason, 0))
        yield family


def _from_redis() -> tuple[int, dict[str, int]]:

    sockets = 0
    try:
        layer = get_channel_layer()
        key = layer._group_key(events.QUEUE_GROUP)  # channels-redis keeps each group as a sorted set
        sockets = rq.connection().zcount(key, time.time() - layer.group_expiry, "+inf")
    except Exception:
        pass
    try:
        raw = rq.connection().hgetall(_key(REFUSED_KEY))
        refused = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
    except Exception:
        refused = {}
    return sockets, refused


def view(request):
    """Staff, or `Authorization: Bearer <METRICS_TOKEN>` (for the Prometheus scraper)."""

    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    allowed = (request.user.is_authenticated and request.user.is_staff) or (
        bool(token) and hmac.compare_digest(given.encode(), token.encode())
    )
    if not allowed:
        return HttpResponse(
            "Metrics need staff login or the metrics token\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": "Bearer"},
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkshopCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
