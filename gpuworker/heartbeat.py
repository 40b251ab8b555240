"""The worker's heartbeat: every few seconds, is the GPU answering, and which runs is this
process doing? The app's answer renews the runs' leases, or says to stop one."""

import logging
import threading
import time

import redis
import requests

from . import protocol, tasks
from .app import AppClient, TokenRevoked
from .catalog import catalog_fingerprint, catalog_of, publish_catalog
from .comfy import ComfyAuthError, ComfyClient

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
        assert self.comfy is not None  # a GPU is either a RunPod endpoint or a ComfyUI
        return self.comfy.get_json("/system_stats")

    def catalog(self, stats: dict) -> dict:
        if self.fixed_catalog is not None:
            return self.fixed_catalog
        assert self.comfy is not None  # only a RunPod endpoint has a fixed catalog
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
            ComfyClient(self.base, self.headers, timeout=30.0).wait_warm(600.0, lambda s: None)
        except Exception as exc:
            log.warning("keep-warm request failed: %s", exc)


class Heartbeat:
    """Every `every` seconds: is the GPU answering, and which runs is this process doing? The
    answer renews the runs' leases, or says to stop one (cancelled, or no longer ours). The
    leases are also renewed in Redis, so a restarting app does not take the runs away. While
    idle, a changed catalog (new models or custom nodes) is published again."""

    def __init__(
        self,
        app: AppClient,
        gpu: Gpu,
        published: str,
        *,
        lease_redis=None,
        lease_seconds: float = 10.0,
        problem_probe: float = 15.0,
        cache=None,
        warm: KeepWarm | None = None,
    ):
        self.app, self.gpu, self.published = app, gpu, published
        self.lease_redis, self.lease_seconds, self.problem_probe = lease_redis, lease_seconds, problem_probe
        self.cache, self.warm = cache, warm
        self.last_catalog = self.last_probe = time.monotonic()
        self.failures, self.unreachable = 0, ""

    def run(self, every: float, stop: threading.Event) -> None:
        while not stop.wait(every):
            runs = list(tasks.ACTIVE.values())
            self._renew_leases(runs)
            try:
                self.beat(runs)
            except TokenRevoked:
                tasks.revoked()
                return
            except Exception as exc:  # The app or ComfyUI may be restarting; the next beat tries again.
                log.warning("heartbeat failed: %s", exc)

    def _renew_leases(self, runs) -> None:
        if self.lease_redis is None:
            return
        for run in runs:
            try:
                key = protocol.LEASE_KEY.format(protocol.run_id(run.job_id, run.run_no))
                self.lease_redis.set(key, "1", ex=max(int(self.lease_seconds), 1))
            except redis.RedisError:
                pass  # the app's lease still holds

    def beat(self, runs) -> None:
        stats = self._probe()
        problem = tasks.PROBLEM["text"] or (self.unreachable if self.failures >= 2 else None)
        status = "comfyui_unreachable" if problem or self.failures >= 2 else ("busy" if runs else "idle")
        first = runs[0] if runs else None
        extra = {"models_seen": self.cache.deletions_seen()} if self.cache is not None else {}
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
        if status == "idle":
            self._publish_if_changed(stats)

    def _probe(self) -> dict:
        """The GPU's system stats, when it is probed at this beat ({} otherwise)."""
        gpu = self.gpu
        if not (
            gpu.probes_while_idle or (tasks.PROBLEM["text"] and time.monotonic() - self.last_probe > self.problem_probe)
        ):
            return {}
        self.last_probe = time.monotonic()
        try:
            stats = gpu.probe()
        except ComfyAuthError as exc:
            tasks.PROBLEM["text"] = str(exc)
        except requests.ConnectionError as exc:
            self.failures += 2  # nothing listens: down at once
            self.unreachable = f"its ComfyUI does not answer ({exc.__class__.__name__})"
        except Exception as exc:
            self.failures += 1  # slow under load: twice in a row to count
            self.unreachable = f"its ComfyUI does not answer in time ({exc.__class__.__name__})"
        else:
            self.failures = 0
            if tasks.PROBLEM["text"]:
                log.info("the GPU takes our credentials again: back to work")
                tasks.PROBLEM["text"] = None
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
