"""ComfyUI's wire format: every shape the bridge itself writes on ComfyUI's behalf lives here.

Messages that ComfyUI sent (relayed by a GPU worker) pass through untouched; these are the
ones the platform must say itself: the queue's `status`, the workshop's own `workshop.queue` /
`workshop.notice`, the end of a run whose GPU worker is gone, and the Jobs API's entries
(`/api/jobs`, upstream's `comfy_execution/jobs.py`), which newer frontends read the queue and
the history from.
"""

import mimetypes
import time
from urllib.parse import urlencode

from jobs.models import FINAL_STATES, Job, JobState

# Job states as the Jobs API names them (frontend 1.53's queue and Media Assets panels).
JOB_STATUS = {
    JobState.QUEUED: "pending",
    JobState.DISPATCHED: "in_progress",
    JobState.RUNNING: "in_progress",
    JobState.COMPLETED: "completed",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}
# The Jobs API's statuses (its `status` filter), in its order, and the states each one covers.
STATES_OF = {
    status: [state for state, said in JOB_STATUS.items() if said == status]
    for status in ("pending", "in_progress", "completed", "failed", "cancelled")
}


def announcement(data: dict) -> dict:
    """The instructor's announcement ({"id", "text", "at"}; an empty text clears it)."""
    return {"type": "workshop.announcement", "data": data}


def workflow_pushed(data: dict) -> dict:
    """A workflow the instructor pushed into every sidebar ({"path", "name", "open"})."""
    return {"type": "workshop.workflow", "data": data}


def submit_error(kind: str, message: str, details: str = "") -> dict:
    """ComfyUI's answer to a prompt it refuses (POST /prompt's 400), which its UI shows."""
    return {"error": {"type": kind, "message": message, "details": details, "extra_info": {}}, "node_errors": {}}


def queue_item(job: Job) -> list:
    """ComfyUI's queue entry: [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
    return [job.number, str(job.id), job.prompt, {**job.extra_data, "client_id": job.client_id}, job.outputs_to_execute]


def run_status(job: Job) -> dict:
    """The status block of a finished run, as ComfyUI's history and the Jobs API give it."""
    if job.state not in FINAL_STATES:
        return {}
    completed = job.state == JobState.COMPLETED
    return {"status_str": "success" if completed else "error", "completed": completed, "messages": job.messages or []}


def history_entry(job: Job) -> dict:
    """One run of ComfyUI's /history."""
    return {
        "prompt": queue_item(job),
        "outputs": job.outputs,
        "status": run_status(job),
        "meta": {node: {"node_id": node, "display_node": node} for node in job.outputs},
    }


PREVIEWABLE_MEDIA = ("images", "video", "audio")
THREE_D = (".obj", ".fbx", ".gltf", ".glb")


def status(queue_remaining: int, sid: str | None = None) -> dict:
    data: dict = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
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
    if not progress.get("max"):  # only its node is known yet
        return [executing(progress["node"], prompt_id)]
    return [executing(progress["node"], prompt_id), {"type": "progress", "data": progress}]


def job_update(job: dict) -> list[dict]:
    """A job the platform moved without a word from ComfyUI (jobs.events.job_update)."""
    prompt_id, state, reason = job["prompt_id"], job["state"], job.get("reason", "")
    stamp = int(time.time() * 1000)
    messages = []
    if job.get("moved_only"):
        # The instructor moved a waiting job, or ComfyUI's own end of the run went out already.
        text = job.get("said") or reason
        return [{"type": "workshop.notice", "data": {"prompt_id": prompt_id, "state": state, "text": text}}]
    if state == JobState.FAILED:
        # ComfyUI refused the prompt on the GPU host (a rule the bridge does not know): the
        # first node it names is outlined, and the message lists every node error.
        node_id, node = next(iter((job.get("node_errors") or {}).items()), (None, {}))
        node = node if isinstance(node, dict) else {}
        messages.append(
            {
                "type": "execution_error",
                "data": {
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": node.get("class_type"),
                    "executed": [],
                    "exception_message": job.get("error") or reason,
                    "exception_type": "WorkshopError",
                    "traceback": [],
                    "current_inputs": {},
                    "current_outputs": {},
                    "timestamp": stamp,
                },
            }
        )
    elif state == JobState.CANCELLED:
        messages.append(
            {
                "type": "execution_interrupted",
                "data": {
                    "prompt_id": prompt_id,
                    "node_id": None,
                    "node_type": None,
                    "executed": [],
                    "timestamp": stamp,
                },
            }
        )
    # The UI stops showing the run's node as busy; ComfyUI ends every prompt with this.
    messages.append(executing(None, prompt_id))
    text = job.get("said") or {
        JobState.QUEUED: f"Your job lost its GPU ({reason}). It is back at the front of the queue.",
        JobState.CANCELLED: "Your job was cancelled.",
        JobState.FAILED: f"Your job failed: {job.get('error') or reason}",
    }.get(state, reason)
    messages.append({"type": "workshop.notice", "data": {"prompt_id": prompt_id, "state": state, "text": text}})
    return messages


