"""Model files arriving in a workspace: a participant's upload in parts, or a download the app
makes for them (docs/participant.md, "My models").

Each upload in progress holds a ModelUpload row: the bytes it has reserved of the workspace's
model quota. A reservation is taken under a lock of the workspace's row when the upload starts
(its declared size, or what has arrived) and grown the same way, so uploads started together
cannot all count on the same room; a participant holds at most MAX_UNFINISHED_MODELS of them.
The row goes when the file is kept or refused, or after MODEL_PART_MAX_AGE left alone.
"""

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import models, transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from workshop.lib.files import move_into_place, part_name, write_part

from . import own_models
from .models import ModelUpload, Workspace, WorkspaceModel
from .own_models import ModelRefused

MODEL_PART_BYTES = 8 * 1024 * 1024  # one request of an upload: Daphne holds a body whole in memory
# The longest one part (an 8 MB write, and at the last part the whole file's SHA-256) may hold its
# upload; a process killed meanwhile frees it after this.
PART_SECONDS = 120


def _size(n: int) -> str:
    return filesizeformat(max(n, 0)).replace("\xa0", " ")


def _target(workspace: Workspace, folder: str, name: str) -> tuple[str, Path, Path]:
    if folder not in settings.MODEL_FOLDERS:
        raise ModelRefused(f"Models go in {', '.join(settings.MODEL_FOLDERS)}; not in {folder!r}.")
    name = own_models.check_name(name)
    if WorkspaceModel.objects.filter(workspace=workspace, folder=folder, name=name).exists():
        raise ModelRefused(f"You already have {name} in {folder}: delete it first to replace it.", 409)
    target = workspace.root / "models" / folder / name
    return name, target, part_name(target.parent, name)


def _check_room(workspace: Workspace, folder: str, name: str, size: int) -> None:
    """413 unless `size` fits beside the kept models and the other uploads' reservations (the
    caller holds the workspace's lock)."""
    others = (
        ModelUpload.objects.filter(workspace=workspace)
        .exclude(folder=folder, name=name)
        .aggregate(n=models.Sum("size"))["n"]
        or 0
    )
    room = settings.MODEL_QUOTA_BYTES - WorkspaceModel.used_bytes(workspace) - others
    if size > room:
        raise ModelRefused(
            f"{name} does not fit: your models may take {_size(settings.MODEL_QUOTA_BYTES)} in all, "
            f"and {_size(room)} is left. Delete a model first.",
            413,
        )


def reserve(workspace: Workspace, folder: str, name: str, size: int) -> None:
    """Reserve `size` bytes for this upload (growing its reservation, never shrinking it), under
    the workspace's lock, or refuse: too many uploads in progress (429), or no room (413)."""
    if size > settings.MAX_MODEL_BYTES:
        raise ModelRefused(f"{name} is over the workshop's limit of {_size(settings.MAX_MODEL_BYTES)} per model.", 413)
    with transaction.atomic():
        Workspace.objects.select_for_update().get(pk=workspace.pk)
        uploads = ModelUpload.objects.filter(workspace=workspace)
        mine = uploads.filter(folder=folder, name=name).first()
        if mine is None and uploads.count() >= settings.MAX_UNFINISHED_MODELS:
            raise ModelRefused(
                f"You have {settings.MAX_UNFINISHED_MODELS} uploads in progress: finish one first "
                "(an upload left alone for an hour is removed).",
                429,
            )
        _check_room(workspace, folder, name, size)
        if mine is None:
            ModelUpload.objects.create(workspace=workspace, folder=folder, name=name, size=size)
        else:  # also marks it alive for expire_unfinished
            mine.size = max(mine.size, size)
            mine.save(update_fields=["size", "updated_at"])


@contextmanager
def _one_at_a_time(workspace: Workspace, folder: str, name: str, seconds: float) -> Iterator[None]:
    """One request at a time for one upload (a Redis key, for every app process): a part written
    while the last one is hashed and renamed would grow the kept file past its recorded size and
    hash. Another one is told at once."""
    key = "model-upload:" + hashlib.sha256(f"{workspace.pk}/{folder}/{name}".encode()).hexdigest()[:40]
    if not cache.add(key, 1, seconds):
        raise ModelRefused(f"Another part of {name} is still arriving: send the parts one after another.", 409)
    try:
        yield
    finally:
        cache.delete(key)


def _drop(workspace: Workspace, folder: str, name: str, part: Path) -> None:
    part.unlink(missing_ok=True)
    ModelUpload.objects.filter(workspace=workspace, folder=folder, name=name).delete()


def _refuse_pickle_early(head: bytes) -> None:
    if own_models.looks_pickled(head):
        own_models.check_header(head, 2**62)  # raises: a pickle is refused before the rest arrives


