"""The GPU host's cache of participants' own models, in a folder ComfyUI reads through
extra_model_paths (docs/providers.md): `<cache>/<folder>/ws-<slug>/<name>` links to a blob
named by its content hash, so one file shared by several workspaces is stored once.

A model arrives only with a job that names it, before the prompt goes to ComfyUI. The cache
holds at most `cap_bytes`; the least recently used blobs leave first, with their links. A model
a participant deletes leaves too (the app lists deletions in the heartbeat's answer). Several
workers on one host may share the folder: changes are made under a file lock.
"""

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from .protocol import PARTICIPANT_PREFIX

log = logging.getLogger("gpuworker.own_models")
FOLDER = re.compile(r"^[a-z0-9_]{1,50}$")
NAME = re.compile(r"^ws-[A-Za-z0-9_-]{1,16}/[A-Za-z0-9][A-Za-z0-9._ ()+-]{0,150}\.safetensors$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelRejected(Exception):
    """What the app sent is not a participant model this cache takes (or its bytes were wrong)."""


class ModelCache:
    def __init__(self, root: str | Path, cap_bytes: int):
        self.root, self.cap = Path(root), int(cap_bytes)
        self.blobs = self.root / ".blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._threads = threading.Lock()
        self.seen_file = self.root / ".deletions-seen"

    @contextlib.contextmanager
    def _locked(self):
        with self._threads, open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _link(self, folder: str, name: str) -> Path:
        if not FOLDER.match(folder) or not NAME.match(name) or ".." in name:
            raise ModelRejected(f"not a participant model name: {folder}/{name}")
        return self.root / folder / name

    def blob(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise ModelRejected("a model's sha256 must be 64 hex digits")
        return self.blobs / f"{sha256}.safetensors"

    def ensure(self, item: dict, fetch: Callable[[], Iterable[bytes]]) -> bool:
        """Make `item` ({folder, name, sha256, size}) loadable by ComfyUI; True when it had to
        be fetched."""
        link, blob = self._link(str(item.get("folder")), str(item.get("name"))), self.blob(str(item.get("sha256")))
        size = int(item.get("size") or 0)
        if size > self.cap:
            raise ModelRejected(f"{item['name']} ({size} bytes) is larger than this GPU's model cache")
        with self._locked():
            fetched = not blob.exists()
            if fetched:
                self._make_room(size)
                self._download(blob, str(item["sha256"]), fetch)
            os.utime(blob)  # recently used: the last to be evicted
            link.parent.mkdir(parents=True, exist_ok=True)
            target = os.path.relpath(blob, link.parent)
            if not (link.is_symlink() and os.readlink(link) == target):
                tmp = link.with_name(f".{link.name}.link")
                tmp.unlink(missing_ok=True)
                os.symlink(target, tmp)
                os.replace(tmp, link)
        return fetched

    def _download(self, blob: Path, sha256: str, fetch) -> None:
        part = blob.with_suffix(".part")
        digest = hashlib.sha256()
        try:
            with open(part, "wb") as out:
                for chunk in fetch():
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise ModelRejected("the model's bytes do not match its sha256")
            os.replace(part, blob)
        finally:
            part.unlink(missing_ok=True)

    def _links(self) -> dict[Path, list[Path]]:
        found: dict[Path, list[Path]] = {}
        for folder in self.root.iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            for link in folder.glob(f"{PARTICIPANT_PREFIX}*/*"):
                if link.is_symlink():
                    found.setdefault((link.parent / os.readlink(link)).resolve(), []).append(link)
        return found

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.blobs.glob("*.safetensors"))

    def _make_room(self, size: int) -> None:
        blobs = sorted(self.blobs.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in blobs)
        links = self._links() if total + size > self.cap else {}
        while blobs and total + size > self.cap:
            oldest = blobs.pop(0)
            total -= oldest.stat().st_size
            for link in links.get(oldest.resolve(), []):
                link.unlink(missing_ok=True)
            oldest.unlink(missing_ok=True)
            log.info("model cache: evicted %s (least recently used)", oldest.name)

    def forget(self, folder: str, name: str, sha256: str) -> None:
        """A participant deleted the model: its link goes, and its blob when no link is left."""
        try:
            link, blob = self._link(folder, name), self.blob(sha256)
        except ModelRejected:
            return
        with self._locked():
            link.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                link.parent.rmdir()  # ComfyUI's folder listing sheds the empty workspace folder
            if blob.exists() and not self._links().get(blob.resolve()):
                blob.unlink(missing_ok=True)

    # --- which deletions this host has applied (kept across worker restarts) ---

    def deletions_seen(self) -> int:
        try:
            return int(self.seen_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def saw_deletions(self, gone: list[dict]) -> None:
        for item in gone:
            self.forget(str(item.get("folder")), str(item.get("name")), str(item.get("sha256")))
        if gone:
            self.seen_file.write_text(str(max(int(g["id"]) for g in gone)))
