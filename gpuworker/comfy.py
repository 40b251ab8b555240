"""A client of one ComfyUI server: HTTP calls and the /ws message stream of one prompt."""

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from typing import Any

import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

log = logging.getLogger("gpuworker.comfy")

ENDS = {"execution_success", "execution_error", "execution_interrupted"}


class ComfyValidationError(Exception):
    """ComfyUI refused the prompt (HTTP 400); carries its {error, node_errors} body."""

    def __init__(self, body: dict):
        error = body.get("error") or {}
        message = error.get("message", "invalid prompt") if isinstance(error, dict) else str(error)
        super().__init__(message)
        self.body = body


class ComfyAuthError(requests.RequestException):
    """ComfyUI (or the serverless front before it) refused this worker's credentials: the
    provider file's headers are wrong or were rotated. The host's fault, never the job's."""

    def __init__(self, status: int, url: str):
        super().__init__(
            f"ComfyUI refused this worker's credentials (HTTP {status} from {url}): "
            "check the headers in the worker's provider file"
        )
        self.status = status


class ColdStartTimeout(Exception):
    """A serverless GPU did not start within the cold-start timeout."""


STARTING = {502, 503, 504}  # a serverless front whose container is not up yet


def refuse_credentials(response, *args, **kwargs):
    if response.status_code in (401, 403):
        raise ComfyAuthError(response.status_code, response.url.split("?")[0])


