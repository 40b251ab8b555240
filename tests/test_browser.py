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

    def __init__(self, page, base, prefix):
        self.failed, self.errors, self.outside, self.escaped = [], [], [], []
        page.on("request", lambda r: r.url.startswith(base) and not r.url.startswith(
            (f"{base}{prefix}", f"{base}/accounts/login/", f"{base}/assets/images/favicon_progress", f"{base}/favicon.ico")
        ) and self.escaped.append(r.url))
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
    watch = Watch(page, live_app.url, f"/user/{slug}/")
    page.goto(f"{live_app.url}/user/{slug}/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_app.url}/user/{slug}/")
    page.wait_for_function("() => window.app && window.app.graph && window.app.canvas && document.querySelector('canvas')",
                           timeout=60_000)
    return page, watch


def load_workshop_workflow(page, name="hello"):
    """Open a workshop workflow from the Workflows sidebar, as a participant would."""
    page.locator(".workflows-tab-button").click()
    folder = page.get_by_text("workshop", exact=True)
    folder.wait_for()
    if not page.get_by_text(f"{name}.json").or_(page.get_by_text(name, exact=True)).first.is_visible():
        folder.click()
    page.get_by_text(name, exact=True).or_(page.get_by_text(f"{name}.json", exact=True)).first.click()
    page.wait_for_function(
        "() => window.app.graph._nodes.map(n => n.type).join(',') === 'EmptyImage,ImageInvert,SaveImage'", timeout=15_000
    )
    page.locator(".workflows-tab-button").click()  # close the sidebar again


def run_and_watch(page, double):
    page.locator(".comfyui-queue-button button").first.click()
    badge = page.locator("#workshop-queue-badge")
    badge.wait_for(state="attached")
    page.wait_for_function(
        "() => /Running on|Position/.test(document.getElementById('workshop-queue-badge')?.textContent || '')",
        timeout=20_000,
    )
    return badge.text_content()


def test_participant_runs_a_workshop_workflow_in_the_real_ui(browser, live_app, participants, double):
    ARTIFACTS.mkdir(exist_ok=True)
    double.steps, double.step_time = 12, 0.15  # long enough to see the badge and the progress bar
    with live_app.gpu_worker(double.url):
        page, watch = open_workspace(browser, live_app, "user001", "001")
        page.screenshot(path=str(ARTIFACTS / "01-workspace-loaded.png"))
        load_workshop_workflow(page)
        page.screenshot(path=str(ARTIFACTS / "02-hello-workflow.png"))
        badge_text = run_and_watch(page, double)
        # ComfyUI's own progress: the node being executed gets the progress bar on the canvas.
        page.wait_for_function("() => window.app.canvas.node_in_progress || document.title.match(/\\d+%/)", timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "03-running-with-badge.png"))
        job = Job.objects.get(workspace=participants[0])
        page.wait_for_function(
            "() => { const n = window.app.graph._nodes.find(n => n.type === 'SaveImage');"
            " return n && n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth > 0; }",
            timeout=30_000,
        )
        page.wait_for_function("() => document.getElementById('workshop-queue-badge').hidden", timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / "04-output-image.png"))
        image_src = page.evaluate("() => window.app.graph._nodes.find(n => n.type === 'SaveImage').imgs[0].src")
        failed, errors = watch.ours()

    assert "Running on gpu-1" in badge_text or "Position" in badge_text
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert "/user/001/api/view?" in image_src and job.outputs["3"]["images"][0]["filename"] in image_src
    assert failed == [], f"requests that failed because of the platform: {failed}"
    assert errors == [], f"console errors caused by the platform: {errors}"
    assert watch.outside == [], f"calls to outside hosts: {watch.outside}"
    assert watch.escaped == [], f"requests that left the workspace prefix: {watch.escaped}"


def test_two_participants_at_once_never_see_each_others_work(browser, live_app, participants, double):
    double.steps, double.step_time = 6, 0.1
    with live_app.gpu_worker(double.url):
        alice, alice_watch = open_workspace(browser, live_app, "user001", "001")
        bob, bob_watch = open_workspace(browser, live_app, "user002", "002")
        frames = []
        bob.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
        bob.reload()  # reconnect so the frame recorder sees the socket from its start
        bob.wait_for_function("() => window.app && window.app.graph", timeout=60_000)
        load_workshop_workflow(alice)
        load_workshop_workflow(bob)
        run_and_watch(alice, double)
        bob.locator(".comfyui-queue-button button").first.click()
        bob.wait_for_function(
            "() => /Position 1 of/.test(document.getElementById('workshop-queue-badge')?.textContent || '')",
            timeout=20_000,
        )
        bob.screenshot(path=str(ARTIFACTS / "05-waiting-with-position.png"))
        for page in (alice, bob):
            page.wait_for_function(
                "() => { const n = window.app.graph._nodes.find(n => n.type === 'SaveImage');"
                " return n && n.imgs && n.imgs.length && n.imgs[0].complete; }",
                timeout=30_000,
            )
        job = Job.objects.get(workspace=participants[0])
        bobs_job = Job.objects.get(workspace=participants[1])
        bob_queue = bob.evaluate("async () => (await fetch('api/queue')).json()")
        bob_history = bob.evaluate("async () => (await fetch('api/history?max_items=64')).json()")
        bob_image = bob.evaluate("() => window.app.graph._nodes.find(n => n.type === 'SaveImage').imgs[0].src")
        bob.screenshot(path=str(ARTIFACTS / "05-other-participant.png"))
        errors_before_probe = bob_watch.ours()[1] + alice_watch.ours()[1]
        stolen = bob.evaluate(f"async () => (await fetch('/user/001/api/history/{job.pk}')).status")

    assert str(job.pk) not in json.dumps(bob_queue)
    assert list(bob_history) == [str(bobs_job.pk)], "user002's history holds only user002's run"
    assert bobs_job.outputs["3"]["images"][0]["filename"] in bob_image and "/user/002/" in bob_image
    assert stolen == 404
    assert frames, "user002's websocket was recorded"
    assert not any(str(job.pk) in str(frame) for frame in frames), "no message about user001's job reached user002"
    assert errors_before_probe == []
