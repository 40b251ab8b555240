"""The kinds of GPU a worker can drive, one class each: a ComfyUI on this host, a serverless
ComfyUI (scaled to zero between runs) and a RunPod endpoint. `load(settings)` returns the one
the settings name; the rest of the worker asks it, never which kind it is.

Adding a provider is one class here with `probe`, `catalog`, `run`, `cancel` and `keep_warm`
(docs/providers.md has the file format, `gpuworker.config` reads it).
"""

import copy
import logging
import threading
import time
from collections.abc import Callable

from .app import AppClient
from .catalog import catalog_of, clear_orphans, publish_catalog, runpod_catalog
from .comfy import ComfyAuthError, ComfyClient
from .config import ProviderConfig, Timeouts, WorkerSettings
from .own_models import ModelCache
from .process import WorkerProcess
from .runpod import RunpodClient, RunpodRun
from .tasks import JobRun, RunStops

log = logging.getLogger("gpuworker")

__all__ = ["Provider", "LocalComfyUI", "ServerlessComfyUI", "Runpod", "KeepWarm", "load", "Timeouts"]


class KeepWarm:
    """The instructor's warm-up: `count` serverless GPUs started and kept from scaling to zero,
    by a request each every `every` seconds, each on a connection of its own so that a load
    balancer spreads them over as many replicas."""

    def __init__(self, base: str, headers: dict, timeouts: Timeouts):
        self.base, self.headers, self.timeouts, self.every = base, headers, timeouts, timeouts.keep_warm
        self.count, self.last, self.kept = 0, 0.0, 0.0
        self.since: float | None = None

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
            ComfyClient(self.base, self.headers, timeout=self.timeouts.request).wait_warm(
                self.timeouts.cold_start, lambda s: None
            )
        except Exception as exc:
            log.warning("keep-warm request failed: %s", exc)


class Provider:
    """One GPU behind one worker. Each method is called from one thread only: the heartbeat
    gets its own copy (`for_heartbeat`), because HTTP sessions are not shared between threads."""

    kind = "comfyui"  # what the app's console shows
    needs_comfyui_url = True  # --comfyui is where it runs prompts
    serverless = False
    # Probed at every heartbeat while idle. A serverless GPU is probed only while it has a
    # problem: a probe would keep it warm (and billed) for ever.
    probes_while_idle = True

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.timeouts: Timeouts = settings.timeouts
        self.model_cache: ModelCache | None = None

    @classmethod
    def missing(cls, config: ProviderConfig) -> str:
        """What the provider file must still say for this kind of GPU ("" when nothing)."""
        return ""

    @classmethod
    def default_url(cls, config: ProviderConfig) -> str:
        """Where the worker says it runs when --comfyui is not given."""
        return config.url

    @property
    def where(self) -> str:
        return self.settings.comfyui

    def start(self, say: Callable[[str], None]) -> dict:
        """The GPU's system stats at start, waited for (ComfyAuthError when it refuses us)."""
        raise NotImplementedError

    def probe(self) -> dict:
        raise NotImplementedError

    def catalog(self, stats: dict) -> dict:
        raise NotImplementedError

    def publish(self, app: AppClient, catalog: dict) -> None:
        app.publish_catalog(catalog)

    def run(self, payload: dict, app: AppClient, connection, process: WorkerProcess) -> RunStops:
        """One run of a job, ready to `run()`."""
        raise NotImplementedError

    def cancel(self, handle: str, client=None) -> None:
        """Stop a run the GPU was given (`handle`: its prompt or job id there), wherever it is."""
        raise NotImplementedError

    def keep_warm(self) -> KeepWarm | None:
        return None

    def for_heartbeat(self) -> "Provider":
        return self


