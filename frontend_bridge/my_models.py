"""My models: a participant's own LoRAs (and the other folders the operator allows), uploaded in
8 MB parts from the page or fetched by the app from a URL the participant pastes."""
import ipaddress
import json
import queue
import socket
import threading
import time
import urllib.parse

import requests
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import render

from accounts.access import workspace_for
from accounts.modelfiles import ModelRefused
from accounts.models import MODEL_PART_BYTES, WorkspaceModel, store_model, store_model_part

from .api import json_object, workspace_api

FETCH_REDIRECTS = 5


def _row(model: WorkspaceModel) -> dict:
    return {"id": model.pk, "folder": model.folder, "name": model.name, "comfy_name": model.comfy_name,
            "size": model.size, "sha256": model.sha256, "source_url": model.source_url}


@login_required
def models_page(request, slug):
    workspace = workspace_for(request.user, slug)
    rows = list(WorkspaceModel.objects.filter(workspace=workspace))
    return render(request, "my_models.html", {
        "workspace": workspace, "models": rows, "used": sum(m.size for m in rows),
        "quota": settings.MODEL_QUOTA_BYTES, "max_bytes": settings.MAX_MODEL_BYTES,
        "folders": settings.MODEL_FOLDERS, "part_bytes": MODEL_PART_BYTES,
    })


@workspace_api(["GET"])
def models_list(request, workspace):
    return JsonResponse({"models": [_row(m) for m in WorkspaceModel.objects.filter(workspace=workspace)],
                         "used": WorkspaceModel.used_bytes(workspace), "quota": settings.MODEL_QUOTA_BYTES})


@workspace_api(["PUT", "POST"])
def model_upload(request, workspace):
    """?folder=loras&name=x.safetensors&offset=B&final=0|1, the part's bytes as the body."""
    try:
        offset = int(request.GET.get("offset", "0"))
    except ValueError:
        return JsonResponse({"error": "offset must be a number of bytes"}, status=400)
    data = request.read(MODEL_PART_BYTES + 1)  # not .body: Django caps that at a JSON request's size
    if len(data) > MODEL_PART_BYTES:
        return JsonResponse({"error": f"Send the file in parts of at most {MODEL_PART_BYTES // 2**20} MB."}, status=413)
    try:
        result = store_model_part(workspace, request.GET.get("folder", "loras"), request.GET.get("name", ""),
                                  offset, data, final=request.GET.get("final", "1") != "0")
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


class FetchRefused(ModelRefused):
    pass


def _public_address(host: str) -> None:
    """The app fetches only from the public internet: never this host, its network or a cloud's
    metadata service, which a pasted URL could otherwise reach from inside (SSRF)."""
    if host in settings.MODEL_FETCH_ALLOWED_HOSTS:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise FetchRefused(f"{host}: no such host.") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise FetchRefused(f"{host} is not on the public internet: the workshop fetches models only from there.")


def _open(url: str) -> requests.Response:
    for _ in range(FETCH_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchRefused("Paste an http:// or https:// address.")
        _public_address(parts.hostname)
        response = requests.get(url, stream=True, allow_redirects=False, timeout=(10, 60),
                                headers={"User-Agent": "workshop-model-fetch"})
        if response.is_redirect:
            url = urllib.parse.urljoin(url, response.headers["Location"])
            response.close()
            continue
        if response.status_code != 200:
            response.close()
            raise FetchRefused(f"The address answered {response.status_code}.")
        return response
    raise FetchRefused("Too many redirects.")


def _name_of(response: requests.Response, url: str) -> str:
    disposition = response.headers.get("Content-Disposition", "")
    if "filename=" in disposition:
        return disposition.split("filename=", 1)[1].split(";")[0].strip().strip('"')
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


@workspace_api(["POST"])
def model_fetch(request, workspace):
    """{"url", "folder"?, "name"?}: the app downloads it, checked as it comes. The answer is a
    stream of JSON lines: {"received", "total"} about twice a second, then {"model"} or {"error"}."""
    data = json_object(request)
    url, folder = str(data.get("url") or "").strip(), str(data.get("folder") or "loras")

    def lines():
        try:
            response = _open(url)
        except (ModelRefused, requests.RequestException) as exc:
            yield json.dumps({"error": str(exc) if isinstance(exc, ModelRefused) else f"Could not fetch it: {exc}"}) + "\n"
            return
        total = int(response.headers.get("Content-Length") or 0) or None
        name = str(data.get("name") or _name_of(response, response.url))
        events: queue.Queue = queue.Queue()

        def download():
            try:
                with response:
                    model = store_model(workspace, folder, name, response.iter_content(1024 * 1024),
                                        source_url=url[:2000], size_hint=total,
                                        on_progress=lambda n: events.put(("received", n)))
                events.put(("model", _row(model)))
            except ModelRefused as exc:
                events.put(("error", str(exc)))
            except requests.RequestException as exc:
                events.put(("error", f"The download broke off: {exc}"))
            except Exception as exc:
                events.put(("error", f"Could not store it: {exc}"))
            finally:
                connection.close()

        threading.Thread(target=download, daemon=True, name="model-fetch").start()
        last = 0.0
        while True:
            kind, value = events.get()
            if kind == "received":
                if time.monotonic() - last >= 0.5:
                    last = time.monotonic()
                    yield json.dumps({"received": value, "total": total}) + "\n"
                continue
            yield json.dumps({kind: value}) + "\n"
            return

    return StreamingHttpResponse(lines(), content_type="application/x-ndjson")
