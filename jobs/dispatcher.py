"""Moves waiting jobs onto the RQ queues of GPU workers with a free slot, in the policy's order.

Workers pull, and a job reaches RQ only when a slot is free, so a late priority job can still
jump ahead. Each worker has its own RQ queue: the dispatcher chooses the worker, so a disabled
or unhealthy one never gets a job. `dispatch()` runs in the post-change step (jobs.lifecycle)
and from the `dispatcher` management command's loop, whose `reap()` also repairs what Redis or
a dead worker lost.
"""

import logging
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from . import lifecycle, rq
from .models import ACTIVE_STATES, PRIORITY_NOW, Job, JobState, QueueSettings, StopKind, Worker
from .policies import by_affinity
from .queue import Snapshot, snapshot

log = logging.getLogger(__name__)


def free_slots(workers=None) -> dict[int, int]:
    """Free job slots per online worker (pk -> count)."""
    workers = list(Worker.objects.online()) if workers is None else workers
    busy = dict(
        Job.objects.filter(state__in=ACTIVE_STATES, worker__in=workers).values_list("worker").annotate(n=Count("id"))
    )
    return {w.pk: w.capacity - busy.get(w.pk, 0) for w in workers if w.capacity > busy.get(w.pk, 0)}


def choose_worker(
    workers: list[Worker], free: dict[int, int], avoid_id=None, needs_models=False, wanted: Sequence[str] = ()
) -> Worker | None:
    """A worker with a free slot, preferring one whose ComfyUI has the job's models loaded
    (MODEL_AFFINITY); after an out-of-memory failure, another one with the most free VRAM if
    there is one. A job that names a participant's own model goes only to a worker whose GPU
    host can take it (a model cache)."""
    candidates = [w for w in workers if free.get(w.pk, 0) > 0 and (w.carries_models or not needs_models)]
    if settings.MODEL_AFFINITY and len(candidates) > 1:
        candidates = by_affinity(candidates, wanted, {w: w.loaded_models for w in candidates})
    if avoid_id is not None and any(w.pk != avoid_id for w in candidates):
        candidates = [w for w in candidates if w.pk != avoid_id]
        candidates.sort(key=lambda w: -(w.vram_free or 0))
    return candidates[0] if candidates else None


def dispatch() -> Snapshot:
    """Dispatch as many jobs as there are free slots; returns the queue as it now stands."""
    with transaction.atomic():
        # One row lock serialises dispatchers across every app process and the loop.
        queue_settings = QueueSettings.objects.select_for_update().filter(pk=QueueSettings.get().pk).get()
        workers = list(Worker.objects.online())
        free = free_slots(workers) if not queue_settings.paused else {}
        snap = snapshot(queue_settings, workers=workers)
        if not free:
            return snap
        chosen: list[Job] = []
        for waiting in snap.ordered:
            if not any(free.values()):
                break
            job = Job.objects.select_related("workspace").get(pk=waiting.id)
            choice = settings.MODEL_AFFINITY and sum(1 for n in free.values() if n > 0) > 1
            worker = choose_worker(
                workers,
                free,
                job.memory_retry_from_id,
                needs_models=bool(job.own_models),
                wanted=job.model_files() if choice else (),
            )
            if worker and job.mark_dispatched(worker):
                free[worker.pk] -= 1
                chosen.append(job)
        if chosen:
            transaction.on_commit(lambda: _enqueue_all(chosen))
            snap = snap.after_dispatch(chosen)
    return snap


def _enqueue_all(jobs) -> None:
    for job in jobs:
        try:
            rq.enqueue(job)
        except Exception:  # Redis down: reap() enqueues it again once Redis is back.
            log.exception("could not enqueue job %s", job.id)


def reap() -> dict:
    """Repair what Redis or a dead worker lost. Safe to run anywhere, any time."""
    counts = {"reenqueued": 0, "requeued": 0, "timed_out": 0}
    now = timezone.now()
    queue_settings = QueueSettings.get()

    for job in Job.objects.filter(state__in=ACTIVE_STATES, lease_expires_at__lt=now).select_related("worker"):
        if rq.lease_alive(job.id, job.run):
            # The worker could not reach the app (a restart, a network blip) but is alive and
            # renewing the lease in Redis: the run goes on.
            job.renew_lease(job.run)
            continue
        started = job.state == JobState.RUNNING
        # A run that never started cost the job nothing; one that died mid-run may be the job's
        # own doing (a model that kills its host), so it counts towards max_attempts.
        reason = (
            f"GPU worker {job.worker or '?'} stopped answering during the run"
            if started
            else f"GPU worker {job.worker or '?'} did not start it"
        )
        if job.lose_run(job.run, reason, crash=started):
            counts["requeued"] += 1

    for job in Job.objects.filter(state=JobState.DISPATCHED).select_related("workspace"):
        try:
            status = rq.status(job.id, job.run)
        except Exception:  # Redis is down: nothing to repair yet.
            break
        if status is None:
            rq.enqueue(job)  # Redis was flushed or restarted: the DB still knows the job.
            counts["reenqueued"] += 1

    grace = queue_settings.job_timeout + 120
    for job in Job.objects.filter(state=JobState.RUNNING, started_at__lt=now - timedelta(seconds=grace)):
        if job.time_out(queue_settings.job_timeout):
            counts["timed_out"] += 1

    if not any(counts.values()):
        dispatch()  # each change above already ran the post-change step
    return counts


def run_now(jobs) -> int | None:
    """The instructor's "run now": start these waiting jobs at once. Each free GPU takes one, and
    only what the free GPUs cannot take pauses a running job (the newest first), which continues
    first afterwards. Returns how many running jobs were paused, or None when none of them was
    waiting."""
    chosen = [job for job in jobs if job.state == JobState.QUEUED]
    if not chosen:
        return None
    Job.objects.filter(pk__in=[j.pk for j in chosen], state=JobState.QUEUED).update(priority=PRIORITY_NOW)
    needed = len(chosen) - sum(free_slots().values())
    # The newest first: a job sent to a GPU a moment ago (not started yet) is the newest of
    # all, and the one to give way; it lost to a run that had only just been dispatched.
    # Only runs whose slot the demo can take (an online worker's), and never another demo.
    victims = list(
        Job.objects.filter(state__in=ACTIVE_STATES, worker__in=Worker.objects.online(), priority__lt=PRIORITY_NOW)
        .exclude(cancel_requested=StopKind.CANCEL)
        .order_by(F("started_at").desc(nulls_first=True), "-dispatched_at")
    )[: max(needed, 0)]
    interrupted = sum(job.interrupt_for_demo() for job in victims)
    lifecycle.changed()
    return interrupted
