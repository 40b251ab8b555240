"""How many body bytes a request may send, decided from its request line and headers alone,
before any of the body is read (workshop.daphne_limits applies it; nginx has the same limits
per location in docker/nginx.conf.template)."""

import re

from django.conf import settings

UPLOAD = re.compile(r"^/user/[A-Za-z0-9_-]{1,16}/(api/)?(upload/(image|mask)|userdata/.+)$")
OUTPUTS = re.compile(r"^/api/worker/jobs/[0-9a-f-]{36}/outputs$")
MODEL_PART = re.compile(r"^/user/[A-Za-z0-9_-]{1,16}/my-models/upload$")
CATALOG = re.compile(r"^/api/worker/catalog(/files)?$")
TOKEN = re.compile(r"^Bearer wt_[A-Za-z0-9_-]{20,100}$")
MULTIPART_SLACK = 1024 * 1024  # a form's boundaries and fields around the file
CATALOG_BYTES = 64 * 1024 * 1024  # a worker's catalog or one of its files, decompressed too


def small() -> int:
    """Any JSON body: a prompt with its workflow, settings, a worker's report."""
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def body_limit(path: str, authorization: str, known_worker: bool, has_session: bool) -> tuple[int, str]:
    """(bytes allowed, why a larger body is refused). A worker route with no well-formed
    token allows none: it is refused before its body."""
    if path.startswith("/api/worker/"):
        if not TOKEN.match(authorization or ""):
            return -1, "Unknown worker token"
        if not known_worker:
            # Large bodies only from a token this deployment signed, or one this process has
            # seen accepted (tokens made before they were signed).
            return small(), "Body too large for a worker token this server did not issue"
        if OUTPUTS.match(path):
            return settings.MAX_OUTPUT_BYTES, "Output file too large"
        if CATALOG.match(path):
            return CATALOG_BYTES, "Catalog too large"
        return small(), "Body too large"
    if MODEL_PART.match(path) and has_session:
        return 8 * 1024 * 1024, "Send a model in parts of at most 8 MB."
    if UPLOAD.match(path) and has_session:
        return settings.MAX_UPLOAD_BYTES + MULTIPART_SLACK, (f"Files up to {settings.MAX_UPLOAD_BYTES // 2**20} MB.")
    return small(), f"Requests up to {small() // 1024} KB."
