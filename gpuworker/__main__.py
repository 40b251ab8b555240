"""`python -m gpuworker`: one RQ worker for one ComfyUI (see docs/worker-protocol.md).

    GPUWORKER_TOKEN=T python -m gpuworker --redis redis://app-host:6379/0 \
        --app https://workshop.example.org --comfyui http://127.0.0.1:8188

The token comes from GPUWORKER_TOKEN or --token-file, never from the command line.

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
import requests
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from . import tasks
from .app import AppClient, TokenRevoked
from .comfy import ComfyClient

log = logging.getLogger("gpuworker")
HEARTBEAT_SECONDS = 2.5  # until the app's register answer says otherwise
CATALOG_SECONDS = 60  # between checks, while idle, whether ComfyUI's catalog changed
PRIVATE_STATS = ("argv",)


def parse(argv=None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m gpuworker", description="Run workshop jobs on one ComfyUI.")
    parser.add_argument("--config", help="TOML file with any of these options (provider, comfyui, headers …)")
    parser.add_argument("--redis", default=env("GPUWORKER_REDIS"), help="Redis URL of the app host (RQ)")
    parser.add_argument("--app", default=env("GPUWORKER_APP"), help="Base URL of the workshop app")
    # Never on the command line, where `ps` shows it to every user of the GPU host.
    parser.add_argument("--token-file", default=env("GPUWORKER_TOKEN_FILE"),
                        help="File holding this worker's token (manage.py worker_token); or set GPUWORKER_TOKEN")
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
    args.token = getattr(args, "token", None) or env("GPUWORKER_TOKEN")
    if args.token_file:
        try:
            with open(args.token_file) as fh:
                args.token = fh.read().strip()
        except OSError as exc:
            parser.error(f"cannot read --token-file: {exc}")
    missing = [name for name in ("redis", "app", "comfyui") if not getattr(args, name)]
    if not args.token:
        missing.append("token-file (or GPUWORKER_TOKEN)")
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
                      ("workflow_templates", "/workflow_templates"), ("node_replacements", "/node_replacements"),
                      ("global_subgraphs", "/global_subgraphs")):
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
    subgraphs = catalog.get("global_subgraphs")
    if isinstance(subgraphs, dict):  # each with its data, so the app can answer /global_subgraphs/{id}
        for key in list(subgraphs)[:200]:
            try:
                subgraphs[key] = comfy.get_json(f"/global_subgraphs/{key}") or subgraphs[key]
            except Exception:
                continue
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


def vram_free(stats: dict) -> int | None:
    devices = stats.get("devices") or []
    values = [d.get("vram_free") for d in devices if isinstance(d, dict) and isinstance(d.get("vram_free"), int)]
    return max(values) if values else None


def gpu_info(stats: dict) -> dict:
    """The first GPU's name and memory, as ComfyUI's system_stats reports them (for the console)."""
    devices = [d for d in stats.get("devices") or [] if isinstance(d, dict)]
    gpus = [d for d in devices if d.get("type") != "cpu"] or devices
    if not gpus:
        return {}
    info = {"gpu_name": str(gpus[0].get("name", ""))[:200]}
    if isinstance(gpus[0].get("vram_total"), int):
        info["vram_total"] = gpus[0]["vram_total"]
    return info


LEASE_KEY = "workshop:lease:{}_{}"


def heartbeat_loop(app: AppClient, comfy: ComfyClient, every: float, published: str, stop: threading.Event,
                   lease_redis=None, lease_seconds: float = 10.0) -> None:
    """Every `every` seconds: is ComfyUI answering, and which run is this process doing? The
    answer renews the run's lease, or says to stop it (cancelled, or no longer ours). The lease
    is also renewed in Redis, so a restarting app does not take the run away."""
    last_catalog = time.monotonic()
    failures = 0
    while not stop.wait(every):
        run = tasks.ACTIVE
        if run is not None and lease_redis is not None:
            try:
                lease_redis.set(LEASE_KEY.format(run.job_id, run.run_no), "1", ex=max(int(lease_seconds), 1))
            except redis.RedisError:
                pass  # the app's lease still holds
        try:
            try:
                stats = comfy.get_json("/system_stats")
                failures = 0
            except requests.ConnectionError:
                stats, failures = {}, failures + 2  # nothing listens: down at once
            except Exception:
                stats, failures = {}, failures + 1  # slow under load: twice in a row to count
            status = "comfyui_unreachable" if failures >= 2 else ("busy" if run else "idle")
            answer = app.heartbeat(status, run.job_id if run else None, run.run_no if run else None,
                                   vram_free=vram_free(stats))
            if run is not None:
                run.heard(answer)
            if status == "idle" and time.monotonic() - last_catalog > CATALOG_SECONDS:
                # New models or custom nodes on the GPU host show up in the UIs without a restart.
                last_catalog = time.monotonic()
                catalog = catalog_of(comfy, stats)
                fingerprint = catalog_fingerprint(catalog)
                if fingerprint != published:
                    publish_catalog(app, comfy, catalog)
                    published = fingerprint
                    log.info("catalog changed; published again")
        except TokenRevoked:
            tasks.revoked()
            return
        except Exception as exc:  # The app or ComfyUI may be restarting; the next beat tries again.
            log.warning("heartbeat failed: %s", exc)


class GpuWorker(SimpleWorker):
    """RQ's worker without a fork: the job runs in this process, so killing it (kill -9 or
    not) has one outcome, and the heartbeat thread beside the job proves the job is alive."""

    def handle_warm_shutdown_request(self):
        super().handle_warm_shutdown_request()
        # A job the worker is doing goes back to the queue at the front, stopped on ComfyUI.
        tasks.SHUTDOWN.set()


def wait_for_redis(connection, stop: threading.Event) -> None:
    delay = 0.5
    while not stop.is_set():
        try:
            connection.ping()
            return
        except redis.RedisError as exc:
            print(f"gpuworker: Redis unavailable ({exc.__class__.__name__}); retrying in {delay:.1f} s", flush=True)
            stop.wait(delay)
            delay = min(delay * 2, 5.0)


def work(args, queue_name: str, stop: threading.Event) -> None:
    """RQ's work loop, started again whenever it quits without being asked to (Redis went away
    under it, mid-job or between jobs): Redis is disposable."""
    connection = redis.Redis.from_url(args.redis, socket_timeout=30, socket_connect_timeout=5, health_check_interval=15)
    pause = 1.0
    while not stop.is_set():
        wait_for_redis(connection, stop)
        queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
        # RQ needs a unique name per live process; a restart must not collide with the old entry.
        worker = GpuWorker([queue], connection=connection, serializer=JSONSerializer,
                           name=f"{args.name}.{uuid.uuid4().hex[:6]}")
        started = time.monotonic()
        worker.work(burst=args.burst, logging_level="INFO", with_scheduler=False)
        if worker._stop_requested or tasks.SHUTDOWN.is_set() or args.burst:
            return
        pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 30.0)
        print(f"gpuworker: RQ's loop quit (Redis lost?); starting it again in {pause:g} s", flush=True)
        stop.wait(pause)


def main(argv=None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    headers = headers_of(args)
    # The job function reads its settings from here; the token never travels through Redis.
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
    clear_orphans(comfy)
    try:
        # Catalog first: once registered the worker gets jobs, and prompts are checked against it.
        catalog = catalog_of(comfy, stats)
        publish_catalog(app, comfy, catalog)
        registered = app.register(name=args.name, provider=args.provider, comfyui_url=args.comfyui, version=version,
                                  capacity=1, vram_free=vram_free(stats), **gpu_info(stats))
    except TokenRevoked:
        print("gpuworker: the app does not know this worker's token. Create one with "
              "`manage.py worker_token NAME` and pass it in GPUWORKER_TOKEN or --token-file.", file=sys.stderr, flush=True)
        return 3
    queue_name = registered.get("queue") or args.queue
    every = float(registered.get("heartbeat_seconds") or HEARTBEAT_SECONDS)

    stop = threading.Event()
    # Its own client: requests sessions are not shared between threads; short retries, so a
    # beat that fails is simply the next one's job.
    beat_app = AppClient(args.app, args.token, retry_seconds=min(every, 5.0), timeout=max(every, 2.0))
    beat_comfy = ComfyClient(args.comfyui, headers, timeout=3.0)
    lease_redis = redis.Redis.from_url(args.redis, socket_timeout=2, socket_connect_timeout=2)
    beats = threading.Thread(
        target=heartbeat_loop,
        args=(beat_app, beat_comfy, every, catalog_fingerprint(catalog), stop, lease_redis,
              float(registered.get("lease_seconds") or 10)),
        daemon=True,
    )
    beats.start()
    print(f"gpuworker {args.name}: ComfyUI {version or '?'} at {args.comfyui}, queue '{queue_name}', "
          f"app {args.app}, heartbeat every {every:g} s", flush=True)
    try:
        work(args, queue_name, stop)
    finally:
        stop.set()
        beats.join(timeout=every + 6)
        if not tasks.REVOKED.is_set():
            try:
                app.retry_seconds = 5
                app.heartbeat("offline")
            except Exception:
                pass
        print(f"gpuworker {args.name}: stopped", flush=True)
    return 3 if tasks.REVOKED.is_set() else 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
