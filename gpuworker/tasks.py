"""The RQ job function: one run of a workshop job on one ComfyUI, from inputs to result.

The run is fenced: every call to the app names it (`run`), and when the app answers that the
run is no longer the job's current one (409 with `stop`), the worker stops it on ComfyUI
(interrupt, and delete it from ComfyUI's queue) and reports nothing more. A job ends on the app
only with ComfyUI's own end (success, error, interrupted) or with a host fault (`lost`: ComfyUI
unreachable or restarted), which puts it back in the queue.
"""

import base64
import logging
import struct
import threading
import time

import redis
import requests
from rq import get_current_job
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from . import protocol
from .app import AppClient, RunFenced, TokenRevoked
from .comfy import ENDS, ColdStartTimeout, ComfyAuthError, ComfyClient, ComfyValidationError
from .own_models import ModelCache, ModelRejected
from .process import CURRENT, WorkerProcess
from .throttle import ProgressThrottle

log = logging.getLogger("gpuworker.tasks")

POLL = 0.25  # seconds between stop checks while ComfyUI works: well inside the 2 s promise
FLUSH = 0.25  # seconds events may wait to be sent together
END_WAIT = 2.0  # seconds to wait for ComfyUI's closing `executing` after an end message
# Messages the app turns into its own (the queue's status) or that mean nothing to a browser.
NOT_RELAYED = {"status", "feature_flags", "crystools.monitor"}
PREVIEW_IMAGE = 1  # ComfyUI's binary event: >I event, >I format (1 JPEG, 2 PNG), image bytes
PREVIEW_EVERY = 0.5  # seconds between relayed previews: enough to watch an image form
HISTORY_KINDS = {"execution_start", "execution_cached", *ENDS}
# A socket reset mid-handshake (a ComfyUI being killed still accepts, then resets) surfaces as
# websockets' ConnectionClosed, not as an OSError: it is the host's fault all the same.
HOST_ERRORS = (requests.ConnectionError, requests.Timeout, ConnectionError, OSError, InvalidHandshake, ConnectionClosed)
# (AppClient raises its own AppUnreachable, so the app being away is never mistaken for this.)


def run_job(payload: dict) -> str:
    """Entry point RQ calls (`gpuworker.tasks.run_job`); returns how the run ended. The worker
    process that runs it (settings, provider, the runs in flight) comes from the RQ slot."""
    try:
        process = CURRENT.get()
    except LookupError:
        raise RuntimeError("gpuworker.tasks.run_job runs inside `python -m gpuworker`, not a plain RQ worker") from None
    settings = process.settings
    current = get_current_job()
    connection = current.connection if current else redis.Redis.from_url(settings.redis)
    app = AppClient(settings.app, settings.token, settings.timeouts.app_retry, timeout=settings.timeouts.request)
    run = process.provider.run(payload, app, connection, process)
    key = threading.get_ident()
    process.active[key] = run
    try:
        return run.run()
    finally:
        process.active.pop(key, None)


class RunStops:
    """What every kind of run hears of stop requests: from the heartbeat's answer (`heard`) and
    from Redis (`_check_stop`)."""

    job_id: str
    run_no: int
    redis: redis.Redis
    process: WorkerProcess
    stop_kind: str | None  # 'cancel' / 'interrupt' / 'timeout' once asked
    fenced: bool  # the app gave this run to someone else (or ended it)
    redis_ok: bool
    started_at: float | None
    cold_start_seconds: float | None

    app: AppClient
    refused_by = "ComfyUI refused"  # who refuses the worker's credentials, in what it says

    def run(self) -> str:
        raise NotImplementedError

    def report(self, status: str, outputs: dict, messages: list, end: list, error, load_seconds: float, **extra):
        """The run's result to the app (`finish`), with the GPU time it took; `end`, ComfyUI's
        closing messages, only for ComfyUI's own ends. Returns the app's answer."""
        gpu_seconds = round(time.monotonic() - self.started_at, 3) if self.started_at else 0.0
        result = {
            "run": self.run_no,
            "status": status,
            "outputs": outputs,
            "messages": messages,
            "end": end if status in ("success", "error", "interrupted") else [],
            "error": error,
            "gpu_seconds": gpu_seconds,
            "load_seconds": round(min(load_seconds, gpu_seconds), 3),
            "cold_start_seconds": self.cold_start_seconds,
            **extra,
        }
        answer = self.app.finish(self.job_id, result)
        log.info(
            "job %s run %s: %s (%.2f s on the GPU) -> %s",
            self.job_id,
            self.run_no,
            status,
            gpu_seconds,
            answer.get("state"),
        )
        return answer

    def _refused(self, exc: ComfyAuthError) -> str:
        """The provider refused our credentials: the job goes back to the queue at no cost, and
        this worker reports itself unhealthy (with the reason) until a probe gets through."""
        self.process.problem = str(exc).replace("ComfyUI refused", self.refused_by)
        log.error("job %s run %s: %s; the job goes back to the queue", self.job_id, self.run_no, exc)
        try:
            self._finish(
                "lost",
                reason="the GPU provider refused the worker's credentials",
                crash=False,
                comfyui_unreachable=True,
                problem=self.process.problem,
            )
        except RunFenced:
            pass
        return "lost"

    def _finish(self, status: str, error: dict | None = None, **extra) -> str:
        raise NotImplementedError

    def heard(self, answer: dict) -> None:
        if answer.get("stop"):
            self.fenced = True
        elif answer.get("cancel") and not self.stop_kind:
            self.stop_kind = answer["cancel"]

    def _check_stop(self) -> None:
        if self.stop_kind:
            return
        try:
            value = self.redis.get(protocol.CANCEL_KEY.format(protocol.run_id(self.job_id, self.run_no)))
            self.redis_ok = True
        except redis.RedisError as exc:
            # Redis is disposable: the heartbeat's and the events' answers carry the same request.
            if self.redis_ok:
                log.warning("job %s: Redis unavailable (%s); stop requests come through the app", self.job_id, exc)
            self.redis_ok = False
            return
        if value:
            self.stop_kind = value.decode() if isinstance(value, bytes) else str(value)
            log.info("job %s: %s requested; stopping it on the GPU", self.job_id, self.stop_kind)


