"""Workshop figures from job timings: pure functions, no Django.

The console's charts, the cost table, `workshop_report` and `/metrics` all read these, on rows
that `jobs.reports` fetches, so a chart and the report never disagree.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Run:
    """One job's timeline (None where it has not happened)."""

    owner: str
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    gpu_seconds: float | None = None
    state: str = ""
    error: str = ""


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return None
    k = (len(data) - 1) * q / 100
    low, high = math.floor(k), math.ceil(k)
    return data[low] + (data[high] - data[low]) * (k - low)


def buckets(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    out, t = [], start
    while t <= end:
        out.append(t)
        t += step
    return out


def waiting_over_time(
    runs: Iterable[Run], times: Sequence[datetime], now: datetime, step: timedelta | None = None
) -> list[int]:
    """How many jobs were waiting (created, not yet started, not ended unstarted): the most at
    any moment of each interval [t, t+step), or at each instant t without a step. A class's
    five-job burst that lasts 20 s shows as 5 on a chart of one-minute intervals, not as the
    count at the minute's first second."""
    events = []
    for run in runs:
        end = run.started_at or run.finished_at or now
        if end > run.created_at:
            events += [(run.created_at, 1), (end, -1)]
    events.sort()  # at the same moment an end (-1) comes before a start (+1)
    result, count, i = [], 0, 0
    for t in times:
        while i < len(events) and events[i][0] <= t:
            count += events[i][1]
            i += 1
        peak = count
        if step is not None:
            j, running = i, count
            while j < len(events) and events[j][0] < t + step:
                running += events[j][1]
                peak = max(peak, running)
                j += 1
        result.append(peak)
    return result


def busy_share(
    runs: Iterable[Run], times: Sequence[datetime], step: timedelta, now: datetime
) -> dict[str, list[float]]:
    """Per worker, the share (0..1) of each interval [t, t+step) it spent running a job."""
    per_worker: dict[str, list[tuple[datetime, datetime]]] = {}
    for run in runs:
        if run.worker and run.started_at:
            per_worker.setdefault(run.worker, []).append((run.started_at, run.finished_at or now))
    length = step.total_seconds()
    result = {}
    for worker, spans in sorted(per_worker.items()):
        shares = []
        for t in times:
            u = t + step
            busy = sum(max((min(b, u) - max(a, t)).total_seconds(), 0.0) for a, b in spans)
            shares.append(min(busy / length, 1.0) if length else 0.0)
        result[worker] = shares
    return result


def waits(runs: Iterable[Run]) -> list[float]:
    """Seconds each started job waited in the queue."""
    return [(r.started_at - r.created_at).total_seconds() for r in runs if r.started_at]


def gpu_seconds_by_owner(runs: Iterable[Run]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for run in runs:
        if run.gpu_seconds:
            totals[run.owner] = totals.get(run.owner, 0.0) + run.gpu_seconds
    return dict(sorted(totals.items()))


def cost(gpu_seconds: float, price_per_hour: float) -> float:
    return (gpu_seconds or 0.0) * (price_per_hour or 0.0) / 3600


def human_bytes(n: int | float | None) -> str:
    """1536 -> '1.5 KB' (binary units, as disks and quotas are counted)."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def human_seconds(seconds: float | None) -> str:
    """75 -> '1 min 15 s'; for ETAs, waits and GPU time."""
    if seconds is None:
        return "—"
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