class LocalComfyUI(Provider):
    """A ComfyUI that serves only this worker, on this host or the next."""

    def __init__(self, settings: WorkerSettings, timeout: float | None = None, connect_timeout: float | None = None):
        super().__init__(settings)
        self.comfy = self.client(timeout, connect_timeout)
        config = settings.config
        if config.model_cache:
            self.model_cache = ModelCache(config.model_cache, config.model_cache_bytes)

    def client(self, timeout: float | None = None, connect_timeout: float | None = None) -> ComfyClient:
        return ComfyClient(
            self.settings.comfyui,
            self.settings.headers,
            timeout=timeout or self.timeouts.request,
            connect_timeout=connect_timeout or self.timeouts.connect,
        )

    def start(self, say: Callable[[str], None]) -> dict:
        deadline = time.monotonic() + self.timeouts.start_wait
        while True:
            try:
                stats = self.comfy.system_stats()
                break
            except ComfyAuthError:
                raise
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"ComfyUI at {self.comfy.base} did not answer within {self.timeouts.start_wait:.0f} s: {exc}"
                    ) from None
                say(f"waiting for ComfyUI at {self.comfy.base} ({exc.__class__.__name__})")
                time.sleep(2)
        clear_orphans(self.comfy)
        return stats

    def probe(self) -> dict:
        return self.comfy.get_json("/system_stats")

    def catalog(self, stats: dict) -> dict:
        return catalog_of(self.comfy, stats)

    def publish(self, app: AppClient, catalog: dict) -> None:
        publish_catalog(app, self.comfy, catalog)

    def run(self, payload: dict, app: AppClient, connection, process: WorkerProcess) -> RunStops:
        # A client of its own per run: the run's socket and calls stay on one replica.
        return JobRun(payload, app, self.client(), connection, process)

    def cancel(self, handle: str, client=None) -> None:
        comfy = client or self.comfy
        for call in (lambda: comfy.delete_from_queue(handle), lambda: comfy.interrupt(handle)):
            try:
                call()
            except Exception as exc:
                log.warning("could not stop prompt %s on ComfyUI (%s)", handle, exc)

    def for_heartbeat(self) -> "LocalComfyUI":
        # The same GPU and model cache, with a client of its own and short waits: a beat that
        # fails is simply the next one's job.
        beat = copy.copy(self)
        beat.comfy = self.client(timeout=3.0, connect_timeout=3.0)
        return beat


class ServerlessComfyUI(LocalComfyUI):
    """A ComfyUI behind a serverless platform's load balancer: it may be scaled to zero, so a
    run first waits for it to start (the participant sees the count), and the instructor's
    warm-up keeps some started."""

    serverless = True
    probes_while_idle = False

    def start(self, say: Callable[[str], None]) -> dict:
        # Started once at boot, for the catalog; it may scale to zero again afterwards.
        self.comfy.wait_warm(
            self.timeouts.cold_start,
            lambda s: say(f"waiting for the serverless GPU at {self.comfy.base} to start… {s:.0f} s"),
        )
        stats = self.comfy.system_stats()
        clear_orphans(self.comfy)
        return stats

    def keep_warm(self) -> KeepWarm:
        return KeepWarm(self.settings.comfyui, self.settings.headers, self.timeouts)


class Runpod(Provider):
    """A RunPod serverless endpoint, driven through its own job API (gpuworker.runpod)."""

    kind = "runpod"
    serverless = False
    probes_while_idle = False

    needs_comfyui_url = False

    @classmethod
    def missing(cls, config: ProviderConfig) -> str:
        if not config.endpoint:
            return "provider 'runpod' needs a --config file with a [runpod] table (endpoint, api_key, object_info)"
        return ""

    @classmethod
    def default_url(cls, config: ProviderConfig) -> str:
        return config.endpoint

    def __init__(self, settings: WorkerSettings):
        super().__init__(settings)
        config = settings.config
        self.client = RunpodClient(config.endpoint, config.api_key, self.timeouts)
        self.fixed_catalog = runpod_catalog(config)

    @property
    def where(self) -> str:
        return self.settings.config.endpoint

    def start(self, say: Callable[[str], None]) -> dict:
        return self.probe()

    def probe(self) -> dict:
        return {"runpod": self.client.health()}

    def catalog(self, stats: dict) -> dict:
        return self.fixed_catalog

    def run(self, payload: dict, app: AppClient, connection, process: WorkerProcess) -> RunStops:
        return RunpodRun(payload, app, self, connection, process)

    def cancel(self, handle: str, client=None) -> None:
        try:
            (client or self.client).cancel(handle)
        except Exception as exc:
            log.warning("could not cancel RunPod job %s (%s)", handle, exc)


def kind_of(config: ProviderConfig) -> type[Provider]:
    """The class of the provider a provider file names."""
    if config.provider == Runpod.kind:
        return Runpod
    return ServerlessComfyUI if config.serverless else LocalComfyUI


def load(settings: WorkerSettings) -> Provider:
    """The provider the settings name, ready to start."""
    return kind_of(settings.config)(settings)
