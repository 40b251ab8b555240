"""The rest of ComfyUI's HTTP API, per workspace: userdata, settings, uploads, and the catalog
routes answered from what the GPU workers published (never ComfyUI's global views, which would
show one participant everybody's files and prompts)."""

import json
import logging
import mimetypes
import os
import warnings
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.utils.cache import get_conditional_response
from PIL import Image, UnidentifiedImageError

from jobs import workflows
from jobs.models import Catalog
from workshop.lib import jsonbody
from workshop.lib.files import UnsafePath, atomic_write, move_into_place, safe_join, split_relative, unique_name

from . import own_models
from .api import INLINE_OTHER, file_response, json_body, workspace_api
from .frontend import comfy_features, core_extensions, custom_node_file, frontend_version, templates_version
from .validation import placeholders, upload_classes, upload_specs

SUPPORTED_COMFYUI = "0.38.1"  # the release the GPU image installs
SETTINGS_FILE = "comfy.settings.json"
# A workshop starts from the instructor's workflows (Workflows sidebar), not from ComfyUI's
# first-visit template gallery, whose official templates need models the GPU host may not have.
DEFAULT_SETTINGS = {"Comfy.TutorialCompleted": True}


def _catalog_data() -> dict:
    return Catalog.current_data()


# --- catalog routes --------------------------------------------------------------------------


@workspace_api(["GET"])
def system_stats(request, workspace):
    """The GPU host's system_stats, answered as the bridge's own: the frontend it serves is the
    one required (so the UI never warns of an outdated frontend), and the command line stays on
    the GPU host, though `argv` keeps its shape for the frontend's error report."""
    stats = json.loads(json.dumps(_catalog_data().get("system_stats") or {}))
    if not stats:
        # No GPU worker has ever connected: the UI must still load (the queue badge says why).
        stats = {
            "system": {
                "os": "posix",
                "ram_total": 0,
                "ram_free": 0,
                "comfyui_version": SUPPORTED_COMFYUI,
                "python_version": "",
                "pytorch_version": "",
                "embedded_python": False,
            },
            "devices": [],
        }
    system = stats.setdefault("system", {})
    system["required_frontend_version"] = frontend_version()
    system["argv"] = ["main.py"]
    # The packages the browser gets are the app's, not the GPU host's (0.28 lists its own).
    served = {"comfyui-frontend-package": frontend_version(), "comfyui-workflow-templates": templates_version()}
    for package in system.get("comfy_package_versions") or []:
        if isinstance(package, dict) and package.get("name") in served:
            package["installed"] = package["required"] = served[package["name"]]
    for key in ("installed_templates_version", "required_templates_version"):
        if key in system:
            system[key] = served["comfyui-workflow-templates"]
    return JsonResponse(stats)


@workspace_api(["GET"])
def features(request, workspace):
    return JsonResponse(comfy_features())


@workspace_api(["GET"])
def global_subgraphs(request, workspace):
    """The GPU host's global subgraphs (blueprints), {id: entry} without their data."""
    entries = _catalog_data().get("global_subgraphs") or {}
    return JsonResponse({key: {k: v for k, v in entry.items() if k != "data"} for key, entry in entries.items()})


@workspace_api(["GET"])
def global_subgraph(request, workspace, subgraph_id):
    """One blueprint with its data, as the worker published ComfyUI's answer. The frontend asks
    for every one of them at each load (about 90, 4 MB, on 0.28): a browser keeps them for ten
    minutes and then asks again with the ETag, and gets 304 while they are unchanged."""
    found = Catalog.served_file(f"/global_subgraphs/{subgraph_id}")
    if found is None:
        # A worker from before catalog files sent the data inline; else ComfyUI's answer for an
        # unknown id, null (the frontend then reports it as empty).
        entry = (_catalog_data().get("global_subgraphs") or {}).get(subgraph_id)
        return JsonResponse(entry if isinstance(entry, dict) and "data" in entry else None, safe=False)
    etag = f'"{found.sha256}"'
    response = get_conditional_response(request, etag=etag) or HttpResponse(
        bytes(found.content), content_type="application/json"
    )
    response["ETag"] = etag
    response["Cache-Control"] = "private, max-age=600"
    return response


