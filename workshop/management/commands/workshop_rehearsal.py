"""`manage.py workshop_rehearsal`: the dress rehearsal an operator runs the day before.

Against the real deployment, in order: every enabled GPU worker (online, a supported ComfyUI,
its catalog), the class's workflows' model files on each worker, one model-free run through
each worker, a fresh test participant's first visit and N test participants' first loads in
headless Chromium, and the console's live queue while their runs go through. It prints its
progress, writes a readiness report (Markdown, each failure with its fix), exits 1 on any
failure, and removes its test accounts, their jobs and their files.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from jobs.models import Catalog, Job, JobState, Worker
from workshop import rehearsal, rehearsal_browser
from workshop.lib.files import atomic_write
from workshop.rehearsal import Check, Findings


class Command(BaseCommand):
    help = "Rehearse the workshop against this deployment, with test accounts it removes afterwards."

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            default=settings.WORKSHOP_URL,
            help="The workshop's address as participants open it (default: WORKSHOP_URL)",
        )
        parser.add_argument("--participants", type=int, default=5, help="Test participants whose first loads are timed")
        parser.add_argument(
            "--workflow",
            action="append",
            dest="workflows",
            metavar="NAME",
            help="A workflow the class will use (repeatable; default: every workshop workflow)",
        )
        parser.add_argument(
            "--report",
            default=None,
            help="Where the Markdown report goes (default: rehearsal-<time>.md next to the credential sheet)",
        )
        parser.add_argument("--timeout", type=float, default=180.0, help="Seconds each run and page may take")
        parser.add_argument(
            "--worker-wait",
            type=float,
            default=60.0,
            help="Seconds a worker that is still starting gets to come online",
        )
        parser.add_argument("--no-browser", action="store_true", help="Skip the checks in Chromium")

    def handle(self, *args, url, participants, workflows, report, timeout, worker_wait, no_browser, **options):
        url = url.rstrip("/")
        started = timezone.now()
        findings = Findings()
        workers = list(Worker.objects.filter(enabled=True).order_by("name"))
        self.step(1, "GPU workers")
        if not workers:
            self.say(
                findings.add(
                    Check(
                        "workers",
                        "a GPU worker is enabled",
                        False,
                        "none registered",
                        "register one: manage.py worker_token NAME (docs/operator.md)",
                    )
                )
            )
        rehearsal.wait_for_workers(workers, worker_wait, self.stdout.write)
        for check in rehearsal.worker_checks(workers):
            self.say(findings.add(check))
        self.step(2, "model files of the class's workflows")
        for check in rehearsal.model_checks(workers, workflows):
            self.say(findings.add(check))
        accounts, staff = rehearsal.make_accounts(max(participants, 1) + 1)
        try:
            self.step(3, "one model-free run on each worker")
            for check in rehearsal.run_checks(workers, accounts[0], timeout):
                self.say(findings.add(check))
            if no_browser:
                self.stdout.write("     (browser checks skipped: --no-browser)")
            else:
                self.browser_checks(findings, url, accounts, staff, timeout)
        finally:
            self.step(7, "removing the test accounts, their jobs and files")
            rehearsal.remove_accounts([*accounts, staff])
        path = self.write_report(findings, url, started, report)
        failures = findings.failures
        self.stdout.write(
            ("READY: " if not failures else f"NOT READY: {len(failures)} problem(s). ") + f"Report: {path}"
        )
        if failures:
            raise SystemExit(1)

    # --- steps ------------------------------------------------------------------------------

    def browser_checks(self, findings: Findings, url: str, accounts, staff, timeout: float) -> None:
        start = settings.WORKSHOP_START_WORKFLOW
        prompt = rehearsal.model_free_prompt(Catalog.current_object_info() or {})
        self.step(4, f"a fresh participant's first visit, then {len(accounts) - 1} first loads, in Chromium")
        # Playwright keeps an event loop in its thread: it gets one of its own, away from the ORM.
        with ThreadPoolExecutor(1) as pool:
            work = pool.submit(
                rehearsal_browser.rehearse,
                url,
                accounts[0],
                accounts[1:],
                staff,
                prompt,
                start,
                rehearsal.known_error,
                timeout,
            )
            results = work.result()
        if results.failure:
            self.say(
                findings.add(
                    Check(
                        "browser",
                        "Chromium opens the workshop",
                        False,
                        results.failure,
                        "install Chromium (apt install chromium) or set CHROMIUM; or run with --no-browser",
                    )
                )
            )
            return
        self.first_visit(findings, results.first, start)
        self.first_loads(findings, results.loads)
        self.step(6, "the console's live queue")
        self.console(findings, results, accounts, timeout)

    def first_visit(self, findings, visit, start) -> None:
        ok = not visit.failure and visit.workflow == start and not visit.errors
        detail = (
            f"loaded in {visit.seconds:.1f} s, opened {visit.workflow or 'nothing'}"
            + (f"; page errors: {' | '.join(visit.errors[:3])}" if visit.errors else "")
            + (f"; {visit.failure}" if visit.failure else "")
        )
        fix = (
            ""
            if ok
            else (
                "fix the page errors above"
                if visit.errors
                else f"check WORKSHOP_START_WORKFLOW ({start}) and the app's log"
            )
        )
        self.say(
            findings.add(
                Check("browser", f"a fresh participant's first visit opens {start}", ok, detail, fix, visit.seconds)
            )
        )

    def first_loads(self, findings, loads) -> None:
        self.step(5, "first loads timed")
        if not loads:
            return
        times = sorted(v.seconds for v in loads if not v.failure)
        broken = [v for v in loads if v.failure or v.errors]
        detail = (
            f"{len(times)} of {len(loads)} loaded; median {times[len(times) // 2]:.1f} s, slowest {times[-1]:.1f} s"
            if times
            else "none loaded"
        )
        if broken:
            detail += "; " + " | ".join(f"{v.username}: {v.failure or v.errors[0]}" for v in broken[:3])
        self.say(
            findings.add(
                Check(
                    "browser",
                    f"{len(loads)} participants' first loads",
                    not broken,
                    detail,
                    "" if not broken else "read the app's log for the failed requests",
                )
            )
        )

    def console(self, findings, results, accounts, timeout) -> None:
        ids = results.prompt_ids
        ended = [rehearsal.wait_for_end(job, timeout) for job in Job.objects.filter(pk__in=ids)]
        done = sum(1 for job in ended if job.state == JobState.COMPLETED)
        seen = results.console_seen
        ok = not results.console_failure and bool(seen) and done == len(ids) > 0
        detail = (
            f"{len(ids)} test runs submitted from the participants' pages, {done} completed; "
            f"the console showed {len(seen)} of them live"
            + (f"; {results.console_failure}" if results.console_failure else "")
        )
        self.say(
            findings.add(
                Check(
                    "console",
                    "the console's live queue shows the test runs",
                    ok,
                    detail,
                    "" if ok else "check that Daphne serves /ws/console and Redis answers",
                )
            )
        )

    # --- output -----------------------------------------------------------------------------

    def step(self, number: int, text: str) -> None:
        self.stdout.write(f"[{number}/7] {text}")

    def say(self, check: Check) -> None:
        mark = "ok  " if check.ok else "FAIL"
        self.stdout.write(f"  {mark} {check.what}" + (f": {check.detail}" if check.detail else ""))
        if not check.ok and check.fix:
            self.stdout.write(f"       fix: {check.fix}")
        self.stdout.flush()

    def write_report(self, findings: Findings, url: str, started, report: str | None) -> Path:
        path = (
            Path(report)
            if report
            else Path(settings.CREDENTIALS_DIR) / f"rehearsal-{time.strftime('%Y%m%d-%H%M%S')}.md"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, rehearsal.report_markdown(findings, url, started, timezone.now()))
        return path
