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
