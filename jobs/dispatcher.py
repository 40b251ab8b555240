"""Moves waiting jobs onto RQ while GPU worker slots are free, in the policy's order.

Workers pull, and a job reaches RQ only when a slot is free, so a late priority job can still
jump ahead. `dispatch()` runs after every queue change (on commit) and from the
`dispatcher` management command's loop, which also repairs what Redis lost.
"""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import events, rq
from .models import Job, JobState, QueueSettings, Worker
from .queue import snapshot

log = logging.getLogger(__name__)


def dispatch() -> list[str]:
    """Dispatch as many jobs as there are free slots; returns their ids."""
    with transaction.atomic():
        # One row lock serialises dispatchers across every app process and the loop.
        queue_settings = QueueSettings.objects.select_for_update().filter(pk=QueueSettings.get().pk).get()
        if queue_settings.paused:
            return []
        busy = Job.objects.active().count()
        capacity = sum(w.capacity for w in Worker.objects.online())
        free = capacity - busy
        if free <= 0:
            return []
        ordered = snapshot(queue_settings).ordered
        chosen: list[Job] = []
        for waiting in ordered:
            if len(chosen) >= free:
                break
            job = Job.objects.select_related("workspace").get(pk=waiting.id)
            if job.mark_dispatched():
                chosen.append(job)
        if chosen:
            transaction.on_commit(lambda: _enqueue_all(chosen))
    return [str(j.id) for j in chosen]


def _enqueue_all(jobs) -> None:
    for job in jobs:
        try:
            rq.enqueue(job)
        except Exception:  # Redis down: reconcile() enqueues it again once Redis is back.
            log.exception("could not enqueue job %s", job.id)


def dispatch_and_announce() -> None:
    """After any queue change: start what can start, then tell every browser its position."""
    dispatch()
    events.queue_changed()


def schedule_dispatch() -> None:
    """dispatch_and_announce once the current transaction commits (or now, outside one)."""
    transaction.on_commit(dispatch_and_announce)


def reconcile() -> dict:
    """Repair what Redis or a dead worker lost, then dispatch. Safe to run anywhere, any time."""
    counts = {"reenqueued": 0, "requeued": 0, "timed_out": 0}
    now = timezone.now()
    stale_cutoff = now - timedelta(seconds=settings.WORKER_STALE_SECONDS)
    queue_settings = QueueSettings.get()

    for job in Job.objects.filter(state=JobState.DISPATCHED).select_related("workspace"):
        status = rq.status(job.id)
        if status is None:
            rq.enqueue(job)  # Redis was flushed or restarted: the DB still knows the job.
            counts["reenqueued"] += 1
        elif status in rq.LOST:
            if job.requeue_front("The GPU worker lost the job before it started"):
                counts["requeued"] += 1

    for job in Job.objects.filter(state=JobState.RUNNING).select_related("worker", "workspace"):
        worker = job.worker
        if worker is None or not worker.last_heartbeat or worker.last_heartbeat < stale_cutoff:
            if job.requeue_front(f"GPU worker {worker or '?'} stopped answering"):
                counts["requeued"] += 1
        elif job.started_at and job.started_at < now - timedelta(seconds=queue_settings.job_timeout + 120):
            if job.mark_failed(f"Timed out after {queue_settings.job_timeout} s"):
                rq.signal_stop(job.id, "cancel")
                counts["timed_out"] += 1

    if any(counts.values()):
        dispatch_and_announce()
    else:
        dispatch()
    return counts

