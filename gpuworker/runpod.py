"""RunPod serverless: one run of a workshop job through the endpoint's own job API.

    POST {endpoint}/run            {"input": {"workflow": <API prompt>, "images": [...]}, "policy": {...}}
    GET  {endpoint}/status/{id}    IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT
    GET  {endpoint}/stream/{id}    what the handler yielded so far (progress, where it yields any)
    POST {endpoint}/cancel/{id}
    GET  {endpoint}/health         workers idle / running / initializing (a probe that starts none)

The input and output are those of RunPod's worker-comfyui image: input images as base64,
outputs as `{"images": [{"filename", "type": "base64" | "s3_url", "data"}]}` (and `videos`).
RunPod follows the job itself, so no replica can lose it; there is no ComfyUI socket, so the
participant sees "Starting a GPU…" while the job waits for a worker, then the run's own
progress where the handler streams ComfyUI's messages, then the outputs.
"""

import base64
import logging
import time
from typing import TYPE_CHECKING

import requests

from . import protocol
from .app import AppClient, RunFenced, TokenRevoked
from .comfy import ComfyAuthError, refuse_credentials
from .config import Timeouts
from .process import WorkerProcess
from .tasks import RunStops

if TYPE_CHECKING:  # types only: the provider builds this module's runs
    from .providers import Runpod

log = logging.getLogger("gpuworker.runpod")

WAITING = {"IN_QUEUE"}
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
OUTPUT_KINDS = ("images", "videos", "gifs", "audio")


class RunpodClient:
    def __init__(self, endpoint: str, api_key: str, timeouts: Timeouts | None = None):
        self.base = endpoint.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.session.hooks["response"].append(refuse_credentials)

    def _call(self, method: str, path: str, **kwargs) -> dict:
        response = self.session.request(
            method, self.base + path, timeout=(self.timeouts.connect, self.timeouts.request), **kwargs
        )
        response.raise_for_status()
        return response.json()

    def health(self) -> dict:
        return self._call("GET", "/health")

    def run(self, body: dict) -> str:
        return self._call("POST", "/run", json=body)["id"]

    def status(self, job_id: str) -> dict:
        return self._call("GET", f"/status/{job_id}")

    def stream(self, job_id: str) -> dict:
        return self._call("GET", f"/stream/{job_id}")

    def cancel(self, job_id: str) -> None:
        self._call("POST", f"/cancel/{job_id}")

    def fetch(self, url: str):
        """An output RunPod's handler left in a bucket (s3_url): streamed, never whole in memory.
        The URL is presigned: our API key must not go to the bucket."""
        response = requests.get(url, stream=True, timeout=(self.timeouts.connect, self.timeouts.request))
        response.raise_for_status()
        return response


