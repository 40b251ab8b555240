"""The HTTP API the GPU workers call (docs/worker-protocol.md). Every call is idempotent."""
import base64
import functools
import json
import time

from django.http import FileResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.models import UnsafePath

from . import dispatcher, events, rq
from .models import Catalog, ExtensionFile, Job, JobState, Worker

# Messages that end a run: held back until `finish` has stored the result, so a browser that
# refreshes its history on them already finds the job there.
TERMINAL = {"execution_success", "execution_error", "execution_interrupted"}


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
            request.worker = worker
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def body(request) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("Body must be a JSON object")
    return data


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


def someone_elses(request, job: Job) -> bool:
    """A job that another worker runs: this worker may neither upload to it nor end it."""
    return job.worker_id is not None and job.worker_id != request.worker.pk


@worker_call(["POST"])
@bad_request_as_400
def register(request):
    data = body(request)
    worker = request.worker
    worker.beat(
        status="idle",
        provider=str(data.get("provider", worker.provider))[:20],
        comfyui_url=str(data.get("comfyui_url", ""))[:300],
        comfyui_version=str(data.get("version", ""))[:50],
        capacity=max(1, int(data.get("capacity", 1))),
        current_job=None,
    )
    dispatcher.schedule_dispatch()
    return JsonResponse({"worker": worker.name, "queue": rq.gpu_queue().name})


@worker_call(["POST"])
@bad_request_as_400
def heartbeat(request):
    data = body(request)
    status = str(data.get("status", "idle"))[:20]
    if status == "offline":
        # A worker shutting down says so, so no job is dispatched to a slot that is gone.
        Worker.objects.filter(pk=request.worker.pk).update(status="offline", last_heartbeat=None, current_job=None)
        events.queue_changed()
        return JsonResponse({"ok": True})
    was_online = request.worker.is_online
    request.worker.beat(status=status)
    if not was_online:
        dispatcher.schedule_dispatch()
    return JsonResponse({"ok": True})


@worker_call(["POST"])
@bad_request_as_400
def catalog(request):
    data = body(request)
    object_info = data.pop("object_info", None)
    if not isinstance(object_info, dict):
        raise BadRequest("object_info must be an object")
    Catalog.objects.update_or_create(
        worker=request.worker,
        defaults={
            "object_info": object_info,
            "comfyui_version": str(data.get("comfyui_version", ""))[:50],
            "data": data,
        },
    )
    return JsonResponse({"ok": True})


@worker_call(["PUT", "POST"])
@bad_request_as_400
def catalog_file(request):
    """A custom node's file for the UI: a frontend file (/extensions/<pack>/…) or an example
    workflow (/workflow_templates/<module>/<name>.json)."""
    import mimetypes

    path = request.GET.get("path", "")
    parts = path.split("/")
    allowed = path.startswith("/workflow_templates/") or (
        path.startswith("/extensions/") and not path.startswith("/extensions/core/")
    )
    if not allowed or any(p in ("", ".", "..") for p in parts[1:]):
        raise BadRequest("path must be /extensions/<pack>/<file> (outside core) or /workflow_templates/<module>/<file>")
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if path.endswith((".js", ".mjs")):
        content_type = "text/javascript"
    ExtensionFile.objects.update_or_create(path=path, defaults={"content": request.body, "content_type": content_type})
    return JsonResponse({"ok": True})


@worker_call(["GET"])
@bad_request_as_400
def job_input(request, job_id):
    job = job_of(request, job_id)
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
    return FileResponse(open(path, "rb"))


@worker_call(["POST"])
@bad_request_as_400
def job_started(request, job_id):
    job = job_of(request, job_id)
    if not job.mark_running(request.worker):
        return JsonResponse({"state": job.state}, status=409)
    request.worker.beat(status="busy", current_job=job)
    events.queue_changed()
    return JsonResponse({"ok": True})


@worker_call(["POST"])
@bad_request_as_400
def job_events(request, job_id):
    job = job_of(request, job_id)
    items = body(request).get("events", [])
    if not isinstance(items, list):
        raise BadRequest("events must be a list")
    if job.state == JobState.RUNNING and job.worker_id == request.worker.pk:
        progress = None
        relay = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                raise BadRequest("each event needs a type")
            kind, data = item["type"], item.get("data") or {}
            if kind in TERMINAL or (kind == "executing" and isinstance(data, dict) and data.get("node") is None):
                continue
            if kind == "progress":
                progress = data
            if kind == "_preview":
                try:
                    relay.append({"binary": base64.b64decode(data["frame"], validate=True)})
                except (KeyError, TypeError, ValueError):
                    raise BadRequest("a preview needs its frame in base64") from None
                continue
            relay.append({"type": kind, "data": data})
        events.send(job.workspace.slug, *relay)
        if progress is not None:
            Job.objects.filter(pk=job.pk).update(progress=progress)
    stop = job.cancel_requested or ("cancel" if job.is_final else None)
    return JsonResponse({"ok": True, "cancel": stop})


@worker_call(["PUT", "POST"])
@bad_request_as_400
def job_output(request, job_id):
    job = job_of(request, job_id)
    if job.state not in (JobState.RUNNING, JobState.COMPLETED) or someone_elses(request, job):
        return JsonResponse({"state": job.state}, status=409)
    folder_type = request.GET.get("type", "output")
    if folder_type not in ("output", "temp"):
        raise BadRequest("type must be output or temp")
    stored = job.store_file(
        folder_type,
        request.GET.get("subfolder", ""),
        request.GET.get("filename", ""),
        iter(lambda: request.read(1024 * 1024), b""),
    )
    return JsonResponse(stored)


@worker_call(["POST"])
@bad_request_as_400
def job_finish(request, job_id):
    job = job_of(request, job_id)
    if someone_elses(request, job):
        return JsonResponse({"state": job.state}, status=409)
    data = body(request)
    status = data.get("status")
    messages = data.get("messages") or []
    gpu_seconds = data.get("gpu_seconds")
    err = data.get("error") or {}
    if status not in ("success", "error", "interrupted"):
        raise BadRequest("status must be success, error or interrupted")

    if status == "success":
        changed = job.mark_completed(data.get("outputs") or {}, messages, gpu_seconds)
    elif status == "error":
        text = err.get("exception_message") or err.get("message") or "The run failed on the GPU"
        changed = job.mark_failed(text.strip(), messages=messages, gpu_seconds=gpu_seconds)
    elif job.cancel_requested == "interrupt":
        changed = job.requeue_front("Interrupted by the instructor")
    else:
        changed = job.mark_cancelled(messages=messages, gpu_seconds=gpu_seconds)

    if changed:
        rq.clear_stop(job.pk)
        _announce_end(job, status, err)
        dispatcher.schedule_dispatch()
    Worker.objects.filter(pk=request.worker.pk, current_job=job).update(current_job=None, status="idle")
    return JsonResponse({"ok": True, "state": job.state})


def _announce_end(job: Job, status: str, err: dict) -> None:
    prompt_id = str(job.id)
    stamp = int(time.time() * 1000)
    if status == "success":
        end = {"type": "execution_success", "data": {"prompt_id": prompt_id, "timestamp": stamp}}
    elif status == "error":
        end = {"type": "execution_error", "data": {**err, "prompt_id": prompt_id, "timestamp": stamp}}
    else:
        data = {k: err.get(k) for k in ("node_id", "node_type", "executed") if k in err}
        end = {"type": "execution_interrupted", "data": {"prompt_id": prompt_id, **data, "timestamp": stamp}}
    events.send(job.workspace.slug, end, {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})
