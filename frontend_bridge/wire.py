"""ComfyUI's websocket wire format: every message shape the bridge itself writes lives here.

Messages that ComfyUI sent (relayed by a GPU worker) pass through untouched; these are the
ones the platform must say on ComfyUI's behalf: the queue's `status`, the workshop's own
`workshop.queue` / `workshop.notice`, and the end of a run whose GPU worker is gone.
"""
import time


def status(queue_remaining: int, sid: str | None = None) -> dict:
    data = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return {"type": "status", "data": data}


def queue_messages(payload: dict, slug: str) -> list[dict]:
    """ComfyUI's `status` and our `workshop.queue` for one workspace, from jobs.events' payload."""
    waiting = payload["waiting"].get(slug, [])
    running = payload["running"].get(slug, [])
    return [
        status(len(waiting) + len(running)),
        {
            "type": "workshop.queue",
            "data": {
                "policy": payload["policy"],
                "paused": payload.get("paused", False),
                "waiting": waiting,
                "running": running,
                "total_waiting": payload["total_waiting"],
                "workers_online": payload["workers_online"],
            },
        },
    ]


def executing(node, prompt_id: str) -> dict:
    return {"type": "executing", "data": {"node": node, "display_node": node, "prompt_id": prompt_id}}


def running_progress(prompt_id: str, progress: dict) -> list[dict]:
    """What a browser that (re)connects mid-run is told at once, like ComfyUI does."""
    return [executing(progress["node"], prompt_id), {"type": "progress", "data": progress}]


def job_update(job: dict) -> list[dict]:
    """A job the platform moved without a word from ComfyUI (jobs.events.job_update)."""
    prompt_id, state, reason = job["prompt_id"], job["state"], job.get("reason", "")
    stamp = int(time.time() * 1000)
    messages = []
    if state == "failed":
        messages.append({
            "type": "execution_error",
            "data": {
                "prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [],
                "exception_message": job.get("error") or reason, "exception_type": "WorkshopError",
                "traceback": [], "current_inputs": {}, "current_outputs": {}, "timestamp": stamp,
            },
        })
    elif state == "cancelled":
        messages.append({
            "type": "execution_interrupted",
            "data": {"prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [], "timestamp": stamp},
        })
    # The UI stops showing the run's node as busy; ComfyUI ends every prompt with this.
    messages.append(executing(None, prompt_id))
    text = {
        "queued": f"Your job lost its GPU ({reason}). It is back at the front of the queue.",
        "cancelled": "Your job was cancelled.",
        "failed": f"Your job failed: {job.get('error') or reason}",
    }.get(state, reason)
    messages.append({"type": "workshop.notice", "data": {"prompt_id": prompt_id, "state": state, "text": text}})
    return messages
