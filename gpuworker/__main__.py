"""`python -m gpuworker`: one RQ worker for one ComfyUI (docs/worker-protocol.md).

    python -m gpuworker --redis redis://:pw@app-host:6379/0 --app https://workshop.example.org \\
        --token T --comfyui http://127.0.0.1:8188

Settings come from the command line, else the environment (GPUWORKER_REDIS, GPUWORKER_APP,
GPUWORKER_TOKEN, GPUWORKER_COMFYUI, GPUWORKER_QUEUE, GPUWORKER_NAME, GPUWORKER_PROVIDER,
GPUWORKER_APP_RETRY, GPUWORKER_COMFYUI_WAIT, GPUWORKER_HEADERS as a JSON object, GPUWORKER_CONFIG),
else a config file (--config, TOML or JSON), where the provider is chosen:

    provider = "comfyui"                  # a ComfyUI HTTP API: local, or serverless (Modal, Verda …)
    [comfyui]
    url = "https://example--comfyui.modal.run"
    headers = { Authorization = "Bearer …" }

    provider = "runpod"                   # RunPod serverless: not supported yet
    [runpod]
    endpoint_id = "abc123"
    api_key = "…"

The config file may also hold any long option by name (`redis`, `app`, `token`, `comfyui` as
a URL, `queue`, `name`, `app_retry`, `[headers]` …).
"""
import argparse
import hashlib
import json
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
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import redis
import requests
from rq import Queue, Worker
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from .app import AppClient, AppError
from .comfy import ComfyClient

log = logging.getLogger("gpuworker")

HEARTBEAT_SECONDS = 10
CATALOG_EVERY = 6  # heartbeats between checks whether ComfyUI's catalog changed (while idle)
PROVIDERS = ("comfyui", "runpod")
ENV = {
    "redis": "GPUWORKER_REDIS", "app": "GPUWORKER_APP", "token": "GPUWORKER_TOKEN", "comfyui": "GPUWORKER_COMFYUI",
    "queue": "GPUWORKER_QUEUE", "name": "GPUWORKER_NAME", "provider": "GPUWORKER_PROVIDER",
    "app_retry": "GPUWORKER_APP_RETRY", "comfyui_wait": "GPUWORKER_COMFYUI_WAIT",
}
DEFAULTS = {"queue": "gpu", "provider": "comfyui", "app_retry": 300.0, "comfyui_wait": 300.0}
CONFIG_KEYS = {*ENV, "headers", "burst", "runpod"}
REQUIRED = ("redis", "app", "token", "comfyui")


@dataclass
class Options:
    redis: str
    app: str
    token: str
    comfyui: str
    name: str
    queue: str = "gpu"
    provider: str = "comfyui"
    headers: dict = field(default_factory=dict)
    app_retry: float = 300.0
    comfyui_wait: float = 300.0
    burst: bool = False


class ConfigError(SystemExit):
    """A setting that cannot work: the message is all the operator needs to fix it."""

    def __init__(self, message: str):
        super().__init__(f"gpuworker: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpuworker",
        description="Run workshop jobs on one ComfyUI (an RQ worker; needs no Django).",
        epilog="Each option may also come from GPUWORKER_<OPTION> in the environment or from --config.",
    )
    parser.add_argument("--redis", help="Redis URL of the app host (the RQ queue and cancel requests)")
    parser.add_argument("--app", help="base URL of the workshop app")
    parser.add_argument("--token", help="this worker's token (manage.py worker_token NAME on the app host)")
    parser.add_argument("--comfyui", help="ComfyUI base URL, e.g. http://127.0.0.1:8188")
    parser.add_argument("--queue", help="RQ queue to take jobs from (default: gpu)")
    parser.add_argument("--name", help="worker name shown in the admin (default: <hostname>-<ComfyUI port>)")
    parser.add_argument("--provider", choices=PROVIDERS, help="comfyui (default) or runpod")
    parser.add_argument("--config", help="TOML or JSON file with any of these settings and the provider's")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="header sent with every ComfyUI request, e.g. serverless auth (repeatable)")
    parser.add_argument("--app-retry", type=float, metavar="SECONDS",
                        help="how long calls to the app are retried while it restarts (default: 300)")
    parser.add_argument("--comfyui-wait", type=float, metavar="SECONDS",
                        help="how long to wait for ComfyUI to answer at start (default: 300)")
    parser.add_argument("--burst", action="store_true", default=None, help="exit once the queue is empty")
    return parser


