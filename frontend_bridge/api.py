"""The ComfyUI HTTP API, answered per workspace (`/user/<slug>/api/…`).

Shapes follow a real ComfyUI 0.3.64 so the official frontend cannot tell the difference;
nothing here ever reads another workspace's jobs or files.
"""
import functools
import json
import mimetypes

from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.access import workspace_for
from accounts.models import UnsafePath
from jobs import events
from jobs.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    Catalog,
    Job,
    JobState,
    QueueSettings,
    SubmitError,
)

from . import wire
from .validation import input_files, valid_outputs, validate_prompt


def comfy_error(status: int, kind: str, message: str, details: str = "") -> JsonResponse:
    return JsonResponse(SubmitError(kind, message, details).as_comfy(), status=status)


def workspace_api(methods):
    """Resolve the workspace for the logged-in user; 401/404 as JSON the UI can show.

    CSRF: the ComfyUI frontend sends JSON with no CSRF token. The session cookie is
    SameSite=Lax, so cross-site POSTs carry no session and land as 401 here.
    """

    def decorate(view):
        @csrf_exempt
        @require_http_methods(methods)
        @functools.wraps(view)
        def wrapper(request, slug, *args, **kwargs):
            if not request.user.is_authenticated:
                return JsonResponse({"error": "Log in to use this workspace."}, status=401)
            try:
                workspace = workspace_for(request.user, slug)
            except Http404:
                return JsonResponse({"error": "No such workspace."}, status=404)
            return view(request, workspace, *args, **kwargs)

        return wrapper

    return decorate


def json_body(request):
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None


@workspace_api(["GET", "POST"])
def prompt(request, workspace):
    if request.method == "GET":
        remaining = Job.objects.filter(workspace=workspace).open().count()
        return JsonResponse({"exec_info": {"queue_remaining": remaining}})

    queue_settings = QueueSettings.get()
    if len(request.body) > queue_settings.max_prompt_bytes:
        return comfy_error(
            413,
            "workshop_prompt_too_large",
            f"This workflow is {len(request.body) // 1024} KB; the workshop accepts up to "
            f"{queue_settings.max_prompt_bytes // 1024} KB.",
        )
    data = json_body(request)
    if not isinstance(data, dict):
        return comfy_error(400, "invalid_prompt", "The request body must be a JSON object.")
    if "prompt" not in data:
        return comfy_error(400, "no_prompt", "No prompt provided", "No prompt provided")
    api_prompt = data["prompt"]
    object_info = Catalog.current_object_info()
    targets = data.get("partial_execution_targets")
    error, node_errors = validate_prompt(api_prompt, object_info, targets, file_exists=workspace.has_file)
    if error is not None:
        return JsonResponse({"error": error, "node_errors": node_errors}, status=400)

    outputs = valid_outputs(api_prompt, object_info, node_errors, targets)
    # Files of the outputs that will run; the validation above has named any missing on its node
    # (this catches what it could not, before any GPU worker published a catalog).
    inputs = input_files(api_prompt, object_info, outputs if object_info else targets)
    missing = next((item for item in inputs if not workspace.has_file(item)), None)
    if missing is not None:
        return comfy_error(
            400, "workshop_missing_input",
            f"Input file {missing['filename']!r} is not in your workspace. Upload it first.",
        )

    extra_data = data.get("extra_data") if isinstance(data.get("extra_data"), dict) else {}
    try:
        job = Job.submit(
            workspace,
            api_prompt,
            extra_data=extra_data,
            client_id=data.get("client_id", ""),
            inputs=inputs,
            outputs_to_execute=outputs,
            workflow_name=_workflow_name(extra_data),
            submit_fields=_submit_fields(data),
        )
    except SubmitError as exc:
        return JsonResponse(exc.as_comfy(), status=exc.status)
    return JsonResponse({"prompt_id": str(job.id), "number": job.number, "node_errors": node_errors or {}})


def _submit_fields(data: dict) -> dict:
    """What else of ComfyUI's POST /prompt body the GPU must honour. `number`, `front` and
    `prompt_id` are the queue's business, never ComfyUI's."""
    targets = data.get("partial_execution_targets")
    if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        return {"partial_execution_targets": targets}
    return {}


def _workflow_name(extra_data: dict) -> str:
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow") or {}
    return str((workflow.get("extra") or {}).get("workshop_template") or workflow.get("id") or "")[:200]


