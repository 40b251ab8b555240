"""The instructor's console in headless Chromium, next to participants' real ComfyUI pages.

With DOCS_SCREENSHOTS=1 the screenshots go to docs/images/ (docs/instructor.md shows them);
otherwise to the test artifacts."""

import json
import os
from pathlib import Path

import pytest

from jobs.models import Job, JobState
from tests import browsing
from tests.test_browser import ARTIFACTS, load_workshop_workflow, open_workspace, queue_button

browser = browsing.browser  # headless Chromium that fails the test on any page error

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = (
    (Path(__file__).resolve().parent.parent / "docs" / "images") if os.environ.get("DOCS_SCREENSHOTS") else ARTIFACTS
)
SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def submit(workspace):
    """Job.submit from another thread: Playwright's event loop owns this one, and the queue's
    push to browsers must not run inside it."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(Job.submit, workspace, SIMPLE).result()


@pytest.fixture
def catalog(live_app, double):
    """A GPU host's catalog is published (prompts validate), but its worker is disabled: jobs wait."""
    from jobs.models import Worker

    with live_app.gpu_worker(double.url, name="h100-a"):
        Worker.objects.filter(name="h100-a").update(enabled=False)
        yield


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def open_console(browser, live_app, path="/admin/console/", cut_socket=False):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    if cut_socket:
        context.route_web_socket("**/ws/console", lambda ws: ws.close())
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(f"{live_app.url}/admin/login/?next={path}")
    page.fill("#id_username", "instructor")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_app.url}{path}")
    return page, errors


def badge_says(page, pattern, timeout=20_000):
    page.wait_for_function(
        f"() => {json.dumps(pattern)} && new RegExp({json.dumps(pattern)}).test("
        "document.getElementById('workshop-queue-badge')?.textContent || '')",
        timeout=timeout,
    )


def test_a_submitted_job_appears_live_and_run_next_moves_it_to_position_one(browser, live_app, participants, catalog):
    """No GPU worker takes jobs: they wait, so the order on the page is the whole story."""
    ahead = submit(participants[1])
    console, console_errors = open_console(browser, live_app)
    console.wait_for_function("() => document.getElementById('live').textContent === 'live'", timeout=20_000)
    console.get_by_text("user002 (002)").wait_for()
    requests_before = []
    console.on("request", lambda r: requests_before.append(r.url))

    alice, watch = open_workspace(browser, live_app, "user001", "001")
    load_workshop_workflow(alice)
    queue_button(alice).click()
    badge_says(alice, "Position 2 of 2")
    # The console shows it without a reload: a websocket push, then one state read.
    row = console.locator("#waiting tbody tr", has_text="user001 (001)")
    row.wait_for(timeout=10_000)
    assert console.locator("#waiting tbody tr").first.locator("td").first.text_content() == "1"
    shot(console, "console-queue.png")

    row.get_by_role("button", name="Run next").click()
    console.wait_for_function(
        "() => document.querySelector('#waiting tbody tr td:nth-child(3)')?.textContent === 'user001 (001)'",
        timeout=5_000,
    )
    badge_says(alice, "Position 1 of 2")
    shot(alice, "participant-moved-to-front.png")
    job = Job.objects.get(workspace=participants[0])
    assert console.locator("#waiting tbody tr").first.locator("td").nth(3).text_content() == "next"
    assert Job.objects.get(pk=ahead.pk).state == JobState.QUEUED
    assert not any("/admin/console/" == r.removeprefix(live_app.url) for r in requests_before), "no reload"

    console.get_by_role("button", name="Pause the queue").click()
    badge_says(alice, "Paused by the instructor")
    console.get_by_text("Paused: waiting jobs stay queued", exact=True).wait_for()
    console.get_by_role("button", name="Resume the queue").click()
    badge_says(alice, r"Position 1 of 2 ·(?! Paused)")
    assert job.priority == 10 and console_errors == [], console_errors


def test_the_console_falls_back_to_polling_when_its_socket_is_cut(browser, live_app, participants):
    console, _ = open_console(browser, live_app, cut_socket=True)
    console.wait_for_function(
        "() => /refreshing every 3 s/.test(document.getElementById('live').textContent)", timeout=10_000
    )
    submit(participants[0])
    console.locator("#waiting tbody tr", has_text="user001 (001)").wait_for(timeout=10_000)


def test_an_announcement_appears_in_a_participants_ui(browser, live_app, participants):
    alice, _ = open_workspace(browser, live_app, "user001", "001")
    console, _ = open_console(browser, live_app)
    console.fill("#announce textarea", "Lunch break: back at 13:30")
    console.get_by_role("button", name="Announce").click()
    toast = alice.locator(".p-toast-message", has_text="Lunch break: back at 13:30")
    toast.wait_for(timeout=10_000)
    shot(alice, "participant-announcement.png")
    console.get_by_text("Lunch break: back at 13:30", exact=True).wait_for()
    # Someone who opens their workspace later sees it too.
    bob, _ = open_workspace(browser, live_app, "user002", "002")
    bob.locator(".p-toast-message", has_text="Lunch break: back at 13:30").wait_for(timeout=10_000)


