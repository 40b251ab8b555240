"""The real ComfyUI frontend in headless Chromium, served per workspace by one Django process."""

import json
from pathlib import Path

import pytest

from jobs.models import Job, JobState
from tests import browsing
from tests.conftest import wait_until
from tests.test_own_models import safetensors

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

browser = browsing.browser  # headless Chromium that fails the test on any page error
ARTIFACTS = browsing.ARTIFACTS
FRONTEND_OWN_ERRORS = browsing.FRONTEND_OWN_ERRORS


class Watch:
    """Failed requests and console errors of one page, with what caused them."""

    def __init__(self, page, base, prefix):
        self.failed, self.errors, self.outside, self.escaped, self.urls = [], [], [], [], []
        page.on("request", lambda r: self.urls.append(r.url))
        page.on(
            "request",
            lambda r: (
                r.url.startswith(base)
                # the login page, and its own script (the throttle's countdown)
                and not r.url.startswith(
                    (f"{base}{prefix}", f"{base}/accounts/login/", f"{base}/static/workshop/login")
                )
                and self.escaped.append(r.url)
            ),
        )
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.request.method} {r.url}"))
        page.on(
            "requestfailed",
            lambda r: self.failed.append(f"FAILED {r.method} {r.url} {r.failure} {r.headers} {r.post_data}"),
        )
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("request", lambda r: not r.url.startswith((base, "data:", "blob:")) and self.outside.append(r.url))

    def ours(self):
        errors = [e for e in self.errors if not any(own in e for own in FRONTEND_OWN_ERRORS)]
        return self.failed, errors


START = "video_ltx2_t2v"  # settings.WORKSHOP_START_WORKFLOW
STARTED = f"""async () => window.app.extensionManager.workflow.activeWorkflow?.filename === {START!r}
  && !(await (await fetch('api/settings/Workshop.StartWorkflow')).json())"""


