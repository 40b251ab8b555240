"""File helpers every app shares (a library module: it imports no app).

- A file the platform writes is never seen half-written: it is written beside its target under
  a hidden temporary name, then renamed over it (a rename within one folder is atomic on POSIX).
- A file that arrives in parts (an output, a participant's model) grows in a hidden part file
  beside its target, then is renamed into place.
- A name from outside (a participant, a worker) reaches the disk only through `safe_join`.
- A name already taken gets ComfyUI's own suffix: `name (1).png`.
"""

import os
from collections.abc import Callable, Iterable
from pathlib import Path


class UnsafePath(ValueError):
    """A file name that would leave its folder, or that no file system can hold."""


class PartGap(ValueError):
    """A part that starts beyond what has arrived: the sender resends from `have`."""

    def __init__(self, offset: int, have: int):
        super().__init__(f"A part at byte {offset}, but {have} bytes are in: resend from {have}")
        self.offset, self.have = offset, have


# ext4, XFS and most others hold 255 bytes per name; the rest is room for the hidden names a
# file is written under (".<name>.tmp", ".<name>.part").
MAX_NAME_BYTES = 240
MAX_PATH_BYTES = 1024


def check_name_lengths(parts: list[str]) -> None:
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
        raise UnsafePath(f"File name too long: at most {MAX_NAME_BYTES} bytes per name")
    if sum(len(part.encode("utf-8", "surrogatepass")) + 1 for part in parts) > MAX_PATH_BYTES:
        raise UnsafePath(f"Path too long: at most {MAX_PATH_BYTES} bytes")


def split_relative(relative: str) -> list[str]:
    """A relative path as sent (either slash), in parts; UnsafePath for an absolute one, an
    empty part, `.` or `..`, or a NUL."""
    if not relative or relative.startswith(("/", "\\")) or "\x00" in relative:
        raise UnsafePath("Invalid file name")
    parts = relative.replace("\\", "/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePath("Invalid file name")
    return parts


def safe_join(root: Path, parts: list[str]) -> Path:
    """`root/parts…`, refused (UnsafePath) unless it stays inside `root` once every link on the
    way is followed. Each part is one name: no separator, no `.` or `..`, no NUL."""
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise UnsafePath(f"Invalid file name {part!r}")
    check_name_lengths(parts)
    base = root.resolve()
    candidate = base.joinpath(*parts)
    if not candidate.resolve().is_relative_to(base):
        raise UnsafePath("Path leaves the workspace")
    return candidate


def temporary_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: hidden, in the same folder."""
    return path.with_name(f".{path.name}.tmp")


def part_name(folder: Path, key: str) -> Path:
    """Where a file arriving in parts grows, under `key` (its name, or whatever names the
    upload when the name is chosen only at the end): hidden, in the target's folder."""
    return folder / f".{key}.part"


def is_work_in_progress(path: Path) -> bool:
    """A temporary or part file: never listed, served or exported."""
    return path.name.startswith(".") and path.name.endswith((".tmp", ".part"))


def atomic_write(path: Path, data: bytes | str, *, private: bool = False) -> None:
    """Replace `path` at once with `data`. `private`: readable by its owner only (0600) from the
    moment it exists, never for an instant by others."""
    tmp = temporary_name(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600 if private else 0o666)
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        if private:
            os.chmod(tmp, 0o600)  # whatever the umask made of it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def move_into_place(source: Path, target: Path) -> None:
    """A finished part or temporary file becomes `target` at once (one rename, same folder or
    same file system): readers see the old file or the new one, never half of it."""
    os.replace(source, target)


def write_part(part: Path, chunks: Iterable[bytes], offset: int) -> int:
    """Write `chunks` into the part file at `offset`, dropping whatever followed it first (a
    part sent again replaces itself and everything after); returns the bytes in so far.
    PartGap for an offset beyond what has arrived."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if offset < 0 or offset > have:
        raise PartGap(offset, have)
    with open(part, "r+b" if offset else "wb") as out:
        out.seek(offset)
        out.truncate()
        for chunk in chunks:
            out.write(chunk)
        return out.tell()


def unique_name(name: str, taken: Callable[[str], bool]) -> str:
    """`name`, or ComfyUI's own next free form of it (`photo (1).png`, `photo (2).png` …)."""
    stem, ext = os.path.splitext(name)
    n, candidate = 1, name
    while taken(candidate):
        candidate = f"{stem} ({n}){ext}"
        n += 1
    return candidate
