"""The ComfyUI HTTP API, answered per workspace (`/user/<slug>/api/…`).

Shapes follow a real ComfyUI 0.3.64 so the official frontend cannot tell the difference;
nothing here ever reads another workspace's jobs or files.
"""

import functools
import mimetypes

from django.db import transaction
from django.db.models import Q
from django.db.models.fields.json import KT
from django.http import Http404, JsonResponse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.access import is_same_origin, workspace_for
from jobs import events
from jobs.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    OPEN_STATES,
    Catalog,
    Job,
    JobState,
    QueueSettings,
    SubmitError,
    Worker,
)
from jobs.queue import snapshot
from workshop.lib import jsonbody
from workshop.lib.files import UnsafePath
from workshop.lib.streaming import FileStream

from . import own_models, wire
from .validation import input_files, valid_outputs, validate_prompt

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def comfy_error(status: int, kind: str, message: str, details: str = "") -> JsonResponse:
    return JsonResponse(wire.submit_error(kind, message, details), status=status)


def workspace_api(methods):
    """Resolve the workspace for the logged-in user; 401/404 as JSON the UI can show.

    CSRF: the ComfyUI frontend sends no CSRF token; every state-changing call must prove it
    comes from this site (accounts.access.is_same_origin), on top of SameSite=Lax cookies.
    """

    def decorate(view):
        @csrf_exempt
        @require_http_methods(methods)
        @functools.wraps(view)
        def wrapper(request, slug, *args, **kwargs):
            if request.method not in SAFE_METHODS and not is_same_origin(request):
                return JsonResponse(
                    {"error": "Refused: this request did not come from the workshop's own pages."}, status=403
                )
            if not request.user.is_authenticated:
                return JsonResponse({"error": "Log in to use this workspace."}, status=401)
            if any("\x00" in key or "\x00" in value for key, value in request.GET.items()):
                return JsonResponse({"error": "A query parameter holds a NUL character."}, status=400)
            try:
                workspace = workspace_for(request.user, slug)
            except Http404:
                return JsonResponse({"error": "No such workspace."}, status=404)
            try:
                return view(request, workspace, *args, **kwargs)
            except jsonbody.BadJSON as exc:
                return JsonResponse({"error": str(exc)}, status=400)

        return wrapper

    return decorate


def json_body(request):
    """The request's JSON (None for an empty body); BadJSON, answered as a 400, otherwise."""
    return jsonbody.loads(request.body) if request.body else None


def json_object(request) -> dict:
    """The request's JSON object ({} for an empty body, as ComfyUI's routes read it)."""
    return jsonbody.object_of(request.body)


@workspace_api(["GET", "POST"])
def prompt(request, workspace):
    if request.method == "GET":
        remaining = Job.objects.filter(workspace=workspace).open().count()
        return JsonResponse({"exec_info": {"queue_remaining": remaining}})
    queue_settings = QueueSettings.get()
    try:
        data = _prompt_body(request, queue_settings)
        checked = _checked_prompt(workspace, data)
    except _Refused as refused:
        return refused.response
    api_prompt, inputs, outputs, carried, node_errors = checked
    extra_data: dict = data["extra_data"] if isinstance(data.get("extra_data"), dict) else {}
    try:
        job = Job.submit(
            workspace,
            api_prompt,
            extra_data=extra_data,
            client_id=str(data.get("client_id") or "")[:100],
            inputs=inputs,
            outputs_to_execute=outputs,
            workflow_name=_workflow_name(extra_data),
            submit_fields=_submit_fields(data),
            queue_settings=queue_settings,
            own_models=carried,
        )
    except SubmitError as exc:
        return JsonResponse(wire.submit_error(exc.kind, exc.message, exc.details), status=exc.status)
    return JsonResponse({"prompt_id": str(job.id), "number": job.number, "node_errors": node_errors or {}})


class _Refused(Exception):
    """A POST /prompt answered before it reaches the queue, in ComfyUI's shape."""

    def __init__(self, response: JsonResponse):
        super().__init__(response.status_code)
        self.response = response


def _prompt_body(request, queue_settings) -> dict:
    """The POST /prompt body as ComfyUI reads it, within the workshop's size limit."""
    if len(request.body) > queue_settings.max_prompt_bytes:
        raise _Refused(
            comfy_error(
                413,
                "workshop_prompt_too_large",
                f"This workflow is {len(request.body) // 1024} KB; the workshop accepts up to "
                f"{queue_settings.max_prompt_bytes // 1024} KB.",
            )
        )
    try:
        data = json_object(request)
    except jsonbody.BadJSON as exc:
        raise _Refused(comfy_error(400, "invalid_prompt", str(exc))) from None
    if "prompt" not in data:
        raise _Refused(comfy_error(400, "no_prompt", "No prompt provided", "No prompt provided"))
    return data


