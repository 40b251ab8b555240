"""`python -m gpuworker`: one RQ worker for one ComfyUI (see docs/worker-protocol.md).

    GPUWORKER_TOKEN=T python -m gpuworker --redis redis://app-host:6379/0 \
        --app https://workshop.example.org --comfyui http://127.0.0.1:8188

The token comes from GPUWORKER_TOKEN or --token-file, never from the command line.

Every option can also come from the environment (GPUWORKER_REDIS, GPUWORKER_APP, …) or from
a TOML config file (--config), which is where the provider is chosen. The parts: the command
line (`cli`), the provider (`providers`), the heartbeat (`heartbeat`), the slots' work loop
(`loop`) and the catalog (`catalog`); this module starts them in that order.
"""

import logging
import signal
import sys
import threading
import time

from . import protocol, providers
from .app import AppClient, AppError, TokenRevoked
from .catalog import catalog_fingerprint
from .cli import parse
from .comfy import ColdStartTimeout, ComfyAuthError
from .heartbeat import HEARTBEAT_SECONDS, Heartbeat, gpu_info, vram_free
from .loop import ThreadGpuWorker, work
from .process import WorkerProcess

log = logging.getLogger("gpuworker")


def say(line: str) -> None:
    print(f"gpuworker: {line}", flush=True)


def refused_at_start(process: WorkerProcess, app: AppClient, exc: ComfyAuthError) -> dict:
    """The GPU refused our credentials at start: the console shows this worker unhealthy, with
    why, and no job is sent to it; it tries again every `problem_probe` seconds until it gets in."""
    settings, provider = process.settings, process.provider
    print(f"gpuworker {settings.name}: {exc}", file=sys.stderr, flush=True)
    app.register(
        name=settings.name,
        provider=provider.kind,
        comfyui_url=settings.comfyui,
        capacity=settings.config.concurrency,
        status=protocol.COMFYUI_DOWN,
        problem=str(exc),
    )
    last_probe = time.monotonic()
    while True:
        time.sleep(HEARTBEAT_SECONDS)
        if time.monotonic() - last_probe >= settings.timeouts.problem_probe:
            last_probe = time.monotonic()
            try:
                return provider.probe()
            except ComfyAuthError as again:
                exc = again
            except Exception as other:  # not up yet: keep saying why
                log.warning("GPU probe failed: %s", other)
        app.heartbeat(protocol.COMFYUI_DOWN, problem=str(exc))


def main(argv=None) -> int:
    settings = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    process = WorkerProcess(settings, providers.load(settings))
    app = AppClient(settings.app, settings.token, settings.timeouts.app_retry)
    try:
        registered, catalog, version = _register(process, app)
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
    queue_name = registered.get("queue") or settings.queue
    every = float(registered.get("heartbeat_seconds") or HEARTBEAT_SECONDS)
    stop = threading.Event()
    heartbeat = Heartbeat(process, catalog_fingerprint(catalog), float(registered.get("lease_seconds") or 10), every)
    beats = threading.Thread(target=heartbeat.run, args=(every, stop), daemon=True)
    beats.start()
    print(
        f"gpuworker {settings.name}: {process.provider.kind} {version or '?'} at {process.provider.where}, "
        f"queue '{queue_name}', {settings.config.concurrency} at a time, app {settings.app}, "
        f"heartbeat every {every:g} s",
        flush=True,
    )
    return _work_until_stopped(process, app, queue_name, stop, beats, every)


def _register(process: WorkerProcess, app: AppClient) -> tuple[dict, dict, str]:
    """(the app's register answer, the catalog published, ComfyUI's version)."""
    settings, provider = process.settings, process.provider
    try:
        stats = provider.start(say)
    except ComfyAuthError as exc:
        stats = refused_at_start(process, app, exc)
    except ColdStartTimeout as exc:
        raise SystemExit(f"gpuworker: {exc}") from None
    version = (stats.get("system") or {}).get("comfyui_version", "")
    # Catalog first: once registered the worker gets jobs, and prompts are checked against it.
    catalog = provider.catalog(stats)
    provider.publish(app, catalog)
    config = settings.config
    info = {"price_per_hour": config.price_per_hour} if config.price_per_hour is not None else {}
    registered = app.register(
        name=settings.name,
        provider=provider.kind,
        comfyui_url=settings.comfyui,
        version=version,
        capacity=config.concurrency,
        vram_free=vram_free(stats),
        carries_models=provider.model_cache is not None,
        serverless=provider.serverless,
        **gpu_info(stats),
        **info,
    )
    return registered, catalog, version


def _work_until_stopped(process: WorkerProcess, app: AppClient, queue_name: str, stop, beats, every) -> int:
    """The slots' work loops until a signal; then the runs go back and the app hears "offline"."""
    settings = process.settings
    slots = [
        threading.Thread(target=work, args=(process, queue_name, stop, ThreadGpuWorker), daemon=True, name=f"slot-{n}")
        for n in range(2, settings.config.concurrency + 1)
    ]
    for slot in slots:
        slot.start()
    try:
        work(process, queue_name, stop)
    finally:
        stop.set()
        process.shutdown.set()  # the other slots' runs go back to the queue too
        deadline = time.monotonic() + settings.timeouts.request
        while process.active and time.monotonic() < deadline:
            time.sleep(0.1)
        beats.join(timeout=every + 6)
        if not process.revoked.is_set():
            try:
                app.retry_seconds = 5
                app.heartbeat(protocol.OFFLINE)
            except Exception:
                pass
        print(f"gpuworker {settings.name}: stopped", flush=True)
    return 3 if process.revoked.is_set() else 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