def open_workspace(browser, live_app, username, slug, wait_start=True):
    """A fresh participant's first visit, through the login form, until the start workflow is
    open (the UI does that a moment after it shows; a workflow opened before then is replaced)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    watch = Watch(page, live_app.url, f"/user/{slug}/")
    page.goto(f"{live_app.url}/user/{slug}/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_app.url}/user/{slug}/")
    # Only the canvas is touched: the frontend reports reading app.graph before it exists as an error.
    page.wait_for_function(
        "() => window.app && window.app.canvas && window.app.canvas.graph && document.querySelector('canvas')",
        timeout=60_000,
    )
    if wait_start:
        page.wait_for_function(STARTED, timeout=30_000, polling=200)
    return page, watch


HELLO = "() => window.app.graph._nodes.map(n => n.type).join(',') === 'EmptyImage,ImageInvert,SaveImage'"


def load_workshop_workflow(page, name="hello", loaded=HELLO):
    """Open a workshop workflow from the Workflows sidebar, as a participant would."""
    sidebar = page.get_by_test_id("workflows-tab-button")
    sidebar.click()
    folder = page.get_by_text("workshop", exact=True)
    folder.wait_for()
    entry = page.get_by_text(name, exact=True).or_(page.get_by_text(f"{name}.json", exact=True)).first
    if not entry.is_visible():
        folder.click()
    entry.click()
    page.wait_for_function(loaded, timeout=15_000)
    sidebar.click()  # close the sidebar again


def queue_button(page):
    return page.get_by_test_id("queue-button")


def run_and_watch(page, double):
    queue_button(page).click()
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
        page.wait_for_function(
            "() => window.app.canvas.node_in_progress || document.title.match(/\\d+%/)", timeout=20_000
        )
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
    frames = [u for u in watch.urls if "favicon_progress_16x16" in u]
    assert frames and all(u.startswith(f"{live_app.url}/user/001/assets/images/") for u in frames), (
        "the progress favicon's frames come from under the workspace too"
    )


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
        queue_button(bob).click()
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
        # The picture shows once ComfyUI says "executed"; the run ends a moment later, when the
        # worker has sent its files and its end.
        wait_until(
            lambda: Job.objects.filter(pk=bobs_job.pk, state=JobState.COMPLETED).exists(),
            message="user002's run to end",
        )
        bob_queue = bob.evaluate("async () => (await fetch('api/queue')).json()")
        bob_history = bob.evaluate("async () => (await fetch('api/history?max_items=64')).json()")
        bob_image = bob.evaluate("() => window.app.graph._nodes.find(n => n.type === 'SaveImage').imgs[0].src")
        bob.screenshot(path=str(ARTIFACTS / "05-other-participant.png"))
        errors_before_probe = bob_watch.ours()[1] + alice_watch.ours()[1]
        browser.allow(r"/user/002/.*status of 404", "the probe below: user002 asks for user001's run")
        stolen = bob.evaluate(f"async () => (await fetch('/user/001/api/history/{job.pk}')).status")

    assert str(job.pk) not in json.dumps(bob_queue)
    assert list(bob_history) == [str(bobs_job.pk)], "user002's history holds only user002's run"
    assert bobs_job.outputs["3"]["images"][0]["filename"] in bob_image and "/user/002/" in bob_image
    assert stolen == 404
    assert frames, "user002's websocket was recorded"
    assert not any(str(job.pk) in str(frame) for frame in frames), "no message about user001's job reached user002"
    assert errors_before_probe == []


V080_CATALOG = Path(__file__).resolve().parent / "recorded" / "v0.8.0" / "object_info.json.gz"
# The model files the workshop's LTX-2 templates name (jobs.workflows.required_models).
LTX2_MODELS = [
    "ltx-2-19b-dev-fp8.safetensors",
    "ltx-2-19b-distilled.safetensors",
    "gemma_3_12B_it_fp4_mixed.safetensors",
    "ltx-2-19b-distilled-lora-384.safetensors",
    "ltx-2-19b-lora-camera-control-dolly-left.safetensors",
    "ltx-2-spatial-upscaler-x2-1.0.safetensors",
]

# EmptyImage -> ResizeImageMaskNode (DynamicCombo "scale dimensions" 32x32) and a second
# EmptyImage -> BatchImagesNode (Autogrow images.image0/1) -> SaveImage, wired in the canvas.
V3_GRAPH = """async () => {
  const g = window.app.graph;
  const add = (type, x) => { const n = LiteGraph.createNode(type); n.pos = [x, 100]; g.add(n); return n; };
  g.clear();
  const a = add('EmptyImage', 0), b = add('EmptyImage', 0), resize = add('ResizeImageMaskNode', 350);
  const batch = add('BatchImagesNode', 700), save = add('SaveImage', 1050);
  b.pos = [0, 400];
  b.widgets.find(w => w.name === 'color').value = 65280;
  const combo = resize.widgets.find(w => w.name === 'resize_type');
  combo.value = 'scale dimensions';
  combo.callback?.(combo.value);
  await new Promise(r => setTimeout(r, 200));
  for (const w of resize.widgets) {
    if (w.name === 'resize_type.width' || w.name === 'resize_type.height') w.value = 32;
  }
  a.connect(0, resize, resize.inputs.findIndex(i => i.name === 'input'));
  resize.connect(0, batch, batch.inputs.findIndex(i => i.name === 'images.image0'));
  await new Promise(r => setTimeout(r, 200));
  b.connect(0, batch, batch.inputs.findIndex(i => i.name === 'images.image1'));
  batch.connect(0, save, 0);
  g.setDirtyCanvas(true, true);
  return {resize: resize.widgets.map(w => w.name), batch: batch.inputs.map(i => i.name)};
}"""


def test_participant_runs_the_ltx2_template_and_v3_nodes_on_the_current_frontend(browser, live_app, participants):
    """Frontend 1.53.6 against a GPU host whose ComfyUI advertises 0.8.0's catalog (LTX-2 and V3
    nodes, the LTX-2 model files installed); the double stands in for the model nodes."""
    from scripts.comfyui_double import ComfyUIDouble

    ARTIFACTS.mkdir(exist_ok=True)
    with (
        ComfyUIDouble(object_info=V080_CATALOG, version="0.8.0", model_files=LTX2_MODELS, stand_ins=True) as double,
        live_app.gpu_worker(double.url),
    ):
        page, watch = open_workspace(browser, live_app, "user001", "001")
        # The first load opens the instructor's start workflow (LTX-2 text to video).
        page.wait_for_function("() => window.app.graph._nodes.some(n => n.type === 'SaveVideo')", timeout=20_000)
        load_workshop_workflow(
            page, "video_ltx2_t2v", "() => window.app.graph._nodes.some(n => n.type === 'SaveVideo')"
        )
        page.screenshot(path=str(ARTIFACTS / "06-ltx2-template.png"))
        subgraph = page.evaluate("""() => {
          const n = window.app.graph._nodes.find(n => n.subgraph);
          return {title: n.title, inner: n.subgraph._nodes.length,
                  widgets: Object.fromEntries(n.widgets.map(w => [w.label || w.name, w.value]))};
        }""")
        queue_button(page).click()
        job = wait_for_job(participants[0], 1)
        page.get_by_test_id("queue-overlay-toggle").click()
        page.get_by_text("video_ltx2_t2v").or_(page.get_by_text("Completed")).first.wait_for(timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "07-queue-panel.png"))
        page.get_by_test_id("queue-overlay-toggle").click()

        wired = page.evaluate(V3_GRAPH)
        queue_button(page).click()
        v3_job = wait_for_job(participants[0], 2)
        page.get_by_test_id("assets-tab-button").click()
        page.locator(f"img[src*='{v3_job.outputs['5']['images'][0]['filename']}']").first.wait_for(timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / "08-media-assets.png"))
        stats = page.evaluate("async () => (await fetch('api/system_stats')).json()")
        failed, errors = watch.ours()

    assert subgraph["title"] == "Text to Video (LTX 2.0)" and subgraph["inner"] > 10, "the subgraph is intact"
    assert subgraph["widgets"]["width"] == 1280 and subgraph["widgets"]["height"] == 720
    assert subgraph["widgets"]["frame_count"] == 121
    assert "puppet" in subgraph["widgets"]["text"], "the prompt text is in its own widget"
    assert job.state == JobState.COMPLETED, job.error
    texts = [n["inputs"].get("text") for n in job.prompt.values() if n["class_type"] == "CLIPTextEncode"]
    assert any("puppet" in (t or "") for t in texts)
    saved = job.outputs["75"]["images"][0]
    assert saved["subfolder"] == "video"
    assert {"resize_type.width", "resize_type.height", "resize_type.crop"} <= set(wired["resize"])
    assert v3_job.state == JobState.COMPLETED, v3_job.error
    resize = next(n for n in v3_job.prompt.values() if n["class_type"] == "ResizeImageMaskNode")
    assert resize["inputs"]["resize_type"] == "scale dimensions" and resize["inputs"]["resize_type.width"] == 32
    batch = next(n for n in v3_job.prompt.values() if n["class_type"] == "BatchImagesNode")
    assert {"images.image0", "images.image1"} <= set(batch["inputs"])
    assert len(v3_job.outputs["5"]["images"]) == 2, "the Autogrow batch held both images"
    assert stats["system"]["required_frontend_version"] == "1.53.6", "the UI is never told its frontend is outdated"
    assert failed == [], f"requests that failed because of the platform: {failed}"
    assert errors == [], f"console errors caused by the platform: {errors}"
    assert watch.outside == [] and watch.escaped == []


def wait_for_job(workspace, count, timeout=30.0):
    """The participant's `count`-th job, once it has ended."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = list(Job.objects.filter(workspace=workspace).order_by("created_at"))
        if len(jobs) >= count and jobs[count - 1].state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
            return jobs[count - 1]
        time.sleep(0.2)
    raise AssertionError(
        f"job {count} of {workspace} did not end: {[j.state for j in Job.objects.filter(workspace=workspace)]}"
    )


