"""Calls to the app's worker API (docs/worker-protocol.md), retried while the app restarts."""

import gzip
import json
import logging
import time
from collections.abc import Callable, Iterable

import requests

log = logging.getLogger("gpuworker.app")
OUTPUT_PART_BYTES = 8 * 1024 * 1024  # what the app and this worker hold of an output at a time


class AppError(Exception):
    """The app answered 4xx: final, retrying will not help."""

    def __init__(self, status: int, body: str):
        super().__init__(f"app answered {status}: {body[:300]}")
        self.status, self.body = status, body

    @property
    def reason(self) -> str:
        """The app's {"error": …} message, else the start of its answer."""
        try:
            said = json.loads(self.body).get("error")
        except (ValueError, AttributeError):
            said = None
        return str(said or self.body[:300] or "no reason given")


class RunFenced(Exception):
    """The app says this run is no longer the job's current one: stop it, report nothing."""


class TokenRevoked(Exception):
    """The app no longer knows this worker's token (rotated or revoked)."""


class AppUnreachable(Exception):
    """The app did not answer for the whole retry window."""


class AppClient:
    def __init__(self, base_url: str, token: str, retry_seconds: float = 300.0, timeout: float = 30.0):
        self.base = base_url.rstrip("/") + "/api/worker/"
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs):
        """One call; connection errors and 5xx are retried with backoff (capped at 5 s)."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
                if response.status_code < 500:
                    if response.status_code == 401:
                        raise TokenRevoked("the app refused this worker's token (rotated or revoked)")
                    if response.status_code == 409 and _says_stop(response):
                        raise RunFenced(response.json().get("error", "run taken away"))
                    if response.status_code >= 400:
                        raise AppError(response.status_code, response.text)
                    return response
                problem = f"{response.status_code} {response.text[:200]}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = str(exc)
            if time.monotonic() + delay > deadline:
                raise AppUnreachable(f"app unreachable for {self.retry_seconds:.0f} s: {problem}")
            log.warning("app call %s %s failed (%s); retrying in %.1f s", method, path, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def post(self, path: str, payload: dict) -> dict:
        return self._call("POST", path, json=payload).json()

    # --- the contract's calls ---

    def register(self, **info) -> dict:
        return self.post("register", info)

    def heartbeat(self, status: str, job_id: str | None = None, run: int | None = None, **info) -> dict:
        return self.post("heartbeat", {"status": status, "job_id": job_id, "run": run, **info})

    def publish_catalog(self, catalog: dict) -> dict:
        # gzip: a current ComfyUI's object_info is 1.4 MB of JSON and compresses tenfold.
        return self._call(
            "POST",
            "catalog",
            data=gzip.compress(json.dumps(catalog).encode(), 6),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        ).json()

    def published_files(self) -> dict[str, str]:
        """{path: sha256} of the catalog files the app holds for this worker."""
        return self._call("GET", "catalog/files").json()

    def publish_file(self, path: str, content: bytes) -> dict:
        return self._call(
            "PUT",
            "catalog/files",
            params={"path": path},
            data=gzip.compress(content, 6),
            headers={"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"},
        ).json()

    def started(self, job_id: str, run: int) -> bool:
        """True when the run may go ahead; False when the app says it must not."""
        try:
            self.post(f"jobs/{job_id}/started", {"run": run})
        except RunFenced:
            return False
        return True

    def events(self, job_id: str, run: int, events: list[dict]) -> str | None:
        """Relay events; returns the app's stop request ('cancel', 'interrupt') or None."""
        return self.post(f"jobs/{job_id}/events", {"run": run, "events": events}).get("cancel")

    def download_input(self, job_id: str, run: int, item: dict) -> requests.Response:
        params = {k: item.get(k, "") for k in ("filename", "subfolder", "type")}
        return self._call("GET", f"jobs/{job_id}/inputs", params={**params, "run": run}, stream=True)

    def download_model(self, job_id: str, run: int, sha256: str):
        """A participant's model the job names: streamed, for the GPU host's model cache."""
        response = self._call("GET", f"jobs/{job_id}/models/{sha256}", params={"run": run}, stream=True)
        return response

    def upload_output(self, job_id: str, run: int, item: dict, open_stream: Callable[[], Iterable[bytes]]) -> dict:
        """Stream one file to the app in parts, each one request that is sent again on its own
        when the app restarts. Daphne reads a request's whole body, into memory, before the app
        sees any of it: a 2 GB video in one request took 2 GB and stalled the server."""
        params = {**{k: item.get(k, "") for k in ("filename", "subfolder", "type")}, "run": run}
        offset, part = 0, bytearray()
        for chunk in open_stream():
            part += chunk
            while len(part) >= OUTPUT_PART_BYTES:
                self._put_part(job_id, params, offset, bytes(part[:OUTPUT_PART_BYTES]), final=False)
                offset += OUTPUT_PART_BYTES
                del part[:OUTPUT_PART_BYTES]
        return self._put_part(job_id, params, offset, bytes(part), final=True)

    def _put_part(self, job_id: str, params: dict, offset: int, data: bytes, final: bool) -> dict:
        return self._call(
            "PUT",
            f"jobs/{job_id}/outputs",
            params={**params, "offset": offset, "final": int(final)},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        ).json()

    def finish(self, job_id: str, result: dict) -> dict:
        return self.post(f"jobs/{job_id}/finish", result)


def _says_stop(response) -> bool:
    try:
        return bool(response.json().get("stop"))
    except ValueError:
        return False
