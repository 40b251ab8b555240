"""`python -m gpuworker`: one RQ worker for one ComfyUI (see docs/worker-protocol.md).

    GPUWORKER_TOKEN=T python -m gpuworker --redis redis://app-host:6379/0 \
        --app https://workshop.example.org --comfyui http://127.0.0.1:8188

The token comes from GPUWORKER_TOKEN or --token-file, never from the command line.

Every option can also come from the environment (GPUWORKER_REDIS, GPUWORKER_APP, …) or from
a TOML config file (--config), which is where the provider is chosen.
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
import uuid

import redis
import requests
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from . import providers, tasks
from .app import AppClient, AppError, TokenRevoked
from .comfy import ColdStartTimeout, ComfyAuthError, ComfyClient
from .models import ModelCache, without_participant_models
from .runpod import RunpodClient

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
    parser.add_argument(
        "--token-file",
        default=env("GPUWORKER_TOKEN_FILE"),
        help="File holding this worker's token (manage.py worker_token); or set GPUWORKER_TOKEN",
    )
    parser.add_argument("--comfyui", default=env("GPUWORKER_COMFYUI"), help="ComfyUI base URL")
    parser.add_argument("--queue", default=env("GPUWORKER_QUEUE", "gpu"))
    parser.add_argument("--name", default=env("GPUWORKER_NAME"), help="Worker name (default: host-port)")
    parser.add_argument("--provider", default=env("GPUWORKER_PROVIDER", "comfyui"), choices=list(providers.PROVIDERS))
    parser.add_argument("--concurrency", type=int, default=None, help="Jobs in flight at once (default 1)")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' sent to ComfyUI (serverless auth)")
    parser.add_argument(
        "--app-retry",
        type=float,
        default=float(env("GPUWORKER_APP_RETRY", "300")),
        help="Seconds to keep retrying the app while it restarts",
    )
    parser.add_argument(
        "--comfyui-wait", type=float, default=300.0, help="Seconds to wait for ComfyUI to answer at start"
    )
    parser.add_argument(
        "--model-cache",
        default=env("GPUWORKER_MODEL_CACHE_DIR"),
        help="Folder of participants' own models that this host's ComfyUI reads ([models] cache_dir)",
    )
    parser.add_argument("--burst", action="store_true", help="Exit when the queue is empty")
    args = parser.parse_args(argv)
    config = providers.ProviderConfig()
    if args.config:
        try:
            config = providers.load(args.config)
        except providers.ConfigError as exc:
            parser.error(str(exc))
        for warning in config.warnings:
            print(f"gpuworker: warning: {warning}", file=sys.stderr, flush=True)
        for key, value in config.options.items():
            key = key.replace("-", "_")
            if key in ("header", "config"):
                parser.error(f"{args.config}: {key} belongs in [comfyui]")
            if not hasattr(args, key) and key != "token":
                parser.error(f"{args.config}: unknown key {key!r}")
            if getattr(args, key, None) in (None, "", parser.get_default(key)):
                setattr(args, key, value)
        if args.provider == parser.get_default("provider"):
            args.provider = config.provider
        if not args.comfyui:
            args.comfyui = config.url
        args.header = [f"{k}: {v}" for k, v in config.headers.items()] + args.header
        if args.app_retry == parser.get_default("app_retry"):
            args.app_retry = config.timeouts.app_retry
        if args.comfyui_wait == parser.get_default("comfyui_wait"):
            args.comfyui_wait = config.timeouts.start_wait
    config.provider = args.provider
    config.concurrency = args.concurrency or config.concurrency
    config.model_cache = args.model_cache or config.model_cache
    config.timeouts.app_retry, config.timeouts.start_wait = args.app_retry, args.comfyui_wait
    args.provider_config = config
    args.token = getattr(args, "token", None) or env("GPUWORKER_TOKEN")
    if args.token_file:
        try:
            with open(args.token_file) as fh:
                args.token = fh.read().strip()
        except OSError as exc:
            # The path is named only when it cannot be a token: a token given in place of its
            # file's path must not reach the log.
            looks_like_token = os.path.basename(args.token_file).startswith("wt_")
            where = "the path given" if looks_like_token else repr(args.token_file)
            hint = (
                (
                    " --token-file takes the path of a file that holds the token, not the token itself;"
                    " or put the token in GPUWORKER_TOKEN."
                )
                if looks_like_token
                else ""
            )
            parser.error(f"cannot read --token-file ({where}): {exc.strerror or exc.__class__.__name__}.{hint}")
    needed = ("redis", "app") if args.provider == "runpod" else ("redis", "app", "comfyui")
    missing = [name for name in needed if not getattr(args, name)]
    if not args.token:
        missing.append("token-file (or GPUWORKER_TOKEN)")
    if missing:
        parser.error("missing " + ", ".join("--" + m for m in missing))
    if args.provider == "runpod" and not config.endpoint:
        parser.error("provider 'runpod' needs a --config file with a [runpod] table (endpoint, api_key, object_info)")
    if args.provider == "runpod":
        args.comfyui = args.comfyui or config.endpoint
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
        except ComfyAuthError:
            raise
        except Exception as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"ComfyUI at {comfy.base} did not answer within {seconds:.0f} s: {exc}") from None
            print(f"gpuworker: waiting for ComfyUI at {comfy.base} ({exc.__class__.__name__})", flush=True)
            time.sleep(2)


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
    files.update(template_files(comfy, catalog.get("workflow_templates")))
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


class Gpu:
    """What the heartbeat asks of the GPU behind this worker. A local ComfyUI is probed at every
    beat; a serverless one only while it has a problem, because a probe would keep it warm (and
    billed) for ever."""

    def __init__(self, comfy: ComfyClient | None, serverless: bool = False, runpod=None, catalog: dict | None = None):
        self.comfy, self.serverless, self.runpod, self.fixed_catalog = comfy, serverless, runpod, catalog

    @property
    def probes_while_idle(self) -> bool:
        return not self.serverless and self.runpod is None

    def probe(self) -> dict:
        if self.runpod is not None:
            return {"runpod": self.runpod.health()}
        return self.comfy.get_json("/system_stats")

    def catalog(self, stats: dict) -> dict:
        if self.fixed_catalog is not None:
            return self.fixed_catalog
        return catalog_of(self.comfy, stats)

    def publish(self, app: AppClient, catalog: dict) -> None:
        if self.comfy is not None and self.fixed_catalog is None:
            publish_catalog(app, self.comfy, catalog)
        else:
            app.publish_catalog(catalog)


class KeepWarm:
    """The instructor's warm-up: `count` serverless GPUs started and kept from scaling to zero,
    by a request each every `every` seconds, each on a connection of its own so that a load
    balancer spreads them over as many replicas."""

    def __init__(self, base: str, headers: dict, every: float):
        self.base, self.headers, self.every = base, headers, every
        self.count, self.last, self.since, self.kept = 0, 0.0, None, 0.0

    def tick(self, count: int) -> float:
        """Called at each heartbeat; returns the GPU seconds kept warm since the last call."""
        now = time.monotonic()
        kept = self.count * (now - self.since) if self.since is not None and self.count else 0.0
        self.since, self.count = now, count
        if count and now - self.last >= self.every:
            self.last = now
            for _ in range(count):
                threading.Thread(target=self._probe, daemon=True, name="keep-warm").start()
        return round(kept, 3)

    def _probe(self):
        try:
            ComfyClient(self.base, self.headers, timeout=30.0).wait_warm(600.0, lambda s: None)
        except Exception as exc:
            log.warning("keep-warm request failed: %s", exc)


def heartbeat_loop(
    app: AppClient,
    gpu: Gpu,
    every: float,
    published: str,
    stop: threading.Event,
    lease_redis=None,
    lease_seconds: float = 10.0,
    problem_probe: float = 15.0,
    cache=None,
    warm: "KeepWarm | None" = None,
) -> None:
    """Every `every` seconds: is the GPU answering, and which runs is this process doing? The
    answer renews the runs' leases, or says to stop one (cancelled, or no longer ours). The
    leases are also renewed in Redis, so a restarting app does not take the runs away."""
    last_catalog = last_probe = time.monotonic()
    failures = 0
    unreachable = ""
    while not stop.wait(every):
        runs = list(tasks.ACTIVE.values())
        for run in runs:
            if lease_redis is not None:
                try:
                    lease_redis.set(LEASE_KEY.format(run.job_id, run.run_no), "1", ex=max(int(lease_seconds), 1))
                except redis.RedisError:
                    pass  # the app's lease still holds
        try:
            stats = {}
            if gpu.probes_while_idle or (tasks.PROBLEM["text"] and time.monotonic() - last_probe > problem_probe):
                last_probe = time.monotonic()
                try:
                    stats = gpu.probe()
                    failures = 0
                    if tasks.PROBLEM["text"]:
                        log.info("the GPU takes our credentials again: back to work")
                        tasks.PROBLEM["text"] = None
                except ComfyAuthError as exc:
                    tasks.PROBLEM["text"] = str(exc)
                except requests.ConnectionError as exc:
                    failures += 2  # nothing listens: down at once
                    unreachable = f"its ComfyUI does not answer ({exc.__class__.__name__})"
                except Exception as exc:
                    failures += 1  # slow under load: twice in a row to count
                    unreachable = f"its ComfyUI does not answer in time ({exc.__class__.__name__})"
            problem = tasks.PROBLEM["text"] or (unreachable if failures >= 2 else None)
            status = "comfyui_unreachable" if problem or failures >= 2 else ("busy" if runs else "idle")
            first = runs[0] if runs else None
            extra = {"models_seen": cache.deletions_seen()} if cache is not None else {}
            if warm is not None:
                extra["warm_seconds"] = warm.kept
                warm.kept = 0.0
            answer = app.heartbeat(
                status,
                first.job_id if first else None,
                first.run_no if first else None,
                runs=[{"job_id": r.job_id, "run": r.run_no} for r in runs],
                problem=problem or "",
                vram_free=vram_free(stats),
                **extra,
            )
            if warm is not None:
                # Slots busy with runs are warm anyway: only the idle ones need keeping.
                warm.kept += warm.tick(max(0, int(answer.get("warm") or 0) - len(runs)))
            if cache is not None and answer.get("models_gone"):
                cache.saw_deletions(answer["models_gone"])  # deleted by their participants: out of the cache
            for run in runs:
                run.heard((answer.get("runs") or {}).get(run.job_id, answer if run is first else {}))
            if status == "idle" and gpu.probes_while_idle and time.monotonic() - last_catalog > CATALOG_SECONDS:
                # New models or custom nodes on the GPU host show up in the UIs without a restart.
                last_catalog = time.monotonic()
                catalog = gpu.catalog(stats)
                fingerprint = catalog_fingerprint(catalog)
                if fingerprint != published:
                    gpu.publish(app, catalog)
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


class ThreadGpuWorker(GpuWorker):
    """One more slot of a worker with `concurrency` above 1: the same, in a thread. Signals
    reach the main thread's worker only, and RQ's alarm-based job timeout works only there."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self):
        pass


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


