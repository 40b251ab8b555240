"""`manage.py workshop_doctor`: what this workshop needs from its GPU hosts, checked against what
they published. Prints one line per check and exits 1 when one fails."""

import json
import os

from django.conf import settings
from django.core.management.base import BaseCommand

from frontend_bridge import releases
from frontend_bridge.frontend import frontend_version
from jobs import workflows
from jobs.models import Catalog, Worker
from workshop import status
from workshop.private_files import open_to_others, secret_files


def configuration_checks() -> list[tuple[bool, str]]:
    """A real workshop's settings and services, each with how to fix it."""

    checks = []
    key = os.environ.get("SECRET_KEY", "")
    if key:
        strong = len(key) >= 50 and len(set(key)) >= 5 and "insecure" not in key
        checks.append(
            (
                strong,
                "SECRET_KEY is set"
                + (
                    ""
                    if strong
                    else " but weak: use 50+ random characters"
                    " (python -c 'import secrets; print(secrets.token_urlsafe(50))')"
                ),
            )
        )
    else:
        checks.append((True, "SECRET_KEY generated and kept in the var folder (set SECRET_KEY for several app hosts)"))
    local = {"127.0.0.1", "localhost", "[::1]"}
    hosts = set(settings.ALLOWED_HOSTS)
    checks.append(
        (
            bool(hosts - local) and "*" not in hosts,
            f"ALLOWED_HOSTS = {', '.join(sorted(hosts)) or '(empty)'}"
            + (
                ""
                if hosts - local and "*" not in hosts
                else ": set it to the workshop's host name, e.g. ALLOWED_HOSTS=workshop.example.org"
            ),
        )
    )
    https = settings.BEHIND_PROXY and settings.SESSION_COOKIE_SECURE
    checks.append(
        (
            https,
            "HTTPS: behind a TLS proxy with secure cookies"
            if https
            else "HTTPS is off: set BEHIND_TLS_PROXY=true and SECURE_COOKIES=true behind nginx with TLS "
            "(docs/operator.md)",
        )
    )
    checks.append((not settings.DEBUG, "DEBUG is off" if not settings.DEBUG else "DEBUG is on: unset DEBUG"))
    redis = status.redis()
    checks.append(
        (
            redis["ok"],
            f"Redis at {redis['url']} answers"
            if redis["ok"]
            else f"Redis at {redis['url']} does not answer ({redis['error']}): start it, or fix REDIS_URL",
        )
    )
    database = status.database()
    checks.append(
        (
            database["ok"],
            "the database answers"
            if database["ok"]
            else f"the database does not answer ({database['error']}): start PostgreSQL, or fix DATABASE_URL",
        )
    )
    if database["ok"]:
        online = [w["name"] for w in status.workers() if w["online"]]
        checks.append(
            (
                bool(online),
                f"GPU worker(s) online: {', '.join(online)}"
                if online
                else "no GPU worker is online: start one (manage.py worker_token NAME, then gpuworker; "
                "docs/operator.md)",
            )
        )
    private = secret_files(
        settings.VAR_DIR,
        settings.CREDENTIALS_DIR,
        settings.DATABASES["default"]["NAME"] if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") else None,
    )
    exposed = open_to_others(private)
    checks.append(
        (
            not exposed,
            "the secret key, the database file and the credential sheet are readable by their owner only"
            if not exposed
            else "readable by other users of this host: "
            + ", ".join(str(p) for p in exposed)
            + f": chmod 600 {' '.join(str(p) for p in exposed)}",
        )
    )
    disk = status.disk()
    enough = disk["free_bytes"] >= settings.MIN_FREE_DISK_BYTES
    checks.append(
        (
            enough,
            f"{disk['free_bytes'] / 1024**3:.1f} GB free in {disk['path']}"
            + (
                ""
                if enough
                else f": below {settings.MIN_FREE_DISK_BYTES / 1024**3:.0f} GB; free space or move WORKSHOP_DATA_DIR"
            ),
        )
    )
    return checks


class Command(BaseCommand):
    help = "Check the workshop's workflows, their model files and the GPU hosts' ComfyUI versions."

    def handle(self, *args, **options):
        problems = 0

        def say(ok: bool, text: str):
            nonlocal problems
            problems += not ok
            self.stdout.write(f"{'ok  ' if ok else 'FAIL'} {text}")

        checks = configuration_checks()
        for ok, text in checks:
            say(ok, text)
        if any(not ok and "database" in text for ok, text in checks):
            self.stdout.write(f"{problems} problem(s) found; the rest needs the database")
            raise SystemExit(1)
        say(True, f"frontend served: comfyui-frontend-package {frontend_version()}")
        catalogs = list(Catalog.objects.select_related("worker"))
        online = set(Worker.objects.online().values_list("pk", flat=True))
        if not catalogs:
            say(False, "no GPU worker has published its ComfyUI catalog yet (start one: docs/operator.md)")
        for catalog in catalogs:
            state = "online" if catalog.worker_id in online else "offline"
            say(
                releases.supported(catalog.comfyui_version),
                f"worker {catalog.worker.name} ({state}): {releases.describe(catalog.comfyui_version)}",
            )

        data = Catalog.current_data()
        installed = {name for files in (data.get("model_files") or {}).values() for name in files}
        for name, path in sorted(workflows.sources().items()):
            try:
                needed = workflows.required_models(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                say(False, f"workflow {name}: unreadable ({exc})")
                continue
            if not needed:
                say(True, f"workflow {name}: needs no model files")
                continue
            self.stdout.write(f"     workflow {name} needs:")
            for model, folder in needed:
                present = model in installed
                say(
                    present or not catalogs,
                    f"  models/{folder}/{model}"
                    + ("" if present else " (not on the GPU host)" if catalogs else " (no GPU host to ask)"),
                )
        start = f"{settings.WORKSHOP_START_WORKFLOW}.json"
        say(
            start in workflows.sources(),
            f"start workflow {start}"
            + ("" if start in workflows.sources() else " is not a workshop workflow (WORKSHOP_START_WORKFLOW)"),
        )
        if problems:
            self.stdout.write(f"{problems} problem(s) found")
            raise SystemExit(1)
        self.stdout.write("everything the workshop needs is in place")
