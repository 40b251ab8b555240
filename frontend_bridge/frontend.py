"""The official ComfyUI frontend (the comfyui-frontend-package wheel), served per workspace.

Everything the frontend asks for resolves under `/user/<slug>/`; the progress favicon frames,
which it names by an absolute path, too (KEEP_UNDER_PREFIX). `/assets/...` at the root is still
served, for a page loaded before that.
"""

import base64
import hashlib
import mimetypes
import re
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import comfyui_frontend_package
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponsePermanentRedirect,
)

from accounts.access import workspace_for
from jobs.models import Catalog, ExtensionFile
from jobs.workflows import official_files, template_index
from workshop.lib.files import UnsafePath, safe_join, split_relative

FRONTEND_ROOT = Path(comfyui_frontend_package.__file__).parent / "static"
OWN_EXTENSIONS = Path(__file__).parent / "static_ext"
# Hashed bundle names never change content: cache them for a year. Anything else may change
# with a frontend upgrade; index.html must always be fresh.
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=3600"


# The frontend's own page errors, which no server causes: each with its cause. Each is logged
# by the same frontend in front of a plain ComfyUI too. The browser tests and the operator's
# rehearsal fail a page on any other uncaught exception or console error.
# Checked on 2026-12-07 against a plain ComfyUI 0.8.0 serving frontend 1.53.6, 4 fresh loads: it
# logged this one on every load, and 9 more that the workshop does not cause, because it answers
# what plain 0.8.0 does not (404s for user.css, the userdata listings, comfy.templates.json and
# templates/index_logo.json; a 400 for the Jobs API's "cancelled" status) and keeps the frontend
# off api.comfy.org and huggingface.co (queue_badge.js). No page exception either way.
KNOWN_FRONTEND_ERRORS = {
    # 1.53.6's settingStore runs a setting's onChange at start-up, which reads app.rootGraph
    # before the graph exists (settingStore-*.js; no request or extension is involved).
    "ComfyApp graph accessed before initialization": "settingStore reads app.rootGraph at start-up",
}


def comfy_features() -> dict:
    """ComfyUI's `features`: answered on /features and to the websocket's feature_flags."""

    # Previews go out as ComfyUI's plain binary frames (event 1), without the metadata variant.
    # Assets (server-side asset database), sign-in (comfy.org accounts) and the Manager are
    # features a workshop does not run: switched off, so the UI never calls their routes.
    return {
        "supports_preview_metadata": False,
        "max_upload_size": settings.MAX_UPLOAD_BYTES,
        "assets": False,
        "show_signin_button": False,
        "node_replacements": True,
        "extension": {"manager": {"supports_v4": False}},
    }


@lru_cache(maxsize=1)
def frontend_version() -> str:

    return version("comfyui-frontend-package")


@lru_cache(maxsize=1)
def templates_version() -> str:

    return version("comfyui-workflow-templates")


def static_file(root: Path, relative: str, cache_control: str) -> FileResponse:
    """A file under `root`, refusing anything that resolves outside it."""
    try:
        path = safe_join(root, split_relative(relative))
    except UnsafePath:
        raise Http404("No such file") from None
    if not path.is_file():
        raise Http404("No such file")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix in (".js", ".mjs"):
        content_type = "text/javascript"
    response = FileResponse(open(path, "rb"), content_type=content_type)
    response["Cache-Control"] = cache_control
    return response


def cache_for(relative: str) -> str:
    return IMMUTABLE if relative.startswith("assets/") and not relative.startswith("assets/images/") else SHORT


# The frontend names a few of its own images by an absolute path: the progress favicon
# (`/assets/images/favicon_progress_16x16/frame_N.png`), App Mode's welcome picture and some
# logos (`/assets/images/...`), the only requests it would make outside /user/<slug>/. Run before
# any of its code, this makes such a link or image source relative to the page.
KEEP_UNDER_PREFIX = (
    "(function(){function keep(proto,name){var d=Object.getOwnPropertyDescriptor(proto,name);"
    "Object.defineProperty(proto,name,{configurable:true,enumerable:d.enumerable,get:d.get,"
    "set:function(v){if(typeof v==='string'&&v.indexOf('/assets/')===0){v='.'+v}d.set.call(this,v)}})}"
    "keep(HTMLLinkElement.prototype,'href');keep(HTMLImageElement.prototype,'src');"
    "var set=Element.prototype.setAttribute;Element.prototype.setAttribute=function(n,v){"
    "if((n==='src'||n==='href')&&typeof v==='string'&&v.indexOf('/assets/')===0){v='.'+v}"
    "return set.call(this,n,v)}})()"
)


