"""The dress rehearsal an operator runs the day before (`manage.py workshop_rehearsal`).

It checks the real deployment as the class will use it: every enabled GPU worker, the model
files of the class's workflows on each, one model-free run through each worker, a fresh
participant's first visit and several first loads in headless Chromium, and the console's live
queue. It works only with accounts of its own (`rehearsal-…`), and removes them, their jobs
and their files at the end, whatever happened.
"""

import json
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import Workspace
from frontend_bridge import releases
from frontend_bridge.frontend import KNOWN_FRONTEND_ERRORS
from jobs import workflows
from jobs.models import FINAL_STATES, Catalog, Job, JobState, Worker, WorkerStatus

PREFIX = "rehearsal-"


@dataclass
class Check:
    """One line of the readiness report."""

    step: str
    what: str
    ok: bool
    detail: str = ""
    fix: str = ""
    seconds: float | None = None


@dataclass
class Account:
    username: str
    password: str
    slug: str
    workspace: Workspace | None = None


@dataclass
class Findings:
    checks: list[Check] = field(default_factory=list)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


# --- workers and models ------------------------------------------------------------------------


def wait_for_workers(workers: list[Worker], seconds: float, progress=None) -> None:
    """Give workers that are still starting up to `seconds` for their first heartbeat.

    The rehearsal often runs right after `scripts/run` or a compose up, while a worker still
    waits for its ComfyUI: that is not a failure yet, and the operator sees what it waits for.
    """
    deadline = time.monotonic() + seconds
    said: set[str] = set()
    while True:
        online = set(Worker.objects.online().values_list("pk", flat=True))
        waiting = [w for w in workers if w.pk not in online]
        if not waiting or time.monotonic() >= deadline:
            break
        for worker in waiting:
            if progress and worker.name not in said:
                progress(f"     waiting up to {seconds:.0f} s for worker {worker.name} to come online")
                said.add(worker.name)
        time.sleep(1)
    for worker in workers:
        worker.refresh_from_db()


def worker_checks(workers: list[Worker]) -> list[Check]:
    """Each enabled worker: online, a supported ComfyUI, its catalog published."""
    online = set(Worker.objects.online().values_list("pk", flat=True))
    catalogs = {c.worker_id: c for c in Catalog.objects.filter(worker__in=workers).defer("object_info")}
    checks = []
    for worker in workers:
        where = f"ComfyUI at {worker.comfyui_url}" if worker.comfyui_url else "its ComfyUI"
        if worker.pk not in online:
            reason = worker.problem or (
                "its ComfyUI does not answer"
                if worker.status == WorkerStatus.COMFYUI_DOWN
                else "no heartbeat: the worker is not running, or it waits for its ComfyUI"
                if worker.last_heartbeat is None
                else "no recent heartbeat"
            )
            checks.append(
                Check(
                    "workers",
                    f"worker {worker.name} is online",
                    False,
                    reason,
                    f"start {where} and the worker on its GPU host (docs/operator.md), "
                    "or disable the worker in the admin if the class will not use it",
                )
            )
            continue
        version = (catalogs[worker.pk].comfyui_version if worker.pk in catalogs else "") or worker.comfyui_version
        checks.append(Check("workers", f"worker {worker.name} is online", True, f"ComfyUI {version or 'unknown'}"))
        fits = releases.supported(version)
        checks.append(
            Check(
                "workers",
                f"worker {worker.name} runs a supported ComfyUI",
                fits,
                releases.describe(version),
                "" if fits else f"install a ComfyUI from {releases.SUPPORTED_TEXT} at {where}",
            )
        )
        published = worker.pk in catalogs
        checks.append(
            Check(
                "workers",
                f"worker {worker.name} published its catalog",
                published,
                "",
                "" if published else "the worker publishes it when it starts: read its log",
            )
        )
    return checks


def class_workflows(names: list[str] | None) -> dict[str, Path]:
    found = workflows.sources()
    if not names:
        return found
    wanted = {n if n.endswith(".json") else f"{n}.json" for n in names}
    return {name: path for name, path in found.items() if name in wanted}


