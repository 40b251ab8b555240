"""The frontend's public files by a path made for them: ServeStatic in front of Django.

A first load of the ComfyUI frontend makes about 480 requests, nearly all of them these files.
Through Django each one paid for the session, the user, CSRF, CSP and a thread of the pool;
here they are served from an index built once at start, without touching the database. Only
the public code of the pinned frontend goes this way (the same files for every workspace);
custom nodes' code, the workshop's own extensions and index.html still go through Django.

The files are served from a gzip-compressed copy made once per frontend version (under the var
folder, or FRONTEND_FILES_DIR where an image made it at build): a first load is 16 MB as it
comes and about 4 MB compressed, which a venue's Wi-Fi feels more than anything else.
"""

import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import servestatic.utils
from django.conf import settings
from servestatic import ServeStaticASGI
from servestatic.compress import Compressor

from .frontend import FRONTEND_ROOT, IMMUTABLE, SHORT, frontend_version

# /user/<slug>/<public part> and the favicon frames at /assets/… (what frontend.asset and
# frontend.root_asset serve through Django when this is not in front).
PUBLIC = re.compile(
    r"^/user/[A-Za-z0-9_-]{1,16}/((?:assets|scripts|fonts|cursor|extensions/core)/.+|materialdesignicons\.min\.css)$"
)


# ServeStatic's ASGI responder reads files 8 KiB at a time, each read a hop to a thread: a
# 5.8 MB bundle was 700 hops, and a class loading it at once spent seconds on them alone.
servestatic.utils.ASGI_BLOCK_SIZE = 256 * 1024


def _headers(headers, path, url):
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cache-Control"] = IMMUTABLE if _immutable(url) else SHORT


def _immutable(url: str) -> bool:
    # Hashed bundle names never change content; the images under assets/images/ may.
    return url.startswith("/assets/") and not url.startswith("/assets/images/")


def compressed_copy(parent: Path) -> Path:
    """The pinned frontend's files with a `.gz` beside each that compresses, made on first use.

    Source maps stay out (a browser asks for them only with its developer tools open, and
    Django's view serves them then). Several processes may start at once: each builds in a
    folder of its own and the first rename wins.
    """
    target = parent / f"frontend-{frontend_version()}"
    if (target / ".complete").exists():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".frontend-", dir=parent))
    build(building)
    (building / ".complete").touch()
    try:
        os.rename(building, target)
    except OSError:  # another process was first
        shutil.rmtree(building, ignore_errors=True)
    return target


def build(target) -> None:
    """Copy the frontend's files (maps left out) into `target` and compress them beside."""
    shutil.copytree(FRONTEND_ROOT, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.map"))
    compressor = Compressor(use_brotli=False, use_zstd=False, quiet=True)
    files = [
        Path(folder) / name
        for folder, _, names in os.walk(target)
        for name in names
        if compressor.should_compress(name)
    ]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(compressor.compress, files))


def files_root() -> Path:

    if settings.FRONTEND_FILES_DIR:
        return Path(settings.FRONTEND_FILES_DIR)
    try:
        return compressed_copy(settings.VAR_DIR)
    except OSError:  # a read-only var folder: the package's files, uncompressed
        return FRONTEND_ROOT


class FrontendFiles:
    """ASGI: the frontend's public files, or else the Django application."""

    def __init__(self, application):
        self.application = application
        self.files = ServeStaticASGI(
            None,
            root=str(files_root()),
            prefix="/",
            max_age=None,
            add_headers_function=_headers,
            allow_all_origins=False,
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            match = PUBLIC.match(scope["path"])
            inner = "/" + match.group(1) if match else None
            if inner is None and scope["path"].startswith("/assets/"):
                inner = scope["path"]
            if inner is not None and inner in self.files.files:
                return await self.files(dict(scope, path=inner, raw_path=inner.encode()), receive, send)
        return await self.application(scope, receive, send)
