"""The rehearsal's browser part: headless Chromium against the workshop's public address, as
participants and the instructor will open it. Runs in a thread of its own and never touches the
database (Playwright's sync API keeps an event loop in its thread)."""

import os
import shutil
import time
from dataclasses import dataclass, field

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
READY = "() => window.app && window.app.canvas && window.app.canvas.graph && document.querySelector('canvas')"
ACTIVE = "() => window.app.extensionManager?.workflow?.activeWorkflow?.filename || ''"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (shutil.which(candidate) or os.path.exists(candidate)):
            return shutil.which(candidate) or candidate
    return None


@dataclass
class Visit:
    username: str
    seconds: float = 0.0
    workflow: str = ""
    errors: list[str] = field(default_factory=list)
    failure: str = ""


@dataclass
class BrowserResults:
    first: Visit | None = None
    loads: list[Visit] = field(default_factory=list)
    console_seen: list[str] = field(default_factory=list)
    console_failure: str = ""
    prompt_ids: list[str] = field(default_factory=list)
    failure: str = ""


def _watch(page, visit: Visit, known) -> None:
    page.on("pageerror", lambda e: visit.errors.append(f"uncaught: {e}"))

    def console(message) -> None:
        if message.type == "error" and not known(message.text):
            visit.errors.append(message.text[:300])

    page.on("console", console)


def open_workspace(browser, url: str, account, start: str, known, timeout_ms: int):
    """Log in through the real form and wait for the UI and its first workflow."""
    visit = Visit(account.username)
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    _watch(page, visit, known)
    began = time.monotonic()
    try:
        page.goto(f"{url}/user/{account.slug}/", timeout=timeout_ms)
        page.fill("#id_username", account.username)
        page.fill("#id_password", account.password)
        page.click("button[type=submit]")
        page.wait_for_function(READY, timeout=timeout_ms)
        visit.seconds = time.monotonic() - began
        page.wait_for_function(f"() => ({ACTIVE})() === {start!r}", timeout=timeout_ms)
    except PlaywrightError as exc:
        visit.failure = str(exc).splitlines()[0]
    visit.workflow = page.evaluate(f"() => {{ try {{ return ({ACTIVE})(); }} catch (e) {{ return ''; }} }}")
    return page, visit


def _console(browser, url: str, staff, timeout_ms: int):
    page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    page.goto(f"{url}/admin/login/?next=/admin/console/", timeout=timeout_ms)
    page.fill("#id_username", staff.username)
    page.fill("#id_password", staff.password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/console/", timeout=timeout_ms)
    page.wait_for_function("() => document.getElementById('live').textContent === 'live'", timeout=timeout_ms)
    # Every name that shows in Running or Waiting while the test runs go through.
    page.evaluate("""() => {
      window.__seen = new Set();
      const look = () => document.querySelectorAll('#running tbody td, #waiting tbody td')
        .forEach(td => window.__seen.add(td.textContent));
      new MutationObserver(look).observe(document.getElementById('console'), {childList: true, subtree: true});
      look();
    }""")
    return page


def _submit(page, prompt: dict) -> str:
    answer = page.evaluate(
        """async (prompt) => {
      const r = await fetch('api/prompt', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                          body: JSON.stringify({prompt, client_id: 'workshop-rehearsal'})});
      return {status: r.status, body: await r.json()};
    }""",
        prompt,
    )
    if answer["status"] != 200:
        raise RuntimeError(f"POST api/prompt answered {answer['status']}: {answer['body']}")
    return answer["body"]["prompt_id"]


def rehearse(
    url: str, first, others, staff, prompt: dict | None, start: str, known, timeout: float = 60.0
) -> BrowserResults:
    """A fresh participant's first visit, the others' first loads, then each of them presses Run
    while the console is open: what the console showed."""
    results = BrowserResults()
    path = chromium_path()
    if path is None:
        results.failure = "no Chromium on this machine"
        return results
    ms = int(timeout * 1000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        try:
            _, results.first = open_workspace(browser, url, first, start, known, ms)
            pages = []
            for account in others:
                page, visit = open_workspace(browser, url, account, start, known, ms)
                results.loads.append(visit)
                pages.append((account, page))
            if prompt is not None:
                _watch_console(browser, url, staff, pages, prompt, results, ms)
        finally:
            browser.close()
    return results


def _watch_console(browser, url, staff, pages, prompt, results: BrowserResults, ms: int) -> None:
    try:
        console = _console(browser, url, staff, ms)
        for _, page in pages:
            results.prompt_ids.append(_submit(page, prompt))
        names = [f"{account.username} ({account.slug})" for account, _ in pages]
        try:
            console.wait_for_function(f"() => {names!r}.some(n => window.__seen.has(n))", timeout=ms)
        except PlaywrightError:
            pass
        seen = set(console.evaluate("() => [...window.__seen]"))
        results.console_seen = [n for n in names if n in seen]
    except (PlaywrightError, RuntimeError) as exc:
        results.console_failure = str(exc).splitlines()[0]