@workspace_api(["GET", "POST"])
def queue(request, workspace):
    if request.method == "POST":
        data = json_body(request) or {}
        targets = Job.objects.filter(workspace=workspace, state=JobState.QUEUED)
        if data.get("clear"):
            chosen = list(targets)
        else:
            ids = [str(i) for i in data.get("delete", []) if isinstance(i, str)]
            chosen = list(targets.filter(pk__in=_valid_uuids(ids)))
        with transaction.atomic():
            for job in chosen:
                job.cancel()
        return JsonResponse({})

    mine = Job.objects.filter(workspace=workspace)
    # Every policy keeps a participant's own jobs in this order, so no queue snapshot is needed.
    pending = mine.filter(state=JobState.QUEUED).order_by("-priority", "created_at", "id")
    running = mine.filter(state__in=ACTIVE_STATES).order_by("dispatched_at")
    return JsonResponse(
        {
            "queue_running": [j.as_queue_item() for j in running],
            "queue_pending": [j.as_queue_item() for j in pending],
        }
    )


def _valid_uuids(ids):
    import uuid

    valid = []
    for value in ids:
        try:
            valid.append(uuid.UUID(value))
        except ValueError:
            continue
    return valid


@workspace_api(["GET", "POST"])
def history(request, workspace, prompt_id=None):
    finished = Job.objects.filter(workspace=workspace, state__in=FINAL_STATES)
    if request.method == "POST":
        data = json_body(request) or {}
        if data.get("clear"):
            finished.update(hidden_from_history=True)
        ids = _valid_uuids([str(i) for i in data.get("delete", [])])
        if ids:
            finished.filter(pk__in=ids).update(hidden_from_history=True)
        return JsonResponse({})

    visible = finished.filter(hidden_from_history=False)
    if prompt_id is not None:
        ids = _valid_uuids([prompt_id])
        job = visible.filter(pk=ids[0]).first() if ids else None
        return JsonResponse({str(job.pk): job.as_history_entry()} if job else {})
    try:
        max_items = int(request.GET.get("max_items", "0")) or None
    except ValueError:
        max_items = None
    newest = visible.order_by("-created_at")
    jobs = list(newest[:max_items] if max_items else newest)
    return JsonResponse({str(j.pk): j.as_history_entry() for j in reversed(jobs)})


@workspace_api(["GET"])
def view(request, workspace):
    filename = request.GET.get("filename", "")
    folder_type = request.GET.get("type", "output") or "output"
    subfolder = request.GET.get("subfolder", "")
    try:
        path = workspace.file_path(folder_type, filename, subfolder)
    except UnsafePath as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if not path.is_file():
        return JsonResponse({"error": f"{filename} not found"}, status=404)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    partial = _byte_range(request.headers.get("Range", ""), path.stat().st_size)
    if partial is not None:
        response = _range_response(path, content_type, *partial)
    else:
        response = FileResponse(open(path, "rb"), content_type=content_type)
        response["Accept-Ranges"] = "bytes"
    disposition = "attachment" if request.GET.get("download") else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{path.name}"'
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _byte_range(header: str, size: int):
    """(start, end) of a single `bytes=a-b` range, so browsers can seek in videos."""
    if not header.startswith("bytes=") or "," in header or size == 0:
        return None
    first, _, last = header.removeprefix("bytes=").partition("-")
    try:
        if first:
            start, end = int(first), int(last) if last else size - 1
        else:
            start, end = max(size - int(last), 0), size - 1
    except ValueError:
        return None
    if start > end or start >= size:
        return None
    return start, min(end, size - 1)


def _range_response(path, content_type, start, end):
    from django.http import StreamingHttpResponse

    def chunks():
        with open(path, "rb") as source:
            source.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = source.read(min(left, 1024 * 1024))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    response = StreamingHttpResponse(chunks(), status=206, content_type=content_type)
    response["Content-Range"] = f"bytes {start}-{end}/{path.stat().st_size}"
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    return response


@workspace_api(["POST"])
def interrupt(request, workspace):
    """Stop the workspace's own running job (never anybody else's)."""
    data = json_body(request) or {}
    running = Job.objects.filter(workspace=workspace, state__in=ACTIVE_STATES).order_by("dispatched_at")
    wanted = data.get("prompt_id") if isinstance(data, dict) else None
    if wanted:
        ids = _valid_uuids([str(wanted)])
        running = running.filter(pk__in=ids)
    for job in running[:1]:
        job.cancel()
    return JsonResponse({})


@workspace_api(["GET"])
def workshop_queue(request, workspace):
    """The `workshop.queue` message's data for this workspace (the badge asks on load)."""
    from jobs.queue import snapshot

    status, queue_message = wire.queue_messages(events.queue_payload(snapshot()), workspace.slug)
    return JsonResponse(queue_message["data"])
