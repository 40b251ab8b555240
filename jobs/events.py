"""Pushes to browsers over the channel layer (channels-redis).

Job messages go to one workspace's group. Queue changes go out once, to the `queue` group every
open socket joins, as one snapshot of the whole queue; each socket picks its own workspace's part
and sends it only when it changed. So a queue change costs one Redis send, not one per
participant, and 200 idle participants get no traffic.
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

QUEUE_GROUP = "queue"


def group_name(slug: str) -> str:
    return f"workspace.{slug}"


def _group_send(group: str, event: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, event)
    except Exception:  # A lost push must never fail the request that caused it.
        log.exception("could not push to %s", group)


def send(slug: str, *messages: dict) -> None:
    """ComfyUI messages to every socket of one workspace, in order, as one channel-layer send."""
    if messages:
        _group_send(group_name(slug), {"type": "comfy.message", "messages": list(messages)})


def queue_payload(snap) -> dict:
    """The whole queue, per workspace, from one snapshot (what every socket receives)."""
    waiting: dict[str, list] = {}
    for entry in snap.ordered:
        waiting.setdefault(entry.owner, [])
    for slug in waiting:
        waiting[slug] = snap.for_workspace(slug)
    running: dict[str, list] = {}
    for job in snap.running:
        running.setdefault(job.workspace.slug, []).append(
            {"prompt_id": str(job.id), "worker": job.worker.name if job.worker else None, "state": job.state}
        )
    return {
        "policy": snap.policy,
        "total_waiting": len(snap.ordered),
        "workers_online": snap.slots,
        "waiting": waiting,
        "running": running,
    }


def queue_messages(payload: dict, slug: str) -> list[dict]:
    """ComfyUI's `status` and our `workshop.queue` for one workspace."""
    waiting = payload["waiting"].get(slug, [])
    running = payload["running"].get(slug, [])
    return [
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": len(waiting) + len(running)}}}},
        {
            "type": "workshop.queue",
            "data": {
                "policy": payload["policy"],
                "waiting": waiting,
                "running": running,
                "total_waiting": payload["total_waiting"],
                "workers_online": payload["workers_online"],
            },
        },
    ]


def queue_changed() -> None:
    from .queue import snapshot

    _group_send(QUEUE_GROUP, {"type": "queue.update", "payload": queue_payload(snapshot())})
