"""The RQ job function: one workshop job on one ComfyUI, from inputs to reported result."""
import base64
import logging
import os
import struct
import time
from dataclasses import dataclass, field

import redis
from websockets.exceptions import ConnectionClosed

from .app import AppClient
from .comfy import ENDS, ComfyClient, ComfyValidationError
from .throttle import ProgressThrottle

log = logging.getLogger("gpuworker.tasks")

CANCEL_KEY = "workshop:cancel:{}"
POLL = 0.25  # seconds between cancel checks while ComfyUI works: well inside the 2 s promise
FLUSH = 0.25  # seconds events may wait to be sent together
GIVE_UP_AFTER = 120  # seconds after a timeout's interrupt before the job is given up
# Messages the app turns into its own (the queue's status) or that mean nothing to a browser.
NOT_RELAYED = {"status", "feature_flags", "crystools.monitor"}
PREVIEW_IMAGE = 1  # ComfyUI's binary event: >I event, >I format (1 JPEG, 2 PNG), image bytes
PREVIEW_EVERY = 0.5  # seconds between relayed previews: enough to watch an image form
HISTORY_KINDS = {"execution_start", "execution_cached", *ENDS}


@dataclass
class Settings:
    app: str
    token: str
    comfyui: str
    redis: str = ""
    headers: dict = field(default_factory=dict)
    app_retry: float = 300.0

    @classmethod
    def from_env(cls) -> "Settings":
        headers = {}
        for line in os.environ.get("GPUWORKER_HEADERS", "").split("\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip()] = value.strip()
        return cls(
            app=os.environ["GPUWORKER_APP"],
            token=os.environ["GPUWORKER_TOKEN"],
            comfyui=os.environ["GPUWORKER_COMFYUI"],
            redis=os.environ.get("GPUWORKER_REDIS", ""),
            headers=headers,
            app_retry=float(os.environ.get("GPUWORKER_APP_RETRY", "300")),
        )


def run_job(payload: dict, settings: Settings | None = None) -> str:
    """Entry point RQ calls (`gpuworker.tasks.run_job`); returns the final status."""
    settings = settings or Settings.from_env()
    from rq import get_current_job

    current = get_current_job()
    connection = current.connection if current else redis.Redis.from_url(settings.redis)
    run = JobRun(
        payload,
        AppClient(settings.app, settings.token, settings.app_retry),
        ComfyClient(settings.comfyui, settings.headers),
        connection,
    )
    return run.run()


class JobRun:
    def __init__(self, payload: dict, app: AppClient, comfy: ComfyClient, connection):
        self.payload = payload
        self.job_id = payload["job_id"]
        self.app, self.comfy, self.redis = app, comfy, connection
        self.prompt_id = None
        self.stop_kind = None  # 'cancel' / 'interrupt' once asked; ComfyUI's answer ends the run
        self.interrupt_sent = False
        self.pending: list[dict] = []
        self.last_flush = time.monotonic()
        self.throttle = ProgressThrottle()
        self.outputs: dict = {}
        self.messages: list = []
        self.started_at = None
        self.uploaded: dict[tuple, dict] = {}

    # --- the run ---

    def run(self) -> str:
        if not self.app.started(self.job_id):
            log.info("job %s: cancelled before it started; skipped", self.job_id)
            return "skipped"
        try:
            return self._run()
        except Exception as exc:
            log.exception("job %s failed", self.job_id)
            self._finish("error", error={"exception_message": f"GPU worker error: {exc}", "exception_type": type(exc).__name__})
            raise

    def _run(self) -> str:
        for item in self.payload.get("inputs", []):
            with self.app.download_input(self.job_id, item) as response:
                self.comfy.upload_image(item["filename"], item.get("subfolder", ""), response.raw, item.get("type", "input"))
        socket = self.comfy.websocket()
        try:
            try:
                self.prompt_id = self.comfy.submit(self.payload["prompt"], self.payload.get("extra_data") or {}, socket.client_id)
            except ComfyValidationError as exc:
                return self._finish("error", error=_validation_error(exc.body))
            return self._follow(socket)
        finally:
            socket.close()

    def _follow(self, socket) -> str:
        timeout = float(self.payload.get("timeout") or 1800)
        deadline = time.monotonic() + timeout
        timed_out = False
        while True:
            self._check_stop()
            if not timed_out and time.monotonic() > deadline:
                timed_out = True
                self.stop_kind = self.stop_kind or "timeout"
                self._send_interrupt()
            if time.monotonic() > deadline + GIVE_UP_AFTER:
                # ComfyUI ignored the interrupt (a node that never checks): free this slot anyway.
                return self._finish("error", error={"exception_message": f"Timed out after {timeout:.0f} s; "
                                                    "ComfyUI did not stop when interrupted"})
            try:
                message = socket.receive(timeout=POLL)
            except ConnectionClosed:
                log.warning("job %s: ComfyUI websocket closed; reconnecting", self.job_id)
                socket.reopen()
                ended = self._ended_from_history()
                if ended:
                    return ended
                continue
            if message is None:
                self._flush_if_due()
                continue
            end = self._handle(message)
            if end:
                return end

    def _handle(self, message: dict) -> str | None:
        kind = message.get("type")
        if kind == "_binary":
            self._preview(message["bytes"])
            return None
        data = message.get("data")
        if kind in NOT_RELAYED or not isinstance(data, dict) or data.get("prompt_id") != self.prompt_id:
            return None
        data = {**data, "prompt_id": self.job_id}
        if kind == "execution_start":
            self.started_at = time.monotonic()
        if kind in HISTORY_KINDS:
            self.messages.append([kind, data])
        if kind == "executed":
            data["output"] = self._deliver(data.get("output") or {})
            self.outputs[str(data.get("node"))] = data["output"]
        if kind in ENDS or (kind == "executing" and data.get("node") is None):
            self._queue_event(kind, data)
            self._flush()
            return self._end(kind, data)
        if self.throttle.allow(message):
            self._queue_event(kind, data)
        if kind in ("executing", "executed", "execution_cached", "execution_start"):
            self._flush()
        else:
            self._flush_if_due()
        return None

    def _end(self, kind: str, data: dict) -> str:
        if kind == "execution_success" or (kind == "executing" and not self.stop_kind):
            return self._finish("success")
        if kind == "execution_error":
            return self._finish("error", error=data)
        if self.stop_kind == "timeout":
            timeout = int(self.payload.get("timeout") or 1800)
            return self._finish("error", error={**data, "exception_message": f"Timed out after {timeout} s"})
        return self._finish("interrupted", error=data)

    def _ended_from_history(self) -> str | None:
        """After a lost websocket: did the prompt end meanwhile? (ComfyUI keeps its history.)"""
        entry = self.comfy.history(self.prompt_id)
        status = entry.get("status") or {}
        if not status.get("completed") and status.get("status_str") != "error":
            return None
        for node, output in (entry.get("outputs") or {}).items():
            if node not in self.outputs:
                self.outputs[node] = self._deliver(output)
        for kind, data in status.get("messages", []):
            if kind in ENDS:
                return self._end(kind, {**data, "prompt_id": self.job_id})
        return self._finish("success" if status.get("completed") else "error")

    def _preview(self, frame: bytes) -> None:
        """Relay a sampler's live preview (sent only to our client_id, so it is this job's)."""
        if self.started_at is None or len(frame) < 8 or struct.unpack(">I", frame[:4])[0] != PREVIEW_IMAGE:
            return
        now = time.monotonic()
        if now - getattr(self, "last_preview", 0.0) < PREVIEW_EVERY:
            return
        self.last_preview = now
        self._queue_event("_preview", {"frame": base64.b64encode(frame).decode()})
        self._flush_if_due()

    # --- files ---

    def _deliver(self, output: dict) -> dict:
        """Stream each file of an `executed` output to the app; returns it with the stored names."""
        delivered = {}
        for key, value in output.items():
            if isinstance(value, list) and value and all(_is_file(v) for v in value):
                delivered[key] = [self._upload(v) for v in value]
            else:
                delivered[key] = value
        return delivered

    def _upload(self, item: dict) -> dict:
        # A cached re-run names the earlier run's file: it still exists on the GPU host (outputs
        # are never deleted there), so the new job gets its own copy.
        ident = (item.get("type"), item.get("subfolder", ""), item["filename"])
        if ident not in self.uploaded:
            stored = self.app.upload_output(self.job_id, item, lambda: self.comfy.download(item))
            self.uploaded[ident] = {**item, **stored}
        return self.uploaded[ident]

    # --- events and stop requests ---

    def _queue_event(self, kind: str, data: dict) -> None:
        self.pending.append({"type": kind, "data": data})

    def _flush_if_due(self) -> None:
        if self.pending and time.monotonic() - self.last_flush >= FLUSH:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        events, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        stop = self.app.events(self.job_id, events)
        if stop:
            self._stop(stop)

    def _check_stop(self) -> None:
        if self.stop_kind:
            return
        value = self.redis.get(CANCEL_KEY.format(self.job_id))
        if value:
            self._stop(value.decode() if isinstance(value, bytes) else str(value))

    def _stop(self, kind: str) -> None:
        if self.stop_kind is None:
            self.stop_kind = kind
            log.info("job %s: %s requested; interrupting ComfyUI", self.job_id, kind)
        self._send_interrupt()

    def _send_interrupt(self) -> None:
        if not self.interrupt_sent and self.prompt_id:
            self.interrupt_sent = True
            self.comfy.interrupt(self.prompt_id)

    # --- the result ---

    def _finish(self, status: str, error: dict | None = None) -> str:
        gpu_seconds = round(time.monotonic() - self.started_at, 3) if self.started_at else 0.0
        result = {
            "status": status,
            "outputs": self.outputs,
            "messages": self.messages,
            "error": error,
            "gpu_seconds": gpu_seconds,
        }
        answer = self.app.finish(self.job_id, result)
        log.info("job %s: %s (%.2f s on the GPU) -> %s", self.job_id, status, gpu_seconds, answer.get("state"))
        return status


def _is_file(value) -> bool:
    return isinstance(value, dict) and "filename" in value and value.get("type", "output") in ("output", "temp")


def _validation_error(body: dict) -> dict:
    """ComfyUI's 400 as an error the participant can read (the node errors spelled out)."""
    error = body.get("error") or {}
    lines = [error.get("message", "Prompt refused") if isinstance(error, dict) else str(error)]
    for node_id, node in (body.get("node_errors") or {}).items():
        for err in node.get("errors", []):
            lines.append(f"#{node_id} {node.get('class_type', '')}: {err.get('message')} ({err.get('details')})")
    return {"exception_message": "\n".join(lines), "exception_type": "ValidationError", "node_errors": body.get("node_errors") or {}}
