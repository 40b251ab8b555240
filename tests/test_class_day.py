"""A class in session, in real Chromium: the instructor's console and five participants open at
once while runs go through one GPU worker (the ComfyUI double). What people look at first:
the console's Running and Waiting tables and its levers, every badge's position and time, and
every fresh participant's first visit opening the start workflow. Any page error fails it
(tests.browsing)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job, JobState, QueueSettings
from tests import browsing
from tests.conftest import class_of
from tests.test_browser import load_workshop_workflow, open_workspace, queue_button
from tests.test_console_browser import open_console, shot

browser = browsing.browser

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PARTICIPANTS = 5
START = "video_ltx2_t2v"  # settings.WORKSHOP_START_WORKFLOW
RUN_SECONDS = 90.0  # what three earlier runs of "hello" took: the ETAs are read from them


def measured_runs(workspace, seconds, count=3):
    """Earlier runs of the workshop's hello workflow, as the calibration reads them."""
    ended = timezone.now() - timedelta(hours=1)
    for _ in range(count):
        Job.objects.create(
            workspace=workspace,
            prompt={},
            workflow_name="hello",
            state=JobState.COMPLETED,
            gpu_seconds=seconds,
            created_at=ended,
            started_at=ended,
            finished_at=ended,
            hidden_from_history=True,
        )


def badge(page):
    return page.evaluate(
        "() => { const b = document.getElementById('workshop-queue-badge');"
        " return b && !b.hidden ? b.textContent : ''; }"
    )


def badge_matches(page, pattern, timeout=20_000):
    page.wait_for_function(
        f"() => new RegExp({json.dumps(pattern)})"
        ".test(document.getElementById('workshop-queue-badge')?.textContent || '')",
        timeout=timeout,
    )
    return badge(page)


def waiting_names(console):
    return console.evaluate(
        "() => [...document.querySelectorAll('#waiting tbody tr td:nth-child(3)')].map(td => td.textContent)"
    )


def minutes_of(text):
    import re

    found = re.search(r"about (\d+) min", text)
    assert found, f"no time in the badge: {text!r}"
    return int(found.group(1))


