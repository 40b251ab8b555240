"""Files that hold a secret or the database, readable by their owner only (0600).

The embedded defaults keep the SECRET_KEY, the SQLite database (sessions, password hashes) and
the credential sheet on the app host's disk; any local user could read them at 0644.
Pure functions: settings makes the database file private before Django opens it, and
workshop_doctor names any of these files that is open to others.
"""

import os
from pathlib import Path


def make_private(path: Path) -> None:
    """Create `path` empty with 0600 if it is missing; take group and others' access away if not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def secret_files(var_dir: Path, credentials_dir: Path, database: str | None) -> list[Path]:
    """The files of this deployment that must stay private, those that exist."""
    candidates = [var_dir / "secret_key", credentials_dir / "credentials.csv", credentials_dir / "credentials.html"]
    if database:
        candidates.append(Path(database))
    return [path for path in candidates if path.is_file()]


def open_to_others(paths: list[Path]) -> list[Path]:
    return [path for path in paths if path.stat().st_mode & 0o077]
