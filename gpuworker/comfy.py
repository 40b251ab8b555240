"""A client of one ComfyUI server (0.3.64's HTTP API and /ws), as recorded in shared/comfyui/.

Local, or serverless (Modal, Verda …): the same routes, plus auth headers on every request and
on the websocket handshake.
"""
import contextlib
import io
import json
import logging
import os
import struct
import tempfile
import time
import uuid
from typing import Iterator

import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

log = logging.getLogger("gpuworker.comfy")

# The messages after which ComfyUI sends nothing more about a prompt but `status` and
# `executing {node: null}` (which also ends it, for a client that missed the others).
ENDS = frozenset({"execution_success", "execution_error", "execution_interrupted"})
# Keys the official frontend puts into extra_data when someone is logged in to comfy.org:
# ComfyUI shows them to anyone in /queue, and the GPU host has no business with them.
PRIVATE_EXTRA_DATA = ("auth_token_comfy_org", "api_key_comfy_org")
PREVIEW_IMAGE, PROGRESS_TEXT, PREVIEW_IMAGE_WITH_METADATA = 1, 3, 4
SPOOL_IN_MEMORY = 8 * 1024 * 1024


class ComfyError(Exception):
    """ComfyUI answered something other than what its protocol promises."""


class ComfyValidationError(ComfyError):
    """POST /prompt answered 400: the prompt was refused. `body` is ComfyUI's {error, node_errors}."""

    def __init__(self, body: dict):
        self.body = body if isinstance(body, dict) else {"error": str(body), "node_errors": {}}
        error = self.body.get("error") or {}
        message = error.get("message", "invalid prompt") if isinstance(error, dict) else str(error)
        details = error.get("details") if isinstance(error, dict) else ""
        super().__init__(f"{message}: {details}" if details else message)

    @property
    def error(self) -> dict:
        return self.body.get("error") or {}

    @property
    def node_errors(self) -> dict:
        return self.body.get("node_errors") or {}


class ComfyFileMissing(ComfyError):
    """/view answered 404: the file is not (or no longer) on the ComfyUI host."""


def is_end(message: dict, prompt_id: str) -> bool:
    """Whether `message` is the last word about `prompt_id`."""
    kind, data = message.get("type"), message.get("data")
    if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
        return False
    return kind in ENDS or (kind == "executing" and data.get("node") is None)