def _ms(moment):
    return int(moment.timestamp() * 1000) if moment else None


def _previewable(media_type: str, item: dict) -> bool:
    """upstream's is_previewable: media type, then MIME format, then a 3D file's extension."""
    if media_type in PREVIEWABLE_MEDIA:
        return True
    fmt = item.get("format") or ""
    if isinstance(fmt, str) and fmt.startswith(("video/", "audio/")):
        return True
    return str(item.get("filename", "")).lower().endswith(THREE_D)


def output_items(outputs: dict):
    """(node id, media type, index, item) of every output file of a run, in ComfyUI's order."""
    for node_id, node_outputs in (outputs or {}).items():
        if not isinstance(node_outputs, dict):
            continue
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                continue
            for index, item in enumerate(items):
                if isinstance(item, dict):
                    yield node_id, media_type, index, item


def outputs_summary(outputs: dict) -> tuple[int, int, dict | None]:
    """(outputs_count, previewable_outputs_count, preview_output), preferring type "output"."""
    count = previewable = 0
    preview = fallback = None
    for node_id, media_type, _, item in output_items(outputs):
        count += 1
        if not _previewable(media_type, item):
            continue
        previewable += 1
        enriched = {**item, "nodeId": node_id, "mediaType": media_type}
        if preview is None and item.get("type") == "output":
            preview = enriched
        elif fallback is None:
            fallback = enriched
    return count, previewable, preview or fallback


def _execution_error(job) -> dict | None:
    """ComfyUI's execution_error of the run, or one said on its behalf: every field the
    frontend's schema requires is a string or a list, never null."""
    if job.state != JobState.FAILED:
        return None
    for kind, data in job.messages or []:
        if kind == "execution_error" and isinstance(data, dict) and isinstance(data.get("node_id"), str):
            return data
    return {
        "prompt_id": str(job.id),
        "node_id": "",
        "node_type": "",
        "executed": [],
        "exception_message": job.error or "The run failed.",
        "exception_type": "WorkshopError",
        "traceback": [],
        "current_inputs": {},
        "current_outputs": {},
    }


def _cancelled_by_instructor(job) -> bool:
    """Frontend 1.53 announces every run that ended since the queue went idle, and counts a
    cancelled one as "Job failed" (jobStateFromTask). A run the instructor cancelled has its own
    notice (workshop.notice); with no end time it is left out of that count, and stays listed
    as Cancelled in the queue panel."""
    return job.state == JobState.CANCELLED and job.cancelled_by == "instructor"


def job_entry(job, workflow_id=None, full=False) -> dict:
    """One job of the Jobs API. `full` adds what `/api/jobs/{id}` answers: the outputs, the
    execution status and the workflow (for "open workflow" in the Media Assets panel)."""
    count, previewable, preview = outputs_summary(job.outputs)
    entry = {
        "id": str(job.id),
        "status": JOB_STATUS[job.state],
        "priority": job.number,
        "create_time": _ms(job.created_at),
        "execution_start_time": _ms(job.started_at),
        "execution_end_time": _ms(job.finished_at)
        if job.state in FINAL_STATES and not _cancelled_by_instructor(job)
        else None,
        "execution_error": _execution_error(job),
        "outputs_count": count,
        "previewable_outputs_count": previewable,
        "preview_output": preview,
        "workflow_id": workflow_id,
    }
    entry = {k: v for k, v in entry.items() if v is not None}
    if full:
        entry["outputs"] = job.outputs or {}
        entry["execution_status"] = run_status(job)
        entry["workflow"] = {"prompt": job.prompt, "extra_data": job.extra_data or {}}
        entry["update_time"] = _ms(job.finished_at or job.started_at or job.created_at)
    return entry


def job_asset(job, node_id, media_type, index, item, base: str, size=None) -> dict:
    """One output file of a run, as `/api/jobs/{id}/assets` lists it; `base` is the workspace's
    API root, since the browser uses `preview_url` as it stands."""
    name = str(item.get("filename", ""))
    query = urlencode({"filename": name, "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")})
    return {
        "id": f"{job.id}:{node_id}:{media_type}:{index}",
        "name": name,
        "preview_url": f"{base}/view?{query}",
        "mime_type": item.get("format") or mimetypes.guess_type(name)[0],
        "size": size,
        "node_id": node_id,
        "output_key": media_type,
        "output_index": index,
        "created_at": job.finished_at.isoformat() if job.finished_at else None,
    }