def work(args, queue_name: str, stop: threading.Event, worker_class=GpuWorker) -> None:
    """RQ's work loop, started again whenever it quits without being asked to (Redis went away
    under it, mid-job or between jobs): Redis is disposable."""
    connection = redis.Redis.from_url(args.redis, socket_timeout=30, socket_connect_timeout=5, health_check_interval=15)
    pause = 1.0
    while not stop.is_set():
        wait_for_redis(connection, stop)
        queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
        # RQ needs a unique name per live process; a restart must not collide with the old entry.
        worker = worker_class(
            [queue], connection=connection, serializer=JSONSerializer, name=f"{args.name}.{uuid.uuid4().hex[:6]}"
        )
        started = time.monotonic()
        try:
            worker.work(burst=args.burst, logging_level="INFO", with_scheduler=False)
        except redis.RedisError as exc:
            # RQ's loop quit, then its goodbye to Redis (register_death) found Redis gone: a
            # Redis restarting twice in a row did that, and the process exited. The goodbye
            # also skipped stopping its pubsub thread, which would retry Redis forever.
            print(f"gpuworker: RQ's loop ended with Redis away ({exc.__class__.__name__})", flush=True)
            if worker.pubsub_thread is not None:
                worker.pubsub_thread.stop()
                worker.pubsub_thread.join(timeout=5)
        if worker._stop_requested or tasks.SHUTDOWN.is_set() or args.burst or stop.is_set():
            return
        pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 30.0)
        print(f"gpuworker: RQ's loop quit (Redis lost?); starting it again in {pause:g} s", flush=True)
        stop.wait(pause)


