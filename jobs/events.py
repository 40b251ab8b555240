"""Pushes to browsers over the channel layer (channels-redis): domain events, never ComfyUI's
wire format (frontend_bridge.wire turns them into ComfyUI's messages).

Job messages go to one workspace's group. Queue changes go out once, to the `queue` group every
open socket joins, as one snapshot of the whole queue; each socket picks its own workspace's part
and sends it only when it changed. So a queue change costs one Redis send, not one per
participant, and 200 idle participants get no traffic.
"""

import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .queue import snapshot

log = logging.getLogger(__name__)

QUEUE_GROUP = "queue"
CONSOLE_GROUP = "console"  # the instructor's live pages


def group_name(slug: str) -> str:
    return f"workspace.{slug}"


def _group_send(group: str, event: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, event)
    except Exception:  # A lost push must never fail the request that caused it.
        log.exception("could not push to %s", group)


def send(slug: str, *messages: dict, end_of: tuple[str, str] | None = None) -> None:
    """ComfyUI's own messages (relayed by a worker) to every socket of one workspace, in order.
    end_of: (job id, the client_id of the tab that queued it): these are the end of that job's
    run, which that tab gets exactly once (Job.objects.ends_owed)."""
    if messages:
        event: dict = {"type": "comfy.message", "messages": list(messages)}
        if end_of:
            event["end_of"], event["end_for"] = end_of
        _group_send(group_name(slug), event)


def job_update(job, reason: str, said: str | None = None, moved_only: bool = False) -> None:
    """A job that moved without a word from ComfyUI: back to the queue, cancelled or failed (its
    worker is gone), or moved by the instructor. The bridge tells the participant why; `said` is
    the sentence to show when the reason is the instructor's."""
    _group_send(
        group_name(job.workspace.slug),
        {
            "type": "job.update",
            "job": {
                "prompt_id": str(job.id),
                "state": job.state,
                "reason": reason,
                "said": said or "",
                "moved_only": moved_only,
                "error": job.error,
                "node_errors": job.node_errors or {},
            },
        },
    )


def announce(announcement: dict) -> None:
    """The instructor's announcement, to every open workspace (and the console)."""
    _group_send(QUEUE_GROUP, {"type": "workshop.broadcast", "kind": "announcement", "data": announcement})


def workflow_pushed(path: str, name: str, open_now: bool) -> None:
    _group_send(
        QUEUE_GROUP,
        {
            "type": "workshop.broadcast",
            "kind": "workflow",
            "data": {"path": path, "name": name, "open": open_now},
        },
    )


_last_console_push = [0.0]


def console_changed(what: str = "", at_most_every: float = 0.5) -> None:
    """Something only the console shows moved (a run's progress). Progress arrives many times a
    second per running job; the console re-reads its state anyway, so twice a second is enough."""

    now = time.monotonic()
    if now - _last_console_push[0] < at_most_every:
        return
    _last_console_push[0] = now
    _group_send(CONSOLE_GROUP, {"type": "console.changed", "what": what})


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
        "paused": snap.paused,
        "total_waiting": len(snap.ordered),
        "workers_online": snap.slots,
        "waiting": waiting,
        "running": running,
    }


def queue_update(snap) -> None:
    _group_send(QUEUE_GROUP, {"type": "queue.update", "payload": queue_payload(snap)})


def queue_changed() -> None:
    """Announce the queue as it stands (the dispatcher loop's periodic catch-up)."""

    queue_update(snapshot())
