"""The app's worker API (docs/worker-protocol.md), called with retries while the app restarts."""
import json
import logging
import time
from typing import Callable, Iterable

import requests

log = logging.getLogger("gpuworker.app")

# Failures that say nothing about the request itself: the app restarting, a proxy in between
# timing out, a connection dropped half-way. The calls are idempotent, so they are repeated.
RETRIED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
MAX_DELAY = 5.0


class AppError(Exception):
    """The app answered 4xx: final, the same call would get the same answer."""

    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"app answered {status} to {method} {path}: {body[:300]}")
        self.status, self.body = status, body

    @property
    def answer(self) -> dict:
        """The JSON body, if it is one (e.g. {"state": "cancelled"} with a 409)."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class AppUnreachable(ConnectionError):
    """The app did not answer (or answered 5xx) for the whole retry period."""


class AppClient:
    def __init__(self, base_url: str, token: str, retry_seconds: float = 300.0, timeout: float = 30.0):
        self.base = base_url.rstrip("/") + "/api/worker/"
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self):
        return f"AppClient({self.base!r})"

    def _call(self, method: str, path: str, *, body_factory: Callable[[], object] | None = None, **kwargs):
        """One call: connection errors and 5xx are retried, the pause doubling up to 5 s, until
        `retry_seconds` have passed; 4xx raise AppError at once.

        A streamed body can be sent only once, so it comes from `body_factory`, called anew for
        every attempt.
        """
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                if body_factory is not None:
                    kwargs["data"] = body_factory()
                response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
                if response.status_code < 400:
                    return response
                if response.status_code < 500:
                    raise AppError(method, path, response.status_code, response.text)
                problem = f"{response.status_code} {response.text[:200]}"
                response.close()
            except RETRIED as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline:
                raise AppUnreachable(
                    f"{method} {path}: no answer from the app for {self.retry_seconds:.0f} s ({problem})"
                )
            log.warning("app call %s %s failed (%s); retrying in %.1f s", method, path, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    def post(self, path: str, payload: dict) -> dict:
        return self._call("POST", path, json=payload).json()

    # --- the worker ---

    def register(self, name: str, provider: str, comfyui_url: str, version: str, capacity: int = 1) -> dict:
        return self.post("register", {"name": name, "provider": provider, "comfyui_url": comfyui_url,
                                      "version": version, "capacity": capacity})

    def heartbeat(self, status: str, job_id: str | None = None) -> dict:
        """status: idle, busy, or offline (a worker that stops: no job is sent to it any more)."""
        return self.post("heartbeat", {"status": status, "job_id": job_id})

    def publish_catalog(self, catalog: dict) -> dict:
        return self.post("catalog", catalog)

    def publish_file(self, path: str, content: bytes) -> dict:
        return self._call("PUT", "catalog/files", params={"path": path}, data=content,
                          headers={"Content-Type": "application/octet-stream"}).json()

    # --- one job ---

    def started(self, job_id: str, comfyui_prompt_id: str | None = None) -> bool:
        """True when the job may run; False on 409: it was cancelled (or taken) meanwhile."""
        try:
            self.post(f"jobs/{job_id}/started", {"comfyui_prompt_id": comfyui_prompt_id})
        except AppError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def events(self, job_id: str, events: list[dict]) -> str | None:
        """Relay events; answers the app's stop request ('cancel', 'interrupt') or None."""
        return self.post(f"jobs/{job_id}/events", {"events": events}).get("cancel")

    def download_input(self, job_id: str, item: dict) -> requests.Response:
        """The input file as a streamed response (use it as a context manager)."""
        return self._call("GET", f"jobs/{job_id}/inputs", params=_file_params(item, "input"), stream=True)

    def fetch_input(self, job_id: str, item: dict, fileobj, chunk_size: int = 1024 * 1024) -> int:
        """Copy one input into `fileobj` (seekable), starting over if the transfer breaks."""
        deadline = time.monotonic() + self.retry_seconds
        while True:
            fileobj.seek(0)
            fileobj.truncate()
            try:
                with self.download_input(job_id, item) as response:
                    size = 0
                    for chunk in response.iter_content(chunk_size):
                        fileobj.write(chunk)
                        size += len(chunk)
                fileobj.seek(0)
                return size
            except RETRIED as exc:
                if time.monotonic() > deadline:
                    raise AppUnreachable(f"input {item.get('filename')!r} of job {job_id}: {exc}") from exc
                log.warning("download of input %r broke off (%s); starting over", item.get("filename"), exc)
                time.sleep(1)

    def upload_output(self, job_id: str, item: dict, open_stream: Callable[[], Iterable[bytes] | object]) -> dict:
        """Stream one output file; answers where the app stored it ({filename, subfolder, type}).

        `open_stream()` returns an iterator of chunks or a file object (sent chunked, never held
        whole in memory); it is called again for each retry.
        """
        return self._call(
            "PUT",
            f"jobs/{job_id}/outputs",
            params=_file_params(item, "output"),
            body_factory=open_stream,
            headers={"Content-Type": "application/octet-stream"},
        ).json()

    def finish(self, job_id: str, result: dict) -> dict:
        return self.post(f"jobs/{job_id}/finish", result)


def _file_params(item: dict, default_type: str) -> dict:
    return {
        "filename": item.get("filename", ""),
        "subfolder": item.get("subfolder") or "",
        "type": item.get("type") or default_type,
    }
