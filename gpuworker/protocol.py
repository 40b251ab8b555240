"""The wire protocol between the app and its GPU workers, in one place for both sides
(docs/worker-protocol.md): the Redis keys of a run, the statuses a worker reports, how a run is
asked to stop and how it ends, and which names are participants' own models.

No Django here: the app's `jobs` imports it, and so does every module of `gpuworker`.
"""

TASK = "gpuworker.tasks.run_job"  # what the app enqueues in RQ, and the worker runs


def run_id(job_id, run) -> str:
    """A run's id: the job's, and its run number, which fences off every earlier run."""
    return f"{job_id}_{run}"


# Per run (run_id): the kind of stop asked (STOPS), set by the app and read by the worker.
CANCEL_KEY = "workshop:cancel:{}"
# Per run (run_id): renewed by the worker while the run lives, so an app that restarts keeps it.
LEASE_KEY = "workshop:lease:{}"

# How the app asks a running run to stop: the participant or instructor cancelled it, the
# instructor paused it for a demo, or it ran past its time.
CANCEL, INTERRUPT, TIMEOUT = "cancel", "interrupt", "timeout"
STOPS = (CANCEL, INTERRUPT, TIMEOUT)

# What a worker says of itself at each heartbeat.
IDLE, BUSY, OFFLINE, COMFYUI_DOWN = "idle", "busy", "offline", "comfyui_unreachable"

# How a run ends (POST …/finish): ComfyUI's own ends, whose closing messages the app relays;
# `lost` (the host failed) and `returned` (the worker is shutting down) put the job back.
FINISH_STATUSES = ("success", "error", "interrupted", "lost", "returned")

# Events a worker sends (POST …/events) besides ComfyUI's own messages, which it relays as sent:
# a live preview frame (data: {"frame": base64}) and a serverless GPU still starting
# (data: {"prompt_id", "seconds"}).
PREVIEW = "_preview"
GPU_STARTING = "workshop.gpu_starting"


def progress_of(kind: str, data) -> dict | None:
    """What a relayed event says of the run's progress (kept for the console and for tabs that
    join later), or None when it says nothing of it."""
    if not isinstance(data, dict):
        return None
    if kind == "progress":
        return data
    if kind == GPU_STARTING:
        seconds = data.get("seconds")
        waited = float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else 0.0
        return {"node": None, "value": 0, "max": 0, "starting_seconds": max(waited, 0.0)}
    if kind == "executing" and data.get("node") is not None:
        return {"node": str(data["node"])[:50], "value": 0, "max": 0, "prompt_id": data.get("prompt_id")}
    return None


def ran_from_cache(prompt, messages) -> bool:
    """Whether ComfyUI took every node of the prompt from its cache (a re-run of a fraction of a
    second, which says nothing about how long the next job will take). `messages`: the run's
    history messages as the worker reports them ([kind, data] pairs)."""
    cached: set[str] = set()
    for message in messages or []:
        if isinstance(message, (list, tuple)) and len(message) == 2 and message[0] == "execution_cached":
            nodes = (message[1] or {}).get("nodes") if isinstance(message[1], dict) else None
            cached.update(str(n) for n in nodes or [])
    return bool(prompt) and isinstance(prompt, dict) and set(map(str, prompt)) <= cached


# A participant's own model is named ws-<workspace slug>/<file> in ComfyUI's loaders.
PARTICIPANT_PREFIX = "ws-"


def is_participant_model(name) -> bool:
    return isinstance(name, str) and name.startswith(PARTICIPANT_PREFIX) and "/" in name


def without_participant_models(value):
    """`value` (a catalog, or part of one) without ws-<slug>/… names: a host's cache of
    participants' models is no part of its catalog. Each workspace sees its own from the app,
    and a model placed for a job is no catalog change."""
    if isinstance(value, dict):
        return {k: without_participant_models(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_participant_models(v) for v in value if not is_participant_model(v)]
    return value
