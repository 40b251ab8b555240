"""The frontend's public files by a path made for them: ServeStatic in front of Django.

A first load of the ComfyUI frontend makes about 480 requests, nearly all of them these files.
Through Django each one paid for the session, the user, CSRF, CSP and a thread of the pool;
here they are served from an index built once at start, without touching the database. Only
the public code of the pinned frontend goes this way (the same files for every workspace);
custom nodes' code, the workshop's own extensions and index.html still go through Django.
"""
import re

from servestatic import ServeStaticASGI

from .frontend import FRONTEND_ROOT, IMMUTABLE, SHORT

# /user/<slug>/<public part> and the favicon frames at /assets/… (what frontend.asset and
# frontend.root_asset serve through Django when this is not in front).
PUBLIC = re.compile(
    r"^/user/[A-Za-z0-9_-]{1,16}/((?:assets|scripts|fonts|cursor|extensions/core)/.+|materialdesignicons\.min\.css)$")


def _headers(headers, path, url):
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cache-Control"] = IMMUTABLE if _immutable(url) else SHORT


def _immutable(url: str) -> bool:
    # Hashed bundle names never change content; the images under assets/images/ may.
    return url.startswith("/assets/") and not url.startswith("/assets/images/")


class FrontendFiles:
    """ASGI: the frontend's public files, or else the Django application."""

    def __init__(self, application):
        self.application = application
        self.files = ServeStaticASGI(None, root=str(FRONTEND_ROOT), prefix="/", max_age=None,
                                     add_headers_function=_headers, allow_all_origins=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            match = PUBLIC.match(scope["path"])
            inner = "/" + match.group(1) if match else None
            if inner is None and scope["path"].startswith("/assets/"):
                inner = scope["path"]
            if inner is not None and inner in self.files.files:
                return await self.files(dict(scope, path=inner, raw_path=inner.encode()), receive, send)
        return await self.application(scope, receive, send)