@workspace_api(["GET"])
def node_replacements(request, workspace):
    """Replacements the GPU host's ComfyUI registers for deprecated nodes, {old class: [...]}."""
    return JsonResponse(_catalog_data().get("node_replacements") or {})


@workspace_api(["GET"])
def embeddings(request, workspace):
    return JsonResponse(_catalog_data().get("embeddings") or [], safe=False)


@workspace_api(["GET"])
def extensions(request, workspace):
    _, trusted = Catalog.served_extensions()
    custom = [p for p in _catalog_data().get("extensions") or [] if p in trusted]
    return JsonResponse(core_extensions() + custom, safe=False)


def _files_in(workspace, folder: str = "input") -> list[str]:
    root = workspace.root / folder
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _folders_in(workspace, folder: str = "input") -> list[str]:
    root = workspace.root / folder
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


THREE_D_FILES = (".gltf", ".glb", ".obj", ".fbx", ".stl", ".ply", ".spz", ".splat", ".ksplat")
# Loaders whose options list the GPU host's input folder without an upload flag:
# {class: {input: what of the workspace's input folder it offers}}.
INPUT_FOLDER_LOADERS = {
    "LoadLatent": {"latent": "latents"},
    "LoadImageDataSetFromFolder": {"folder": "folders"},
    "LoadImageTextDataSetFromFolder": {"folder": "folders"},
}


def _files_for(options: dict, files: list[str]) -> list[str]:
    """The workspace files an upload input offers, by kind, as ComfyUI's loaders filter theirs."""

    def media(name):
        return (mimetypes.guess_type(name)[0] or "").split("/")[0]

    if options.get("image_upload"):
        return [f for f in files if media(f) == "image"]
    if options.get("video_upload"):
        return [f for f in files if media(f) == "video"]
    if options.get("audio_upload"):
        return [f for f in files if media(f) in ("audio", "video")]
    if options.get("file_upload") or options.get("3d"):
        return [f for f in files if f.lower().endswith(THREE_D_FILES)]
    return list(files)


def _set_options(spec: list, values: list[str], kept=lambda options: []) -> None:
    """The workspace's files in place of the GPU host's, after ComfyUI's own placeholders (such
    as Load3D's "none"). An input without a list (a remote COMBO, a text input with an upload
    widget) stays without one, as ComfyUI sends it."""
    if isinstance(spec[0], list):  # old style: [[files], {"image_upload": true}]
        spec[0] = [*kept(spec[0]), *values]
    elif len(spec) > 1 and isinstance(spec[1], dict) and isinstance(spec[1].get("options"), list):
        spec[1]["options"] = [*kept(spec[1]["options"]), *values]  # new style: ["COMBO", {"options": [...]}]


def _with_workspace_files(object_info: dict, workspace, uploads: set[str]) -> dict:
    """Every input that lists files of the GPU host (LoadImage, LoadVideo, LoadAudio, Load3D,
    any input flagged as an upload, old-style or new-style COMBO, and the loaders that list
    the input folder unflagged) lists this workspace's own files, nobody else's: the catalog's
    lists are the GPU host's folders, where every participant's files are. `uploads` names
    the classes that have a flagged input."""
    patched = dict(object_info)
    found: dict = {}

    def listing(kind, folder="input"):
        if (kind, folder) not in found:
            if kind == "folders":
                found[kind, folder] = _folders_in(workspace, folder)
            else:
                files = _files_in(workspace, folder)
                found[kind, folder] = [f for f in files if f.endswith(".latent")] if kind == "latents" else files
        return found[kind, folder]

    for name in (uploads | INPUT_FOLDER_LOADERS.keys()) & patched.keys():
        info = json.loads(json.dumps(patched[name]))
        for spec in upload_specs(info.get("input")):
            folder = spec[1].get("image_folder") if spec[1].get("image_folder") in ("input", "output") else "input"
            # ComfyUI's placeholders are per class and input (validation.PLACEHOLDERS): which input is this?
            input_name = next(
                (
                    key
                    for section in (info.get("input") or {}).values()
                    if isinstance(section, dict)
                    for key, value in section.items()
                    if value is spec
                ),
                None,
            )
            _set_options(
                spec,
                _files_for(spec[1], listing("files", folder)),
                lambda options, n=input_name, name=name: placeholders(name, n, options),
            )
        for section in (info.get("input") or {}).values():
            for input_name, kind in INPUT_FOLDER_LOADERS.get(name, {}).items():
                spec = section.get(input_name) if isinstance(section, dict) else None
                if isinstance(spec, list) and spec:
                    _set_options(spec, listing(kind))
        patched[name] = info
    return patched


