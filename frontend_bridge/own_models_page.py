"""My models: a participant's own LoRAs (and the other folders the operator allows), uploaded in
8 MB parts from the page or fetched by the app from a URL the participant pastes."""

import asyncio
import functools
import json
import logging
import threading
import time
import urllib.parse

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import render

from accounts.access import workspace_for
from accounts.models import WorkspaceModel
from accounts.own_model_uploads import MODEL_PART_BYTES, store_download, store_part
from accounts.own_models import ModelRefused

from . import safe_fetch
from .api import json_object, workspace_api

log = logging.getLogger("workshop.models")


def _row(model: WorkspaceModel) -> dict:
    return {
        "id": model.pk,
        "folder": model.folder,
        "name": model.name,
        "comfy_name": model.comfy_name,
        "size": model.size,
        "sha256": model.sha256,
        "source_url": model.source_url,
    }


@login_required
def models_page(request, slug):
    workspace = workspace_for(request.user, slug)
    rows = list(WorkspaceModel.objects.filter(workspace=workspace))
    return render(
        request,
        "own_models.html",
        {
            "workspace": workspace,
            "models": rows,
            "used": sum(m.size for m in rows),
            "quota": settings.MODEL_QUOTA_BYTES,
            "max_bytes": settings.MAX_MODEL_BYTES,
            "folders": settings.MODEL_FOLDERS,
            "part_bytes": MODEL_PART_BYTES,
        },
    )


@workspace_api(["GET"])
def models_list(request, workspace):
    return JsonResponse(
        {
            "models": [_row(m) for m in WorkspaceModel.objects.filter(workspace=workspace)],
            "used": WorkspaceModel.used_bytes(workspace),
            "quota": settings.MODEL_QUOTA_BYTES,
        }
    )


@workspace_api(["PUT", "POST"])
def model_upload(request, workspace):
    """?folder=loras&name=x.safetensors&offset=B&size=B&final=0|1, the part's bytes as the body
    (`size`: the whole file's, reserved of the quota at the first part)."""
    try:
        offset, declared = int(request.GET.get("offset", "0")), int(request.GET.get("size", "0"))
    except ValueError:
        return JsonResponse({"error": "offset and size must be numbers of bytes"}, status=400)
    data = request.read(MODEL_PART_BYTES + 1)  # not .body: Django caps that at a JSON request's size
    if len(data) > MODEL_PART_BYTES:
        return JsonResponse({"error": f"Send the file in parts of at most {MODEL_PART_BYTES // 2**20} MB."}, status=413)
    try:
        result = store_part(
            workspace,
            request.GET.get("folder", "loras"),
            request.GET.get("name", ""),
            offset,
            data,
            final=request.GET.get("final", "1") != "0",
            declared=declared,
        )
    except ModelRefused as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    if isinstance(result, int):
        return JsonResponse({"received": result})
    return JsonResponse({"model": _row(result)}, status=201)


@workspace_api(["POST"])
def model_delete(request, workspace, pk):
    model = WorkspaceModel.objects.filter(workspace=workspace, pk=pk).first()
    if model is None:
        return JsonResponse({"error": "No such model in your workspace."}, status=404)
    model.delete()
    return JsonResponse({"deleted": pk})


def _name_of(response, url: str) -> str:
    disposition = response.headers.get("Content-Disposition", "")
    if "filename=" in disposition:
        return disposition.split("filename=", 1)[1].split(";")[0].strip().strip('"')
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def _fetch_slot(workspace) -> str | None:
    """One of the workspace's MAX_UNFINISHED_MODELS fetch slots (counted in Redis, for every
    app process), or None when all are taken: a fetch holds a thread and a socket."""
    slot = f"model-fetch:{workspace.slug}"
    cache.add(slot, 0, settings.MODEL_FETCH_SECONDS + 60)
    if cache.incr(slot) > settings.MAX_UNFINISHED_MODELS:
        _free(slot)
        return None
    return slot


def _free(slot: str) -> None:
    try:
        cache.decr(slot)
    except ValueError:  # expired meanwhile
        pass


@workspace_api(["POST"])
def model_fetch(request, workspace):
    """{"url", "folder"?, "name"?}: the app downloads it (safe_fetch: public addresses only),
    checked as it comes. The answer is a stream of JSON lines: {"received", "total"} about twice a
    second while it runs, then {"model"} or {"error"}. An async stream: under ASGI a sync one is
    collected whole before it is sent, and the participant would see no progress at all."""
    data = json_object(request)
    url, folder = str(data.get("url") or "").strip(), str(data.get("folder") or "loras")
    slot = _fetch_slot(workspace)
    if slot is None:
        return JsonResponse(
            {"error": f"You have {settings.MAX_UNFINISHED_MODELS} downloads running: wait for one to end."}, status=429
        )

    download = functools.partial(_download, workspace, url, folder, str(data.get("name") or ""), slot)
    return StreamingHttpResponse(_progress(download), content_type="application/x-ndjson")


def _download(workspace, url: str, folder: str, name: str, slot: str, put) -> None:
    """The fetch itself, in a thread of its own: each step goes to `put(kind, value)`."""
    fetch = safe_fetch.Fetch(url, settings.MODEL_FETCH_SECONDS)
    try:
        response, final_url = fetch.open()
        total = fetch.announced_size(response)
        put("total", total)
        model = store_download(
            workspace,
            folder,
            name or _name_of(response, final_url),
            fetch.chunks(response),
            source_url=url[:2000],
            size_hint=total,
            on_progress=lambda n: put("received", n),
        )
        put("model", _row(model))
    except ModelRefused as exc:
        put("error", str(exc))
    except Exception:  # noqa: BLE001 - the participant gets a sentence, the log the rest
        log.exception("model fetch failed")
        put("error", "Could not store it; try again, or download the file and upload it.")
    finally:
        fetch.close()
        connection.close()
        _free(slot)


async def _progress(download):
    """The JSON lines of a fetch: one at once, then its progress twice a second, then its end."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def put(kind, value):
        loop.call_soon_threadsafe(events.put_nowait, (kind, value))

    threading.Thread(target=download, args=(put,), daemon=True, name="model-fetch").start()
    # At once: the page shows the fetch has begun (and a proxy sees the response start) while the
    # other server has not answered yet.
    yield json.dumps({"received": 0, "total": None}) + "\n"
    total, last = None, 0.0
    while True:
        kind, value = await events.get()
        if kind == "total":
            total = value
        elif kind == "received":
            if time.monotonic() - last >= 0.5:
                last = time.monotonic()
                yield json.dumps({"received": value, "total": total}) + "\n"
        else:
            yield json.dumps({kind: value}) + "\n"
            return