def refused_at_start(app: AppClient, gpu: Gpu, args, exc: ComfyAuthError, every: float) -> dict:
    """The GPU refused our credentials at start: the console shows this worker unhealthy, with
    why, and no job is sent to it; it tries again every `problem_probe` seconds until it gets in."""
    print(f"gpuworker {args.name}: {exc}", file=sys.stderr, flush=True)
    app.register(
        name=args.name,
        provider=args.provider,
        comfyui_url=args.comfyui,
        capacity=args.provider_config.concurrency,
        status="comfyui_unreachable",
        problem=str(exc),
    )
    last_probe = time.monotonic()
    while True:
        time.sleep(every)
        if time.monotonic() - last_probe >= args.provider_config.timeouts.problem_probe:
            last_probe = time.monotonic()
            try:
                return gpu.probe()
            except ComfyAuthError as again:
                exc = again
            except Exception as other:  # not up yet: keep saying why
                log.warning("GPU probe failed: %s", other)
        app.heartbeat("comfyui_unreachable", problem=str(exc))


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


def main(argv=None) -> int:
    args = parse(argv)
    config = args.provider_config
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    headers = headers_of(args)
    timeouts = config.timeouts
    # The job function reads its settings from here; the token never travels through Redis.
    os.environ.update(
        GPUWORKER_APP=args.app,
        GPUWORKER_TOKEN=args.token,
        GPUWORKER_COMFYUI=args.comfyui,
        GPUWORKER_REDIS=args.redis,
        GPUWORKER_APP_RETRY=str(args.app_retry),
        GPUWORKER_HEADERS="\n".join(args.header),
        GPUWORKER_PROVIDER=args.provider,
        GPUWORKER_SERVERLESS="1" if config.serverless else "0",
        GPUWORKER_TIMEOUTS=json.dumps(timeouts.__dict__),
        GPUWORKER_RUNPOD_ENDPOINT=config.endpoint,
        GPUWORKER_RUNPOD_API_KEY=config.api_key,
        GPUWORKER_MODEL_CACHE=config.model_cache,
        GPUWORKER_MODEL_CACHE_BYTES=str(config.model_cache_bytes),
    )
    cache = None
    if config.model_cache:
        cache = ModelCache(config.model_cache, config.model_cache_bytes)
    app = AppClient(args.app, args.token, args.app_retry)
    if args.provider == "runpod":
        comfy = None
        gpu = Gpu(None, runpod=RunpodClient(config.endpoint, config.api_key, timeouts), catalog=runpod_catalog(config))
    else:
        comfy = ComfyClient(args.comfyui, headers, timeout=timeouts.request, connect_timeout=timeouts.connect)
        gpu = Gpu(comfy, serverless=config.serverless)
    every = HEARTBEAT_SECONDS
    try:
        try:
            if comfy is None:
                stats = gpu.probe()
            elif config.serverless:
                # Started once at boot, for the catalog; it may scale to zero again afterwards.
                comfy.wait_warm(
                    timeouts.cold_start,
                    lambda s: print(
                        f"gpuworker: waiting for the serverless GPU at {comfy.base} to start… {s:.0f} s", flush=True
                    ),
                )
                stats = comfy.system_stats()
            else:
                stats = wait_for_comfyui(comfy, args.comfyui_wait)
        except ComfyAuthError as exc:
            stats = refused_at_start(app, gpu, args, exc, every)
        except ColdStartTimeout as exc:
            raise SystemExit(f"gpuworker: {exc}") from None
        version = (stats.get("system") or {}).get("comfyui_version", "")
        if comfy is not None:
            clear_orphans(comfy)
        # Catalog first: once registered the worker gets jobs, and prompts are checked against it.
        catalog = gpu.catalog(stats)
        gpu.publish(app, catalog)
        info = {"price_per_hour": config.price_per_hour} if config.price_per_hour is not None else {}
        registered = app.register(
            name=args.name,
            provider=args.provider,
            comfyui_url=args.comfyui,
            version=version,
            capacity=config.concurrency,
            vram_free=vram_free(stats),
            carries_models=cache is not None,
            serverless=config.serverless,
            **gpu_info(stats),
            **info,
        )
    except TokenRevoked:
        print(
            "gpuworker: the app does not know this worker's token. Create one with "
            "`manage.py worker_token NAME` and pass it in GPUWORKER_TOKEN or --token-file.",
            file=sys.stderr,
            flush=True,
        )
        return 3
    except AppError as exc:
        # Final (4xx): retrying the same catalog would be refused again. The app's own words,
        # which never carry the token.
        print(
            f"gpuworker: the app refused this worker at start ({exc.status}): {exc.reason}. "
            'See docs/operator.md, "A worker that never comes online".',
            file=sys.stderr,
            flush=True,
        )
        return 4
    queue_name = registered.get("queue") or args.queue
    every = float(registered.get("heartbeat_seconds") or HEARTBEAT_SECONDS)

    stop = threading.Event()
    # Its own client: requests sessions are not shared between threads; short retries, so a
    # beat that fails is simply the next one's job.
    beat_app = AppClient(args.app, args.token, retry_seconds=min(every, 5.0), timeout=max(every, 2.0))
    beat_gpu = Gpu(
        ComfyClient(args.comfyui, headers, timeout=3.0, connect_timeout=3.0) if comfy else None,
        serverless=config.serverless,
        runpod=gpu.runpod,
        catalog=gpu.fixed_catalog,
    )
    lease_redis = redis.Redis.from_url(args.redis, socket_timeout=2, socket_connect_timeout=2)
    beats = threading.Thread(
        target=heartbeat_loop,
        args=(
            beat_app,
            beat_gpu,
            every,
            catalog_fingerprint(catalog),
            stop,
            lease_redis,
            float(registered.get("lease_seconds") or 10),
            timeouts.problem_probe,
            cache,
            KeepWarm(args.comfyui, headers, timeouts.keep_warm) if config.serverless else None,
        ),
        daemon=True,
    )
    beats.start()
    where = config.endpoint if args.provider == "runpod" else args.comfyui
    print(
        f"gpuworker {args.name}: {args.provider} {version or '?'} at {where}, queue '{queue_name}', "
        f"{config.concurrency} at a time, app {args.app}, heartbeat every {every:g} s",
        flush=True,
    )
    slots = [
        threading.Thread(target=work, args=(args, queue_name, stop, ThreadGpuWorker), daemon=True, name=f"slot-{n}")
        for n in range(2, config.concurrency + 1)
    ]
    for slot in slots:
        slot.start()
    try:
        work(args, queue_name, stop)
    finally:
        stop.set()
        tasks.SHUTDOWN.set()  # the other slots' runs go back to the queue too
        deadline = time.monotonic() + timeouts.request
        while tasks.ACTIVE and time.monotonic() < deadline:
            time.sleep(0.1)
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