def _finish(workspace, folder, name, target, part, source_url="") -> WorkspaceModel:
    """The header checked, then the row made and the reservation given up in one transaction
    under the workspace's lock (the quota is checked once more: a reservation may have lapsed)."""
    size = part.stat().st_size
    with open(part, "rb") as fh:
        head = fh.read(8)
        head += fh.read(min(own_models.header_length(head), own_models.MAX_HEADER_BYTES))
    own_models.check_header(head, size)
    digest = own_models.sha256_of(part)
    with transaction.atomic():
        Workspace.objects.select_for_update().get(pk=workspace.pk)
        if WorkspaceModel.objects.filter(workspace=workspace, folder=folder, name=name).exists():
            raise ModelRefused(f"You already have {name} in {folder}: delete it first to replace it.", 409)
        _check_room(workspace, folder, name, size)
        move_into_place(part, target)
        ModelUpload.objects.filter(workspace=workspace, folder=folder, name=name).delete()
        return WorkspaceModel.objects.create(
            workspace=workspace, folder=folder, name=name, size=size, sha256=digest, source_url=source_url
        )


def store_part(
    workspace: Workspace, folder: str, name: str, offset: int, data: bytes, final: bool, declared: int = 0
) -> int | WorkspaceModel:
    """One part of a participant's upload (the page sends 8 MB parts, in order, and the file's
    size as `declared` with each). Returns the bytes received so far, or the WorkspaceModel once
    the last part is in. A part sent again replaces itself; one beyond what arrived is 409; the
    folder, the name, the size limit, the quota (reserved at the first part) and (at the first
    part, then at the last) the safetensors header are checked, and nothing is kept of a file
    refused."""
    name, target, part = _target(workspace, folder, name)
    with _one_at_a_time(workspace, folder, name, PART_SECONDS):
        return _store_part(workspace, folder, name, target, part, offset, data, final, declared)


def _store_part(workspace, folder, name, target, part, offset, data, final, declared) -> int | WorkspaceModel:
    have = part.stat().st_size if part.exists() else 0
    if offset > have or offset < 0:
        raise ModelRefused(f"Part at byte {offset} of {name}, but {have} bytes have arrived: send from there.", 409)
    try:
        reserve(workspace, folder, name, max(declared, offset + len(data)))
        if offset == 0:
            _refuse_pickle_early(data[:16])
    except ModelRefused as exc:
        if exc.status != 429:
            _drop(workspace, folder, name, part)
        raise
    write_part(part, [data], offset)
    if not final:
        return offset + len(data)
    try:
        return _finish(workspace, folder, name, target, part)
    except BaseException:
        _drop(workspace, folder, name, part)
        raise


def store_download(
    workspace: Workspace,
    folder: str,
    name: str,
    chunks,
    source_url: str = "",
    size_hint: int | None = None,
    on_progress=None,
) -> WorkspaceModel:
    """A whole model file from `chunks` (a download the app makes), with the same checks: the
    announced size (Content-Length) is reserved at the start, and past it the bytes are reserved
    before they are written."""
    name, target, part = _target(workspace, folder, name)
    with _one_at_a_time(workspace, folder, name, settings.MODEL_FETCH_SECONDS + PART_SECONDS):
        return _store_download(workspace, folder, name, target, part, chunks, source_url, size_hint, on_progress)


def _store_download(
    workspace, folder, name, target, part, chunks, source_url, size_hint, on_progress
) -> WorkspaceModel:
    reserve(workspace, folder, name, size_hint or 0)

    def checked():
        """Each chunk checked and reserved for before it is written."""
        size, reserved = 0, size_hint or 0
        for chunk in chunks:
            if size == 0:
                _refuse_pickle_early(chunk[:16])
            size += len(chunk)
            if size > reserved:
                reserved = _reserve_ahead(workspace, folder, name, size)
            yield chunk
            if on_progress:
                on_progress(size)

    try:
        write_part(part, checked(), 0)
        return _finish(workspace, folder, name, target, part, source_url)
    except BaseException:
        _drop(workspace, folder, name, part)
        raise


def _reserve_ahead(workspace: Workspace, folder: str, name: str, size: int) -> int:
    """Past what the server announced: reserve 8 MB ahead of what has come, or, near the end of
    the room, exactly what has come. Returns the bytes now reserved."""
    ahead = min(size + MODEL_PART_BYTES, max(size, settings.MAX_MODEL_BYTES))
    try:
        reserve(workspace, folder, name, ahead)
        return ahead
    except ModelRefused:
        reserve(workspace, folder, name, size)  # raises when even that does not fit
        return size


def expire_unfinished(max_age: float | None = None) -> int:
    """Remove uploads nobody has added to for `max_age` seconds (MODEL_PART_MAX_AGE): an
    abandoned one would hold disk and quota for ever. Returns how many went."""
    age = settings.MODEL_PART_MAX_AGE if max_age is None else max_age
    gone = 0
    for upload in ModelUpload.objects.filter(updated_at__lt=timezone.now() - timedelta(seconds=age)).select_related(
        "workspace"
    ):
        _drop(upload.workspace, upload.folder, upload.name, upload.part)
        gone += 1
    # A part no reservation names (a process killed between the two) goes after the same age.
    root = Path(settings.WORKSHOP_DATA_DIR) / "workspaces"
    cutoff = time.time() - age
    for part in root.glob("*/models/*/.*.part") if root.is_dir() else []:
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                gone += 1
        except FileNotFoundError:
            continue  # finished or removed meanwhile
    return gone
