"""The HTTP API the GPU workers call (docs/worker-protocol.md). Every call is idempotent."""

import base64
import functools
import gzip
import io
import mimetypes
import re
import zlib
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.models import ModelDeletion, WorkspaceModel
from gpuworker.protocol import FINISH_STATUSES, PREVIEW, progress_of, without_participant_models
from workshop.lib import jsonbody, limits
from workshop.lib.files import UnsafePath
from workshop.lib.streaming import FileStream

from . import events, tokens
from .models import (
    Job,
    JobState,
    OutputRefused,
    RunResult,
    Worker,
    WorkerStatus,
)
from .redact import redact


def error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def worker_call(methods):
    def decorate(view):
        @csrf_exempt
        @require_http_methods(methods)
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            auth = request.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
            worker = Worker.for_token(token) if token else None
            if worker is None:
                return error(401, "Unknown worker token")
            tokens.worker_seen(worker.token_hash)
            request.worker = worker
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def body(request, raw: bytes | None = None) -> dict:
    try:
        return jsonbody.object_of(request.body if raw is None else raw)
    except jsonbody.BadJSON as exc:
        raise BadRequest(str(exc)) from None


class BadRequest(Exception):
    pass


def bad_request_as_400(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except BadRequest as exc:
            return error(400, str(exc))
        except UnsafePath as exc:
            return error(400, str(exc))

    return wrapper


def job_of(request, job_id) -> Job:
    return get_object_or_404(Job.objects.select_related("workspace"), pk=job_id)


def run_of(request, data=None):
    run = request.GET.get("run")
    if run is None and data is not None:
        run = data.get("run")
    try:
        return int(run)
    except (TypeError, ValueError):
        raise BadRequest("name the run (the payload's `run`) this call belongs to") from None


def run_call(methods, *, json_body: bool = True, running: bool = False):
    """A call about one run of a job: the worker authenticated, a bad request a 400, and the
    job, the run it names and its JSON body (`{}` for a file or a query) handed to the view.
    `running`: only for the job's current run, running on this worker; else 409 and stop."""

    def decorate(view):
        @worker_call(methods)
        @bad_request_as_400
        @functools.wraps(view)
        def wrapper(request, job_id, **kwargs):
            job = job_of(request, job_id)
            data = body(request) if json_body else {}
            run = run_of(request, data if json_body else None)
            if running and not _running(job, request.worker, run):
                return fenced(job)
            return view(request, job, run, data, **kwargs)

        return wrapper

    return decorate


def _running(job: Job, worker, run) -> bool:
    """A worker reads inputs, reports and ends only the run it has started: not a job that
    merely waits in its RQ queue, and never another worker's."""
    return job.state == JobState.RUNNING and job.is_current_run(worker, run)


def fenced(job: Job, why: str = "") -> JsonResponse:
    """The run named is not the job's current run on this worker: change nothing, and tell
    the worker to stop that run on ComfyUI."""
    message = why or f"this run is no longer the job's current run (job is {job.state}, run {job.run})"
    return JsonResponse({"error": message, "state": job.state, "stop": True}, status=409)


def _beat_fields(data: dict) -> dict:
    fields: dict = {}
    for key in ("vram_free", "vram_total"):
        try:
            if data.get(key) is not None:
                fields[key] = min(max(0, int(data[key])), 2**62)
        except (TypeError, ValueError, OverflowError):
            raise BadRequest(f"{key} must be a number of bytes") from None
    if isinstance(data.get("gpu_name"), str):
        fields["gpu_name"] = data["gpu_name"][:200]
    if isinstance(data.get("problem"), str):
        fields["problem"] = redact(data["problem"])[:500]
    if data.get("price_per_hour") is not None:
        try:
            fields["price_per_hour"] = max(0.0, float(data["price_per_hour"]))
        except (TypeError, ValueError):
            raise BadRequest("price_per_hour must be a number") from None
    return fields


@worker_call(["GET"])
def auth(request):
    """Whether a token is a worker's (nginx asks before it lets a worker's upload through)."""

    return HttpResponse(status=204)


@worker_call(["POST"])
@bad_request_as_400
def register(request):
    """A worker process starting: whatever an earlier process of this worker was running is
    dead (a restart after kill -9 recovers at once instead of waiting out the lease)."""
    data = body(request)
    worker = request.worker
    status = WorkerStatus.COMFYUI_DOWN if data.get("status") == WorkerStatus.COMFYUI_DOWN else WorkerStatus.IDLE
    with transaction.atomic():
        worker.restarted(
            status,
            **_beat_fields(data),
            provider=str(data.get("provider", worker.provider))[:20],
            comfyui_url=str(data.get("comfyui_url", ""))[:300],
            comfyui_version=str(data.get("version", ""))[:50],
            capacity=min(max(1, int(data.get("capacity", 1))), 64),
            carries_models=bool(data.get("carries_models")),
            serverless=bool(data.get("serverless")),
        )
    return JsonResponse(
        {
            "worker": worker.name,
            "queue": worker.queue_name,
            "lease_seconds": settings.LEASE_SECONDS,
            "heartbeat_seconds": max(settings.LEASE_SECONDS / 4, 0.5),
        }
    )


@worker_call(["POST"])
@bad_request_as_400
def heartbeat(request):
    """Proof that the worker, and the process running its job, are alive: renews the lease of
    the run it names and of the runs waiting in its RQ queue."""
    data = body(request)
    worker = request.worker
    status = str(data.get("status", WorkerStatus.IDLE))[:20]
    if status not in (WorkerStatus.IDLE, WorkerStatus.BUSY, WorkerStatus.OFFLINE, WorkerStatus.COMFYUI_DOWN):
        raise BadRequest("status must be idle, busy, offline or comfyui_unreachable")
    with transaction.atomic():
        if status == WorkerStatus.OFFLINE:
            worker.go_offline()
            return JsonResponse({"ok": True})
        kept = _seconds(data.get("warm_seconds")) if worker.serverless else 0.0
        worker.heard(status, warm_seconds=kept, **_beat_fields(data))
        runs = worker.runs_heard(_runs_named(data))
    # The first run named is the one a one-slot worker asks about; its answer is the top level.
    first = runs.get(str(data.get("job_id")), {"stop": False, "cancel": None})
    answer: dict[str, Any] = {"ok": True, **first, "runs": runs}
    if worker.serverless:
        answer["warm"] = worker.warm_share()
    if worker.carries_models and isinstance(data.get("models_seen"), int):
        answer["models_gone"] = _models_gone(data["models_seen"])
    return JsonResponse(answer)


def _runs_named(data: dict) -> list[tuple[str, object]]:
    """(job id, run) of every run a heartbeat names: a worker with several slots names each
    in `runs`; one with one slot, its run in `job_id` and `run`."""
    named = data.get("runs")
    runs: list = named if isinstance(named, list) else []
    if not all(isinstance(r, dict) for r in runs):
        raise BadRequest("runs must be a list of {job_id, run}")
    pairs = [(str(r.get("job_id")), r.get("run")) for r in runs]
    if data.get("job_id") and str(data["job_id"]) not in {job_id for job_id, _ in pairs}:
        pairs.insert(0, (str(data["job_id"]), data.get("run")))
    return pairs


def _models_gone(seen: int) -> list[dict]:
    """Participants' models deleted since the last one this worker acknowledged: out of its cache."""

    return [
        {"id": d.pk, "folder": d.folder, "name": d.name, "sha256": d.sha256}
        for d in ModelDeletion.objects.filter(pk__gt=seen).order_by("pk")[:200]
    ]


@worker_call(["POST"])
@bad_request_as_400
def catalog(request):
    data = body(request, catalog_bytes(request))
    object_info = data.pop("object_info", None)
    if not isinstance(object_info, dict):
        raise BadRequest("object_info must be an object")
    files = data.pop("files", None)
    if files is not None and not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
        raise BadRequest("files must be a list of paths")
    subgraphs = data.get("global_subgraphs")
    if isinstance(subgraphs, dict) and files is not None:  # the index; each blueprint's data is a catalog file
        data["global_subgraphs"] = {
            key: {k: v for k, v in entry.items() if k != "data"}
            for key, entry in subgraphs.items()
            if isinstance(entry, dict)
        }
    # A worker from before catalog files (no `files`) still sends each blueprint's data inline:
    # it stays there, and the bridge serves it from there.
    # Also cut by the worker; here too, as a worker's catalog reaches every workspace.
    object_info, data = without_participant_models(object_info), without_participant_models(data)
    trusted = request.worker.publish_catalog(object_info, data, files)
    return JsonResponse({"ok": True, "trusted": trusted})


def catalog_bytes(request) -> bytes:
    """A catalog or catalog file as sent, gzip-compressed or not. Its size was capped per route
    before the body was read (workshop.lib.limits); Django's own cap is for participants' requests.
    Decompressed, it has the same cap, so that a small gzip bomb stays small."""
    raw = request.read()
    if request.headers.get("Content-Encoding", "").lower() != "gzip":
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            raw = stream.read(limits.CATALOG_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadRequest(f"Content-Encoding says gzip, but the body is not: {exc}") from None
    if len(raw) > limits.CATALOG_BYTES:
        raise BadRequest("Catalog too large")
    return raw


CATALOG_FILE = re.compile(
    r"^/(workflow_templates/[^/]+/.+|extensions/[^/]+/.+|global_subgraphs/[A-Za-z0-9_.-]{1,128})$"
)


@worker_call(["PUT", "POST", "GET"])
@bad_request_as_400
def catalog_file(request):
    """A file of the GPU host that the UI asks for: a custom node's frontend file
    (/extensions/<pack>/…), an example workflow (/workflow_templates/<module>/<name>.json) or a
    global subgraph (/global_subgraphs/<id>, ComfyUI's answer there). GET: {path: sha256} of
    those the app holds for this worker, so that the worker sends only what changed."""
    if request.method == "GET":
        return JsonResponse(dict(request.worker.extension_files.values_list("path", "sha256")))
    path = request.GET.get("path", "")
    parts = path.split("/")
    if (
        not CATALOG_FILE.match(path)
        or path.startswith("/extensions/core/")
        or any(p in ("", ".", "..") for p in parts[1:])
    ):
        raise BadRequest(
            "path must be /extensions/<pack>/<file> (outside core), "
            "/workflow_templates/<module>/<file> or /global_subgraphs/<id>"
        )
    content = catalog_bytes(request)
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if path.endswith((".js", ".mjs")):
        content_type = "text/javascript"
    if path.startswith("/global_subgraphs/"):
        content_type = "application/json"
        try:
            entry = jsonbody.loads(content)
        except jsonbody.BadJSON as exc:
            raise BadRequest(f"a global subgraph must be ComfyUI's JSON answer: {exc}") from None
        if not isinstance(entry, dict):
            raise BadRequest("a global subgraph must be a JSON object")
    request.worker.publish_file(path, content, content_type)
    return JsonResponse({"ok": True})


@run_call(["GET"], json_body=False, running=True)
def job_input(request, job, run, data):
    wanted = {
        "filename": request.GET.get("filename", ""),
        "subfolder": request.GET.get("subfolder", ""),
        "type": request.GET.get("type", "input"),
    }
    if wanted not in job.inputs:
        return error(404, "That file is not an input of this job")
    path = job.workspace.file_path(wanted["type"], wanted["filename"], wanted["subfolder"])
    if not path.is_file():
        return error(404, "Input file is gone from the workspace")
    return FileStream(path, "application/octet-stream")


@run_call(["GET"], json_body=False, running=True)
def job_model(request, job, run, data, sha256):
    """A participant's model its job names, for the GPU worker's cache (only while the run is
    this worker's, and only a model of the job's own workspace that the job names)."""

    if not any(isinstance(m, dict) and m.get("sha256") == sha256 for m in job.own_models):
        return error(404, "That model is not one this job uses")
    model = WorkspaceModel.objects.filter(workspace=job.workspace, sha256=sha256).first()
    if model is None or not model.path.is_file():
        return error(404, "The participant deleted that model")
    return FileStream(model.path, "application/octet-stream")


@run_call(["POST"])
def job_started(request, job, run, data):
    refused = job.start_on(request.worker, run)
    if refused is not None:
        return fenced(job, refused)
    return JsonResponse({"ok": True})


@run_call(["POST"], running=True)
def job_events(request, job, run, data):
    relay, progress = _relayed(data.get("events", []))
    events.send(job.workspace.slug, *relay)
    job.reported(run, progress)
    if progress is not None:
        events.console_changed("progress")
    return JsonResponse({"ok": True, "cancel": job.cancel_requested or None})


def _relayed(items) -> tuple[list[dict], dict | None]:
    """(what goes to the workspace's tabs, the run's latest progress) of a batch of events:
    ComfyUI's messages cleared of the host's paths, preview frames as binary."""
    if not isinstance(items, list):
        raise BadRequest("events must be a list")
    relay, progress = [], None
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise BadRequest("each event needs a type")
        kind, data = item["type"], item.get("data") or {}
        if kind == PREVIEW:
            try:
                relay.append({"binary": base64.b64decode(data["frame"], validate=True)})
            except (KeyError, TypeError, ValueError):
                raise BadRequest("a preview needs its frame in base64") from None
            continue
        clean = redact(data)  # once: the progress kept is read from what the tabs get
        said = progress_of(kind, clean)
        if said is not None:
            progress = said
        relay.append({"type": kind, "data": clean})
    return relay, progress


@run_call(["PUT", "POST"], json_body=False, running=True)
def job_output(request, job, run, data):
    folder_type = request.GET.get("type", "output")
    if folder_type not in ("output", "temp"):
        raise BadRequest("type must be output or temp")
    try:
        offset = int(request.GET.get("offset", 0))
    except ValueError:
        raise BadRequest("offset must be a number of bytes") from None
    if offset < 0:
        raise BadRequest("offset must be a number of bytes")
    try:
        stored = job.store_file(
            folder_type,
            request.GET.get("subfolder", ""),
            request.GET.get("filename", ""),
            iter(lambda: request.read(1024 * 1024), b""),
            offset=offset,
            final=request.GET.get("final", "1") != "0",
        )
    except OutputRefused as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    job.renew_lease(run)
    return JsonResponse(stored)


@run_call(["POST"])
def job_finish(request, job, run, data):
    """The run's result. `success`, `error` and `interrupted` are ComfyUI's own ends, whose
    messages (`end`) are relayed to the browser untouched once the result is stored; `lost`
    means the host failed (ComfyUI unreachable or restarted) and `returned` that the worker is
    shutting down: the job goes back to the queue."""
    status = data.get("status")
    if status not in FINISH_STATUSES:
        raise BadRequest("status must be one of " + ", ".join(FINISH_STATUSES))
    if job.is_final and job.worker_id == request.worker.pk and str(job.run) == str(run):
        return JsonResponse({"ok": True, "state": job.state})  # a repeated finish
    if not _running(job, request.worker, run):
        return fenced(job)
    job.finish(request.worker, run, _result(data))
    return JsonResponse({"ok": True, "state": job.state})


def _seconds(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and 0 <= value < 1e9 else None  # NaN and nonsense are not stored


def _result(data: dict) -> RunResult:
    """A worker's finish body as a RunResult: everything a participant can see, without the GPU
    host's paths; numbers that are no number are not stored."""
    return RunResult(
        status=data["status"],
        outputs=data.get("outputs"),
        messages=redact(data.get("messages") or []),
        end=[m for m in redact(data.get("end") or []) if isinstance(m, dict) and isinstance(m.get("type"), str)],
        gpu_seconds=_seconds(data.get("gpu_seconds")),
        load_seconds=_seconds(data.get("load_seconds")),
        error=redact(data.get("error")) if isinstance(data.get("error"), dict) else {},
        reason=redact(str(data.get("reason") or "the GPU host failed"))[:500],
        crash=bool(data.get("crash")),
        comfyui_unreachable=bool(data.get("comfyui_unreachable")),
        problem=redact(str(data.get("problem") or ""))[:500],
        cold_start_seconds=_seconds(data.get("cold_start_seconds")),
    )
