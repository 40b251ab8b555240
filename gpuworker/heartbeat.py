"""The worker's heartbeat: every few seconds, is the GPU answering, and which runs is this
process doing? The app's answer renews the runs' leases, or says to stop one."""

import logging
import threading
import time

import redis
import requests

from . import protocol
from .app import AppClient, TokenRevoked
from .catalog import catalog_fingerprint
from .comfy import ComfyAuthError
from .process import WorkerProcess
from .providers import KeepWarm, Provider

log = logging.getLogger("gpuworker")


HEARTBEAT_SECONDS = 2.5  # until the app's register answer says otherwise


CATALOG_SECONDS = 60  # between checks, while idle, whether ComfyUI's catalog changed


def vram_free(stats: dict) -> int | None:
    devices = stats.get("devices") or []
    values: list[int] = [d["vram_free"] for d in devices if isinstance(d, dict) and isinstance(d.get("vram_free"), int)]
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


class Heartbeat:
    """Every `every` seconds: is the GPU answering, and which runs is this process doing? The
    answer renews the runs' leases, or says to stop one (cancelled, or no longer ours). The
    leases are also renewed in Redis, so a restarting app does not take the runs away. While
    idle, a changed catalog (new models or custom nodes) is published again."""

    def __init__(self, process: WorkerProcess, published: str, lease_seconds: float, every: float):
        settings = process.settings
        self.process, self.published = process, published
        # Clients of its own, with short waits: a beat that fails is simply the next one's job.
        self.app = AppClient(settings.app, settings.token, retry_seconds=min(every, 5.0), timeout=max(every, 2.0))
        self.gpu: Provider = process.provider.for_heartbeat()
        self.lease_redis = redis.Redis.from_url(settings.redis, socket_timeout=2, socket_connect_timeout=2)
        self.lease_seconds, self.problem_probe = lease_seconds, settings.timeouts.problem_probe
        self.cache = self.gpu.model_cache
        self.warm: KeepWarm | None = self.gpu.keep_warm()
        self.last_catalog = self.last_probe = time.monotonic()
        self.failures, self.unreachable = 0, ""

    def run(self, every: float, stop: threading.Event) -> None:
        while not stop.wait(every):
            runs = list(self.process.active.values())
            self._renew_leases(runs)
            try:
                self.beat(runs)
            except TokenRevoked:
                self.process.revoke()
                return
            except Exception as exc:  # The app or ComfyUI may be restarting; the next beat tries again.
                log.warning("heartbeat failed: %s", exc)

    def _renew_leases(self, runs) -> None:
        for run in runs:
            try:
                key = protocol.LEASE_KEY.format(protocol.run_id(run.job_id, run.run_no))
                self.lease_redis.set(key, "1", ex=max(int(self.lease_seconds), 1))
            except redis.RedisError:
                pass  # the app's lease still holds

    def beat(self, runs) -> None:
        stats = self._probe()
        problem = self.process.problem or (self.unreachable if self.failures >= 2 else None)
        busy = protocol.BUSY if runs else protocol.IDLE
        status = protocol.COMFYUI_DOWN if problem or self.failures >= 2 else busy
        first = runs[0] if runs else None
        extra: dict[str, float] = {"models_seen": self.cache.deletions_seen()} if self.cache is not None else {}
        if self.warm is not None:
            extra["warm_seconds"] = self.warm.kept
            self.warm.kept = 0.0
        answer = self.app.heartbeat(
            status,
            first.job_id if first else None,
            first.run_no if first else None,
            runs=[{"job_id": r.job_id, "run": r.run_no} for r in runs],
            problem=problem or "",
            vram_free=vram_free(stats),
            **extra,
        )
        if self.warm is not None:
            # Slots busy with runs are warm anyway: only the idle ones need keeping.
            self.warm.kept += self.warm.tick(max(0, int(answer.get("warm") or 0) - len(runs)))
        if self.cache is not None and answer.get("models_gone"):
            self.cache.saw_deletions(answer["models_gone"])  # deleted by their participants: out of the cache
        for run in runs:
            run.heard((answer.get("runs") or {}).get(run.job_id, answer if run is first else {}))
        if status == protocol.IDLE:
            self._publish_if_changed(stats)

    def _probe(self) -> dict:
        """The GPU's system stats, when it is probed at this beat ({} otherwise)."""
        gpu = self.gpu
        if not (
            gpu.probes_while_idle or (self.process.problem and time.monotonic() - self.last_probe > self.problem_probe)
        ):
            return {}
        self.last_probe = time.monotonic()
        try:
            stats = gpu.probe()
        except ComfyAuthError as exc:
            self.process.problem = str(exc)
        except requests.ConnectionError as exc:
            self.failures += 2  # nothing listens: down at once
            self.unreachable = f"its ComfyUI does not answer ({exc.__class__.__name__})"
        except Exception as exc:
            self.failures += 1  # slow under load: twice in a row to count
            self.unreachable = f"its ComfyUI does not answer in time ({exc.__class__.__name__})"
        else:
            self.failures = 0
            if self.process.problem:
                log.info("the GPU takes our credentials again: back to work")
                self.process.problem = None
            return stats
        return {}

    def _publish_if_changed(self, stats: dict) -> None:
        if not self.gpu.probes_while_idle or time.monotonic() - self.last_catalog <= CATALOG_SECONDS:
            return
        # New models or custom nodes on the GPU host show up in the UIs without a restart.
        self.last_catalog = time.monotonic()
        catalog = self.gpu.catalog(stats)
        fingerprint = catalog_fingerprint(catalog)
        if fingerprint != self.published:
            self.gpu.publish(self.app, catalog)
            self.published = fingerprint
            log.info("catalog changed; published again")