class JobRun(RunStops):
    """One run on a ComfyUI (local or serverless): followed on its websocket, prompt by prompt."""

    def __init__(self, payload: dict, app: AppClient, comfy: ComfyClient, connection, process: WorkerProcess):
        self.payload, self.process = payload, process
        self.timeouts = process.settings.timeouts
        self.serverless = process.provider.serverless
        self.cold_start_seconds = None
        self.model_cache: ModelCache | None = process.provider.model_cache
        self.job_id = payload["job_id"]
        self.run_no = int(payload.get("run", 0))
        self.app, self.comfy, self.redis = app, comfy, connection
        self.prompt_id: str | None = None
        self.stop_kind = None
        self.interrupt_sent = 0.0
        self.fenced = False
        self.pending: list[dict] = []
        self.last_flush = time.monotonic()
        self.throttle = ProgressThrottle()
        self.outputs: dict = {}
        self.messages: list = []
        self.end: list[dict] = []
        self.started_at = None
        self.node_started: tuple | None = None  # (node id, monotonic time) of the running node
        self.load_seconds = 0.0
        self.uploaded: dict[tuple, dict] = {}
        self.redis_ok = True

    # --- the run ---

    def run(self) -> str:
        try:
            if not self.app.started(self.job_id, self.run_no):
                log.info("job %s run %s: no longer this worker's; skipped", self.job_id, self.run_no)
                return "skipped"
            return self._run()
        except TokenRevoked:
            self._abandon()
            self.process.revoke()
            return "revoked"
        except ComfyAuthError as exc:
            return self._refused(exc)
        except ColdStartTimeout as exc:
            return self._host_fault(exc)
        except RunFenced as exc:
            log.warning(
                "job %s run %s: the app took the run away (%s); stopping it on ComfyUI", self.job_id, self.run_no, exc
            )
            self._abandon()
            return "fenced"
        except HOST_ERRORS as exc:
            return self._host_fault(exc)
        except Exception as exc:
            log.exception("job %s failed", self.job_id)
            self._abandon()
            self._finish(
                "error", error={"exception_message": f"GPU worker error: {exc}", "exception_type": type(exc).__name__}
            )
            return "error"

    def _run(self) -> str:
        if self.serverless:
            self.cold_start_seconds = self.comfy.wait_warm(self.timeouts.cold_start, self._starting)
            if self.cold_start_seconds:
                self._flush()
        self._place_models()
        for item in self.payload.get("inputs", []):
            with self.app.download_input(self.job_id, self.run_no, item) as response:
                self.comfy.upload_image(
                    item["filename"], item.get("subfolder", ""), response.raw, item.get("type", "input")
                )
        socket = self.comfy.websocket()
        try:
            try:
                self.prompt_id = self.comfy.submit(
                    self.payload["prompt"],
                    self.payload.get("extra_data") or {},
                    socket.client_id,
                    **(self.payload.get("submit_fields") or {}),
                )
            except ComfyValidationError as exc:
                return self._finish("error", error=_validation_error(exc.body))
            if self.comfy.replica() != socket.replica:
                # The load balancer sent the POST to another replica than the socket's: follow
                # the run where it is, on one connection, before a message of it is missed.
                log.warning("job %s: the prompt went to another replica; following it there", self.job_id)
                ended = self._recover(socket)
                if ended:
                    return ended
            return self._follow(socket)
        finally:
            socket.close()

    def _follow(self, socket) -> str:
        timeout = float(self.payload.get("timeout") or 1800)
        deadline = time.monotonic() + timeout
        ending_since = None
        while True:
            self._check_stop()
            if self.fenced:
                raise RunFenced("the app says this run is over")
            if self.process.shutdown.is_set():
                self._abandon()
                self._finish("returned", reason="its GPU worker was shut down")
                return "returned"
            if self.stop_kind and self.prompt_id and time.monotonic() - self.interrupt_sent > 2.0:
                # Repeated: ComfyUI ignores an interrupt for a prompt that has not started yet.
                self._send_interrupt()
            if time.monotonic() > deadline and self.stop_kind != "timeout":
                self.stop_kind = "timeout"
                self._send_interrupt()
            if time.monotonic() > deadline + self.timeouts.give_up_after_interrupt:
                # ComfyUI ignored the interrupt (a node that never checks): free this slot anyway.
                self._abandon()
                return self._finish(
                    "error",
                    error={
                        "exception_message": f"Timed out after {timeout:.0f} s; ComfyUI did not stop when interrupted"
                    },
                )
            if ending_since and time.monotonic() - ending_since > END_WAIT:
                return self._end()
            try:
                message = socket.receive(timeout=POLL)
            except HOST_ERRORS:
                ended = self._recover(socket)
                if ended:
                    return ended
                continue
            if message is None:
                self._flush_if_due()
                continue
            outcome = self._handle(message)
            if outcome == "end":
                return self._end()
            if outcome == "ending":
                ending_since = time.monotonic()

    def _handle(self, message: dict) -> str | None:
        kind = message.get("type")
        if kind == "_binary":
            self._preview(message["bytes"])
            return None
        data = message.get("data")
        if kind in NOT_RELAYED or not isinstance(data, dict) or data.get("prompt_id") != self.prompt_id:
            return None
        data = {**data, "prompt_id": self.job_id}
        if kind == "progress_state" and isinstance(data.get("nodes"), dict):
            # Newer frontends key per-job progress on each node's own prompt_id as well.
            data["nodes"] = {
                k: ({**v, "prompt_id": self.job_id} if isinstance(v, dict) and "prompt_id" in v else v)
                for k, v in data["nodes"].items()
            }
        relayed = {**message, "data": data}
        if kind == "execution_start":
            self.started_at = time.monotonic()
        if kind in HISTORY_KINDS:
            self.messages.append([kind, data])
        if kind == "executing":
            self._node_changed(data.get("node"))
        if kind == "executed":
            data["output"] = self._deliver(data.get("output") or {})
            self.outputs[str(data.get("node"))] = data["output"]
        if kind in ENDS:
            self.end.append(relayed)
            return "ending"  # ComfyUI closes every prompt with `executing` node null
        if kind == "executing" and data.get("node") is None:
            self.end.append(relayed)
            return "end"
        if self.throttle.allow(message):
            self.pending.append(relayed)
        if kind in ("executing", "executed", "execution_cached", "execution_start"):
            self._flush()
        else:
            self._flush_if_due()
        return None

    def _node_changed(self, node) -> None:
        """Time spent in model loaders is kept apart: whoever runs first would pay for everyone."""
        now = time.monotonic()
        if self.node_started:
            previous, since = self.node_started
            class_type = (self.payload["prompt"].get(str(previous)) or {}).get("class_type", "")
            if "Loader" in class_type:
                self.load_seconds += now - since
        self.node_started = (node, now) if node is not None else None

    def _end(self) -> str:
        self.pending.extend(self.throttle.held())
        self._flush()
        end = next((m for m in self.end if m["type"] in ENDS), None)
        if end is None or end["type"] == "execution_success":
            if self.stop_kind and end is None:
                return self._finish("interrupted", error={})
            return self._finish("success")
        if end["type"] == "execution_error":
            return self._finish("error", error=end["data"])
        if self.stop_kind == "timeout":
            timeout = int(self.payload.get("timeout") or 1800)
            return self._finish("error", error={**end["data"], "exception_message": f"Timed out after {timeout} s"})
        return self._finish("interrupted", error=end["data"])

    def _recover(self, socket) -> str | None:
        """ComfyUI's websocket closed: reconnect, and find out what became of the prompt. Until
        the reconnect window closes, every failure of the socket or of the questions after it
        means ComfyUI is not back yet (a restarting one resets connections for a while)."""
        log.warning("job %s: ComfyUI websocket lost; reconnecting", self.job_id)
        give_up = time.monotonic() + self.timeouts.socket_reconnect
        while True:
            try:
                socket.reopen()
                # Queue first, then history: a prompt that ends between the two questions shows
                # as ended, never as lost.
                assert self.prompt_id is not None  # reconnecting is only for a submitted prompt
                known = self.comfy.knows(self.prompt_id)
                entry = self.comfy.history(self.prompt_id)
                break
            except HOST_ERRORS as exc:
                if time.monotonic() > give_up:
                    raise ConnectionError(f"ComfyUI stopped answering ({exc.__class__.__name__})") from exc
                time.sleep(0.5)
        status = entry.get("status") or {}
        if status.get("completed") or status.get("status_str") == "error":
            for node, output in (entry.get("outputs") or {}).items():
                if node not in self.outputs:
                    self.outputs[node] = self._deliver(output)
            for kind, data in status.get("messages", []):
                if kind in ENDS:
                    self.end.append({"type": kind, "data": {**data, "prompt_id": self.job_id}})
            self.end.append(
                {"type": "executing", "data": {"node": None, "display_node": None, "prompt_id": self.job_id}}
            )
            return self._end()
        if not known:
            raise ConnectionError("ComfyUI restarted during the run and lost the prompt")
        return None

    def _place_models(self) -> None:
        """The participant's own models the prompt names, into this host's cache, before ComfyUI
        validates the prompt (which looks for the file)."""
        wanted = self.payload.get("own_models") or []
        if wanted and self.model_cache is None:
            raise ModelRejected("this GPU worker has no cache for participants' own models")
        for item in wanted:

            def fetch(item=item):
                with self.app.download_model(self.job_id, self.run_no, str(item["sha256"])) as response:
                    yield from response.iter_content(1024 * 1024)

            assert self.model_cache is not None  # only a worker with a cache gets such a job
            if self.model_cache.ensure(item, fetch):
                log.info("job %s: fetched %s into the model cache", self.job_id, item["name"])

    def _starting(self, seconds: float) -> None:
        """A serverless GPU is starting: the participant sees it counting, not a frozen queue."""
        self.pending = [e for e in self.pending if e["type"] != protocol.GPU_STARTING]
        self.pending.append(
            {"type": protocol.GPU_STARTING, "data": {"prompt_id": self.job_id, "seconds": round(seconds)}}
        )
        self._flush()

    def _host_fault(self, exc) -> str:
        """ComfyUI is gone (or never answered): the host's fault, not the job's."""
        down = isinstance(exc, ColdStartTimeout) or not self.comfy.answers()
        reason = f"ComfyUI on this GPU host {'stopped answering' if down else 'failed'} ({exc})"
        log.warning("job %s run %s: %s; the job goes back to the queue", self.job_id, self.run_no, reason)
        try:
            # A prompt ComfyUI had started may itself have brought ComfyUI down (a video model
            # out of memory): that counts towards the job's attempts; one never started does not.
            said = (
                str(exc)
                if isinstance(exc, ColdStartTimeout)
                else ("the GPU host's ComfyUI stopped answering" if down else "the GPU host's ComfyUI failed")
            )
            self._finish("lost", reason=said, crash=self.started_at is not None, comfyui_unreachable=down)
        except RunFenced:
            pass
        return "lost"

    def _preview(self, frame: bytes) -> None:
        """Relay a sampler's live preview (sent only to our client_id, so it is this job's)."""
        if self.started_at is None or len(frame) < 8 or struct.unpack(">I", frame[:4])[0] != PREVIEW_IMAGE:
            return
        now = time.monotonic()
        if now - getattr(self, "last_preview", 0.0) < PREVIEW_EVERY:
            return
        self.last_preview = now
        self.pending.append({"type": protocol.PREVIEW, "data": {"frame": base64.b64encode(frame).decode()}})
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
            stored = self.app.upload_output(self.job_id, self.run_no, item, lambda: self.comfy.download(item))
            self.uploaded[ident] = {**item, **stored}
        return self.uploaded[ident]

    # --- events and stop requests ---

    def _flush_if_due(self) -> None:
        if self.pending and time.monotonic() - self.last_flush >= FLUSH:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        events, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        stop = self.app.events(self.job_id, self.run_no, events)
        if stop and not self.stop_kind:
            self.stop_kind = stop

    def _send_interrupt(self) -> None:
        if self.prompt_id:
            self.interrupt_sent = time.monotonic()
            try:
                self.comfy.interrupt(self.prompt_id)
            except HOST_ERRORS as exc:
                log.warning("job %s: interrupt failed (%s)", self.job_id, exc)

    def _abandon(self) -> None:
        """Stop this run's prompt on ComfyUI, wherever it is (running or still in its queue)."""
        if self.prompt_id:
            self.process.provider.cancel(self.prompt_id, self.comfy)

    # --- the result ---

    def _finish(self, status: str, error: dict | None = None, **extra) -> str:
        self.report(status, self.outputs, self.messages, self.end, error, self.load_seconds, **extra)
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
    return {
        "exception_message": "\n".join(lines),
        "exception_type": "ValidationError",
        "node_errors": body.get("node_errors") or {},
    }
