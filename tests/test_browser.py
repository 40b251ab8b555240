"""The real ComfyUI frontend in headless Chromium, served per workspace by one Django process."""
import json
import os
import shutil
from pathlib import Path

import pytest

from jobs.models import Job, JobState

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

# The frontend's own page errors, not caused by any server: each with the reason.
FRONTEND_OWN_ERRORS = {
    # 1.27.10's settings code (addSetting -> onChange) reads `.id` of an undefined value on first
    # load; a plain ComfyUI 0.3.64 shows it too, with every file present.
    "Cannot read properties of undefined (reading 'id')",
}


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are
    # still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield instance
        instance.close()


class Watch:
    """Failed requests and console errors of one page, with what caused them."""

    def __init__(self, page, base):
        self.failed, self.errors, self.outside = [], [], []
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.request.method} {r.url}"))
        page.on("requestfailed", lambda r: self.failed.append(f"FAILED {r.method} {r.url} {r.failure} {r.headers} {r.post_data}"))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("request", lambda r: not r.url.startswith((base, "data:", "blob:")) and self.outside.append(r.url))

    def ours(self):
        errors = [e for e in self.errors if not any(own in e for own in FRONTEND_OWN_ERRORS)]
        return self.failed, errors


def open_workspace(browser, live_app, username, slug):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    watch = Watch(page, live_app.url)
    page.goto(f"{live_app.url}/user/{slug}/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_app.url}/user/{slug}/")
    page.wait_for_function("() => window.app && window.app.graph && window.app.canvas && document.querySelector('canvas')",
                           timeout=60_000)
    return page, watch


def test_explore(browser, live_app, participants, double):
    ARTIFACTS.mkdir(exist_ok=True)
    with live_app.gpu_worker(double.url):
        page, watch = open_workspace(browser, live_app, "user001", "001")
        page.wait_for_timeout(3000)
        page.screenshot(path=str(ARTIFACTS / "explore.png"))
        print("FAILED", json.dumps(watch.failed, indent=1))
        print("ERRORS", json.dumps(watch.errors, indent=1))
        print("OUTSIDE", watch.outside)
