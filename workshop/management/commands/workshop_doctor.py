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
from workshop.lib.private_files import open_to_others, secret_files


def _check(ok: bool, good: str, bad: str) -> tuple[bool, str]:
    return ok, good if ok else bad


def configuration_checks() -> list[tuple[bool, str]]:
    """A real workshop's settings and services, each with how to fix it."""
    return [_secret_key(), *_web_settings(), *_services(), *_files()]


def _secret_key() -> tuple[bool, str]:
    key = os.environ.get("SECRET_KEY", "")
    if not key:
        return True, "SECRET_KEY generated and kept in the var folder (set SECRET_KEY for several app hosts)"
    strong = len(key) >= 50 and len(set(key)) >= 5 and "insecure" not in key
    return _check(
        strong,
        "SECRET_KEY is set",
        "SECRET_KEY is set but weak: use 50+ random characters"
        " (python -c 'import secrets; print(secrets.token_urlsafe(50))')",
    )


def _web_settings() -> list[tuple[bool, str]]:
    hosts = set(settings.ALLOWED_HOSTS)
    named = f"ALLOWED_HOSTS = {', '.join(sorted(hosts)) or '(empty)'}"
    return [
        _check(
            bool(hosts - {"127.0.0.1", "localhost", "[::1]"}) and "*" not in hosts,
            named,
            f"{named}: set it to the workshop's host name, e.g. ALLOWED_HOSTS=workshop.example.org",
        ),
        _check(
            settings.BEHIND_PROXY and settings.SESSION_COOKIE_SECURE,
            "HTTPS: behind a TLS proxy with secure cookies",
            "HTTPS is off: set BEHIND_TLS_PROXY=true and SECURE_COOKIES=true behind nginx with TLS (docs/operator.md)",
        ),
        _check(not settings.DEBUG, "DEBUG is off", "DEBUG is on: unset DEBUG"),
    ]


def _services() -> list[tuple[bool, str]]:
    redis, database = status.redis(), status.database()
    checks = [
        _check(
            redis["ok"],
            f"Redis at {redis['url']} answers",
            f"Redis at {redis['url']} does not answer ({redis.get('error')}): start it, or fix REDIS_URL",
        ),
        _check(
            database["ok"],
            "the database answers",
            f"the database does not answer ({database.get('error')}): start PostgreSQL, or fix DATABASE_URL",
        ),
    ]
    if database["ok"]:
        online = [w["name"] for w in status.workers() if w["online"]]
        checks.append(
            _check(
                bool(online),
                f"GPU worker(s) online: {', '.join(online)}",
                "no GPU worker is online: start one (manage.py worker_token NAME, then gpuworker; docs/operator.md)",
            )
        )
    return checks


def _files() -> list[tuple[bool, str]]:
    sqlite = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
    private = secret_files(
        settings.VAR_DIR, settings.CREDENTIALS_DIR, settings.DATABASES["default"]["NAME"] if sqlite else None
    )
    exposed = " ".join(str(p) for p in open_to_others(private))
    disk = status.disk()
    free = f"{disk['free_bytes'] / 1024**3:.1f} GB free in {disk['path']}"
    return [
        _check(
            not exposed,
            "the secret key, the database file and the credential sheet are readable by their owner only",
            f"readable by other users of this host: {exposed}: chmod 600 {exposed}",
        ),
        _check(
            disk["free_bytes"] >= settings.MIN_FREE_DISK_BYTES,
            free,
            f"{free}: below {settings.MIN_FREE_DISK_BYTES / 1024**3:.0f} GB; free space or move WORKSHOP_DATA_DIR",
        ),
    ]


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
