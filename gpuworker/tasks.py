"""The RQ job function: one workshop job on one ComfyUI, from inputs to the reported result.

RQ calls `run_job(payload)` in a forked work horse; the worker's settings (app URL, token,
ComfyUI URL) come from the environment `python -m gpuworker` prepared, never from the payload.
"""
import base64
import collections
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field

import redis
import requests
from websockets.exceptions import ConnectionClosed

from .app import AppClient, AppError
from .comfy import ENDS, PREVIEW_IMAGE, ComfyClient, ComfyError, ComfyFileMissing, ComfyValidationError
from .throttle import KINDS as PROGRESS_KINDS
from .throttle import ProgressThrottle

log = logging.getLogger("gpuworker.tasks")

CANCEL_KEY = "workshop:cancel:{}"
TICK = 0.25  # longest wait on ComfyUI between looks at the cancel key (the contract says 0.5 s)
FLUSH_EVERY = 0.25  # events wait at most this long to go out together in one call
PREVIEW_EVERY = 0.5  # enough to watch an image form; each preview is tens of kilobytes
REINTERRUPT_EVERY = 2.0  # ComfyUI ignores an interrupt for a prompt that has not started yet
GIVE_UP_AFTER = 60.0  # seconds a stopped prompt may take to end before the job is given up
QUIET_CHECK = 30.0  # no word about the prompt this long: ask /history whether it ended unseen
LOST_AFTER = 120.0  # ComfyUI unreachable this long: the job fails
EVENTS_POLL = 2.0  # without Redis, the events call is the way to hear of a cancel
SPOOL_IN_MEMORY = 8 * 1024 * 1024
# Not about the run: the queue counts (the app sends its own) and server-wide chatter.
NOT_RELAYED = {"status", "feature_flags", "crystools.monitor"}
# ComfyUI's own types: without a prompt_id they are not about our run (e.g. the `executing`
# a reconnected socket is greeted with). Unknown types sent to our socket while our prompt runs
# come from custom nodes and are relayed as they are.
KNOWN = {"executing", "executed", "progress", "progress_state", "execution_start", "execution_cached", *ENDS}
HISTORY_KINDS = {"execution_start", "execution_cached", *ENDS}
# Sent without waiting for the batch: the run has begun; files are there to be shown. The rest
# (executing, progress …) waits at most FLUSH_EVERY, so a burst of quick nodes is one call.
SENT_AT_ONCE = {"execution_start", "executed"}


@dataclass
class Settings:
    """What a job needs to know about its worker (from the command line, via the environment)."""

    app: str
    token: str
    comfyui: str
    redis: str = ""
    headers: dict = field(default_factory=dict)
    app_retry: float = 300.0
    name: str = ""

    @classmethod
    def from_env(cls, environ=None) -> "Settings":
        env = os.environ if environ is None else environ
        missing = [n for n in ("GPUWORKER_APP", "GPUWORKER_TOKEN", "GPUWORKER_COMFYUI") if not env.get(n)]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not set: run jobs through `python -m gpuworker`")
        return cls(
            app=env["GPUWORKER_APP"],
            token=env["GPUWORKER_TOKEN"],
            comfyui=env["GPUWORKER_COMFYUI"],
            redis=env.get("GPUWORKER_REDIS", ""),
            headers=json.loads(env.get("GPUWORKER_HEADERS") or "{}"),
            app_retry=float(env.get("GPUWORKER_APP_RETRY") or 300),
            name=env.get("GPUWORKER_NAME", ""),
        )


class JobGone(Exception):
    """The app answered 409 mid-run: the job is no longer this worker's (it was requeued or
    ended elsewhere). Nothing more may be reported for it."""


def run_job(payload: dict, settings: Settings | None = None, *, connection=None, app=None, comfy=None) -> str:
    """The function RQ runs (`gpuworker.tasks.run_job`); answers the final status.

    Outside RQ (tests, a shell) pass `settings` (or ready `app` and `comfy` clients) and the
    Redis `connection` that carries cancel requests (None: only the events answer is heard).
    """
    from rq import get_current_job

    rq_job = get_current_job()
    if app is None or comfy is None:
        settings = settings or Settings.from_env()
        app = app or AppClient(settings.app, settings.token, settings.app_retry)
        comfy = comfy or ComfyClient(settings.comfyui, settings.headers)
    if connection is None:
        if rq_job is not None:
            connection = rq_job.connection
        elif settings is not None and settings.redis:
            connection = redis.Redis.from_url(settings.redis)
    return JobRun(payload, app, comfy, connection, rq_job=rq_job).run()


