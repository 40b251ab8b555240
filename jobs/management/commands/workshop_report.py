"""`manage.py workshop_report --out DIR`: after the workshop, a Markdown report with its charts:
jobs, waits (p50/p95), GPU busy share, GPU cost per participant and errors by cause."""

import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand
from django.template.loader import render_to_string
from django.utils import timezone

from jobs import reports, stats
from jobs.models import FINAL_STATES, OPEN_STATES, JobState
from jobs.redact import text as redact_text
from workshop.lib.files import atomic_write


def cause(error: str) -> str:
    """An error's first line, without paths or numbers that make every case distinct."""

    first = redact_text(error or "").strip().splitlines()[0] if (error or "").strip() else "(no message)"
    return re.sub(r"\d+(\.\d+)?", "N", first)[:120]


def build(hours: float | None = None, now=None) -> tuple[str, dict[str, str]]:
    """(markdown, {chart file name: svg}) for jobs of the last `hours`, or all jobs; the text
    is templates/reports/workshop_report.md."""
    now = now or timezone.now()
    runs = reports.runs(since=now - timedelta(hours=hours) if hours else None)
    start = min((r.created_at for r in runs), default=now - timedelta(hours=1))
    span = max((now - start).total_seconds(), 1.0)
    charts = reports.chart_svgs(max(span / 3600, 0.25), now=now)
    states = Counter(r.state for r in runs)
    waits = stats.waits(runs)
    table, total = reports.costs()
    busy: dict[str, float] = {}
    for run in runs:
        if run.worker and run.started_at:
            busy[run.worker] = busy.get(run.worker, 0.0) + ((run.finished_at or now) - run.started_at).total_seconds()
    seconds = stats.human_seconds
    text = render_to_string(
        "reports/workshop_report.md",
        {
            "start": timezone.localtime(start),
            "now": timezone.localtime(now),
            "span": seconds(span),
            "states": [(state, states.get(state, 0)) for state in (*FINAL_STATES, *OPEN_STATES)],
            "jobs": len(runs),
            "started": len(waits),
            "p50": seconds(stats.percentile(waits, 50)),
            "p95": seconds(stats.percentile(waits, 95)),
            "longest": seconds(max(waits) if waits else None),
            "busy": [(w, seconds(s), f"{100 * min(s / span, 1):.0f}") for w, s in sorted(busy.items())],
            "costs": [{**row, "time": seconds(row["gpu_seconds"]), "cost": f"{row['cost']:.2f}"} for row in table],
            "total": {**total, "time": seconds(total["gpu_seconds"]), "cost": f"{total['cost']:.2f}"},
            "errors": [
                (c.replace("|", "/"), n)
                for c, n in Counter(cause(r.error) for r in runs if r.state == JobState.FAILED).most_common()
            ],
        },
    )
    return text, {f"{name}.svg": svg for name, svg in charts.items()}


class Command(BaseCommand):
    help = "Write the workshop report (report.md and its SVG charts) into --out."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="Folder for report.md and the charts")
        parser.add_argument("--hours", type=float, default=None, help="Only the last N hours (default: every job)")

    def handle(self, *args, out, hours, **options):
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        self.stdout.write("reading jobs …")
        markdown, charts = build(hours)
        for name, svg in charts.items():
            atomic_write(folder / name, svg)
        atomic_write(folder / "report.md", markdown)
        self.stdout.write(self.style.SUCCESS(f"Wrote {folder / 'report.md'} and {len(charts)} chart(s)"))