def _checked_prompt(workspace, data: dict):
    """The prompt validated as the GPU's ComfyUI would (the workspace's own models and files
    included): (prompt, input files, outputs to run, own models carried, node_errors); _Refused
    with the answer otherwise."""
    api_prompt = data["prompt"]
    mine = own_models.own_models(workspace)
    # The participant's own models are valid names here, and only here.
    model_files = (Catalog.current_data().get("model_files") or {}) if mine else {}
    object_info = own_models.with_own_models(Catalog.current_object_info(), model_files, mine)
    targets = data.get("partial_execution_targets")
    error, node_errors = validate_prompt(
        api_prompt, object_info, targets, file_exists=workspace.has_file, version=Catalog.current_version()
    )
    if error is not None:
        raise _Refused(JsonResponse({"error": error, "node_errors": node_errors}, status=400))
    outputs = valid_outputs(api_prompt, object_info, node_errors, targets)
    # Files of the outputs that will run; the validation above has named any missing on its node
    # (this catches what it could not, before any GPU worker published a catalog).
    inputs = input_files(api_prompt, object_info, outputs if object_info else targets)
    missing = next((item for item in inputs if not workspace.has_file(item)), None)
    if missing is not None:
        raise _Refused(
            comfy_error(
                400,
                "workshop_missing_input",
                f"Input file {missing['filename']!r} is not in your workspace. Upload it first.",
            )
        )
    carried = [m.as_payload() for m in own_models.models_used(api_prompt, mine)]
    if carried and not Worker.objects.filter(enabled=True, carries_models=True).exists():
        raise _Refused(
            comfy_error(
                400,
                "workshop_no_model_gpu",
                "Your own models can't be used in this workshop: none of its GPUs can load them. "
                "Use the workshop's models instead, or ask the instructor.",
            )
        )
    return api_prompt, inputs, outputs, carried, node_errors


def _submit_fields(data: dict) -> dict:
    """What else of ComfyUI's POST /prompt body the GPU must honour. `number`, `front` and
    `prompt_id` are the queue's business, never ComfyUI's."""
    targets = data.get("partial_execution_targets")
    if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        return {"partial_execution_targets": targets}
    return {}


def _workflow_name(extra_data: dict) -> str:
    def obj(value):
        return value if isinstance(value, dict) else {}

    workflow = obj(obj(extra_data.get("extra_pnginfo")).get("workflow"))
    return str(obj(workflow.get("extra")).get("workshop_template") or workflow.get("id") or "")[:200]


@workspace_api(["GET", "POST"])
def queue(request, workspace):
    if request.method == "POST":
        data = json_object(request)
        targets = Job.objects.filter(workspace=workspace, state=JobState.QUEUED)
        if data.get("clear"):
            chosen = list(targets)
        else:
            delete = data.get("delete")
            ids = [i for i in delete if isinstance(i, str)] if isinstance(delete, list) else []
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
            "queue_running": [wire.queue_item(j) for j in running],
            "queue_pending": [wire.queue_item(j) for j in pending],
        }
    )


def _valid_uuids(ids):

    return [parsed for parsed in map(jsonbody.uuid_or_none, ids) if parsed is not None]


@workspace_api(["GET", "POST"])
def history(request, workspace, prompt_id=None):
    finished = Job.objects.filter(workspace=workspace, state__in=FINAL_STATES)
    if request.method == "POST":
        data = json_object(request)
        if data.get("clear"):
            finished.update(hidden_from_history=True)
        delete = data.get("delete")
        ids = _valid_uuids([i for i in delete if isinstance(i, str)] if isinstance(delete, list) else [])
        if ids:
            finished.filter(pk__in=ids).update(hidden_from_history=True)
        return JsonResponse({})

    visible = finished.filter(hidden_from_history=False)
    if prompt_id is not None:
        ids = _valid_uuids([prompt_id])
        job = visible.filter(pk=ids[0]).first() if ids else None
        return JsonResponse({str(job.pk): wire.history_entry(job)} if job else {})
    try:
        max_items = _int_param(request, "max_items")
        offset = _int_param(request, "offset")
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    # ComfyUI's order (oldest first) and paging: without an offset, the newest max_items.
    ordered = visible.order_by("finished_at", "created_at")
    if offset is None or offset < 0:
        offset = max(ordered.count() - max_items, 0) if max_items is not None else 0
    if max_items is not None and max_items <= 0:
        return JsonResponse({})
    jobs = ordered[offset : offset + max_items] if max_items is not None else ordered[offset:]
    return JsonResponse({str(j.pk): wire.history_entry(j) for j in jobs})


