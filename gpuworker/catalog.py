"""What a GPU host offers (ComfyUI's object_info, models, extensions, templates, subgraph
blueprints), gathered from its ComfyUI and published to the app in parts."""

import hashlib
import json
import logging
import posixpath
import re

from .app import AppClient
from .comfy import ComfyClient
from .protocol import without_participant_models

log = logging.getLogger("gpuworker")


PRIVATE_STATS = ("argv",)


def catalog_of(comfy: ComfyClient, stats: dict) -> dict:
    system = {k: v for k, v in (stats.get("system") or {}).items() if k not in PRIVATE_STATS}
    catalog = {
        "object_info": comfy.object_info(),
        "comfyui_version": system.get("comfyui_version", ""),
        "system_stats": {**stats, "system": system},
    }
    for key, path in (
        ("embeddings", "/embeddings"),
        ("models", "/models"),
        ("extensions", "/extensions"),
        ("workflow_templates", "/workflow_templates"),
        ("node_replacements", "/node_replacements"),
        ("global_subgraphs", "/global_subgraphs"),
    ):
        try:
            catalog[key] = comfy.get_json(path)
        except Exception as exc:  # Older or trimmed ComfyUIs may lack a route: publish the rest.
            # A route the release does not have (404) is expected, at every catalog check.
            missing = getattr(getattr(exc, "response", None), "status_code", None) == 404
            (log.debug if missing else log.warning)("catalog: %s unavailable (%s)", path, exc)
    model_files = {}
    for folder in catalog.get("models") or []:
        try:
            model_files[folder] = comfy.get_json(f"/models/{folder}")
        except Exception:
            continue
    catalog["model_files"] = model_files
    catalog["object_info"] = without_participant_models(catalog["object_info"])
    catalog["model_files"] = without_participant_models(model_files)
    subgraphs = catalog.get("global_subgraphs")
    if isinstance(subgraphs, dict):  # the index only; each blueprint's data goes as a file of its own
        catalog["global_subgraphs"] = {
            key: {k: v for k, v in entry.items() if k != "data"}
            for key, entry in list(subgraphs.items())[:MAX_SUBGRAPHS]
            if isinstance(entry, dict) and SUBGRAPH_ID.match(key)
        }
    return catalog


MAX_SUBGRAPHS = 1000


SUBGRAPH_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def subgraph_files(comfy: ComfyClient, index: dict | None) -> dict[str, bytes]:
    """Each global subgraph (blueprint) with its data, as ComfyUI answers /global_subgraphs/{id}.

    A current ComfyUI has about 90 of them, 4 MB or more in all: published one by one, and only
    those that changed, they never make one large request the app must hold in memory."""
    files = {}
    for key in index or {}:
        try:
            content = comfy.get_bytes(f"/global_subgraphs/{key}")
            if not isinstance((json.loads(content) or {}).get("data"), str):  # ComfyUI answers null when it is gone
                raise ValueError("no data")
            files[f"/global_subgraphs/{key}"] = content
        except Exception as exc:
            log.warning("global subgraph %s unavailable (%s)", key, exc)
    return files


RELATIVE_IMPORT = re.compile(r"""(?:from|import)\s*\(?\s*["'](\.{1,2}/[^"']+)["']""")


def extension_files(comfy: ComfyClient, listed: list[str], limit: int = 500) -> dict[str, bytes]:
    """Custom nodes' frontend files: each listed one plus the modules it imports relatively.

    The app serves them to every workspace; core extensions come with the frontend itself.
    """
    pending = [p for p in listed if p.startswith("/extensions/") and not p.startswith("/extensions/core/")]
    files: dict[str, bytes] = {}
    while pending and len(files) < limit:
        path = pending.pop()
        if path in files:
            continue
        try:
            files[path] = comfy.get_bytes(path)
        except Exception as exc:
            log.warning("extension file %s unavailable (%s)", path, exc)
            continue
        if path.endswith((".js", ".mjs")):
            base = posixpath.dirname(path)
            for relative in RELATIVE_IMPORT.findall(files[path].decode("utf-8", "replace")):
                target = posixpath.normpath(posixpath.join(base, relative))
                # Only the pack's own files; "../../scripts/app.js" is the frontend's.
                if target.startswith("/extensions/") and not target.startswith("/extensions/core/"):
                    pending.append(target)
    return files


def template_files(comfy: ComfyClient, templates: dict) -> dict[str, bytes]:
    """Custom nodes' example workflows ({module: [names]}) as files the app can serve."""
    files = {}
    for module, names in (templates or {}).items():
        for name in names if isinstance(names, list) else []:
            path = f"/workflow_templates/{module}/{name}.json"
            try:
                files[path] = comfy.get_bytes(path)
            except Exception as exc:
                log.warning("template %s unavailable (%s)", path, exc)
    return files


def publish_catalog(app: AppClient, comfy: ComfyClient, catalog: dict) -> None:
    """The files first (only those the app does not hold already), then the catalog, which
    names every file: the app forgets the ones it no longer names."""
    files = extension_files(comfy, catalog.get("extensions") or [])
    files.update(template_files(comfy, catalog.get("workflow_templates") or {}))
    subgraphs = subgraph_files(comfy, catalog.get("global_subgraphs"))
    files.update(subgraphs)
    if isinstance(catalog.get("global_subgraphs"), dict):  # one that could not be fetched is not offered
        catalog = {
            **catalog,
            "global_subgraphs": {
                key: entry
                for key, entry in catalog["global_subgraphs"].items()
                if f"/global_subgraphs/{key}" in subgraphs
            },
        }
    held = app.published_files()
    sent = 0
    for path, content in files.items():
        if held.get(path) != hashlib.sha256(content).hexdigest():
            app.publish_file(path, content)
            sent += 1
    if files:
        log.info("catalog files: %d sent, %d already held by the app", sent, len(files) - sent)
    app.publish_catalog({**catalog, "files": sorted(files)})


def catalog_fingerprint(catalog: dict) -> str:
    stable = {k: v for k, v in catalog.items() if k != "system_stats"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()


def clear_orphans(comfy: ComfyClient) -> None:
    """This ComfyUI serves only this worker: whatever it still runs or holds at start belongs to
    a run of an earlier worker process (killed with -9), which the queue has given to another GPU."""
    try:
        queue = comfy.get_json("/queue")
        orphans = len(queue.get("queue_running") or []) + len(queue.get("queue_pending") or [])
        if orphans:
            comfy.session.post(comfy.base + "/queue", json={"clear": True}, timeout=10).raise_for_status()
            comfy.interrupt(None)
            print(f"gpuworker: stopped {orphans} prompt(s) an earlier worker process left on ComfyUI", flush=True)
    except Exception as exc:
        log.warning("could not check ComfyUI for runs left behind: %s", exc)


def runpod_catalog(config) -> dict:
    """A RunPod endpoint has no /object_info: the operator saves the image's once (docs/providers.md)."""
    try:
        with open(config.object_info, encoding="utf-8") as fh:
            object_info = json.load(fh)
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"gpuworker: cannot read the RunPod endpoint's object_info from {config.object_info}: {exc}"
        ) from None
    return {"object_info": object_info, "comfyui_version": "", "system_stats": {"system": {}, "devices": []}}
