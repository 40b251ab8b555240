"""File helpers every app shares (a library module: it imports no app).

A file the platform writes is never seen half-written: it is written beside its target under a
hidden temporary name, then renamed over it (a rename within one folder is atomic on POSIX).
"""

import os
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: hidden, in the same folder."""
    return path.with_name(f".{path.name}.tmp")


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
