"""The queue as participants see it: the policy's order, positions and ETAs.

Dispatch and the position messages use the same `snapshot()`, so what a participant is told is
what will happen (until someone else's priority changes it).
"""
import statistics
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from . import policies
from .models import Job, JobState, QueueSettings, Worker, usage_today

DEFAULT_ESTIMATE = 30.0
RECENT = 50


def estimates() -> tuple[dict[str, float], float]:
    """Median GPU seconds of recent completed jobs, per workflow name and overall.

    Runs ComfyUI took wholly from its cache are left out: a re-run of a fraction of a second
    says nothing of the next job, and a few of them made the ETA at position 8 read 2 s."""
    recent = list(
        Job.objects.filter(state=JobState.COMPLETED, gpu_seconds__isnull=False, from_cache=False)
        .order_by("-finished_at")
        .values_list("workflow_name", "gpu_seconds")[: RECENT * 4]
    )
    overall = statistics.median([s for _, s in recent[:RECENT]]) if recent else DEFAULT_ESTIMATE
    per_workflow: dict[str, list[float]] = {}
    for name, secs in recent:
        if name:
            per_workflow.setdefault(name, []).append(secs)
    return {name: statistics.median(v) for name, v in per_workflow.items() if len(v) >= 2}, overall


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
    by_workflow, overall = estimates()
    waiting = [
        policies.Waiting(
            id=str(job_id),
            owner=slug,
            priority=priority,
            created_at=created_at,
            estimate=by_workflow.get(workflow, overall),
        )
        for job_id, slug, priority, created_at, workflow in Job.objects.waiting().values_list(
            "id", "workspace__slug", "priority", "created_at", "workflow_name"
        )
    ]
    usage = usage_today()
    ordered = policies.order(queue_settings.policy, waiting, usage)
    running = list(Job.objects.active().select_related("workspace", "worker"))
    slots = sum(w.capacity for w in (Worker.objects.online() if workers is None else workers))
    now = timezone.now()
    remaining = []
    for job in running:
        estimate = by_workflow.get(job.workflow_name, overall)
        elapsed = (now - (job.started_at or job.dispatched_at or now)) / timedelta(seconds=1)
        remaining.append(max(estimate - elapsed, 1.0))
    return Snapshot(
        policy=queue_settings.policy,
        ordered=ordered,
        positions=policies.positions(ordered),
        etas=policies.etas(ordered, slots, remaining[:slots]) if slots else {},
        slots=slots,
        running=running,
        paused=queue_settings.paused,
    )