_UPLOADS: dict = {}


def _upload_classes(object_info: dict) -> set[str]:
    """Names of the classes with an upload input, worked out once per published catalog."""
    if _UPLOADS.get("of") is not object_info:
        _UPLOADS.update({"of": object_info, "names": upload_classes(object_info)})
    return _UPLOADS["names"]


@workspace_api(["GET"])
def object_info(request, workspace, node_class=None):
    catalog = Catalog.current_object_info() or {}
    info = catalog
    if node_class is not None:
        info = {node_class: catalog[node_class]} if node_class in catalog else {}
    info = (
        own_models.with_own_models(info, _catalog_data().get("model_files") or {}, own_models.own_models(workspace))
        or {}
    )
    return JsonResponse(_with_workspace_files(info, workspace, _upload_classes(catalog)))


@workspace_api(["GET"])
def models(request, workspace, folder=None):
    data = _catalog_data()
    if folder is None:
        return JsonResponse(data.get("models") or [], safe=False)
    files = (data.get("model_files") or {}).get(folder)
    if files is None and folder not in (data.get("models") or []):
        return HttpResponse(status=404)
    return JsonResponse([*(files or []), *_own_names(workspace, folder)], safe=False)


def _own_names(workspace, folder) -> list[str]:
    return [m.comfy_name for m in own_models.own_models(workspace) if m.folder == folder]


@workspace_api(["GET"])
def experiment_models(request, workspace, folder=None):
    data = _catalog_data()
    if folder is None:
        return JsonResponse([{"name": name, "folders": []} for name in data.get("models") or []], safe=False)
    files = [*((data.get("model_files") or {}).get(folder) or []), *_own_names(workspace, folder)]
    return JsonResponse([{"name": f, "pathIndex": 0} for f in files], safe=False)


@workspace_api(["GET"])
def releases(request, workspace):
    """Stands in for api.comfy.org's release list: a workshop pins its ComfyUI version."""
    return JsonResponse([], safe=False)


@workspace_api(["GET"])
def workflow_templates(request, workspace):
    """Custom nodes' example workflows, {module: [names]}, as the GPU host's ComfyUI lists them."""
    return JsonResponse(_catalog_data().get("workflow_templates") or {})


@workspace_api(["GET"])
def custom_node_template(request, workspace, module, name):

    try:
        return custom_node_file(f"/workflow_templates/{module}/{name}")
    except Http404:
        return JsonResponse({"error": f"No template {module}/{name}."}, status=404)


@workspace_api(["GET"])
def empty_object(request, workspace, *args, **kwargs):
    """Routes a plain ComfyUI answers with {} here: i18n, workflow_templates of custom nodes."""
    return JsonResponse({})


@workspace_api(["GET", "PATCH"])
def internal_logs(request, workspace, *args, **kwargs):
    # ComfyUI's server log belongs to the GPU host and shows everyone's prompts: never shown.
    if request.method == "PATCH":
        return JsonResponse({})
    return JsonResponse({"entries": [], "size": {"cols": 80, "rows": 24}} if "raw" in request.path else "", safe=False)


@workspace_api(["GET"])
def internal_files(request, workspace, folder_type):
    if folder_type not in ("input", "output", "temp"):
        return JsonResponse({"error": "Unknown folder"}, status=400)
    root = workspace.root / folder_type
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
    return JsonResponse([str(p.relative_to(root)) for p in files], safe=False)


@workspace_api(["GET"])
def internal_folder_paths(request, workspace):
    return JsonResponse({})


@workspace_api(["POST"])
def free(request, workspace):
    # Unloading models on a shared GPU is the instructor's call, not a participant's.
    return HttpResponse(status=200)


# --- users and settings ------------------------------------------------------------------------


@workspace_api(["GET", "POST"])
def users(request, workspace):
    if request.method == "POST":
        return JsonResponse({"error": "Accounts are created by the workshop's operator."}, status=400)
    return JsonResponse({"storage": "server", "migrated": False})


def _settings_path(workspace) -> Path:
    return workspace.root / "userdata" / SETTINGS_FILE


