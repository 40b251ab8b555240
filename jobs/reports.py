"""What the console, the CSV export, `workshop_report` and `/metrics` show, read from the
database in one place (the figures themselves are jobs.stats' pure functions)."""

from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from accounts.models import Workspace

from . import charts, stats
from .models import FINAL_STATES, PRIORITY_WORDS, Announcement, Job, JobState, QueueSettings, Worker
from .queue import snapshot


def price_of(worker: Worker | None) -> float:
    """A worker's price per GPU hour, or the provider's from settings when it has none."""
    if worker is not None and worker.price_per_hour:
        return float(worker.price_per_hour)
    prices = settings.GPU_PRICE_PER_HOUR
    provider = worker.provider if worker is not None else ""
    return float(prices.get(provider, prices.get("*", 0.0)))


def runs(since=None) -> list[stats.Run]:
    rows = Job.objects.all()
    if since is not None:
        rows = rows.filter(Q(created_at__gte=since) | Q(finished_at__gte=since) | Q(finished_at__isnull=True))
    return [
        stats.Run(
            owner=slug,
            worker=worker,
            created_at=created,
            started_at=started,
            finished_at=finished,
            gpu_seconds=gpu,
            state=state,
            error=error,
        )
        for slug, worker, created, started, finished, gpu, state, error in rows.values_list(
            "workspace__slug",
            "worker__name",
            "created_at",
            "started_at",
            "finished_at",
            "gpu_seconds",
            "state",
            "error",
        )
    ]


def costs() -> tuple[list[dict], dict]:
    """GPU seconds and cost per participant, priced by the worker that ran each job."""
    workers = {w.pk: w for w in Worker.objects.all()}
    per: dict[str, dict] = {}
    rows = (
        Job.objects.filter(gpu_seconds__isnull=False)
        .values("workspace__slug", "workspace__owner__username", "worker_id")
        .annotate(secs=Sum("gpu_seconds"), jobs=Count("id"))
    )
    for row in rows:
        entry = per.setdefault(
            row["workspace__slug"],
            {
                "slug": row["workspace__slug"],
                "username": row["workspace__owner__username"],
                "jobs": 0,
                "gpu_seconds": 0.0,
                "cost": 0.0,
            },
        )
        entry["jobs"] += row["jobs"]
        entry["gpu_seconds"] += row["secs"] or 0.0
        entry["cost"] += stats.cost(row["secs"] or 0.0, price_of(workers.get(row["worker_id"])))
    table = sorted(per.values(), key=lambda e: e["slug"])
    total = {
        "jobs": sum(e["jobs"] for e in table),
        "gpu_seconds": sum(e["gpu_seconds"] for e in table),
        "cost": sum(e["cost"] for e in table),
        "currency": settings.GPU_PRICE_CURRENCY,
    }
    return table, total


def participants() -> list[dict]:
    """One card per workspace: jobs by state, GPU time, storage, last activity, last output."""

    counts: dict[str, dict[str, int]] = {}
    for slug, state, n in Job.objects.values_list("workspace__slug", "state").annotate(n=Count("id")):
        counts.setdefault(slug, {})[state] = n
    gpu = dict(Job.objects.values_list("workspace__slug").annotate(s=Sum("gpu_seconds")))
    last_done = dict(
        Job.objects.filter(state=JobState.COMPLETED).values_list("workspace__slug").annotate(m=Max("finished_at"))
    )
    cards = []
    for ws in Workspace.objects.select_related("owner"):
        thumb = None
        if ws.slug in last_done:
            job = Job.objects.filter(workspace=ws, state=JobState.COMPLETED).order_by("-finished_at").first()
            thumb = _thumbnail(ws.slug, job.outputs if job else {})
        used = ws.used_bytes()
        cards.append(
            {
                "slug": ws.slug,
                "username": ws.owner.get_username(),
                "is_staff": ws.owner.is_staff,
                "pk": ws.pk,
                "user_pk": ws.owner_id,
                "states": {s: counts.get(ws.slug, {}).get(s, 0) for s in JobState.values},
                "gpu_seconds": gpu.get(ws.slug) or 0.0,
                "gpu_budget_seconds": ws.gpu_budget_seconds,
                "used_bytes": used,
                "quota_bytes": ws.quota_bytes,
                "used": stats.human_bytes(used),
                "quota": stats.human_bytes(ws.quota_bytes),
                "used_share": min(used / ws.quota_bytes, 1.0) if ws.quota_bytes else 0.0,
                "last_activity": ws.last_activity,
                "thumbnail": thumb,
                "max_waiting_jobs": ws.max_waiting_jobs,
                "jumps_queue": ws.jumps_queue,
            }
        )
    return cards