def model_checks(workers: list[Worker], names: list[str] | None) -> list[Check]:
    """Every model file each class workflow names, on each worker that may run it."""
    online = Worker.objects.online().filter(pk__in=[w.pk for w in workers])
    # An offline worker's catalog may be stale: the worker checks report it instead.
    catalogs = {c.worker_id: c.data for c in Catalog.objects.filter(worker__in=online).only("worker", "data")}
    checks = []
    for name, path in sorted(class_workflows(names).items()):
        try:
            needed = workflows.required_models(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            checks.append(Check("models", f"workflow {name} is readable", False, str(exc), f"fix or remove {path}"))
            continue
        for worker in workers:
            if worker.pk not in catalogs:
                continue
            have = {f for files in (catalogs[worker.pk].get("model_files") or {}).values() for f in files}
            missing = [(model, folder) for model, folder in needed if model not in have]
            checks.append(
                Check(
                    "models",
                    f"workflow {name} has its models on {worker.name}",
                    not missing,
                    f"{len(needed)} file(s) needed"
                    + (f", missing: {', '.join(m for m, _ in missing)}" if missing else ""),
                    f"copy to the GPU host of {worker.name}: "
                    + ", ".join(f"models/{folder}/{model}" for model, folder in missing)
                    if missing
                    else "",
                )
            )
    return checks


# --- accounts of its own -------------------------------------------------------------------------


def make_accounts(count: int) -> tuple[list[Account], Account]:
    """`count` test participants with workspaces and one staff account for the console."""
    User = get_user_model()
    tag = secrets.token_hex(3)
    participants = []
    for n in range(1, count + 1):
        account = Account(f"{PREFIX}{tag}-{n}", secrets.token_urlsafe(12), f"rh{tag}{n:02d}")
        user = User.objects.create_user(account.username, password=account.password)
        account.workspace = Workspace.objects.create(owner=user, slug=account.slug)
        account.workspace.ensure_folders()
        participants.append(account)
    staff = Account(f"{PREFIX}{tag}-console", secrets.token_urlsafe(12), "")
    User.objects.create_user(staff.username, password=staff.password, is_staff=True, is_superuser=True)
    return participants, staff


def remove_accounts(accounts: list[Account]) -> None:
    """The accounts, their jobs (deleted with the workspace) and their workspaces' files."""
    User = get_user_model()
    for account in accounts:
        roots = [w.root for w in Workspace.objects.filter(owner__username=account.username)]
        User.objects.filter(username=account.username).delete()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


# --- one model-free run on each worker -----------------------------------------------------------


def model_free_prompt(object_info: dict) -> dict | None:
    """A prompt every ComfyUI can run without a model: a blank image, previewed."""
    if "EmptyImage" not in object_info or "PreviewImage" not in object_info:
        return None
    color = secrets.randbelow(0xFFFFFF)  # a new colour each time: never answered from ComfyUI's cache
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


def wait_for_end(job: Job, timeout: float, progress=None) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.state in FINAL_STATES:
            return job
        if progress:
            progress(job)
        time.sleep(0.25)
    return job


def run_checks(workers: list[Worker], account: Account, timeout: float, progress=None) -> list[Check]:
    online = list(Worker.objects.online().filter(pk__in=[w.pk for w in workers]).order_by("name"))
    catalogs = {c.worker_id: c.object_info for c in Catalog.objects.filter(worker__in=online)}
    checks = []
    for worker in online:
        prompt = model_free_prompt(catalogs.get(worker.pk) or {})
        if prompt is None:
            checks.append(
                Check(
                    "runs",
                    f"a model-free run on {worker.name}",
                    False,
                    "its ComfyUI has no EmptyImage or PreviewImage node",
                    "update its ComfyUI",
                )
            )
            continue
        started = time.monotonic()
        job = wait_for_end(Job.run_on(worker, account.workspace, prompt, workflow_name="rehearsal"), timeout, progress)
        seconds = time.monotonic() - started
        ok = job.state == JobState.COMPLETED
        detail = f"{seconds:.1f} s from dispatch to its end, {job.gpu_seconds or 0:.2f} s on the GPU" + (
            f", {job.cold_start_seconds:.0f} s cold start" if job.cold_start_seconds else ""
        )
        checks.append(
            Check(
                "runs",
                f"a model-free run on {worker.name}",
                ok,
                detail if ok else f"{job.state} after {seconds:.0f} s: {job.error or 'no answer'}",
                "" if ok else f"read the log of worker {worker.name} and its ComfyUI",
                seconds,
            )
        )
    return checks


def report_markdown(findings: Findings, url: str, started, finished) -> str:
    ok = not findings.failures
    lines = [
        f"# Workshop rehearsal: {'READY' if ok else 'NOT READY'}",
        "",
        f"{url} · {timezone.localtime(started):%Y-%m-%d %H:%M} · {(finished - started).total_seconds():.0f} s · "
        f"{len(findings.checks) - len(findings.failures)} of {len(findings.checks)} checks passed",
        "",
    ]
    if findings.failures:
        lines += ["## To fix", ""]
        lines += [f"- **{c.what}**: {c.detail}. Fix: {c.fix or 'see the detail'}" for c in findings.failures]
        lines.append("")
    lines += ["## Every check", "", "| step | check | result | detail |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {c.step} | {c.what} | {'ok' if c.ok else '**FAIL**'} | {c.detail.replace('|', '/')} |"
        for c in findings.checks
    ]
    return "\n".join(lines) + "\n"


def known_error(text: str) -> bool:
    return any(known in text for known in KNOWN_FRONTEND_ERRORS)