def _int_param(request, name):
    raw = request.GET.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if abs(value) > 10**9:
        raise ValueError(f"{name} is out of range")
    return value


@workspace_api(["GET"])
def view(request, workspace):
    filename = request.GET.get("filename", "")
    folder_type = request.GET.get("type", "output") or "output"
    subfolder = request.GET.get("subfolder", "")
    try:
        path = workspace.file_path(folder_type, filename, subfolder)
        found = path.is_file()
    except (UnsafePath, OSError) as exc:
        return JsonResponse({"error": str(exc) if isinstance(exc, UnsafePath) else "Invalid file name"}, status=400)
    if not found:
        return JsonResponse({"error": f"{filename} not found"}, status=404)
    return file_response(request, path, download=bool(request.GET.get("download")))


# Only media is shown in the page (and nothing it could run: no SVG, HTML or script); any
# other file a participant uploaded goes out as an opaque download, as a plain ComfyUI does.
INLINE_MEDIA = ("image/", "video/", "audio/")
NOT_INLINE = {"image/svg+xml"}
# What the frontend itself loads from userdata besides media: its stylesheet and JSON files.
INLINE_OTHER = {"text/css", "application/json", "text/plain"}
# Even a file shown inline runs nothing and loads nothing, whatever a browser sniffs in it.
FILE_CSP = "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; sandbox"


def inert_type(name: str, also=()) -> tuple[str, bool]:
    """(content type, inline?) for a workspace file: media inline, everything else opaque."""
    guessed = mimetypes.guess_type(name)[0] or ""
    if guessed not in NOT_INLINE and (guessed.startswith(INLINE_MEDIA) or guessed in also):
        return guessed, True
    return "application/octet-stream", False


def file_response(request, path, *, download=False, also=()):
    """A workspace file, streamed with Range support, that can never act as a page."""

    content_type, inline = inert_type(path.name, also)
    partial = _byte_range(request.headers.get("Range", ""), path.stat().st_size)
    if partial is not None:
        start, end = partial
        response = FileStream(path, content_type, start, end, status=206)
        response["Content-Range"] = f"bytes {start}-{end}/{path.stat().st_size}"
    else:
        response = FileStream(path, content_type)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = content_disposition_header(download or not inline, path.name) or "inline"
    response["Content-Security-Policy"] = FILE_CSP
    response["X-Content-Type-Options"] = "nosniff"
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


@workspace_api(["POST"])
def interrupt(request, workspace):
    """Stop the workspace's own running job (never anybody else's)."""
    data = json_object(request)
    running = Job.objects.filter(workspace=workspace, state__in=ACTIVE_STATES).order_by("dispatched_at")
    wanted = data.get("prompt_id")
    if wanted:
        ids = _valid_uuids([str(wanted)])
        running = running.filter(pk__in=ids)
    for job in running[:1]:
        job.cancel()
    return JsonResponse({})


@workspace_api(["GET"])
def workshop_queue(request, workspace):
    """The `workshop.queue` message's data for this workspace (the badge asks on load)."""

    _, queue_message = wire.queue_messages(events.queue_payload(snapshot()), workspace.slug)
    return JsonResponse(queue_message["data"])


# --- the Jobs API (frontend 1.53 reads the queue and the history only through it) ------------


def _jobs_of(workspace):
    """The workspace's jobs as the Jobs API sees them: history the participant cleared is gone."""

    return (
        Job.objects.filter(workspace=workspace)
        .exclude(Q(state__in=FINAL_STATES) & Q(hidden_from_history=True))
        .annotate(workflow_id=KT("extra_data__extra_pnginfo__workflow__id"))
        .defer("prompt", "extra_data", "files", "end_messages", "progress", "node_errors")
    )