class RunpodRun(RunStops):
    """The same outer contract as tasks.JobRun: started, events, outputs, finish, fenced."""

    refused_by = "RunPod refused"

    def __init__(self, payload: dict, app: AppClient, provider: "Runpod", connection, process: WorkerProcess):
        self.payload, self.app, self.redis, self.process = payload, app, connection, process
        self.provider, self.timeouts = provider, provider.timeouts
        # Its own client: HTTP sessions are not shared between the slots' threads.
        self.client = RunpodClient(provider.settings.config.endpoint, provider.settings.config.api_key, self.timeouts)
        self.job_id = payload["job_id"]
        self.run_no = int(payload.get("run", 0))
        self.remote_id: str | None = None
        self.stop_kind = None
        self.fenced = False
        self.started_at = None
        self.cold_start_seconds = None
        self.streamed = 0
        self.redis_ok = True

    def run(self) -> str:
        try:
            if not self.app.started(self.job_id, self.run_no):
                return "skipped"
            return self._run()
        except TokenRevoked:
            self._cancel_remote()
            self.process.revoke()
            return "revoked"
        except RunFenced:
            self._cancel_remote()
            return "fenced"
        except ComfyAuthError as exc:
            return self._refused(exc)
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._cancel_remote()
            return self._finish(
                "lost",
                reason=f"RunPod did not answer ({exc.__class__.__name__})",
                crash=self.started_at is not None,
                comfyui_unreachable=True,
            )
        except Exception as exc:
            log.exception("job %s failed", self.job_id)
            self._cancel_remote()
            return self._finish(
                "error", error={"exception_message": f"GPU worker error: {exc}", "exception_type": type(exc).__name__}
            )

    def _run(self) -> str:
        images = []
        for item in self.payload.get("inputs", []):
            with self.app.download_input(self.job_id, self.run_no, item) as response:
                name = "/".join(p for p in (item.get("subfolder", ""), item["filename"]) if p)
                images.append({"name": name, "image": base64.b64encode(response.content).decode()})
        timeout = float(self.payload.get("timeout") or 1800)
        body = {
            "input": {"workflow": self.payload["prompt"], "images": images},
            "policy": {"executionTimeout": int(timeout * 1000)},
        }
        self.remote_id = self.client.run(body)
        log.info("job %s run %s: RunPod job %s", self.job_id, self.run_no, self.remote_id)
        submitted = time.monotonic()
        deadline = submitted + timeout + self.timeouts.cold_start
        while True:
            self._check_stop()
            if self.fenced:
                raise RunFenced("the app says this run is over")
            if self.process.shutdown.is_set():
                self._cancel_remote()
                return self._finish("returned", reason="its GPU worker was shut down")
            if self.stop_kind:
                self._cancel_remote()
                return self._finish("interrupted", error={}, end=self._ending("execution_interrupted", {}))
            state = self.client.status(self.remote_id)
            status = state.get("status")
            if status in WAITING:
                waited = time.monotonic() - submitted
                if waited > self.timeouts.cold_start:
                    self._cancel_remote()
                    raise requests.Timeout(f"no RunPod worker took the job within {self.timeouts.cold_start:.0f} s")
                self._events(
                    [{"type": protocol.GPU_STARTING, "data": {"prompt_id": self.job_id, "seconds": round(waited)}}]
                )
            elif status == "IN_PROGRESS":
                if self.started_at is None:
                    self.started_at = time.monotonic()
                    self.cold_start_seconds = round(float(state.get("delayTime") or 0) / 1000, 3) or round(
                        self.started_at - submitted, 3
                    )
                    self._events(
                        [
                            {
                                "type": "execution_start",
                                "data": {"prompt_id": self.job_id, "timestamp": int(time.time() * 1000)},
                            }
                        ]
                    )
                self._relay_stream()
            elif status in ENDED:
                return self._ended(state)
            if time.monotonic() > deadline:
                self._cancel_remote()
                return self._finish(
                    "error",
                    error={"exception_message": f"Timed out after {timeout:.0f} s"},
                    end=self._ending("execution_error", {"exception_message": "Timed out"}),
                )
            time.sleep(self.timeouts.poll)

    def _relay_stream(self) -> None:
        """ComfyUI messages the handler yields ({"type", "data"}), relayed as the socket's would be."""
        try:
            assert self.remote_id is not None  # streamed only once submitted
            items = self.client.stream(self.remote_id).get("stream") or []
        except requests.HTTPError:
            return  # a handler that streams nothing
        relay = []
        for item in items[self.streamed :]:
            message = item.get("output") if isinstance(item, dict) else None
            if (
                isinstance(message, dict)
                and isinstance(message.get("type"), str)
                and isinstance(message.get("data"), dict)
            ):
                if message["type"] in ("progress", "executing", "progress_state"):
                    relay.append({**message, "data": {**message["data"], "prompt_id": self.job_id}})
        self.streamed = len(items)
        if relay:
            self._events(relay)

    def _ended(self, state: dict) -> str:
        if self.started_at is None:
            self.started_at = time.monotonic()
        status = state["status"]
        if status == "COMPLETED":
            output = state.get("output") or {}
            if isinstance(output, dict) and output.get("error"):
                return self._error(str(output["error"]))
            node = self._output_node()
            stored: dict = {}
            for kind in OUTPUT_KINDS:
                for item in (output.get(kind) or []) if isinstance(output, dict) else []:
                    stored.setdefault(kind, []).append(self._deliver(item))
            outputs = {node: stored} if stored else {}
            executed = (
                [
                    {
                        "type": "executed",
                        "data": {"node": node, "display_node": node, "output": stored, "prompt_id": self.job_id},
                    }
                ]
                if stored
                else []
            )
            if executed:
                self._events(executed)
            return self._finish("success", outputs=outputs, end=self._ending("execution_success", {}))
        if status == "CANCELLED":
            return self._finish("interrupted", error={}, end=self._ending("execution_interrupted", {}))
        if status == "TIMED_OUT":
            timeout = int(self.payload.get("timeout") or 1800)
            return self._error(f"Timed out after {timeout} s")
        return self._error(str(state.get("error") or "the RunPod job failed"))

    def _error(self, message: str) -> str:
        error = {"exception_message": message, "exception_type": "RunPodError"}
        return self._finish("error", error=error, end=self._ending("execution_error", error))

    def _output_node(self) -> str:
        prompt = self.payload.get("prompt") or {}
        for node_id, node in prompt.items():
            if str((node or {}).get("class_type", "")).startswith(("Save", "Preview")):
                return str(node_id)
        return str(next(iter(prompt), "0"))

    def _deliver(self, item: dict) -> dict:
        """One output, inline (base64) or by URL, streamed into the workspace."""
        name = str(item.get("filename") or "output")
        subfolder, _, filename = name.rpartition("/")
        target = {"filename": filename, "subfolder": subfolder, "type": "output"}
        if item.get("type") == "s3_url":
            response = self.client.fetch(str(item.get("data")))
            with response:
                stored = self.app.upload_output(
                    self.job_id, self.run_no, target, lambda: response.iter_content(1024 * 1024)
                )
        else:
            data = str(item.get("data") or "")
            data = data.split(",", 1)[1] if data.startswith("data:") else data
            raw = base64.b64decode(data)
            stored = self.app.upload_output(self.job_id, self.run_no, target, lambda: iter([raw]))
        return {**target, **stored}

    def _events(self, events: list[dict]) -> None:
        stop = self.app.events(self.job_id, self.run_no, events)
        if stop and not self.stop_kind:
            self.stop_kind = stop

    def _cancel_remote(self) -> None:
        if self.remote_id:
            self.provider.cancel(self.remote_id, self.client)

    def _ending(self, kind: str, data: dict) -> list[dict]:
        stamp = int(time.time() * 1000)
        return [
            {"type": kind, "data": {**data, "prompt_id": self.job_id, "timestamp": stamp}},
            {"type": "executing", "data": {"node": None, "display_node": None, "prompt_id": self.job_id}},
        ]

    def _finish(self, status: str, error: dict | None = None, outputs: dict | None = None, end=None, **extra) -> str:
        messages = [[m["type"], m["data"]] for m in (end or []) if m["type"] != "executing"]
        try:
            self.report(status, outputs or {}, messages, end or [], error, 0.0, **extra)
        except RunFenced:
            return "fenced"
        return status