class JobRun:
    def __init__(self, payload: dict, app: AppClient, comfy: ComfyClient, connection=None, rq_job=None):
        self.payload = payload
        self.job_id = str(payload["job_id"])
        self.timeout = float(payload.get("timeout") or 1800)
        self.app, self.comfy, self.redis, self.rq_job = app, comfy, connection, rq_job
        self.began = time.monotonic()
        self.socket = None
        self.prompt_id = None
        self.running = False  # between our prompt's execution_start and its end
        self.ended = False
        # Stopping: 'cancel' / 'interrupt' (the app's word, passed back to it as "interrupted")
        # or 'timeout'; ComfyUI's answer to the interrupt then ends the run.
        self.stop_kind = None
        self.stop_at = self.last_interrupt = 0.0
        self.next_stop_check = 0.0
        self.redis_ok = connection is not None
        # Relaying.
        self.pending: list[dict] = []
        self.last_flush = 0.0
        self.throttle = ProgressThrottle(interval=FLUSH_EVERY)
        self.last_preview = 0.0
        self.backlog = collections.deque()  # messages recovered from /history after a lost socket
        self.last_word = time.monotonic()
        self.lost_at = None
        self.next_reconnect = 0.0
        # The result.
        self.outputs: dict = {}
        self.messages: list = []
        self.uploaded: dict[tuple, dict | None] = {}
        self.started_at = None
        self.stamps: dict[str, int] = {}  # ComfyUI's ms timestamps, for gpu_seconds after a lost socket
        self.finish_tried = False

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> str:
        if not self.app.started(self.job_id):
            log.info("job %s: the app says it must not run (cancelled meanwhile); skipped", self.job_id)
            return "skipped"
        log.info("job %s: started (workspace %s, attempt %s)", self.job_id, self.payload.get("workspace"),
                 self.payload.get("attempt"))
        try:
            return self._run()
        except JobGone as exc:
            log.warning("job %s: %s; stopping it here", self.job_id, exc)
            self._interrupt_quietly()
            return "gone"
        except Exception as exc:
            log.exception("job %s failed", self.job_id)
            self._interrupt_quietly()
            if not self.finish_tried:
                try:
                    error = {"exception_message": _readable(exc), "exception_type": type(exc).__name__}
                    self._finish("error", error=error)
                except Exception:
                    log.exception("job %s: could not report the failure to the app", self.job_id)
            raise
        finally:
            if self.socket is not None:
                self.socket.close()

    def _run(self) -> str:
        self._transfer_inputs()
        self._check_stop()
        if self.stop_kind:
            return self._end_stopped(None)
        # The socket first: ComfyUI sends a prompt's messages only to sockets open at the time.
        self.socket = self.comfy.websocket()
        try:
            self.prompt_id = self.comfy.submit(
                self.payload["prompt"], self.payload.get("extra_data"), self.socket.client_id
            )
        except ComfyValidationError as exc:
            log.info("job %s: ComfyUI refused the prompt: %s", self.job_id, exc)
            return self._finish("error", error=validation_error(exc))
        self._remember_prompt_id()
        log.info("job %s: ComfyUI prompt %s", self.job_id, self.prompt_id)
        if self.stop_kind:  # asked while the prompt was being sent
            self._send_interrupt()
        return self._follow()

    def _transfer_inputs(self) -> None:
        for item in self.payload.get("inputs") or []:
            self._check_stop()
            self._check_timeout()
            if self.stop_kind:
                return
            with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as spool:
                size = self.app.fetch_input(self.job_id, item, spool)
                answer = self.comfy.upload_image(item["filename"], item.get("subfolder") or "", spool,
                                                 type=item.get("type") or "input", overwrite=True)
            if answer.get("name") != item["filename"]:
                log.warning("job %s: ComfyUI stored input %r as %r", self.job_id, item["filename"], answer.get("name"))
            log.info("job %s: input %s (%d bytes) uploaded to ComfyUI", self.job_id, item["filename"], size)

    def _follow(self) -> str:
        while True:
            self._check_stop()
            self._check_timeout()
            if self.stop_kind and time.monotonic() - self.stop_at > GIVE_UP_AFTER:
                log.warning("job %s: ComfyUI did not end prompt %s within %.0f s of the interrupt; giving up",
                            self.job_id, self.prompt_id, GIVE_UP_AFTER)
                return self._end_stopped(None, gave_up=True)
            message = self._next_message()
            if message is not None:
                result = self._handle(message)
                if result is not None:
                    return result
            self._housekeeping()

    # --- ComfyUI's messages ------------------------------------------------------------------

    def _next_message(self) -> dict | None:
        if self.backlog:
            return self.backlog.popleft()
        if self.socket.ws is None:
            return self._while_disconnected()
        try:
            return self.socket.receive(TICK)
        except (ConnectionClosed, OSError) as exc:
            log.warning("job %s: ComfyUI's websocket closed (%s); reconnecting", self.job_id, exc)
            self.socket.close()
            self.lost_at = time.monotonic()
            self.next_reconnect = 0.0
            return None

    def _while_disconnected(self) -> None:
        """Reconnect with the same client id; meanwhile /history tells whether the prompt ended."""
        now = time.monotonic()
        if now < self.next_reconnect:
            time.sleep(min(TICK, self.next_reconnect - now))
            return None
        try:
            self.socket.open()
        except Exception as exc:
            self.next_reconnect = now + 1.0
            if now - self.lost_at > LOST_AFTER:
                raise ComfyError(f"ComfyUI at {self.comfy.base} stopped answering for {LOST_AFTER:.0f} s") from exc
            log.info("job %s: ComfyUI's websocket not back yet (%s)", self.job_id, exc)
            try:
                self.backlog.extend(self._from_history())
            except (requests.RequestException, ValueError):
                pass  # ComfyUI itself is away: try again in a second
            return None
        log.info("job %s: websocket to ComfyUI reconnected", self.job_id)
        self.lost_at = None
        # Whatever ended while we were away is in the history; what comes later, on the socket.
        self.backlog.extend(self._from_history())
        return None

    def _from_history(self, final: bool = False) -> list[dict]:
        """Messages recovering what the socket missed: `executed` for outputs not yet delivered,
        then the end. Empty while the prompt still runs. `final`: the prompt is known to be over
        (ComfyUI said `executing null`), so an end is made up if the history has none."""
        entry = self.comfy.history(self.prompt_id, timeout=10)
        self.last_word = time.monotonic()
        status = entry.get("status") or {}
        if not entry or not (status.get("completed") or status.get("status_str") == "error"):
            if not final:
                if not entry and not self.comfy.queued(self.prompt_id, timeout=10):
                    raise ComfyError(f"ComfyUI no longer knows prompt {self.prompt_id} (was it restarted?)")
                return []
        seen = {kind for kind, _ in self.messages}
        for kind, data in status.get("messages") or []:
            if kind in ("execution_start", "execution_cached") and kind not in seen:
                self.messages.append([kind, self._rename(data)])
                self._stamp(kind, data)
        recovered = [
            {"type": "executed",
             "data": {"node": node, "display_node": node, "output": output, "prompt_id": self.prompt_id}}
            for node, output in (entry.get("outputs") or {}).items()
            if node not in self.outputs
        ]
        ends = [[k, d] for k, d in status.get("messages") or [] if k in ENDS]
        if ends:
            kind, data = ends[-1]
        elif status.get("completed"):
            kind, data = "execution_success", {}
        else:
            kind, data = "execution_error", {"exception_message": "ComfyUI ended the run without saying why"}
        recovered.append({"type": kind, "data": {**data, "prompt_id": self.prompt_id}})
        return recovered

    def _handle(self, message: dict) -> str | None:
        """Relay one message; answers the final status once the run is over."""
        kind = message.get("type")
        if kind == "_binary":
            self._preview(message)
            return None
        data = message.get("data")
        if kind in NOT_RELAYED or not isinstance(data, dict):
            return None
        if "prompt_id" not in data:
            if self.running and kind not in KNOWN:
                self._queue(kind, data)
            return None
        if data["prompt_id"] != self.prompt_id:
            return None
        self.last_word = time.monotonic()
        self._stamp(kind, data)
        data = self._rename(data)
        if kind == "execution_start":
            self.running = True
            self.started_at = time.monotonic()
        if kind in HISTORY_KINDS:
            self.messages.append([kind, data])
        if kind == "executing" and data.get("node") is None:
            # ComfyUI sends its end message first; this socket missed it (it reconnected).
            self.backlog.extend(self._from_history(final=True))
            return None
        if kind in ENDS:
            self.running, self.ended = False, True
            self._queue_all(self.throttle.drain())
            self._queue(kind, data)
            self._flush()
            return self._end(kind, data)
        if kind in PROGRESS_KINDS:
            self._queue_all(self.throttle.offer({"type": kind, "data": data}))
            return None
        if kind in ("executing", "executed"):
            self._queue_all(self.throttle.drain())  # the node's last progress goes before it
        if kind == "executed":
            # The browser loads the files as soon as it hears of them: they must be there first.
            data["output"] = self._deliver(data.get("output") or {})
            self.outputs[str(data.get("node"))] = data["output"]
        self._queue(kind, data)
        if kind in SENT_AT_ONCE:
            self._flush()
        return None

    def _rename(self, data: dict) -> dict:
        """ComfyUI's prompt_id replaced by the job id, also inside progress_state's nodes."""
        data = {**data, "prompt_id": self.job_id}
        nodes = data.get("nodes")
        if isinstance(nodes, dict):
            data["nodes"] = {
                n: {**v, "prompt_id": self.job_id} if isinstance(v, dict) and "prompt_id" in v else v
                for n, v in nodes.items()
            }
        return data

    def _stamp(self, kind: str, data: dict) -> None:
        if kind in HISTORY_KINDS and isinstance(data.get("timestamp"), (int, float)):
            self.stamps.setdefault(kind if kind not in ENDS else "end", data["timestamp"])

    def _preview(self, message: dict) -> None:
        """A sampler's live preview (ComfyUI sends them only to this job's client id)."""
        if not self.running or message.get("event") != PREVIEW_IMAGE:
            return
        now = time.monotonic()
        if now - self.last_preview < PREVIEW_EVERY:
            return
        self.last_preview = now
        self._queue("_preview", {"frame": base64.b64encode(message["bytes"]).decode()})

    # --- files ---------------------------------------------------------------------------------

    def _deliver(self, output: dict) -> dict:
        """Every file of an `executed` output streamed to the app; the output with stored names."""
        delivered = {}
        for key, value in output.items():
            if isinstance(value, list) and value and all(_is_file(v) for v in value):
                files = [self._upload(v) for v in value]
                delivered[key] = [f for f in files if f is not None]
            else:
                delivered[key] = value
        return delivered

    def _upload(self, item: dict) -> dict | None:
        # A cached re-run names an earlier run's file: it is still on the GPU host (outputs are
        # never deleted there, for this reason), and this job gets its own copy.
        ident = (item.get("type") or "output", item.get("subfolder") or "", item["filename"])
        if ident in self.uploaded:
            return self.uploaded[ident]
        self._check_stop()
        kind, subfolder, filename = ident
        try:
            stored = self.app.upload_output(self.job_id, item, lambda: self.comfy.download(filename, subfolder, kind))
        except ComfyFileMissing as exc:
            log.warning("job %s: output skipped: %s", self.job_id, exc)
            self.uploaded[ident] = None
            return None
        except AppError as exc:
            if exc.status == 409:
                raise JobGone(f"the app refused its outputs ({exc.answer.get('state', exc.body[:100])})") from exc
            raise
        # fullpath (VideoHelperSuite) is a path on the GPU host: of no use to anyone else.
        result = {k: v for k, v in item.items() if k != "fullpath"}
        result.update({k: stored[k] for k in ("filename", "subfolder", "type") if k in stored})
        self.uploaded[ident] = result
        return result

    # --- events out, stop requests in ------------------------------------------------------

    def _queue(self, kind: str, data: dict) -> None:
        self.pending.append({"type": kind, "data": data})

    def _queue_all(self, messages: list[dict]) -> None:
        self.pending.extend(messages)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        self._queue_all(self.throttle.due())
        if self.pending and now - self.last_flush >= FLUSH_EVERY:
            self._flush()
        elif not self.redis_ok and now - self.last_flush >= EVENTS_POLL:
            self._flush(empty_ok=True)
        if self.stop_kind and now - self.last_interrupt >= REINTERRUPT_EVERY:
            self._send_interrupt()
        if self.socket.ws is not None and now - self.last_word > QUIET_CHECK:
            # A socket can stay open and yet hear nothing (a proxy, or ComfyUI unregistering it).
            try:
                self.backlog.extend(self._from_history())
            except requests.RequestException as exc:
                log.warning("job %s: ComfyUI's history unavailable (%s)", self.job_id, exc)
                self.last_word = now

    def _flush(self, empty_ok: bool = False) -> None:
        if not self.pending and not empty_ok:
            return
        events, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        stop = self.app.events(self.job_id, events)
        if stop:
            self._request_stop(stop)

    def _check_stop(self) -> None:
        now = time.monotonic()
        if self.stop_kind or self.redis is None or now < self.next_stop_check:
            return
        self.next_stop_check = now + TICK
        try:
            value = self.redis.get(CANCEL_KEY.format(self.job_id))
        except redis.RedisError as exc:
            if self.redis_ok:
                log.warning("job %s: Redis unavailable (%s); listening for a cancel on the events call",
                            self.job_id, exc)
            self.redis_ok = False
            return
        self.redis_ok = True
        if value:
            self._request_stop(value.decode() if isinstance(value, bytes) else str(value))

    def _check_timeout(self) -> None:
        if self.stop_kind is None and time.monotonic() - self.began > self.timeout:
            log.warning("job %s: timed out after %s s", self.job_id, _seconds(self.timeout))
            self._request_stop("timeout")

    def _request_stop(self, kind: str) -> None:
        if self.stop_kind is not None:
            return
        self.stop_kind = kind
        self.stop_at = time.monotonic()
        log.info("job %s: %s requested; interrupting ComfyUI", self.job_id, kind)
        self._send_interrupt()

    def _send_interrupt(self) -> None:
        self.last_interrupt = time.monotonic()
        if self.prompt_id:
            try:
                self.comfy.interrupt(self.prompt_id)
            except requests.RequestException as exc:
                log.warning("job %s: interrupt not delivered (%s); trying again", self.job_id, exc)

    def _interrupt_quietly(self) -> None:
        """The job is over for us, whatever ComfyUI is doing: free the GPU for the next one."""
        if not self.prompt_id or self.ended:
            return
        for action in (self.comfy.delete_queued, self.comfy.interrupt):
            try:
                action(self.prompt_id)
            except Exception as exc:
                log.warning("job %s: could not stop prompt %s on ComfyUI: %s", self.job_id, self.prompt_id, exc)

    def _remember_prompt_id(self) -> None:
        """In the RQ job's meta, so the worker process can interrupt it when it is told to stop."""
        if self.rq_job is None:
            return
        try:
            self.rq_job.meta["comfyui_prompt_id"] = self.prompt_id
            self.rq_job.save_meta()
        except Exception as exc:
            log.debug("could not save the prompt id in RQ: %s", exc)

    # --- the result ---------------------------------------------------------------------------

    def _end(self, kind: str, data: dict) -> str:
        if kind == "execution_success":
            return self._finish("success")  # a stop that came too late: the result is there, keep it
        if kind == "execution_error":
            return self._finish("error", error=data)
        return self._end_stopped(data)

    def _end_stopped(self, data: dict | None, gave_up: bool = False) -> str:
        if self.stop_kind == "timeout":
            text = f"Timed out after {_seconds(self.timeout)} s"
            if gave_up:
                text += "; ComfyUI did not stop when interrupted"
            return self._finish("error", error={**(data or {}), "exception_message": text, "exception_type": "Timeout"})
        error = dict(data or {})
        if gave_up:
            error["exception_message"] = f"ComfyUI did not stop within {GIVE_UP_AFTER:.0f} s of the interrupt"
        # 'interrupted' whoever stopped it: the app knows whether to requeue or cancel the job.
        return self._finish("interrupted", error=error or None)

    def _gpu_seconds(self) -> float:
        if self.started_at is not None:
            return round(time.monotonic() - self.started_at, 3)
        if "execution_start" in self.stamps and "end" in self.stamps:
            return round(max(0, self.stamps["end"] - self.stamps["execution_start"]) / 1000, 3)
        return 0.0

    def _finish(self, status: str, error: dict | None = None) -> str:
        self.finish_tried = True
        result = {
            "status": status,
            "outputs": self.outputs,
            "messages": self.messages,
            "error": error,
            "gpu_seconds": self._gpu_seconds(),
        }
        try:
            answer = self.app.finish(self.job_id, result)
        except AppError as exc:
            if exc.status != 409:
                raise
            log.warning("job %s: the app no longer takes its result (%s)", self.job_id, exc.body[:100])
            return status
        log.info("job %s: %s after %.1f s (%.2f s on the GPU); the app says %s", self.job_id, status,
                 time.monotonic() - self.began, result["gpu_seconds"], answer.get("state"))
        return status


def _is_file(value) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("filename"), str)
        and (value.get("type") or "output") in ("output", "temp")
    )


def _seconds(value: float):
    return int(value) if float(value).is_integer() else value


def _readable(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return f"GPU worker error: {text}"[:1000]


def validation_error(exc: ComfyValidationError) -> dict:
    """ComfyUI's 400 as an error a participant can read, the node errors spelled out."""
    error = exc.error if isinstance(exc.error, dict) else {"message": str(exc.error)}
    lines = [error.get("message") or "Prompt refused"]
    if error.get("details"):
        lines[0] += f": {error['details']}"
    for node_id, node in exc.node_errors.items():
        for err in (node or {}).get("errors", []):
            detail = f" ({err['details']})" if err.get("details") else ""
            lines.append(f"#{node_id} {node.get('class_type', '')}: {err.get('message')}{detail}")
    return {
        "exception_message": "\n".join(lines),
        "exception_type": error.get("type") or "invalid_prompt",
        "error": error,
        "node_errors": exc.node_errors,
    }
