"""Headless Chromium for the browser tests, strict about page errors.

Every context a test opens through the `browser` fixture records each uncaught exception and
each console error of each of its pages. When the test ends, any that is not in
FRONTEND_OWN_ERRORS (or allowed by the test itself, with its reason) fails it: a page that
throws is a broken page, whatever the test looked at.
"""

import os
import re
from pathlib import Path

import pytest

from frontend_bridge.frontend import KNOWN_FRONTEND_ERRORS
from workshop.rehearsal_browser import (  # the same Chromium, run the same way
    FLAGS,
    chromium_path,
)

CHROMIUM = chromium_path() or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))

# The frontend's own page errors, each with its cause (checked against a plain ComfyUI serving
# the same frontend): frontend_bridge.frontend owns the list, which the rehearsal uses too.
FRONTEND_OWN_ERRORS = KNOWN_FRONTEND_ERRORS


class StrictBrowser:
    """The Playwright browser, whose contexts report their pages' errors to the test."""

    def __init__(self, browser):
        self._browser = browser
        self.errors: list[str] = []
        self._allowed: dict[str, str] = {}

    def allow(self, pattern: str, why: str) -> None:
        """A page error this test causes on purpose (a refused request logs one, say)."""
        self._allowed[pattern] = why

    def new_context(self, **kwargs):
        context = self._browser.new_context(**kwargs)
        context.on("weberror", lambda e: self.errors.append(f"pageerror on {e.page.url if e.page else '?'}: {e.error}"))
        context.on(
            "console",
            lambda m: (
                m.type == "error" and self.errors.append(f"console error on {m.page.url if m.page else '?'}: {m.text}")
            ),
        )
        return context

    def unexpected(self) -> list[str]:
        return [
            e
            for e in self.errors
            if not any(own in e for own in FRONTEND_OWN_ERRORS)
            and not any(re.search(pattern, e) for pattern in self._allowed)
        ]

    def __getattr__(self, name):
        return getattr(self._browser, name)


@pytest.fixture
def browser(monkeypatch, live_app):
    """Depends on live_app so its pages close before the server stops: a page that loses its
    server logs errors of its own, which say nothing about the platform."""
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are
    # still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        strict = StrictBrowser(instance)
        yield strict
        instance.close()
    unexpected = strict.unexpected()
    assert unexpected == [], "page errors (uncaught exceptions or console errors):\n" + "\n".join(unexpected)