def test_a_pushed_workflow_appears_in_the_sidebar_of_an_open_workspace(browser, live_app, participants, catalog):
    alice, watch = open_workspace(browser, live_app, "user001", "001")
    console, _ = open_console(browser, live_app, "/admin/console/workflows/")
    graph = json.loads((Path(__file__).parent.parent / "jobs" / "shipped_workflows" / "hello.json").read_text())
    console.set_input_files(
        "input[name=file]",
        files=[{"name": "exercise-2.json", "mimeType": "application/json", "buffer": json.dumps(graph).encode()}],
    )
    console.check("input[name=open_now]")
    shot(console, "console-push-workflow.png")
    console.get_by_role("button", name="Push to everyone").click()
    console.get_by_text("exercise-2.json is in 3 workspace(s) under workshop/.").wait_for()
    alice.locator(".p-toast-message", has_text="exercise-2").wait_for(timeout=10_000)
    # It was opened as a tab, and it is in the sidebar under workshop/.
    alice.wait_for_function("() => window.app.graph._nodes.some(n => n.type === 'ImageInvert')", timeout=10_000)
    alice.get_by_test_id("workflows-tab-button").click()
    folder = alice.get_by_text("workshop", exact=True)
    folder.wait_for()
    entry = alice.get_by_text("exercise-2", exact=True).or_(alice.get_by_text("exercise-2.json", exact=True)).first
    if not entry.is_visible():
        folder.click()
    entry.wait_for(timeout=10_000)
    shot(alice, "participant-pushed-workflow.png")
    assert watch.ours()[1] == []


def test_participants_grid_and_charts_render_for_the_docs(browser, live_app, participants):
    from django.utils import timezone

    from tests.test_lifecycle import make_worker

    gpu = make_worker("h100-a")
    now = timezone.now()
    for n, workspace in enumerate(participants):
        for k in range(3):
            job = submit(workspace)
            start = now - timezone.timedelta(minutes=50 - 15 * k - 4 * n)
            Job.objects.filter(pk=job.pk).update(
                state=JobState.COMPLETED,
                worker=gpu,
                created_at=start - timezone.timedelta(seconds=40 * (n + 1)),
                started_at=start,
                finished_at=start + timezone.timedelta(seconds=90),
                gpu_seconds=90,
            )
    page, errors = open_console(browser, live_app, "/admin/console/participants/")
    page.get_by_text("user003").first.wait_for()
    shot(page, "console-participants.png")
    page.goto(f"{live_app.url}/admin/console/charts/?hours=1")
    assert page.locator(".charts figure svg").count() == 4
    shot(page, "console-charts.png")
    page.goto(f"{live_app.url}/admin/rq/queues/0/")
    page.wait_for_load_state("load")
    assert errors == [], errors


def test_a_refused_prompt_shows_one_clear_dialog_and_no_second_toast(browser, live_app, participants, catalog):
    from jobs.models import QueueSettings

    QueueSettings.get()
    QueueSettings.objects.update(max_waiting_per_user=1)
    submit(participants[0])
    # The frontend logs a refused prompt itself, as it does in front of a plain ComfyUI.
    browser.allow(r"status of 429", "the refused POST /api/prompt, logged by Chromium")
    browser.allow(r"PromptExecutionError: Prompt execution failed", "the frontend logs the error it shows")
    alice, watch = open_workspace(browser, live_app, "user001", "001")
    load_workshop_workflow(alice)
    queue_button(alice).click()
    dialog = alice.get_by_text("You already have 1 job waiting (the limit is 1)", exact=False)
    dialog.first.wait_for(timeout=10_000)
    alice.wait_for_load_state("networkidle")
    shot(alice, "participant-refused-prompt.png")
    toasts = alice.locator(".p-toast-message").all_text_contents()
    assert not any("server logs" in t for t in toasts), toasts
    stats = alice.evaluate("async () => (await fetch('api/system_stats')).json()")
    assert stats["system"]["argv"] == ["main.py"], "the GPU host's command line stays hidden"


def test_a_login_link_gets_a_slowed_participant_in_and_the_login_page_counts_down(browser, live_app, participants):
    """Someone keeps guessing user002: the login page says how long to wait, counting down, and
    keeps the name typed; the instructor's Login link (a QR code and an address) gets them in."""
    participant = browser.new_context().new_page()
    errors = []
    participant.on("pageerror", lambda e: errors.append(str(e)))
    participant.on(
        "console", lambda m: m.type == "error" and "Failed to load resource" not in m.text and errors.append(m.text)
    )
    for n in range(11):  # the guesser, at the same address
        live_app.login_fails("user002", f"guess{n}")
    participant.goto(f"{live_app.url}/accounts/login/")
    participant.fill("#id_username", "user002")
    participant.fill("#id_password", "pw")
    participant.click("button[type=submit]")
    said = participant.locator("[data-wait]")
    first = said.text_content()
    assert "try again in" in first and "login link" in first
    participant.wait_for_function(
        "(first) => document.querySelector('[data-wait]').textContent !== first", arg=first
    )  # it counts down
    assert participant.input_value("#id_username") == "user002"

    console, console_errors = open_console(browser, live_app, "/admin/console/participants/")
    console.locator("form[action$='/002/login-link'] button").click()
    console.wait_for_selector("code.login-link")
    assert console.locator(".login-link-qr svg").count() == 1
    shot(console, "console-login-link.png")
    link = console.locator("code.login-link").text_content()
    console.go_back()
    console.wait_for_selector("form[action$='/002/reset-password']")
    console.once("dialog", lambda dialog: dialog.dismiss())  # a reset asks first; No changes nothing
    console.locator("form[action$='/002/reset-password'] button").click()
    assert console.url.endswith("/admin/console/participants/")

    participant.goto(link)
    participant.get_by_role("button", name="Log in as user002").click()
    participant.wait_for_url(f"{live_app.url}/user/002/**")
    assert errors == [] and console_errors == [], (errors, console_errors)