def _saved_settings(workspace) -> tuple[dict, str]:
    """The workspace's saved settings, and why they were unreadable ("" when they were fine):
    a file that cannot be parsed counts as empty, so the UI still loads."""
    path = _settings_path(workspace)
    try:
        saved = jsonbody.loads(path.read_bytes())
    except FileNotFoundError:
        return {}, ""
    except (OSError, jsonbody.BadJSON) as exc:
        return {}, f"{SETTINGS_FILE} could not be read ({exc}); it starts again from the defaults"
    if not isinstance(saved, dict):
        return {}, f"{SETTINGS_FILE} held no JSON object; it starts again from the defaults"
    return saved, ""


def _load_settings(workspace) -> dict:
    return {**DEFAULT_SETTINGS, **start_workflow(), **_saved_settings(workspace)[0]}


def _told(response, workspace):
    """Tells the caller (a header, and one log line) that the saved settings were unreadable."""
    problem = _saved_settings(workspace)[1]
    if problem:
        logging.getLogger(__name__).warning("workspace %s: %s", workspace.slug, problem)
        response["X-Workshop-Warning"] = problem
    return response


def start_workflow() -> dict:
    """`Workshop.StartWorkflow`: the workshop workflow a workspace opens on its first load
    (the workshop extension opens it, then stores "" so it is opened only once)."""

    name = f"{settings.WORKSHOP_START_WORKFLOW}.json"
    return {"Workshop.StartWorkflow": f"workshop/{name}"} if name in workflows.sources() else {}


def _save_settings(workspace, values: dict) -> None:
    path = _settings_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(values, indent=2))


@workspace_api(["GET", "POST"])
def settings_all(request, workspace):
    if request.method == "POST":
        values = json_body(request)
        if not isinstance(values, dict):
            return JsonResponse({"error": "Settings must be a JSON object."}, status=400)
        response = _told(HttpResponse(status=200), workspace)
        _save_settings(workspace, {**_load_settings(workspace), **values})
        return response
    return _told(JsonResponse(_load_settings(workspace)), workspace)


@workspace_api(["GET", "POST"])
def settings_one(request, workspace, setting_id):
    if request.method == "POST":
        value = json_body(request)
        response = _told(JsonResponse({}), workspace)
        _save_settings(workspace, {**_load_settings(workspace), setting_id: value})
        return response
    return _told(JsonResponse(_load_settings(workspace).get(setting_id), safe=False), workspace)


# --- userdata: saved workflows, user.css, templates file … --------------------------------------


def _userdata_root(workspace) -> Path:
    root = workspace.root / "userdata"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _userdata_path(workspace, relative: str) -> Path:
    root = _userdata_root(workspace).resolve()
    parts = split_relative(relative)
    path = safe_join(root, parts)
    for parent in list(path.parents)[: len(parts) - 1]:
        if parent.exists() and not parent.is_dir():
            raise UnsafePath(f"{parent.relative_to(root)} is a file, not a folder")
    return path


def _info(path: Path, shown: str) -> dict:
    stat = path.stat()
    return {"path": shown, "size": stat.st_size, "modified": stat.st_mtime, "created": stat.st_ctime}


def _flag(request, name, default=False) -> bool:
    value = request.GET.get(name)
    return default if value is None else value.lower() == "true"


@workspace_api(["GET"])
def userdata_list(request, workspace):
    directory = request.GET.get("dir", "")
    recurse = _flag(request, "recurse")
    full_info = _flag(request, "full_info")
    split = _flag(request, "split")
    try:
        base = _userdata_path(workspace, directory.rstrip("/")) if directory.strip("/") else _userdata_root(workspace)
    except UnsafePath as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    prefix = directory.strip("/") + "/" if directory.strip("/") else ""
    entries: dict[str, dict] = {}
    if base.is_dir():
        pattern = base.rglob("*") if recurse else base.glob("*")
        for path in pattern:
            if path.is_file() and not path.name.startswith("."):
                rel = str(path.relative_to(base))
                entries[rel] = _info(path, rel)
    # Workshop workflows show up in every workspace's workflows folder.
    if prefix == "workflows/" or (prefix == "" and recurse):
        for name, source in workflows.sources().items():
            rel = ("workshop/" if prefix else "workflows/workshop/") + name
            if (recurse or prefix == "workflows/workshop/") and rel not in entries:
                entries[rel] = _info(source, rel)
    if not entries and not base.is_dir():
        # A plain ComfyUI answers 404 here; the UI then logs an error. An empty list is quieter.
        return JsonResponse([], safe=False)
    items = sorted(entries.values(), key=lambda e: e["path"])
    if full_info:
        return JsonResponse(items, safe=False)
    if split:
        return JsonResponse([[e["path"], *e["path"].split("/")] for e in items], safe=False)
    return JsonResponse([e["path"] for e in items], safe=False)