class ComfyClient:
    """One ComfyUI. `headers` go with every call and with the websocket (a serverless front's
    auth). Cookies a load balancer sets go along too: a replica set behind one URL keeps this
    client on one replica (sticky cookie), so a run's POST, socket and /history agree."""

    def __init__(
        self, base_url: str, headers: dict | None = None, timeout: float = 30.0, connect_timeout: float = 10.0
    ):
        self.base = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = (connect_timeout, timeout)
        self.session = requests.Session()
        self.session.headers.update(self.headers)
        self.session.hooks["response"].append(refuse_credentials)

    def wait_warm(self, limit: float, on_wait: Callable[[float], None], probe_timeout: float = 2.0) -> float:
        """Until ComfyUI answers: seconds spent waiting for a serverless GPU to start (0.0 when it
        was warm). `on_wait(seconds)` is called about once a second meanwhile."""
        started = time.monotonic()
        while True:
            try:
                response = self.session.get(self.base + "/system_stats", timeout=(probe_timeout, probe_timeout))
                if response.status_code not in STARTING:
                    response.raise_for_status()
                    return (
                        round(time.monotonic() - started, 3) if time.monotonic() - started > probe_timeout / 2 else 0.0
                    )
            except (requests.ConnectionError, requests.Timeout):
                pass  # a front that holds the request, or a container whose port is not open yet
            waited = time.monotonic() - started
            if waited > limit:
                raise ColdStartTimeout(f"the serverless GPU did not start within {limit:.0f} s")
            on_wait(waited)
            time.sleep(1.0)

    def get_json(self, path: str, **params):
        response = self.session.get(self.base + path, params=params, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def system_stats(self) -> dict:
        return self.get_json("/system_stats")

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def get_bytes(self, path: str) -> bytes:
        response = self.session.get(self.base + path, timeout=self.timeout)
        response.raise_for_status()
        return response.content

    def history(self, prompt_id: str) -> dict:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id) or {}

    def upload_image(self, filename: str, subfolder: str, fileobj, folder_type: str = "input") -> dict:
        response = self.session.post(
            self.base + "/upload/image",
            files={"image": (filename, fileobj)},
            data={"subfolder": subfolder, "type": folder_type, "overwrite": "true"},
            timeout=self.timeout,
        )
        response.raise_for_status()
        return response.json()

    def submit(self, prompt: dict, extra_data: dict, client_id: str, **fields) -> str:
        """Queue a prompt; `fields` are the other POST /prompt fields ComfyUI honours
        (partial_execution_targets). Never a prompt_id: ComfyUI would let a participant
        overwrite someone's history."""
        fields.pop("prompt_id", None)
        response = self.session.post(
            self.base + "/prompt",
            json={**fields, "prompt": prompt, "extra_data": extra_data, "client_id": client_id},
            timeout=self.timeout,
        )
        if response.status_code == 400:
            raise ComfyValidationError(response.json())
        response.raise_for_status()
        return response.json()["prompt_id"]

    def answers(self, timeout: float = 3.0) -> bool:
        try:
            self.session.get(self.base + "/system_stats", timeout=timeout).raise_for_status()
            return True
        except requests.RequestException:
            return False

    def knows(self, prompt_id: str) -> bool:
        """Is the prompt running or waiting in ComfyUI's queue?"""
        queue = self.get_json("/queue")
        return any(
            isinstance(item, list) and len(item) > 1 and item[1] == prompt_id
            for item in (queue.get("queue_running") or []) + (queue.get("queue_pending") or [])
        )

    def delete_from_queue(self, prompt_id: str) -> None:
        self.session.post(self.base + "/queue", json={"delete": [prompt_id]}, timeout=10).raise_for_status()

    def interrupt(self, prompt_id: str | None) -> None:
        body = {"prompt_id": prompt_id} if prompt_id else {}
        self.session.post(self.base + "/interrupt", json=body, timeout=10).raise_for_status()

    def download(self, item: dict, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """Stream one file from /view: a video of gigabytes never sits in memory whole."""
        params = {
            "filename": item["filename"],
            "subfolder": item.get("subfolder", ""),
            "type": item.get("type", "output"),
        }
        with self.session.get(self.base + "/view", params=params, stream=True, timeout=self.timeout) as response:
            response.raise_for_status()
            yield from response.iter_content(chunk_size)

    def replica(self) -> str:
        """The load balancer's cookies as they stand: when they change, calls went elsewhere."""
        return "; ".join(sorted(f"{c.name}={c.value}" for c in self.session.cookies))

    def websocket(self, client_id: str | None = None) -> "PromptSocket":
        return PromptSocket(self, client_id or uuid.uuid4().hex)


class PromptSocket:
    """ComfyUI's /ws for one client id; yields JSON messages, or None when `timeout` passes.

    Binary frames (preview images) are skipped: previews are not relayed.
    """

    def __init__(self, client: ComfyClient, client_id: str):
        self.client = client
        self.client_id = client_id
        self.ws: Any = None
        self._stack: Any = None
        self.replica = ""
        self.open()

    def open(self):
        url = self.client.base.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        headers = dict(self.client.headers)
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.client.session.cookies)
        if cookies:
            headers["Cookie"] = cookies
        self._stack = contextlib.ExitStack()
        try:
            self.ws = self._stack.enter_context(
                connect(url, additional_headers=headers, open_timeout=15, close_timeout=1, max_size=None)
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise ComfyAuthError(status, url.split("?")[0]) from None
            raise
        # The load balancer's choice of replica, for the calls that follow.
        for header in self.ws.response.headers.get_all("Set-Cookie"):
            for name, morsel in SimpleCookie(header).items():
                self.client.session.cookies.set(name, morsel.value)
        self.replica = self.client.replica()

    def receive(self, timeout: float) -> dict | None:
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        if isinstance(raw, bytes):
            return {"type": "_binary", "bytes": raw}
        return json.loads(raw)

    def reopen(self) -> None:
        self.close()
        self.open()

    def close(self):
        if self._stack is not None:
            with contextlib.suppress(Exception):
                self._stack.close()
            self._stack = self.ws = None


__all__ = [
    "ColdStartTimeout",
    "ComfyAuthError",
    "ComfyClient",
    "ComfyValidationError",
    "PromptSocket",
    "ConnectionClosed",
    "ENDS",
]