def test_a_participants_html_or_svg_runs_nothing_when_the_instructor_opens_it(browser, live_app, participants):
    """Stored XSS: files a participant uploaded are downloads or sandboxed media, never pages of
    the site's origin, and every page of the site (workspace UI, admin) runs under a CSP."""
    evil = (
        "<html><body><script>window.opener && (window.opener.__pwned = 1); document.title='pwned'</script>"
        "</body></html>"
    )
    root = participants[0].root / "input"
    (root / "evil.html").write_text(evil)
    (root / "evil.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><script>document.title="pwned"</script></svg>'
    )
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_app.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "instructor")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_app.url}/admin/")
    assert "default-src 'self'" in page.evaluate(
        "() => fetch('/admin/').then(r => r.headers.get('content-security-policy'))"
    )
    for name in ("evil.html", "evil.svg"):
        url = f"{live_app.url}/user/001/api/view?filename={name}&type=input"
        with page.expect_download() as download:
            page.evaluate(
                "url => { const a = document.createElement('a'); a.href = url; document.body.append(a); a.click(); }",
                url,
            )
        assert download.value.suggested_filename == name
        # Even opened as a page of its own it is an opaque download, so nothing ran.
        assert page.title() != "pwned" and page.evaluate("() => window.__pwned") is None
    headers = page.evaluate(
        """url => fetch(url).then(r => ({type: r.headers.get('content-type'),
        disposition: r.headers.get('content-disposition'), csp: r.headers.get('content-security-policy')}))""",
        f"{live_app.url}/user/001/api/view?filename=evil.svg&type=input",
    )
    assert headers["type"] == "application/octet-stream" and headers["disposition"].startswith("attachment")
    assert "sandbox" in headers["csp"]
    context.close()


