"""Every route the pinned frontend's bundle calls is answered by the bridge.

Read from the bundle itself, so a frontend upgrade that adds a route fails here first.
"""

import re

import pytest
from django.urls import Resolver404, resolve

from frontend_bridge import frontend
from frontend_bridge.frontend import FRONTEND_ROOT

CALL = re.compile(r"\b(fetchApi|apiURL|internalURL|fileURL)\(\s*([`\"'])((?:(?!\2).)*?)\2", re.S)
POST_ITEM = re.compile(r"[#_]postItem\(\s*[`\"']([a-z_]+)[`\"']")
# The Jobs API's paths are built in variables first (fetchJobsRaw: `/jobs?status=…`).
JOBS = re.compile(r"`(/jobs[/?][^`]*)`")

# Routes in the bundle that a workshop deliberately does not serve, with the reason.
CLOUD = "comfy.org's cloud service: switched off through /features or its flags, so the UI never calls it"
NOT_SERVED = {
    "/v2/": "ComfyUI-Manager's API base: the workshop's GPU hosts run no Manager, and its UI is not shown",
    "": "apiURL(''): the API base the frontend strips from its own URLs, not a request",
    # The assets database (features.assets is False): Media Assets then reads the Jobs API.
    "/assets/${t}/content": CLOUD,
    "${PC}/${e}": CLOUD,
    "${PC}/${e}/tags": CLOUD,
    "${PC}/remote-metadata?url=${t}": CLOUD,
    "/assets/exports/${e}": CLOUD,
    "/assets/from-workflow": CLOUD,
    "/assets/import": CLOUD,
    "/assets?${s}": CLOUD,
    "/assets?${t}": CLOUD,
    "${rw}/${e}": "cloud tasks (`/tasks/…`), only with the assets database",
    # ComfyHub, user secrets, partner-node policy, workflow publishing, cloud accounts.
    "/hub/assets/upload-url": CLOUD,
    "/hub/labels?type=tag": CLOUD,
    "/hub/profiles": CLOUD,
    "/hub/profiles/me": CLOUD,
    "/hub/workflows": CLOUD,
    "/hub/workflows/${encodeURIComponent(e)}": CLOUD,
    "/providers": CLOUD,
    "/secrets": CLOUD,
    "/secrets/${e}": CLOUD,
    "/secrets/providers": CLOUD,
    "/user": "getUserCloudStatus: a comfy.org cloud account",
    "/workspace/provider-policy": CLOUD,
    "/workflows/published/${encodeURIComponent(e)}": CLOUD,
}


def bundle_calls() -> set[tuple[str, str]]:
    calls = set()
    for path in sorted((FRONTEND_ROOT / "assets").glob("*.js")):
        text = path.read_text(errors="replace")
        calls |= {(m.group(1), m.group(3)) for m in CALL.finditer(text)}
        calls |= {("fetchApi", "/" + m.group(1)) for m in POST_ITEM.finditer(text)}
        calls |= {("fetchApi", m.group(1)) for m in JOBS.finditer(text)}
    return calls


def sample_path(kind: str, route: str) -> str:
    route = route.split("?")[0]
    # Userdata names carry folders (%2F arrives decoded); other ids never contain a slash.
    route = re.sub(r"\$\{encodeURIComponent\((file|source|dest)\)\}", "workflows/sample.json", route)
    route = re.sub(r"\$\{[^}]*\}", "sample", route)
    if route.endswith("/") and route != "/":
        route += "sample"  # `"/global_subgraphs/" + id`
    base = {
        "fetchApi": "/user/001/api",
        "apiURL": "/user/001/api",
        "internalURL": "/user/001/internal",
        "fileURL": "/user/001",
    }[kind]
    return base + route


def test_the_bundle_is_read():
    calls = bundle_calls()
    assert ("fetchApi", "/prompt") in calls and ("fetchApi", "/interrupt") in calls
    assert len(calls) > 30


# fetchApi("/" + type) is no route of its own: its types are listed through #postItem.
SERVED = sorted((kind, route) for kind, route in bundle_calls() if route not in NOT_SERVED and route != "/")


def test_what_is_left_out_is_still_called_by_the_frontend_and_says_why():
    """Each route the bridge deliberately does not serve is one the current frontend calls (the
    list cannot go stale), with the reason."""
    called = {route for _, route in bundle_calls()}
    assert set(NOT_SERVED) <= called, sorted(set(NOT_SERVED) - called)
    assert all(len(why) > 20 for why in NOT_SERVED.values())


@pytest.mark.parametrize("kind, route", SERVED)
def test_bridge_answers_every_route_of_the_frontend(kind, route):
    path = sample_path(kind, route)
    try:
        match = resolve(path)
    except Resolver404:
        pytest.fail(f"{kind}({route!r}) -> {path} has no route in the bridge")
    if kind != "fileURL":
        assert match.func is not frontend.asset, f"{path} fell through to static files"


def test_websocket_route_is_served():
    from frontend_bridge.routing import websocket_urlpatterns

    assert any(p.pattern.match("user/001/ws") for p in websocket_urlpatterns)
    assert any(p.pattern.match("user/001/api/ws") for p in websocket_urlpatterns)


def test_djangos_system_check_finds_nothing_in_the_routes_or_settings():
    """The workspace routes once began with "/" under their include(): 94 warnings (urls.W002)."""
    from django.core.management import call_command

    call_command("check", fail_level="WARNING")