def _thumbnail(slug: str, outputs: dict) -> str | None:

    for node_outputs in (outputs or {}).values():
        if not isinstance(node_outputs, dict):
            continue
        for item in node_outputs.get("images") or []:
            if isinstance(item, dict) and item.get("filename"):
                query = urlencode(
                    {
                        "filename": item["filename"],
                        "subfolder": item.get("subfolder", ""),
                        "type": item.get("type", "output"),
                    }
                )
                return f"/user/{slug}/api/view?{query}"
    return None


def _node_label(job: Job) -> str:
    if (job.progress or {}).get("starting_seconds") is not None:
        return f"Starting a GPU… {round(job.progress['starting_seconds'])} s"
    node = (job.progress or {}).get("node")
    if node is None:
        return ""
    class_type = (job.prompt or {}).get(str(node), {}).get("class_type", "") if isinstance(job.prompt, dict) else ""
    return f"#{node} {class_type}".strip()


def console_state() -> dict:
    """Everything the live queue page shows, from the same snapshot participants' badges use."""
    snap = snapshot()
    now = timezone.now()
    return {
        "policy": snap.policy,
        "policies": list(QueueSettings.POLICY_LABELS.items()),
        "paused": snap.paused,
        "slots": snap.slots,
        "running": [_running_row(job, now) for job in snap.running],
        "waiting": _waiting_rows(snap, now),
        "failed": [
            _failed_row(job)
            for job in Job.objects.filter(state=JobState.FAILED)
            .select_related("workspace__owner")
            .order_by("-finished_at")[:10]
        ],
        "workers": [worker_row(w) for w in Worker.objects.select_related("current_job__workspace")],
        "announcement": Announcement.current_text(),
        "warm": _warm_plan(QueueSettings.get(), now),
        "counts": dict(Job.objects.values_list("state").annotate(n=Count("id"))),
        "now": now.isoformat(),
    }


def _who(job) -> dict:
    return {
        "id": str(job.pk),
        "number": job.number,
        "slug": job.workspace.slug,
        "username": job.workspace.owner.get_username(),
    }


def _waiting_rows(snap, now) -> list[dict]:
    """The waiting jobs in the snapshot's order, with the positions and estimates badges show."""
    jobs = {str(j.pk): j for j in Job.objects.waiting().select_related("workspace__owner")}
    rows = []
    for entry in snap.ordered:
        job = jobs.get(entry.id)
        if job is None:
            continue
        rows.append(
            {
                **_who(job),
                "position": snap.positions[entry.id],
                "eta_seconds": round(snap.etas[entry.id]) if entry.id in snap.etas else None,
                "priority": PRIORITY_WORDS.get(job.priority, str(job.priority)),
                "workflow": job.workflow_name,
                "waited_seconds": round((now - job.created_at).total_seconds()),
                "note": job.error if job.error and job.attempts else "",
            }
        )
    return rows


def _running_row(job, now) -> dict:
    progress = job.progress or {}
    started = job.started_at or job.dispatched_at
    return {
        **_who(job),
        "worker": job.worker.name if job.worker else None,
        "state": job.state,
        "node": _node_label(job),
        "value": progress.get("value"),
        "max": progress.get("max"),
        "elapsed_seconds": round((now - started).total_seconds()) if started else None,
        "stopping": job.cancel_requested or "",
        "workflow": job.workflow_name,
    }


