"""Charts drawn on the server as inline SVG: no script, no external file, nothing for the
Content Security Policy to allow (presentation attributes such as ``fill`` are not styles).

A ``viewBox`` and ``width: 100%`` (style.css) scale a chart to the screen, so the same markup
reads on a phone; each chart carries a <title> and an aria-label, and the page prints the
numbers beside it, so the chart is never the only place a number lives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

#: Okabe-Ito (distinguishable with the common colour-vision deficiencies), then a few of Paul
#: Tol's muted colours: a class uses up to a dozen commands.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000", "#882255", "#999933", "#44AA99", "#AA4499", "#888888")
_W, _H = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 10, 28


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 1.2, 1.5, 2, ... 8 x 10^k): tight enough
    that the tallest bar fills most of the chart, round enough for the grid's quarters."""
    if value <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    while scale > value:
        scale /= 10
    for step in (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale  # pragma: no cover


def _frame(title: str, body: list[str], y_max: float, labels: Sequence[str], unit: str) -> str:
    plot_h = _H - _TOP - _BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):  # horizontal grid with values
        y = _TOP + plot_h * (1 - i / 4)
        value = y_max * i / 4
        text = f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#ddd" stroke-width="1"/>')
        parts.append(f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#555">{text}{escape(unit) if i == 4 else ""}</text>')
    parts.extend(body)
    if labels:  # first, middle and last label under the axis: enough to read, never crowded
        plot_w = _W - _LEFT - _RIGHT
        slot = plot_w / len(labels)
        for i in sorted({0, len(labels) // 2, len(labels) - 1}):
            x = _LEFT + slot * (i + 0.5)
            anchor = "start" if i == 0 else "end" if i == len(labels) - 1 else "middle"
            x = _LEFT if anchor == "start" else _W - _RIGHT if anchor == "end" else x
            parts.append(f'<text x="{x:.1f}" y="{_H - 8}" text-anchor="{anchor}" font-size="11" '
                         f'fill="#555">{escape(labels[i])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(title: str, labels: Sequence[str], series: Mapping[str, Sequence[int]]) -> str:
    """One bar per label, stacked by series (e.g. queries per hour, by command)."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    y_max = _nice_max(max(totals, default=0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(1, len(labels))
    width = max(1.0, slot * 0.8)
    body: list[str] = []
    for i, label in enumerate(labels):
        y = _TOP + plot_h
        for index, (name, values) in enumerate(series.items()):
            if not values[i]:
                continue
            h = plot_h * values[i] / y_max
            y -= h
            body.append(f'<rect x="{_LEFT + slot * i + (slot - width) / 2:.1f}" y="{y:.1f}" '
                        f'width="{width:.1f}" height="{h:.1f}" fill="{colour(index)}">'
                        f"<title>{escape(label)} {escape(name)}: {values[i]}</title></rect>")
    return _frame(title, body, y_max, labels, "")


def lines(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]],
          unit: str = "") -> str:
    """One polyline per series; a None breaks the line (no data in that bucket)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    y_max = _nice_max(max(values, default=0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(1, len(labels))
    body: list[str] = []
    for index, (name, vs) in enumerate(series.items()):
        runs: list[list[str]] = [[]]
        for i, v in enumerate(vs):
            if v is None:
                runs.append([])
                continue
            x = _LEFT + slot * (i + 0.5)
            y = _TOP + plot_h * (1 - v / y_max)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour(index)}">'
                        f"<title>{escape(labels[i])} {escape(name)}: {v:,.0f}{escape(unit)}"
                        "</title></circle>")
        for run in runs:
            if len(run) > 1:
                body.append(f'<polyline points="{" ".join(run)}" fill="none" '
                            f'stroke="{colour(index)}" stroke-width="2"/>')
    return _frame(title, body, y_max, labels, unit)


def legend(names: Sequence[str]) -> str:
    """HTML legend whose swatches are tiny SVGs (an inline style would need 'unsafe-inline')."""
    items = "".join(
        f'<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" '
        f'fill="{colour(i)}"/></svg> {escape(name)}</li>' for i, name in enumerate(names))
    return f'<ul class="legend">{items}</ul>'
