"""`manage.py workshop_status [--json]`: the app, database, Redis, workers, queue and disk at a
glance. Exits 1 when the database or Redis is down or no GPU worker is online."""

import json

from django.core.management.base import BaseCommand

from jobs.stats import human_bytes, human_seconds
from workshop import status


class Command(BaseCommand):
    help = "Show whether the workshop is up: database, Redis, GPU workers, queue, disk. Exit 1 if not."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the same as JSON")

    def handle(self, *args, **options):
        report = status.everything()
        if options["json"]:
            self.stdout.write(_dumps(report))
        else:
            self._table(report)
        if not report["ok"]:
            raise SystemExit(1)

    def _table(self, report):
        def line(ok, name, text):
            self.stdout.write(f"{'ok  ' if ok else 'DOWN'} {name:<10} {text}")

        line(True, "app", "debug on" if report["app"]["debug"] else "production settings")
        db, redis = report["database"], report["redis"]
        line(db["ok"], "database", db.get("engine") if db["ok"] else db["error"])
        line(redis["ok"], "redis", redis["url"] if redis["ok"] else f"{redis['url']}: {redis['error']}")
        workers = report["workers"]
        if not workers:
            line(False, "workers", "none registered (manage.py worker_token NAME, then start gpuworker)")
        for w in workers:
            age = "never" if w["heartbeat_age_seconds"] is None else f"{human_seconds(w['heartbeat_age_seconds'])} ago"
            line(w["online"], "worker", f"{w['name']}: {w['health']}, heartbeat {age}")
        if workers and not any(w["online"] for w in workers):
            line(False, "workers", "no GPU worker is online: jobs wait")
        q = report["queue"]
        if q:
            states = ", ".join(f"{n} {s}" for s, n in q["by_state"].items())
            line(True, "queue", f"{q['policy']}{' (paused)' if q['paused'] else ''}: {states}")
            old = q["oldest_waiting"]
            if old:
                line(
                    True,
                    "oldest",
                    f"workspace {old['workspace']} #{old['number']}, waiting {human_seconds(old['waiting_seconds'])}",
                )
        d = report["disk"]
        line(
            d["free_share"] > 0.05,
            "disk",
            f"{human_bytes(d['free_bytes'])} free of {human_bytes(d['total_bytes'])} ({d['path']})",
        )


def _dumps(report) -> str:
    return json.dumps(report, indent=2, default=str)