@workspace_api(["GET"])
def userdata_v2(request, workspace):
    relative = request.GET.get("path", "").strip("/")
    try:
        base = _userdata_path(workspace, relative) if relative else _userdata_root(workspace)
    except UnsafePath as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if not base.is_dir():
        return JsonResponse({"error": "Directory not found"}, status=404)
    items: list[dict] = []
    for path in sorted(base.iterdir()):
        rel = str(path.relative_to(_userdata_root(workspace)))
        if path.is_dir():
            items.append({"name": path.name, "path": rel, "type": "directory"})
        elif not path.name.startswith("."):
            stat = path.stat()
            items.append(
                {"name": path.name, "path": rel, "type": "file", "size": stat.st_size, "modified": stat.st_mtime}
            )
    return JsonResponse(items, safe=False)


@workspace_api(["GET", "POST", "DELETE"])
def userdata_file(request, workspace, file):
    try:
        path = _userdata_path(workspace, file)
    except UnsafePath as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if request.method == "GET":
        if path.is_file():
            return file_response(request, path, also=INLINE_OTHER)
        source = workflows.original(file)
        if source is not None:
            return FileResponse(open(source, "rb"), content_type="application/json")
        if file == "user.css":
            return HttpResponse("", content_type="text/css")
        if file == "comfy.templates.json":
            return JsonResponse([], safe=False)
        if file == "workflows/.index.json":  # the sidebar's bookmarks, none saved yet
            return JsonResponse({"favorites": []})
        return HttpResponse("File not found", status=404)
    if request.method == "DELETE":
        if not path.is_file():
            if workflows.original(file) is not None:
                return JsonResponse({"error": "Workshop workflows cannot be deleted."}, status=403)
            return HttpResponse("File not found", status=404)
        path.unlink()
        return HttpResponse(status=204)
    overwrite = _flag(request, "overwrite", True)
    if path.is_dir():
        return JsonResponse({"error": f"{file} is a folder"}, status=409)
    if path.exists() and not overwrite:
        return HttpResponse("File already exists", status=409)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, request.body)
    if _flag(request, "full_info"):
        return JsonResponse(_info(path, file))
    return JsonResponse(file, safe=False)


@workspace_api(["POST"])
def userdata_move(request, workspace, file, dest):
    try:
        source, target = _userdata_path(workspace, file), _userdata_path(workspace, dest)
    except UnsafePath as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if not source.is_file():
        if workflows.original(file) is not None:
            return JsonResponse({"error": "Workshop workflows cannot be moved; save a copy instead."}, status=403)
        return HttpResponse("File not found", status=404)
    if target.is_dir():
        return JsonResponse({"error": f"{dest} is a folder"}, status=409)
    if target.exists() and not _flag(request, "overwrite", True):
        return HttpResponse("File already exists", status=409)
    target.parent.mkdir(parents=True, exist_ok=True)
    move_into_place(source, target)
    if _flag(request, "full_info"):
        return JsonResponse(_info(target, dest))
    return JsonResponse(dest, safe=False)


# --- uploads -----------------------------------------------------------------------------------