def _failed_row(job) -> dict:
    return {
        **_who(job),
        "error": job.error[:200],
        "finished": job.finished_at.isoformat() if job.finished_at else None,
    }


def _warm_plan(queue_settings, now) -> dict:
    local = timezone.localtime
    # Only serverless GPUs can be kept warm: with none registered, nothing is, whatever the plan.
    serverless = Worker.objects.filter(serverless=True, enabled=True).aggregate(n=Sum("capacity"))["n"] or 0
    return {
        "count": queue_settings.warm_gpus,
        "now": min(queue_settings.warm_now(now), serverless),
        "serverless": serverless,
        "from": f"{local(queue_settings.warm_from):%H:%M}" if queue_settings.warm_from else "",
        "until": f"{local(queue_settings.warm_until):%H:%M}" if queue_settings.warm_until else "",
    }


def worker_row(worker: Worker) -> dict:
    done = worker.jobs.filter(state__in=FINAL_STATES).count()
    age = (timezone.now() - worker.last_heartbeat).total_seconds() if worker.last_heartbeat else None
    current = worker.current_job if worker.current_job and not worker.current_job.is_final else None
    return {
        "pk": worker.pk,
        "name": worker.name,
        "provider": worker.provider,
        "health": worker.health,
        "enabled": worker.enabled,
        "heartbeat_age": round(age) if age is not None else None,
        "current_job": f"{current.workspace.slug} #{current.number}" if current else "",
        "jobs_done": done,
        "gpu": worker.gpu_name,
        "vram": stats.human_bytes(worker.vram_total) if worker.vram_total else "",
        "price_per_hour": price_of(worker),
        "problem": worker.problem,
        "capacity": worker.capacity,
        "serverless": worker.serverless,
        "warm_minutes": round(worker.warm_seconds / 60, 1),
        "warm_cost": round(worker.warm_seconds / 3600 * price_of(worker), 2),
        **_cold_starts(worker),
    }


def _cold_starts(worker: Worker) -> dict:
    """How long its serverless GPU took to start, over its last 50 runs that had to wait for one."""
    seconds = sorted(
        s
        for s in worker.jobs.filter(cold_start_seconds__gt=0)
        .order_by("-started_at")
        .values_list("cold_start_seconds", flat=True)[:50]
        if s is not None
    )
    median = stats.percentile(seconds, 50)
    return {"cold_starts": len(seconds), "cold_start_median": round(median, 1) if median is not None else None}


def chart_svgs(hours: float = 3.0, now=None) -> dict[str, str]:
    """The console's four charts for the last `hours`."""
    now = now or timezone.now()
    start = now - timedelta(hours=hours)
    step = timedelta(seconds=max(int(hours * 3600 / 60), 60))
    times = stats.buckets(start, now, step)
    rows = runs(since=start)
    local = [timezone.localtime(t) for t in times]
    waits = [
        (timezone.localtime(r.started_at), (r.started_at - r.created_at).total_seconds())
        for r in rows
        if r.started_at and r.started_at >= start
    ]
    return {
        "waiting": charts.line_chart(
            "Waiting jobs", local, {"waiting": stats.waiting_over_time(rows, times, now, step)}
        ),
        "waits": charts.scatter_chart(
            "Wait per job (s, at its start)", waits, timezone.localtime(start), timezone.localtime(now)
        ),
        "busy": charts.line_chart(
            "GPU busy share per worker (%)",
            local,
            {k: [100 * v for v in vals] for k, vals in stats.busy_share(rows, times, step, now).items()},
            y_max=100,
        ),
        "gpu": charts.bar_chart(
            "GPU seconds per participant",
            stats.gpu_seconds_by_owner(r for r in rows if (r.finished_at or now) >= start),
        ),
    }