def load_config(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        if path.endswith(".json") or raw.lstrip()[:1] == b"{":
            config = json.loads(raw)
        else:
            config = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"config file {path} is not valid TOML or JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    return config


def settings_of_config(config: dict, path: str) -> dict:
    """The config file's settings under the option names (headers merged, provider tables opened)."""
    out: dict = {"headers": {}}
    for key, value in config.items():
        name = key.replace("-", "_")
        if name not in CONFIG_KEYS:
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(CONFIG_KEYS))})")
        if name == "comfyui" and isinstance(value, dict):
            unknown = set(value) - {"url", "headers"}
            if unknown:
                raise ConfigError(f"{path}: [comfyui] knows url and headers, not {', '.join(sorted(unknown))}")
            if "url" in value:
                out["comfyui"] = value["url"]
            out["headers"].update(_header_table(value.get("headers") or {}, f"{path}: [comfyui] headers"))
        elif name == "headers":
            out["headers"].update(_header_table(value, f"{path}: headers"))
        elif name == "runpod":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: runpod must be a table with endpoint_id and api_key")
            out["runpod"] = value
        else:
            out[name] = value
    return out


def _header_table(value, where: str) -> dict:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where} must be a table of header names to string values")
    return dict(value)


def _header_lines(lines: list[str]) -> dict:
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--header must look like 'Name: value', got {line!r}")
        headers[name.strip()] = value.strip()
    return headers


def parse(argv=None, environ=None) -> Options:
    """The settings: command line, else environment, else config file, else defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    config_path = args.config or env.get("GPUWORKER_CONFIG")
    config = settings_of_config(load_config(config_path), config_path) if config_path else {"headers": {}}

    def setting(name):
        for value in (getattr(args, name, None), env.get(ENV[name]) if name in ENV else None, config.get(name)):
            if value not in (None, ""):
                return value
        return DEFAULTS.get(name)

    values = {name: setting(name) for name in (*ENV, "burst")}
    provider = str(values["provider"])
    if provider not in PROVIDERS:
        raise ConfigError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    if provider == "runpod":
        runpod = config.get("runpod") or {}
        endpoint = runpod.get("endpoint_id") or env.get("GPUWORKER_RUNPOD_ENDPOINT_ID")
        api_key = runpod.get("api_key") or env.get("GPUWORKER_RUNPOD_API_KEY")
        shape = "missing [runpod] endpoint_id and api_key; " if not (endpoint and api_key) else f"endpoint {endpoint}: "
        raise ConfigError(
            f"provider 'runpod' is not supported yet ({shape}the config shape is reserved). Use provider "
            "'comfyui' with the URL of a ComfyUI HTTP API (local, or serverless such as Modal or Verda, "
            "with its auth headers)."
        )
    missing = [name for name in REQUIRED if not values[name]]
    if missing:
        parser.error("missing " + ", ".join("--" + m for m in missing))
    headers = dict(config["headers"])
    if env.get("GPUWORKER_HEADERS"):
        try:
            headers.update(_header_table(json.loads(env["GPUWORKER_HEADERS"]), "GPUWORKER_HEADERS"))
        except ValueError:
            raise ConfigError("GPUWORKER_HEADERS must be a JSON object of header names to values") from None
    headers.update(_header_lines(args.header))
    try:
        app_retry, comfyui_wait = float(values["app_retry"]), float(values["comfyui_wait"])
    except (TypeError, ValueError):
        raise ConfigError("app_retry and comfyui_wait are numbers of seconds") from None
    comfyui = str(values["comfyui"]).rstrip("/")
    return Options(
        redis=str(values["redis"]),
        app=str(values["app"]).rstrip("/"),
        token=str(values["token"]),
        comfyui=comfyui,
        name=str(values["name"] or default_name(comfyui)),
        queue=str(values["queue"]),
        provider=provider,
        headers=headers,
        app_retry=app_retry,
        comfyui_wait=comfyui_wait,
        burst=bool(values["burst"]),
    )


def default_name(comfyui_url: str) -> str:
    parts = urlsplit(comfyui_url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    return f"{socket.gethostname()}-{port}"


def redacted(url: str) -> str:
    """A URL fit for a log: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def export_settings(options: Options) -> None:
    """For the forked work horse's run_job: the token never travels through Redis."""
    os.environ.update(
        GPUWORKER_APP=options.app,
        GPUWORKER_TOKEN=options.token,
        GPUWORKER_COMFYUI=options.comfyui,
        GPUWORKER_NAME=options.name,
        GPUWORKER_REDIS=options.redis,
        GPUWORKER_QUEUE=options.queue,
        GPUWORKER_APP_RETRY=str(options.app_retry),
        GPUWORKER_HEADERS=json.dumps(options.headers),
    )