def test_a_cold_start_counts_on_the_badge_then_the_run_shows(browser, live_app, participants, monkeypatch):
    from tests.serverless_double import ServerlessComfyUI
    from tests.test_serverless import provider_file

    ARTIFACTS.mkdir(exist_ok=True)
    with ServerlessComfyUI(cold_start=4.0, step_time=0.05, steps=4) as front:
        with live_app.gpu_worker(name="modal-1", config=provider_file(front), env={"FRONT_KEY": front.key}):
            front.scale_to_zero()
            page, watch = open_workspace(browser, live_app, "user001", "001")
            load_workshop_workflow(page)
            queue_button(page).click()
            shown = page.wait_for_function(
                "() => { const t = document.getElementById('workshop-queue-badge')?.textContent || '';"
                " return /^Starting a GPU… \\d+ s$/.test(t) && t; }",
                timeout=20_000,
            ).json_value()
            page.wait_for_function(
                f"() => /^Starting a GPU… \\d+ s$/.test(document.getElementById('workshop-queue-badge').textContent)"
                f" && document.getElementById('workshop-queue-badge').textContent !== {shown!r}",
                timeout=5_000,
            )
            page.screenshot(path=str(ARTIFACTS / "09-starting-a-gpu.png"))
            page.wait_for_function(
                "() => { const n = window.app.graph._nodes.find(n => n.type === 'SaveImage');"
                " return n && n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth > 0; }",
                timeout=30_000,
            )
            later = page.evaluate("() => document.getElementById('workshop-queue-badge').textContent")
            failed, errors = watch.ours()
    assert "Starting a GPU" not in later, "the count stops once the run is there"
    assert Job.objects.get(workspace=participants[0]).cold_start_seconds >= 2
    assert failed == [] and errors == [], (failed, errors)


