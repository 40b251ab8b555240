"""Pushes to the browsers of a workspace, over the channel layer (channels-redis).

Every message is one a ComfyUI frontend understands (its own types) or `workshop.queue`,
which the queue-badge extension reads.
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def group_name(slug: str) -> str:
    return f"workspace.{slug}"


def send(slug: str, message: dict) -> None:
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)(group_name(slug), {"type": "comfy.message", "message": message})
    except Exception:  # A lost push must never fail the request that caused it.
        log.exception("could not push to workspace %s", slug)


def queue_messages(snap, slug: str) -> list[dict]:
    """The `status` and `workshop.queue` messages for one workspace, from one queue snapshot."""
    waiting = snap.for_workspace(slug)
    running = [
        {"prompt_id": str(job.id), "worker": job.worker.name if job.worker else None, "state": job.state}
        for job in snap.running
        if job.workspace.slug == slug
    ]
    return [
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": len(waiting) + len(running)}}}},
        {
            "type": "workshop.queue",
            "data": {
                "policy": snap.policy,
                "waiting": waiting,
                "running": running,
                "total_waiting": len(snap.ordered),
                "workers_online": snap.slots,
            },
        },
    ]


def queue_changed(also=()) -> None:
    """Tell every workspace with open jobs (and `also`) its queue positions."""
    from .queue import snapshot

    snap = snapshot()
    slugs = {w.owner for w in snap.ordered} | {j.workspace.slug for j in snap.running} | set(also)
    for slug in sorted(slugs):
        for message in queue_messages(snap, slug):
            send(slug, message)


def job_changed(job) -> None:
    queue_changed(also=[job.workspace.slug])
