"""A client of one ComfyUI server: HTTP calls and the /ws message stream of one prompt."""
import contextlib
import json
import logging
import uuid
from typing import Iterator

import requests
from websockets.exceptions import ConnectionClosed
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


class ComfyClient:
    def __init__(self, base_url: str, headers: dict | None = None, timeout: float = 30.0):
        self.base = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update(self.headers)

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
        params = {"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")}
        with self.session.get(self.base + "/view", params=params, stream=True, timeout=self.timeout) as response:
            response.raise_for_status()
            yield from response.iter_content(chunk_size)

    def websocket(self, client_id: str | None = None) -> "PromptSocket":
        return PromptSocket(self, client_id or uuid.uuid4().hex)


class PromptSocket:
    """ComfyUI's /ws for one client id; yields JSON messages, or None when `timeout` passes.

    Binary frames (preview images) are skipped: previews are not relayed.
    """

    def __init__(self, client: ComfyClient, client_id: str):
        self.client = client
        self.client_id = client_id
        self.ws = None
        self._stack = None
        self.open()

    def open(self):
        url = self.client.base.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(url, additional_headers=self.client.headers, open_timeout=15, close_timeout=1, max_size=None)
        )

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


__all__ = ["ComfyClient", "ComfyValidationError", "PromptSocket", "ConnectionClosed", "ENDS"]