def test_a_participant_logs_out_from_the_workshop_menu_and_sees_no_comfy_org_account(browser, live_app, participants):
    page, watch = open_workspace(browser, live_app, "user001", "001")
    # No Comfy.org sign-in: neither the person icon of the top bar nor the settings' User panel.
    assert page.locator("[data-testid=login-button]").count() == 1, "the frontend still renders it"
    assert not page.locator("[data-testid=login-button]").is_visible()
    page.get_by_label("Settings (Ctrl + ,)").click()
    page.get_by_text("Lite Graph", exact=True).first.wait_for()
    assert not page.locator("[data-nav-id=user]").is_visible()
    assert page.get_by_text("Sign In / Sign Up").count() == 0
    page.keyboard.press("Escape")
    page.locator(".comfyui-logo, .comfy-menu-button-wrapper").first.click()
    page.get_by_text("Workshop", exact=True).hover()
    page.get_by_text("Log out", exact=True).click()
    page.wait_for_url(f"{live_app.url}/accounts/login/")
    page.goto(f"{live_app.url}/user/001/")
    assert page.url.startswith(f"{live_app.url}/accounts/login/"), "the session is gone"
    failed, errors = watch.ours()
    assert failed == [] and errors == [], (failed, errors)


def test_my_outputs_my_models_and_the_admin_pages_load_without_a_page_error(browser, live_app, participants, double):
    """The pages around the UI, opened the way people open them (any page error fails the test)."""
    with live_app.gpu_worker(double.url):
        page, watch = open_workspace(browser, live_app, "user001", "001")
        load_workshop_workflow(page)
        queue_button(page).click()
        job = wait_for_job(participants[0], 1)
        assert job.state == JobState.COMPLETED, job.error
        with page.context.expect_page() as opened:  # Workshop > My outputs opens a new tab
            page.evaluate("() => window.app.extensionManager.command.execute('Workshop.MyOutputs')")
        outputs = opened.value
        tab_errors = []
        outputs.on("pageerror", lambda e: tab_errors.append(f"pageerror: {e}"))
        outputs.on("console", lambda m: m.type == "error" and tab_errors.append(m.text))
        outputs.wait_for_load_state("load")
        image = job.outputs["3"]["images"][0]["filename"]
        outputs.wait_for_function(
            f"() => [...document.images].some(i => i.alt === {image!r} && i.complete && i.naturalWidth > 0)"
        )
        assert outputs.locator("h1").text_content().startswith("My outputs (1 files")
        outputs.goto(f"{live_app.url}/user/001/my-models/")
        assert outputs.locator("h1").text_content().startswith("My models")
        # A LoRA picked in the file input goes up in parts (its size reserved first) and is listed.
        outputs.set_input_files(
            "#file",
            files=[
                {
                    "name": "mine.safetensors",
                    "mimeType": "application/octet-stream",
                    "buffer": safetensors(3 * 1024 * 1024),
                }
            ],
        )
        outputs.wait_for_function("() => document.getElementById('models').textContent.includes('ws-001/mine')")
        outputs.goto(f"{live_app.url}/accounts/password/")  # the card page's styles, extended
        assert outputs.locator("h1").text_content() == "Change your password"
        assert tab_errors == [], tab_errors
        # The badge's words for a time: "starting soon" only when it is.
        words = page.evaluate("""async () => {
          const badge = await import('/user/001/extensions/workshop/queue_badge.js');
          return [5, 10, 11, 40, 44, 45, 89, 91, 600].map(badge.about); }""")
        failed, errors = watch.ours()

        staff = browser.new_context().new_page()
        staff.goto(f"{live_app.url}/admin/login/?next=/admin/")
        staff.fill("#id_username", "instructor")
        staff.fill("#id_password", "pw")
        staff.click("input[type=submit]")
        staff.wait_for_url(f"{live_app.url}/admin/")
        for path in (
            "/admin/",
            "/admin/jobs/job/",
            f"/admin/jobs/job/{job.pk}/change/",
            "/admin/jobs/worker/",
            "/admin/jobs/queuesettings/",
            "/admin/accounts/workspace/",
            "/admin/console/participants/",
            "/admin/console/costs/",
            "/admin/console/workflows/",
            "/admin/console/charts/",
        ):
            answer = staff.goto(f"{live_app.url}{path}")
            assert answer.status == 200, path
    assert words == [
        "starting soon",
        "starting soon",
        "about 10 s",
        "about 40 s",
        "about 45 s",
        "about 1 min",
        "about 1 min",
        "about 2 min",
        "about 10 min",
    ]
    assert failed == [] and errors == [], (failed, errors)
