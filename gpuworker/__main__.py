"""`python -m gpuworker`: one RQ worker for one ComfyUI (see docs/worker-protocol.md).

    python -m gpuworker --redis redis://app-host:6379/0 --app https://workshop.example.org \
        --token T --comfyui http://127.0.0.1:8188

Every option can also come from the environment (GPUWORKER_REDIS, GPUWORKER_APP, …) or from
a TOML config file (--config), which is where the provider is chosen.
"""
import argparse
import logging
import os
import posixpath
import re
import signal
import socket
import sys
import threading
import time
import tomllib
import uuid

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from .app import AppClient
from .comfy import ComfyClient

log = logging.getLogger("gpuworker")
HEARTBEAT_SECONDS = 10
CATALOG_EVERY = 6  # heartbeats between checks whether ComfyUI's catalog changed
PRIVATE_STATS = ("argv",)


def parse(argv=None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m gpuworker", description="Run workshop jobs on one ComfyUI.")
    parser.add_argument("--config", help="TOML file with any of these options (provider, comfyui, headers …)")
    parser.add_argument("--redis", default=env("GPUWORKER_REDIS"), help="Redis URL of the app host (RQ)")
    parser.add_argument("--app", default=env("GPUWORKER_APP"), help="Base URL of the workshop app")
    parser.add_argument("--token", default=env("GPUWORKER_TOKEN"), help="This worker's token (manage.py worker_token)")
    parser.add_argument("--comfyui", default=env("GPUWORKER_COMFYUI"), help="ComfyUI base URL")
    parser.add_argument("--queue", default=env("GPUWORKER_QUEUE", "gpu"))
    parser.add_argument("--name", default=env("GPUWORKER_NAME"), help="Worker name (default: host-port)")
    parser.add_argument("--provider", default=env("GPUWORKER_PROVIDER", "comfyui"), choices=["comfyui", "runpod"])
    parser.add_argument("--header", action="append", default=[], help="'Name: value' sent to ComfyUI (serverless auth)")
    parser.add_argument("--app-retry", type=float, default=float(env("GPUWORKER_APP_RETRY", "300")),
                        help="Seconds to keep retrying the app while it restarts")
    parser.add_argument("--comfyui-wait", type=float, default=300.0, help="Seconds to wait for ComfyUI to answer at start")
    parser.add_argument("--burst", action="store_true", help="Exit when the queue is empty")
    args = parser.parse_args(argv)
    if args.config:
        with open(args.config, "rb") as fh:
            config = tomllib.load(fh)
        for key, value in config.items():
            key = key.replace("-", "_")
            if key == "headers" and isinstance(value, dict):
                args.header += [f"{k}: {v}" for k, v in value.items()]
            elif getattr(args, key, None) in (None, "", parser.get_default(key)):
                setattr(args, key, value)
    missing = [name for name in ("redis", "app", "token", "comfyui") if not getattr(args, name)]
    if missing:
        parser.error("missing " + ", ".join("--" + m for m in missing))
    if args.provider == "runpod":
        parser.error("provider 'runpod' is not supported yet; use 'comfyui' (a ComfyUI HTTP API, local or serverless)")
    args.name = args.name or f"{socket.gethostname()}-{args.comfyui.rstrip('/').rsplit(':', 1)[-1]}"
    return args


def headers_of(args) -> dict:
    headers = {}
    for line in args.header:
        name, sep, value = line.partition(":")
        if not sep:
            raise SystemExit(f"--header must look like 'Name: value', got {line!r}")
        headers[name.strip()] = value.strip()
    return headers


def wait_for_comfyui(comfy: ComfyClient, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return comfy.system_stats()
        except Exception as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"ComfyUI at {comfy.base} did not answer within {seconds:.0f} s: {exc}")
            print(f"gpuworker: waiting for ComfyUI at {comfy.base} ({exc.__class__.__name__})", flush=True)
            time.sleep(2)


def catalog_of(comfy: ComfyClient, stats: dict) -> dict:
    system = {k: v for k, v in (stats.get("system") or {}).items() if k not in PRIVATE_STATS}
    catalog = {
        "object_info": comfy.object_info(),
        "comfyui_version": system.get("comfyui_version", ""),
        "system_stats": {**stats, "system": system},
    }
    for key, path in (("embeddings", "/embeddings"), ("models", "/models"), ("extensions", "/extensions"),
                      ("workflow_templates", "/workflow_templates")):
        try:
            catalog[key] = comfy.get_json(path)
        except Exception as exc:  # Older or trimmed ComfyUIs may lack a route: publish the rest.
            log.warning("catalog: %s unavailable (%s)", path, exc)
    model_files = {}
    for folder in catalog.get("models") or []:
        try:
            model_files[folder] = comfy.get_json(f"/models/{folder}")
        except Exception:
            continue
    catalog["model_files"] = model_files
    return catalog


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
    files = extension_files(comfy, catalog.get("extensions") or [])
    files.update(template_files(comfy, catalog.get("workflow_templates")))
    for path, content in files.items():
        app.publish_file(path, content)
    app.publish_catalog(catalog)


def catalog_fingerprint(catalog: dict) -> str:
    import hashlib
    import json

    stable = {k: v for k, v in catalog.items() if k != "system_stats"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()


def heartbeat_loop(app: AppClient, worker: Worker, comfy: ComfyClient, published: str, stop: threading.Event) -> None:
    beats = 0
    while not stop.wait(HEARTBEAT_SECONDS):
        beats += 1
        try:
            state = worker.get_state()
            app.heartbeat("busy" if state == "busy" else "idle", worker.get_current_job_id())
            if beats % CATALOG_EVERY == 0 and state != "busy":
                # New models or custom nodes on the GPU host show up in the UIs without a restart.
                catalog = catalog_of(comfy, comfy.system_stats())
                fingerprint = catalog_fingerprint(catalog)
                if fingerprint != published:
                    publish_catalog(app, comfy, catalog)
                    published = fingerprint
                    log.info("catalog changed; published again")
        except Exception as exc:  # The app or ComfyUI may be restarting; the next beat tries again.
            log.warning("heartbeat failed: %s", exc)


def main(argv=None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    headers = headers_of(args)
    # The forked work horse reads its settings from here; the token never travels through Redis.
    os.environ.update(
        GPUWORKER_APP=args.app,
        GPUWORKER_TOKEN=args.token,
        GPUWORKER_COMFYUI=args.comfyui,
        GPUWORKER_REDIS=args.redis,
        GPUWORKER_APP_RETRY=str(args.app_retry),
        GPUWORKER_HEADERS="\n".join(args.header),
    )
    comfy = ComfyClient(args.comfyui, headers)
    app = AppClient(args.app, args.token, args.app_retry)
    stats = wait_for_comfyui(comfy, args.comfyui_wait)
    version = (stats.get("system") or {}).get("comfyui_version", "")
    # Catalog first: once registered the worker gets jobs, and prompts are checked against it.
    catalog = catalog_of(comfy, stats)
    publish_catalog(app, comfy, catalog)
    app.register(name=args.name, provider=args.provider, comfyui_url=args.comfyui, version=version, capacity=1)

    connection = redis.Redis.from_url(args.redis)
    queue = Queue(args.queue, connection=connection, serializer=JSONSerializer)
    # RQ needs a unique name per live process; a restart must not collide with the old entry.
    worker = Worker([queue], connection=connection, serializer=JSONSerializer, name=f"{args.name}.{uuid.uuid4().hex[:6]}")
    stop = threading.Event()
    threading.Thread(
        target=heartbeat_loop, args=(app, worker, comfy, catalog_fingerprint(catalog), stop), daemon=True
    ).start()
    print(f"gpuworker {args.name}: ComfyUI {version or '?'} at {args.comfyui}, queue '{args.queue}', app {args.app}", flush=True)
    try:
        worker.work(burst=args.burst, logging_level="INFO", with_scheduler=False)
    finally:
        stop.set()
        try:
            app.retry_seconds = 5
            app.heartbeat("offline")
        except Exception:
            pass
        print(f"gpuworker {args.name}: stopped", flush=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
