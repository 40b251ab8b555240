"""`python -m gpuworker`: one RQ worker for one ComfyUI (see docs/worker-protocol.md).

    GPUWORKER_TOKEN=T python -m gpuworker --redis redis://app-host:6379/0 \
        --app https://workshop.example.org --comfyui http://127.0.0.1:8188

The token comes from GPUWORKER_TOKEN or --token-file, never from the command line.

Every option can also come from the environment (GPUWORKER_REDIS, GPUWORKER_APP, …) or from
a TOML config file (--config), which is where the provider is chosen.
"""

import json
import logging
import os
import signal
import sys
import threading
import time

import redis

from . import tasks
from .app import AppClient, AppError, TokenRevoked
from .catalog import catalog_fingerprint, clear_orphans, runpod_catalog
from .cli import headers_of, parse
from .comfy import ColdStartTimeout, ComfyAuthError, ComfyClient
from .heartbeat import HEARTBEAT_SECONDS, Gpu, Heartbeat, KeepWarm, gpu_info, vram_free
from .loop import ThreadGpuWorker, work
from .own_models import ModelCache
from .runpod import RunpodClient

log = logging.getLogger("gpuworker")


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


def main(argv=None) -> int:
    args = parse(argv)
    config = args.provider_config
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    headers = headers_of(args)
    _hand_settings_to_jobs(args, config)
    cache = ModelCache(config.model_cache, config.model_cache_bytes) if config.model_cache else None
    app = AppClient(args.app, args.token, args.app_retry)
    if args.provider == "runpod":
        comfy = None
        runpod = RunpodClient(config.endpoint, config.api_key, config.timeouts)
        gpu = Gpu(None, runpod=runpod, catalog=runpod_catalog(config))
    else:
        comfy = ComfyClient(
            args.comfyui, headers, timeout=config.timeouts.request, connect_timeout=config.timeouts.connect
        )
        gpu = Gpu(comfy, serverless=config.serverless)
    try:
        registered, catalog, version = _register(args, config, app, gpu, comfy, cache)
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
    heartbeat = _heartbeat(args, config, headers, gpu, catalog, registered, cache, every)
    beats = threading.Thread(target=heartbeat.run, args=(every, stop), daemon=True)
    beats.start()
    where = config.endpoint if args.provider == "runpod" else args.comfyui
    print(
        f"gpuworker {args.name}: {args.provider} {version or '?'} at {where}, queue '{queue_name}', "
        f"{config.concurrency} at a time, app {args.app}, heartbeat every {every:g} s",
        flush=True,
    )
    return _work_until_stopped(args, config, app, queue_name, stop, beats, every)


def _hand_settings_to_jobs(args, config) -> None:
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
        GPUWORKER_TIMEOUTS=json.dumps(config.timeouts.__dict__),
        GPUWORKER_RUNPOD_ENDPOINT=config.endpoint,
        GPUWORKER_RUNPOD_API_KEY=config.api_key,
        GPUWORKER_MODEL_CACHE=config.model_cache,
        GPUWORKER_MODEL_CACHE_BYTES=str(config.model_cache_bytes),
    )


def _first_stats(args, config, app, gpu, comfy) -> dict:
    """The GPU's system stats at start: waited for, warmed up (serverless), or its refusal shown."""
    try:
        if comfy is None:
            return gpu.probe()
        if config.serverless:
            # Started once at boot, for the catalog; it may scale to zero again afterwards.
            comfy.wait_warm(
                config.timeouts.cold_start,
                lambda s: print(
                    f"gpuworker: waiting for the serverless GPU at {comfy.base} to start… {s:.0f} s", flush=True
                ),
            )
            return comfy.system_stats()
        return wait_for_comfyui(comfy, args.comfyui_wait)
    except ComfyAuthError as exc:
        return refused_at_start(app, gpu, args, exc, HEARTBEAT_SECONDS)
    except ColdStartTimeout as exc:
        raise SystemExit(f"gpuworker: {exc}") from None


def _register(args, config, app, gpu, comfy, cache) -> tuple[dict, dict, str]:
    """(the app's register answer, the catalog published, ComfyUI's version)."""
    stats = _first_stats(args, config, app, gpu, comfy)
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
    return registered, catalog, version


def _heartbeat(args, config, headers, gpu, catalog, registered, cache, every) -> Heartbeat:
    # Its own clients: requests sessions are not shared between threads; short retries, so a
    # beat that fails is simply the next one's job.
    beat_app = AppClient(args.app, args.token, retry_seconds=min(every, 5.0), timeout=max(every, 2.0))
    beat_gpu = Gpu(
        ComfyClient(args.comfyui, headers, timeout=3.0, connect_timeout=3.0) if gpu.comfy else None,
        serverless=config.serverless,
        runpod=gpu.runpod,
        catalog=gpu.fixed_catalog,
    )
    return Heartbeat(
        beat_app,
        beat_gpu,
        catalog_fingerprint(catalog),
        lease_redis=redis.Redis.from_url(args.redis, socket_timeout=2, socket_connect_timeout=2),
        lease_seconds=float(registered.get("lease_seconds") or 10),
        problem_probe=config.timeouts.problem_probe,
        cache=cache,
        warm=KeepWarm(args.comfyui, headers, config.timeouts.keep_warm) if config.serverless else None,
    )


def _work_until_stopped(args, config, app, queue_name, stop, beats, every) -> int:
    """The slots' work loops until a signal; then the runs go back and the app hears "offline"."""
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
        deadline = time.monotonic() + config.timeouts.request
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