# --- start-up ------------------------------------------------------------------------------


def wait_for_comfyui(comfy: ComfyClient, seconds: float) -> dict:
    """system_stats, once ComfyUI answers (it takes ~10 s to start; a serverless one longer)."""
    began = time.monotonic()
    delay = 1.0
    while True:
        try:
            return comfy.system_stats(timeout=10)
        except (requests.RequestException, ValueError) as exc:
            waited = time.monotonic() - began
            if waited >= seconds:
                raise ConfigError(f"ComfyUI at {comfy.base} did not answer within {seconds:g} s ({exc})") from None
            print(f"gpuworker: waiting for ComfyUI at {comfy.base} ({type(exc).__name__}; "
                  f"{waited:.0f} of {seconds:.0f} s)", flush=True)
            time.sleep(min(delay, seconds - waited))
            delay = min(delay * 1.5, 5.0)


def public_stats(stats: dict) -> dict:
    """system_stats without what describes the GPU host itself (argv, paths)."""
    system = {
        k: v for k, v in (stats.get("system") or {}).items()
        if k != "argv" and "path" not in k and not (isinstance(v, str) and v.startswith("/"))
    }
    return {**stats, "system": system}


def catalog_of(comfy: ComfyClient, stats: dict) -> dict:
    catalog = {
        "object_info": comfy.object_info(),
        "comfyui_version": (stats.get("system") or {}).get("comfyui_version", ""),
        "system_stats": public_stats(stats),
    }
    for key, path in (("embeddings", "/embeddings"), ("models", "/models"), ("extensions", "/extensions"),
                      ("workflow_templates", "/workflow_templates")):
        try:
            catalog[key] = comfy.get_json(path)
        except (requests.RequestException, ValueError) as exc:
            # An older or trimmed ComfyUI (or a serverless wrapper) may lack a route: publish the rest.
            log.warning("catalog: %s unavailable (%s)", path, exc)
    model_files = {}
    for folder in catalog.get("models") or []:
        try:
            model_files[folder] = comfy.get_json(f"/models/{folder}")
        except (requests.RequestException, ValueError):
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
        except requests.RequestException as exc:
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
            except requests.RequestException as exc:
                log.warning("template %s unavailable (%s)", path, exc)
    return files


def publish_catalog(app: AppClient, comfy: ComfyClient, catalog: dict) -> None:
    files = extension_files(comfy, catalog.get("extensions") or [])
    files.update(template_files(comfy, catalog.get("workflow_templates")))
    for path, content in files.items():
        app.publish_file(path, content)
    app.publish_catalog(catalog)


def catalog_fingerprint(catalog: dict) -> str:
    stable = {k: v for k, v in catalog.items() if k != "system_stats"}  # free memory changes all the time
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()


# --- running ---------------------------------------------------------------------------------


class GpuWorker(Worker):
    """RQ's forking worker, which on SIGTERM / Ctrl-C gives its running job back at once.

    RQ's own warm shutdown would wait for the job (up to its timeout, half an hour) and be
    killed by the container runtime long before, leaving ComfyUI busy with an orphan prompt.
    Here the work horse is killed, ComfyUI interrupted, and the app told the worker is offline,
    which puts the job back at the front of the queue.
    """

    comfy: ComfyClient | None = None

    def request_stop(self, signum, frame):
        if self.get_state() == WorkerStatus.BUSY and self.horse_pid:
            job = None
            try:
                job = self.get_current_job()
            except Exception:
                pass
            prompt_id = (job.meta or {}).get("comfyui_prompt_id") if job is not None else None
            print(f"gpuworker {self.name}: stopping; job {job.id if job else '?'} goes back to the queue", flush=True)
            self.kill_horse()
            if self.comfy is not None and prompt_id:
                for action in (self.comfy.delete_queued, self.comfy.interrupt):
                    try:
                        action(prompt_id)
                    except Exception as exc:
                        log.warning("could not stop prompt %s on ComfyUI: %s", prompt_id, exc)
        super().request_stop(signum, frame)