@workspace_api(["GET"])
def jobs(request, workspace):
    """`GET /api/jobs`: upstream's filters (status, workflow_id), sorting and pagination."""
    query = request.GET
    statuses = [s.strip().lower() for s in query.get("status", "").split(",") if s.strip()] or list(wire.STATES_OF)
    invalid = [s for s in statuses if s not in wire.STATES_OF]
    if invalid:
        return JsonResponse(
            {"error": f"Invalid status value(s): {', '.join(invalid)}. Valid values: {', '.join(wire.STATES_OF)}"},
            status=400,
        )
    sort_by = query.get("sort_by", "created_at").lower()
    sort_order = query.get("sort_order", "desc").lower()
    if sort_by not in ("created_at", "execution_duration"):
        return JsonResponse({"error": "sort_by must be 'created_at' or 'execution_duration'"}, status=400)
    if sort_order not in ("asc", "desc"):
        return JsonResponse({"error": "sort_order must be 'asc' or 'desc'"}, status=400)
    limit = None
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            return JsonResponse({"error": "limit must be an integer"}, status=400)
        if limit <= 0:
            return JsonResponse({"error": "limit must be a positive integer"}, status=400)
        limit = min(limit, 10**9)
    try:
        offset = min(max(int(query.get("offset", 0)), 0), 10**9)
    except ValueError:
        return JsonResponse({"error": "offset must be an integer"}, status=400)

    rows = _jobs_of(workspace).filter(state__in=[state for s in statuses for state in wire.STATES_OF[s]])
    if query.get("workflow_id"):
        rows = rows.filter(workflow_id=query["workflow_id"])
    total = rows.count()
    if sort_by == "created_at":
        ordered = rows.order_by(("-" if sort_order == "desc" else "") + "created_at", "id")
        page = list(ordered[offset : offset + limit] if limit else ordered[offset:])
    else:

        def duration(job):
            return (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else 0

        every = sorted(rows, key=duration, reverse=sort_order == "desc")
        page = every[offset : offset + limit] if limit else every[offset:]
    return JsonResponse(
        {
            "jobs": [wire.job_entry(job, job.workflow_id) for job in page],
            "pagination": {"offset": offset, "limit": limit, "total": total, "has_more": offset + len(page) < total},
        }
    )


def _own_job(workspace, job_id):
    ids = _valid_uuids([job_id])
    return _jobs_of(workspace).defer(None).filter(pk=ids[0]).first() if ids else None


@workspace_api(["GET"])
def job_detail(request, workspace, job_id):
    job = _own_job(workspace, job_id)
    if job is None:
        return JsonResponse({"error": "Job not found"}, status=404)
    return JsonResponse(wire.job_entry(job, job.workflow_id, full=True))


@workspace_api(["GET"])
def job_assets(request, workspace, job_id):
    """`GET /api/jobs/{id}/assets`: the run's output files, paged like upstream."""
    job = _own_job(workspace, job_id)
    if job is None:
        return JsonResponse({"error": "Job not found"}, status=404)
    try:
        limit = min(max(int(request.GET.get("limit", 500)), 1), 10**9)
        offset = min(max(int(request.GET.get("offset", 0)), 0), 10**9)
    except ValueError:
        return JsonResponse({"error": "limit and offset must be integers"}, status=400)
    items = list(wire.output_items(job.outputs))
    base = f"/user/{workspace.slug}/api"
    assets = []
    for node_id, media_type, index, item in items[offset : offset + limit]:
        try:
            path = workspace.file_path(
                item.get("type", "output"), str(item.get("filename", "")), str(item.get("subfolder", ""))
            )
            size = path.stat().st_size if path.is_file() else None
        except (UnsafePath, OSError):
            size = None
        assets.append(wire.job_asset(job, node_id, media_type, index, item, base, size))
    return JsonResponse(
        {
            "job_id": str(job.pk),
            "assets": assets,
            "pagination": {
                "offset": offset,
                "limit": limit,
                "total": len(items),
                "has_more": offset + len(assets) < len(items),
            },
        }
    )


@workspace_api(["POST"])
def job_cancel(request, workspace, job_id):
    """`POST /api/jobs/{id}/cancel`: a waiting job is withdrawn, a running one stopped on the GPU."""
    job = _own_job(workspace, job_id)
    if job is None:
        return JsonResponse({"error": "Job not found"}, status=404)
    return JsonResponse({"cancelled": [str(job.pk)] if job.state in OPEN_STATES and job.cancel() else []})


@workspace_api(["POST"])
def jobs_cancel(request, workspace):
    """`POST /api/jobs/cancel {"job_ids": [...]}` (1 to 100 ids): the workspace's own only."""
    data = json_body(request)
    ids = data.get("job_ids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100 or not all(isinstance(i, str) for i in ids):
        return JsonResponse({"error": "job_ids must be a list of 1 to 100 job ids"}, status=400)
    cancelled = []
    with transaction.atomic():
        for job in Job.objects.filter(workspace=workspace, state__in=OPEN_STATES, pk__in=_valid_uuids(ids)):
            if job.cancel():
                cancelled.append(str(job.pk))
    return JsonResponse({"cancelled": cancelled})