class ComfyClient:
    def __init__(self, base_url: str, headers: dict | None = None, timeout: float = 30.0):
        self.base = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update(self.headers)

    def __repr__(self):
        return f"ComfyClient({self.base!r})"

    # --- reading ---

    def get_json(self, path: str, timeout: float | None = None, **params):
        response = self.session.get(self.base + path, params=params, timeout=timeout or self.timeout)
        response.raise_for_status()
        return response.json()

    def get_bytes(self, path: str) -> bytes:
        response = self.session.get(self.base + path, timeout=self.timeout)
        response.raise_for_status()
        return response.content

    def system_stats(self, timeout: float | None = None) -> dict:
        return self.get_json("/system_stats", timeout=timeout)

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def history(self, prompt_id: str, timeout: float | None = None) -> dict:
        """The history entry of one prompt ({} while it is queued or running, or unknown)."""
        return self.get_json(f"/history/{prompt_id}", timeout=timeout).get(prompt_id) or {}

    def queued(self, prompt_id: str, timeout: float | None = None) -> bool:
        """Whether the prompt is running or waiting in ComfyUI's own queue."""
        queue = self.get_json("/queue", timeout=timeout)
        items = (queue.get("queue_running") or []) + (queue.get("queue_pending") or [])
        return any(len(item) > 1 and item[1] == prompt_id for item in items)

    # --- files ---

    def upload_image(self, filename: str, subfolder: str, fileobj, type: str = "input", overwrite: bool = True) -> dict:
        """POST /upload/image; answers ComfyUI's {"name", "subfolder", "type"}.

        The body is streamed from `fileobj` with its length known up front: requests would read
        a whole file into memory to build a multipart body, and an input video can be large.
        """
        with contextlib.ExitStack() as stack:
            if not _seekable(fileobj):
                spool = stack.enter_context(tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY))
                for chunk in iter(lambda: fileobj.read(1024 * 1024), b""):
                    spool.write(chunk)
                spool.seek(0)
                fileobj = spool
            fields = {"type": type, "subfolder": subfolder or "", "overwrite": "true" if overwrite else "false"}
            body = MultipartBody(fields, "image", filename, fileobj)
            response = self.session.post(
                self.base + "/upload/image",
                data=body,
                headers={"Content-Type": body.content_type},
                timeout=self.timeout,
            )
        if response.status_code != 200:
            raise ComfyError(
                f"ComfyUI refused the upload of {filename!r}: {response.status_code} {response.text[:300]}"
            )
        return response.json()

    def download(
        self, filename, subfolder: str = "", type: str = "output", chunk_size: int = 1024 * 1024
    ) -> Iterator[bytes]:
        """One file from /view, as an iterator of chunks: a video of gigabytes never sits in memory.

        The request is made at once, so a missing file raises ComfyFileMissing here, before the
        caller starts sending anything anywhere. (`filename` may also be a {filename, subfolder,
        type} dict, as ComfyUI's outputs list them.)
        """
        if isinstance(filename, dict):
            item = filename
            filename, subfolder, type = item["filename"], item.get("subfolder", ""), item.get("type", "output")
        params = {"filename": filename, "subfolder": subfolder or "", "type": type}
        response = self.session.get(self.base + "/view", params=params, stream=True, timeout=self.timeout)
        if response.status_code == 404:
            response.close()
            where = f"{type}/{subfolder + '/' if subfolder else ''}{filename}"
            raise ComfyFileMissing(f"{where} is not on the ComfyUI host")
        if response.status_code != 200:
            response.close()
            raise ComfyError(f"ComfyUI /view answered {response.status_code} for {filename!r}")

        def chunks():
            with response:
                yield from response.iter_content(chunk_size)

        return chunks()

    # --- running ---

    def submit(self, prompt: dict, extra_data: dict | None, client_id: str) -> str:
        """POST /prompt; answers ComfyUI's prompt_id.

        Sends only prompt, extra_data and client_id: no prompt_id (ComfyUI would let a chosen one
        overwrite another run's history), no number/front (the platform's queue decides order).
        """
        extra = {k: v for k, v in (extra_data or {}).items() if k not in PRIVATE_EXTRA_DATA}
        response = self.session.post(
            self.base + "/prompt",
            json={"prompt": prompt, "extra_data": extra, "client_id": client_id},
            timeout=self.timeout,
        )
        if response.status_code == 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": {"type": "invalid_prompt", "message": response.text[:500]}, "node_errors": {}}
            raise ComfyValidationError(body)
        if response.status_code != 200:
            raise ComfyError(f"ComfyUI /prompt answered {response.status_code}: {response.text[:300]}")
        return response.json()["prompt_id"]

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt. With a prompt_id ComfyUI stops only that prompt, and only if it runs."""
        body = {"prompt_id": prompt_id} if prompt_id else {}
        self.session.post(self.base + "/interrupt", json=body, timeout=10).raise_for_status()

    def delete_queued(self, prompt_id: str) -> None:
        """Take a prompt that has not started off ComfyUI's queue (nothing happens to a running one)."""
        self.session.post(self.base + "/queue", json={"delete": [prompt_id]}, timeout=10).raise_for_status()

    def websocket(self, client_id: str | None = None, open_timeout: float = 15) -> "PromptSocket":
        """Open /ws for a client id of our own (one per job: see PromptSocket)."""
        return PromptSocket(self, client_id or uuid.uuid4().hex, open_timeout)