def test_a_class_in_session(browser, live_app, double):
    workspaces = class_of(PARTICIPANTS)
    measured_runs(workspaces[0], RUN_SECONDS)
    QueueSettings.get()
    QueueSettings.objects.update(policy="fifo")
    double.steps, double.step_time = 400, 0.1  # runs last until the test lets them finish

    with live_app.gpu_worker(double.url):
        console, _ = open_console(browser, live_app)
        console.on("dialog", lambda dialog: dialog.accept())
        console.wait_for_function("() => document.getElementById('live').textContent === 'live'", timeout=20_000)

        pages, first_workflows = [], []
        for workspace in workspaces:
            name = workspace.owner.username
            page, watch = open_workspace(browser, live_app, name, workspace.slug, wait_start=False)
            page.wait_for_function(
                "() => window.app.extensionManager.workflow.activeWorkflow?.filename", timeout=20_000
            )
            # The start workflow is opened once the frontend's own first graph is in.
            page.wait_for_function(
                f"() => window.app.extensionManager.workflow.activeWorkflow?.filename === {START!r}", timeout=20_000
            )
            first_workflows.append(page.evaluate("() => window.app.extensionManager.workflow.activeWorkflow.filename"))
            pages.append((page, watch))

        for page, _ in pages:
            load_workshop_workflow(page)
            queue_button(page).click()
        alice = pages[0][0]
        badge_matches(alice, "^Running on gpu-1")

        # Every waiting participant sees their position and a time, later places a longer one.
        waits = [
            badge_matches(page, rf"^Position {n} of 4 · about \d+ min")
            for n, (page, _) in enumerate(pages[1:], start=1)
        ]
        assert [minutes_of(w) for w in waits] == sorted(minutes_of(w) for w in waits)
        assert minutes_of(waits[-1]) > minutes_of(waits[0])

        # The console's Running table: the job, its node, ComfyUI's progress, a ticking time.
        running = console.locator("#running tbody tr", has_text="user001 (001)")
        running.wait_for(timeout=10_000)
        console.wait_for_function(
            "() => document.querySelector('#running tbody tr progress')?.value > 0", timeout=20_000
        )
        cells = running.locator("td")
        assert cells.nth(2).text_content() == "gpu-1"
        assert cells.nth(3).text_content().startswith("#"), "the node being executed"
        elapsed = cells.nth(5).text_content()
        console.wait_for_function(
            f"() => document.querySelector('#running tbody tr .elapsed').textContent !== {elapsed!r}", timeout=5_000
        )
        assert console.get_by_text("Nothing is running.").count() == 0
        assert waiting_names(console) == [f"user00{n} (00{n})" for n in range(2, 6)]
        shot(console, "class-console-running.png")
        shot(pages[3][0], "class-participant-waiting.png")

        # Run next: user005 goes to the front, in the console and on both badges.
        console.locator("#waiting tbody tr", has_text="user005 (005)").get_by_role("button", name="Run next").click()
        console.wait_for_function(
            "() => document.querySelector('#waiting tbody tr td:nth-child(3)')?.textContent === 'user005 (005)'",
            timeout=5_000,
        )
        badge_matches(pages[4][0], r"^Position 1 of 4 · ")
        moved = badge_matches(pages[1][0], r"^Position 2 of 4 · about \d+ min")
        assert minutes_of(moved) > minutes_of(waits[0]), "user002's wait grew by one run"

        # Run now: user004's run takes the GPU; user001's pauses and goes back to the front, after
        # the run the instructor had already put next.
        console.locator("#waiting tbody tr", has_text="user004 (004)").get_by_role("button", name="Run now").click()
        console.locator("#running tbody tr", has_text="user004 (004)").wait_for(timeout=20_000)
        badge_matches(pages[3][0], "^Running on gpu-1")
        console.wait_for_function(
            "() => document.querySelector('#waiting tbody tr:nth-child(2) td:nth-child(3)')"
            "?.textContent === 'user001 (001)'",
            timeout=20_000,
        )
        assert waiting_names(console) == ["user005 (005)", "user001 (001)", "user002 (002)", "user003 (003)"]
        badge_matches(alice, r"^Position 2 of 4 · about \d+ min")

        # Cancel the running job: it stops on the GPU, and its participant reads the
        # instructor's notice, not ComfyUI's "Job failed".
        dave = pages[3][0]
        dave_job = Job.objects.get(workspace=workspaces[3])
        console.wait_for_function(
            "() => document.querySelector('#running tbody tr progress')?.value > 0", timeout=20_000
        )
        console.locator("#running tbody tr", has_text="user004 (004)").get_by_role("button", name="Cancel").click()
        dave.get_by_text("The instructor cancelled this run").first.wait_for(timeout=20_000)
        assert double._interrupt_event.wait(10), "ComfyUI was told to stop"
        dave_job.refresh_from_db()
        assert dave_job.state == JobState.CANCELLED and dave_job.cancelled_by == "instructor"
        dave.wait_for_timeout(1500)  # a late "Job failed" toast would show within this time
        toasts = " ".join(dave.locator(".p-toast-message, [role=alert], [role=status]").all_text_contents())
        assert "Job failed" not in toasts and "failed" not in toasts.lower(), toasts
        shot(dave, "class-participant-cancelled.png")

        # The rest of the class's runs finish, and every badge goes quiet.
        double.steps, double.step_time = 2, 0.01
        for page, _ in pages:
            page.wait_for_function("() => document.getElementById('workshop-queue-badge').hidden", timeout=60_000)
        console.get_by_text("Nobody is waiting.").wait_for(timeout=20_000)
        problems = [watch.ours() for _, watch in pages]

    assert first_workflows == [START] * PARTICIPANTS, "every fresh participant's first visit opens it"
    assert all(failed == [] and errors == [] for failed, errors in problems), problems