@lru_cache(maxsize=1)
def index_html() -> bytes:
    html = (FRONTEND_ROOT / "index.html").read_text(encoding="utf-8")
    return html.replace("<head>", f"<head><script>{KEEP_UNDER_PREFIX}</script>", 1).encode()


def page(request, slug):
    """`/user/<slug>/`: the ComfyUI web UI, for the owner and staff."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    workspace_for(request.user, slug)
    response = HttpResponse(index_html(), content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Workshop-Workspace"] = slug
    # Django's CSP middleware uses a response's own policy where it has one.
    setattr(response, "_csp_config", page_csp())  # noqa: B010
    return response


@lru_cache(maxsize=1)
def page_csp() -> dict:
    """The site's policy, plus the hashes of index.html's inline scripts (the splash colours,
    and the workshop's own that keeps the favicon under the workspace)."""

    html = index_html().decode()
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in re.findall(r"<script>(.*?)</script>", html, re.S)
    ]
    configured: dict = settings.SECURE_CSP  # django-stubs types it as values of any kind
    policy = {key: list(values) for key, values in configured.items()}
    policy["script-src"] = [*policy["script-src"], *hashes]
    return policy


def without_slash(request, slug):
    # The frontend derives its API base from the path: "/user/007" would make it "/user".
    return HttpResponsePermanentRedirect(f"/user/{slug}/")


def asset(request, slug, path):
    """Static files of the frontend under the workspace prefix (public code, no user data)."""
    if path == "user.css":
        return HttpResponse("", content_type="text/css")
    if path.startswith("extensions/workshop/"):
        return static_file(OWN_EXTENSIONS, path.removeprefix("extensions/workshop/"), "no-cache")
    if path.startswith("templates/"):
        name = path.removeprefix("templates/")
        if name.startswith("index") and name.endswith(".json") and name not in ("index_logo.json", "index.schema.json"):
            index = template_index(name)
            if index is None:
                raise Http404("No such template file")
            response = HttpResponse(index, content_type="application/json")
            response["Cache-Control"] = SHORT
            return response
        found = official_files().get(name)
        if found is None:
            raise Http404("No such template file")
        return static_file(found.parent, found.name, SHORT)
    if path.startswith("extensions/") and not path.startswith("extensions/core/"):
        # Custom nodes' code is the GPU host's, not public: only for who may use the workspace.
        if not request.user.is_authenticated:
            raise Http404("No such extension file")
        workspace_for(request.user, slug)
        return custom_node_file("/" + path)
    return static_file(FRONTEND_ROOT, path, cache_for(path))


def root_asset(request, path):
    """`/assets/...` at the site root: the progress favicon frames use an absolute path."""
    return static_file(FRONTEND_ROOT / "assets", path, SHORT)


def custom_node_file(path: str) -> HttpResponse:
    """A custom node's file as the served catalog's worker published it: frontend code only
    once trusted, example workflows (data) always."""

    worker, trusted = Catalog.served_extensions()
    if path.startswith("/extensions/") and path not in trusted:
        raise Http404("No such extension file")
    found = ExtensionFile.objects.filter(worker=worker, path=path).values_list("content", "content_type").first()
    if found is None:
        raise Http404("No such extension file")
    response = HttpResponse(bytes(found[0]), content_type=found[1])
    response["Cache-Control"] = "no-cache"
    return response


def core_extensions() -> list[str]:
    files = sorted((FRONTEND_ROOT / "extensions").rglob("*.js"))
    core = ["/extensions/" + str(p.relative_to(FRONTEND_ROOT / "extensions")) for p in files]
    own = ["/extensions/workshop/" + p.name for p in sorted(OWN_EXTENSIONS.glob("*.js"))]
    return core + own