def _store_upload(request, workspace, mask=False):

    image = request.FILES.get("image")
    if image is None:
        return JsonResponse({"error": "No image in the upload."}, status=400)
    if image.size > settings.MAX_UPLOAD_BYTES:
        return JsonResponse({"error": f"Files up to {settings.MAX_UPLOAD_BYTES // 2**20} MB."}, status=413)
    folder_type = request.POST.get("type") or "input"
    if folder_type not in ("input", "temp", "output"):
        return JsonResponse({"error": "type must be input, temp or output"}, status=400)
    subfolder = request.POST.get("subfolder", "")
    name = os.path.basename(image.name or "")
    overwrite = (request.POST.get("overwrite") or "").lower() in ("true", "1")
    used = workspace.used_bytes()
    if used + image.size > workspace.quota_bytes:
        return JsonResponse(
            {"error": f"Your workspace is full ({used // 2**20} MB used). Delete some files first."}, status=413
        )
    try:
        path = workspace.file_path(folder_type, name, subfolder)
    except UnsafePath as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if path.is_dir():
        return JsonResponse({"error": f"{name} is a folder in your workspace; choose another name."}, status=409)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        return JsonResponse({"error": f"{subfolder} is a file, not a folder"}, status=400)
    too_big = _too_many_pixels(image)
    if too_big:
        return JsonResponse({"error": too_big}, status=400)
    if mask:
        return _apply_mask(request, workspace, image, path)
    data = image.read()
    try:
        if path.exists() and not overwrite and path.read_bytes() != data:
            name = unique_name(name, lambda n: workspace.file_path(folder_type, n, subfolder).exists())
            path = workspace.file_path(folder_type, name, subfolder)
    except UnsafePath as exc:  # the numbered name grew too long
        return JsonResponse({"error": str(exc)}, status=400)
    atomic_write(path, data)
    workspace.touch()
    return JsonResponse({"name": name, "subfolder": subfolder, "type": folder_type})


def _apply_mask(request, workspace, image, path):
    """ComfyUI's upload/mask: the mask's alpha goes into a copy of the original image."""

    try:
        original_ref = jsonbody.loads(request.POST.get("original_ref") or "{}")
    except jsonbody.BadJSON as exc:
        return JsonResponse({"error": f"original_ref: {exc}"}, status=400)
    fields = (
        {key: original_ref.get(key) for key in ("type", "filename", "subfolder")}
        if isinstance(original_ref, dict)
        else {}
    )
    if not fields or not all(isinstance(v, str) or v is None for v in fields.values()):
        return JsonResponse({"error": "original_ref must name the image: {filename, subfolder, type}"}, status=400)
    try:
        source = workspace.file_path(fields["type"] or "input", fields["filename"] or "", fields["subfolder"] or "")
        if not source.is_file():
            return JsonResponse({"error": f"{fields['filename']} is not in your workspace"}, status=400)
        with open(source, "rb") as handle:
            too_big = _too_many_pixels(handle)
        if too_big:
            return JsonResponse({"error": too_big}, status=400)
        with Image.open(source) as original, Image.open(image) as mask:
            result = original.convert("RGBA")
            result.putalpha(mask.convert("RGBA").getchannel("A").resize(result.size))
            result.save(path, "PNG")
    except UnsafePath as exc:
        return JsonResponse({"error": f"Could not apply the mask: {exc}"}, status=400)
    except (ValueError, OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError):
        # Never the exception's text: it holds the file's path on the server.
        return JsonResponse(
            {"error": "Could not apply the mask: the image or the mask is not a picture this workshop can read."},
            status=400,
        )
    return JsonResponse(
        {"name": path.name, "subfolder": request.POST.get("subfolder", ""), "type": request.POST.get("type") or "input"}
    )


def _too_many_pixels(fileobj) -> str:
    """Why an image is refused ("" if it is not, or is no image PIL knows): its size is read
    from the header, before anything is decoded."""

    limit = f"the workshop accepts images up to {settings.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels."
    try:
        with warnings.catch_warnings():
            # PIL warns between 1 and 2 × MAX_IMAGE_PIXELS; this function refuses those itself.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fileobj) as header:
                width, height = header.size
    except Image.DecompressionBombError:
        return f"This image has far too many pixels; {limit}"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        width = height = 0  # not an image PIL reads (a video, a 3D model …): no pixels to count
    finally:
        fileobj.seek(0)
    if width * height > settings.MAX_IMAGE_PIXELS:
        return f"This image is {width}×{height} pixels; {limit}"
    return ""


@workspace_api(["POST"])
def upload_image(request, workspace):
    return _store_upload(request, workspace)


@workspace_api(["POST"])
def upload_mask(request, workspace):
    return _store_upload(request, workspace, mask=True)


@workspace_api(["GET"])
def view_metadata(request, workspace, folder_name):
    # Safetensors metadata of models on the GPU host; not published in the catalog.
    return HttpResponse(status=404)
