"""Small server-rendered SVG charts for the console and the report: no script, no CDN, and
they print. Every label is escaped (participant and worker names end up in them)."""

from collections.abc import Sequence
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 560, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 26, 28
COLOURS = ("#2f7ed8", "#e4572e", "#29a35a", "#9b59b6", "#f2a541", "#17becf", "#8c564b", "#7f7f7f")


def _frame(title: str, body: list[str], y_max: float, y_fmt) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    grid = []
    for i in range(5):
        value = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        grid.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(y_fmt(value))}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="10" '
        f'fill="#333"><title>{escape(title)}</title>'
        f'<text x="{LEFT}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>'
        + "".join(grid)
        + "".join(body)
        + "</svg>"
    )


def _nice_max(values) -> float:
    top = max([v for v in values if v is not None] or [0])
    if top <= 0:
        return 1.0
    for nice in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000):
        if top <= nice:
            return float(nice)
    return float(top)


def _number(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}"


def line_chart(
    title: str,
    times: Sequence[datetime],
    series: dict[str, Sequence[float]],
    *,
    y_max: float | None = None,
    y_fmt=_number,
) -> str:
    """One line per series over `times` (x labels as local HH:MM)."""
    values = [v for s in series.values() for v in s]
    top = y_max or _nice_max(values)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(times) - 1, 1)
    body = []
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(
            f"{LEFT + plot_w * j / n:.1f},{TOP + plot_h - plot_h * min(v, top) / top:.1f}" for j, v in enumerate(points)
        )
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        body.append(
            f'<text x="{WIDTH - RIGHT}" y="{14 + 12 * i}" text-anchor="end" fill="{colour}">{escape(name)}</text>'
        )
    for j in sorted({0, len(times) // 2, len(times) - 1}):
        if 0 <= j < len(times):
            body.append(
                f'<text x="{LEFT + plot_w * j / n:.1f}" y="{HEIGHT - 10}" text-anchor="middle">{times[j]:%H:%M}</text>'
            )
    if not values:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>')
    return _frame(title, body, top, y_fmt)


def bar_chart(title: str, bars: dict[str, float], *, y_fmt=_number) -> str:
    """One bar per label (participants, workers)."""
    top = _nice_max(bars.values())
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    body = []
    n = max(len(bars), 1)
    width = plot_w / n
    for i, (label, value) in enumerate(bars.items()):
        h = plot_h * min(value, top) / top
        x = LEFT + width * i
        body.append(
            f'<rect x="{x + width * 0.15:.1f}" y="{TOP + plot_h - h:.1f}" width="{width * 0.7:.1f}" '
            f'height="{h:.1f}" fill="{COLOURS[0]}"><title>{escape(label)}: {escape(y_fmt(value))}</title></rect>'
        )
        if n <= 40:
            body.append(f'<text x="{x + width / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle">{escape(label)}</text>')
    if not bars:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>')
    return _frame(title, body, top, y_fmt)


def scatter_chart(
    title: str, points: Sequence[tuple[datetime, float]], start: datetime, end: datetime, *, y_fmt=_number
) -> str:
    """Dots of (moment, value): the wait of each job at the time it started."""
    top = _nice_max([v for _, v in points])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max((end - start).total_seconds(), 1.0)
    body = []
    for moment, value in points:
        x = LEFT + plot_w * min(max((moment - start).total_seconds() / span, 0), 1)
        y = TOP + plot_h - plot_h * min(value, top) / top
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{COLOURS[1]}"/>')
    for moment, anchor, x in ((start, "start", LEFT), (end, "end", WIDTH - RIGHT)):
        body.append(f'<text x="{x}" y="{HEIGHT - 10}" text-anchor="{anchor}">{moment:%H:%M}</text>')
    if not points:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>')
    return _frame(title, body, top, y_fmt)
