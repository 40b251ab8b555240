"""The queue as participants see it: the policy's order, positions and ETAs.

Dispatch and the position messages use the same `snapshot()`, so what a participant is told is
what will happen (until someone else's priority changes it).
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import models
from django.utils import timezone

from . import policies
from .models import Job, JobState, QueueSettings, Worker, usage_today

DEFAULT_ESTIMATE = 30.0
RECENT = 200  # completed runs read to calibrate (each workflow's newest 20 count)
# A serverless GPU stays up about this long after its last run (Modal's default idle timeout is
# 60 s); after that the next run waits for a cold start.
WARM_AFTER_RUN = 60.0


def calibration(serverless: list[str] = ()) -> policies.Calibration:  # type: ignore[assignment]
    """Run times measured on recent completed jobs, per workflow and per worker.

    Runs ComfyUI took wholly from its cache are left out: a re-run of a fraction of a second
    says nothing of the next job, and a few of them made the ETA at position 8 read 2 s. Time
    spent loading models is left out of each run (a warm GPU has them loaded), and so are cold
    starts, kept apart for the `serverless` workers named (read only when there are some: this
    runs at every dispatch)."""
    recent = (
        Job.objects.filter(state=JobState.COMPLETED, gpu_seconds__isnull=False, from_cache=False)
        .order_by("-finished_at")
        .values_list("workflow_name", "worker__name", "gpu_seconds", "load_seconds")[:RECENT]
    )
    samples = [
        policies.Sample(workflow or "", worker or "", secs or 0.0, load or 0.0)
        for workflow, worker, secs, load in recent
    ]
    cold: dict[str, list[float]] = {}
    if serverless:
        for worker, secs in (
            Job.objects.filter(cold_start_seconds__gt=0, worker__name__in=list(serverless))
            .order_by("-started_at")
            .values_list("worker__name", "cold_start_seconds")[:200]
        ):
            cold.setdefault(worker, []).append(secs or 0.0)
    return policies.calibrate(samples, cold, default=DEFAULT_ESTIMATE)


def estimates() -> tuple[dict[str, float], float]:
    """Expected seconds per workflow name, and for any run (the console's and reports' view)."""
    calibrated = calibration()
    return dict(calibrated.workflows), calibrated.overall


@dataclass
class Snapshot:
    policy: str
    ordered: list[policies.Waiting]
    positions: dict[str, int]
    etas: dict[str, float]
    slots: int
    running: list[Job] = field(default_factory=list)
    paused: bool = False

    def after_dispatch(self, chosen) -> "Snapshot":
        """The same queue once `chosen` left it for a GPU: the rest keep the policy's order
        (each policy's order is the sequence it would start jobs in)."""
        gone = {str(j.id) for j in chosen}
        ordered = [w for w in self.ordered if w.id not in gone]
        return Snapshot(
            policy=self.policy,
            ordered=ordered,
            positions=policies.positions(ordered),
            etas={k: v for k, v in self.etas.items() if k not in gone},
            slots=self.slots,
            running=self.running + list(chosen),
            paused=self.paused,
        )

    def for_workspace(self, slug: str) -> list[dict]:
        total = len(self.ordered)
        return [
            {
                "prompt_id": w.id,
                "position": self.positions[w.id],
                "of": total,
                "eta_seconds": round(self.etas[w.id]) if w.id in self.etas else None,
            }
            for w in self.ordered
            if w.owner == slug
        ]


def snapshot(queue_settings: QueueSettings | None = None, workers=None) -> Snapshot:
    queue_settings = queue_settings or QueueSettings.get()
    online = list(Worker.objects.online() if workers is None else workers)
    calibrated = calibration([w.name for w in online if w.serverless])
    waiting = [
        policies.Waiting(
            id=str(job_id),
            owner=slug,
            priority=priority,
            created_at=created_at,
            estimate=calibrated.run_seconds(workflow),
        )
        for job_id, slug, priority, created_at, workflow in Job.objects.waiting().values_list(
            "id", "workspace__slug", "priority", "created_at", "workflow_name"
        )
    ]
    usage = usage_today()
    ordered = policies.order(queue_settings.policy, waiting, usage)
    running = list(Job.objects.active().select_related("workspace", "worker"))
    slots = sum(w.capacity for w in online)
    return Snapshot(
        policy=queue_settings.policy,
        ordered=ordered,
        positions=policies.positions(ordered),
        etas=policies.etas(ordered, slots, _busy_for(online, running, calibrated, queue_settings)) if slots else {},
        slots=slots,
        running=running,
        paused=queue_settings.paused,
    )


def _busy_for(online, running, calibrated: policies.Calibration, queue_settings: QueueSettings) -> list[float]:
    """Seconds until each GPU slot can start a waiting job: a running job's expected rest on
    that worker, a cold serverless GPU's start, or 0 for a free warm slot."""
    now = timezone.now()
    busy: list[float] = []
    by_worker: dict[int | None, list[Job]] = {}
    for job in running:
        by_worker.setdefault(job.worker_id, []).append(job)
    warm_left = queue_settings.warm_now(now)
    serverless = [w.pk for w in online if w.serverless]
    last_end = (
        dict(
            Job.objects.filter(worker__in=serverless, finished_at__isnull=False)
            .values_list("worker_id")
            .annotate(end=models.Max("finished_at"))
        )
        if serverless
        else {}
    )
    for worker in online:
        jobs = by_worker.pop(worker.pk, [])
        for job in jobs[: worker.capacity]:
            expected = calibrated.run_seconds(job.workflow_name, worker.name)
            if job.started_at:
                rest = expected - (now - job.started_at) / timedelta(seconds=1)
            else:  # dispatched, ComfyUI not started yet: a serverless GPU may still be starting
                waited = (now - (job.dispatched_at or now)) / timedelta(seconds=1)
                rest = (
                    expected + max(calibrated.cold_start(worker.name) - waited, 0.0) if worker.serverless else expected
                )
            busy.append(max(rest, 1.0))
        free = worker.capacity - min(len(jobs), worker.capacity)
        if not free:
            continue
        ended = last_end.get(worker.pk)
        warm = not worker.serverless or bool(jobs) or (ended and (now - ended) / timedelta(seconds=1) < WARM_AFTER_RUN)
        if worker.serverless and not warm and warm_left > 0:
            warm, warm_left = True, warm_left - 1
        busy += [0.0 if warm else calibrated.cold_start(worker.name)] * free
    # Jobs on workers that just went offline still hold no slot: they are not counted.
    return busy