class PromptSocket:
    """ComfyUI's /ws?clientId=…, opened before the prompt is submitted so no message is missed.

    Each job needs its own client id: ComfyUI broadcasts progress and previews to every socket
    when a prompt has none, and a second socket with the same id unregisters the first.
    """

    def __init__(self, client: ComfyClient, client_id: str, open_timeout: float = 15):
        self.client = client
        self.client_id = client_id
        self.open_timeout = open_timeout
        self.ws = None
        self._stack = None
        self.open()

    @property
    def url(self) -> str:
        return self.client.base.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"

    def open(self) -> None:
        # Entered as a context manager, the one way websockets 17 accepts without a warning.
        stack = contextlib.ExitStack()
        self.ws = stack.enter_context(
            connect(self.url, additional_headers=self.client.headers, open_timeout=self.open_timeout, max_size=None)
        )
        self._stack = stack

    def reopen(self) -> None:
        """Reconnect with the same client id (ComfyUI then sends the node that runs now)."""
        self.close()
        self.open()

    def close(self) -> None:
        if self._stack is not None:
            with contextlib.suppress(Exception):
                self._stack.close()
        self._stack = self.ws = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def receive(self, timeout: float) -> dict | None:
        """The next message, or None when `timeout` seconds pass without one.

        Binary frames come as {"type": "_binary", "event": n, "bytes": frame} (1: a preview image,
        3: a node's progress text, 4: a preview with metadata). Raises ConnectionClosed.
        """
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        if isinstance(raw, bytes):
            event = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
            return {"type": "_binary", "event": event, "bytes": raw}
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("ComfyUI sent a text frame that is not JSON: %.100r", raw)
            return {"type": "_invalid", "data": raw}
        return message if isinstance(message, dict) else {"type": "_invalid", "data": message}

    def follow(self, prompt_id: str, poll: float = 0.25, timeout: float | None = None) -> Iterator[dict | None]:
        """Messages about `prompt_id` until its end (included); None every `poll` seconds of quiet,
        so the caller can look for a cancel in between. Binary frames are yielded as they come
        (ComfyUI sends previews only to this client id). Raises TimeoutError after `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} did not end within {timeout} s")
            message = self.receive(poll)
            if message is None or message["type"] == "_binary":
                yield message
                continue
            data = message.get("data")
            if isinstance(data, dict) and data.get("prompt_id") == prompt_id:
                yield message
                if is_end(message, prompt_id):
                    return


class MultipartBody:
    """A multipart/form-data body read piece by piece from a seekable file, its length known.

    Given to requests as `data`, it is sent with a Content-Length (some serverless gateways
    refuse chunked uploads) and never read into memory whole.
    """

    def __init__(self, fields: dict, file_field: str, filename: str, fileobj):
        boundary = uuid.uuid4().hex
        head = b"".join(
            f"--{boundary}\r\nContent-Disposition: form-data; name={_quoted(k)}\r\n\r\n{v}\r\n".encode()
            for k, v in fields.items()
        )
        head += (
            f"--{boundary}\r\nContent-Disposition: form-data; name={_quoted(file_field)}; filename={_quoted(filename)}"
            "\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        start = fileobj.tell()
        size = fileobj.seek(0, os.SEEK_END) - start
        fileobj.seek(start)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self.length = len(head) + size + len(tail)
        self._parts = [io.BytesIO(head), _Limited(fileobj, size), io.BytesIO(tail)]

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        out = b""
        while self._parts and (size < 0 or len(out) < size):
            piece = self._parts[0].read(-1 if size < 0 else size - len(out))
            if piece:
                out += piece
            else:
                self._parts.pop(0)
        return out


class _Limited:
    """`size` bytes of a file, however much more it holds (a file that grows is not our body)."""

    def __init__(self, fileobj, size: int):
        self.fileobj, self.left = fileobj, size

    def read(self, size: int = -1) -> bytes:
        wanted = self.left if size < 0 else min(size, self.left)
        data = self.fileobj.read(wanted) if wanted else b""
        self.left -= len(data)
        return data


def _quoted(value: str) -> str:
    """A quoted-string as aiohttp (ComfyUI's server) reads it back: the name arrives unchanged.
    (Browsers, and requests, write a quote as %22, which aiohttp keeps as it is.)"""
    value = value.replace("\r", "").replace("\n", "")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _seekable(fileobj) -> bool:
    try:
        return bool(fileobj.seekable()) and fileobj.tell() >= 0
    except (AttributeError, OSError, ValueError):
        return False


__all__ = [
    "ComfyClient", "ComfyError", "ComfyValidationError", "ComfyFileMissing", "PromptSocket", "ConnectionClosed",
    "ENDS", "PRIVATE_EXTRA_DATA", "PREVIEW_IMAGE", "is_end",
]