def heartbeat_loop(options: Options, worker: Worker, published: str, stop: threading.Event) -> None:
    """Every 10 s tell the app this worker lives; while idle, republish a changed catalog.

    Its own clients (nothing shared with the main thread), retried only briefly: a beat that
    cannot get through is replaced by the next, so beats never pile up while the app restarts.
    """
    app = AppClient(options.app, options.token, retry_seconds=HEARTBEAT_SECONDS - 2, timeout=HEARTBEAT_SECONDS)
    comfy = ComfyClient(options.comfyui, options.headers)
    beats = 0
    while not stop.wait(HEARTBEAT_SECONDS):
        beats += 1
        try:
            busy = worker.get_state() == WorkerStatus.BUSY
            app.heartbeat("busy" if busy else "idle", worker.get_current_job_id() if busy else None)
            if beats % CATALOG_EVERY == 0 and not busy:
                # New models or custom nodes on the GPU host reach the UIs without a restart.
                catalog = catalog_of(comfy, comfy.system_stats())
                fingerprint = catalog_fingerprint(catalog)
                if fingerprint != published:
                    publish_catalog(app, comfy, catalog)
                    published = fingerprint
                    log.info("ComfyUI's catalog changed; published again")
        except Exception as exc:  # the app or ComfyUI may be restarting: the next beat tries again
            log.warning("heartbeat failed: %s", exc)


def main(argv=None) -> int:
    options = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Until RQ installs its own handlers, SIGTERM ends start-up through the `finally` below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    export_settings(options)
    comfy = ComfyClient(options.comfyui, options.headers)
    app = AppClient(options.app, options.token, options.app_retry)
    worker = stop = beats = None
    try:
        stats = wait_for_comfyui(comfy, options.comfyui_wait)
        version = (stats.get("system") or {}).get("comfyui_version", "")
        try:
            # The catalog before registering: from then on the worker gets jobs, and prompts are
            # checked against the catalog.
            catalog = catalog_of(comfy, stats)
            publish_catalog(app, comfy, catalog)
            app.register(name=options.name, provider=options.provider, comfyui_url=options.comfyui,
                         version=version, capacity=1)
        except AppError as exc:
            hint = " (is the token right? manage.py worker_token NAME makes one)" if exc.status in (401, 403) else ""
            raise ConfigError(f"the app at {options.app} refused this worker: {exc}{hint}") from None
        except ConnectionError as exc:
            raise ConfigError(f"the app at {options.app} did not answer: {exc}") from None
        except (requests.RequestException, ValueError) as exc:
            raise ConfigError(f"ComfyUI at {options.comfyui} failed while its catalog was read: {exc}") from None

        connection = redis.Redis.from_url(options.redis)
        queue = Queue(options.queue, connection=connection, serializer=JSONSerializer)
        # RQ needs a unique name per live process: a restart must not collide with the old entry.
        worker = GpuWorker([queue], connection=connection, serializer=JSONSerializer,
                           name=f"{options.name}.{uuid.uuid4().hex[:6]}")
        worker.comfy = comfy
        stop = threading.Event()
        beats = threading.Thread(target=heartbeat_loop, args=(options, worker, catalog_fingerprint(catalog), stop),
                                 name="heartbeat", daemon=True)
        beats.start()
        print(f"gpuworker {options.name}: ready. ComfyUI {version or '?'} at {options.comfyui} "
              f"(provider {options.provider}), queue '{options.queue}' on {redacted(options.redis)}, "
              f"app {options.app}", flush=True)
        worker.work(burst=options.burst, logging_level="INFO", with_scheduler=False)
    finally:
        if stop is not None:
            stop.set()
            beats.join(HEARTBEAT_SECONDS * 2)  # a late "busy" beat must not land after "offline"
            try:
                app.retry_seconds = 5
                app.heartbeat("offline")
            except Exception as exc:
                log.warning("could not tell the app this worker stops: %s", exc)
            print(f"gpuworker {options.name}: stopped", flush=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
