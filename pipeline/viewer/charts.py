"""Server-rendered SVG charts: line charts, horizontal bars, stacked 100% bars, histograms.

No JavaScript and no style attributes (the pages' Content-Security-Policy forbids inline
styles): colours are SVG presentation attributes or CSS classes from ``static/style.css``.
Every label is escaped; every function returns :class:`markupsafe.Markup` for the templates.
Data marks (lines, points, bars) have the class ``mark``; hovering one shows its value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

__all__ = ["PALETTE", "bars", "color_map", "fmt", "histogram", "line_chart", "nice_ticks", "stacked_bars"]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#8c6d31", "#000000")


def color_map(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name (in the given order), so a view keeps its colour across charts."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n - 1, 1)
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw)
    start = math.floor(lo / step) * step
    ticks = [start]
    while ticks[-1] < hi - 1e-9 * step:
        ticks.append(start + len(ticks) * step)
    return [round(t, 10) for t in ticks]


def fmt(v: float) -> str:
    """Compact number: 1.2k, 0.35, 12, 3e-05."""
    a = abs(v)
    if a >= 10_000:
        return f"{v / 1000:,.0f}k"
    if a >= 1000:
        return f"{v / 1000:.1f}k"
    if a == 0 or a >= 10:
        return f"{v:.0f}" if v == round(v) else f"{v:.1f}"
    if a >= 0.01:
        return f"{v:.3g}"
    return f"{v:.1e}"


def _nodata(message: str) -> Markup:
    return Markup('<p class="nodata">{}</p>').format(message)


def _legend(colors: Mapping[str, str]) -> Markup:
    items = Markup("").join(
        Markup(
            '<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="{}"/></svg>{}</li>'
        ).format(c, name)
        for name, c in colors.items()
    )
    return Markup('<ul class="legend">{}</ul>').format(items)


@dataclass(frozen=True)
class _Plot:
    """A line chart's plot area (SVG units) and the data ranges it shows."""

    left: int
    top: int
    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float

    def sx(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.width

    def sy(self, y: float) -> float:
        return self.top + self.height - (y - self.y0) / ((self.y1 - self.y0) or 1.0) * self.height


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    y_label: str = "",
    x_label: str = "step",
    colors: Mapping[str, str] | None = None,
    width: int = 560,
    height: int = 230,
    y_min: float | None = None,
    y_max: float | None = None,
) -> Markup:
    """One line per series (points marked when there are few); a legend under the chart."""
    series = {k: sorted(v) for k, v in series.items() if v}
    if not series:
        return Markup('<figure class="chart-box"><figcaption>{}</figcaption>{}</figure>').format(
            title, _nodata("no data in this run's files")
        )
    colors = {k: (colors or {}).get(k) or PALETTE[i % len(PALETTE)] for i, k in enumerate(series)}
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y_ticks = nice_ticks(min(ys) if y_min is None else y_min, max(ys) if y_max is None else y_max)
    left, right, top, bottom = 52, 14, 10, 34
    plot = _Plot(left, top, width - left - right, height - top - bottom, x0, x1, y_ticks[0], y_ticks[-1])
    parts = _line_axes(plot, y_ticks, x_label, y_label, height) + _line_marks(plot, series, colors, x_label)
    svg = Markup('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>').format(
        width, height, title, Markup("").join(parts)
    )
    return Markup('<figure class="chart-box"><figcaption>{}</figcaption>{}{}</figure>').format(
        title, svg, _legend(colors)
    )


def _line_axes(plot: _Plot, y_ticks: list[float], x_label: str, y_label: str, height: int) -> list[Markup]:
    """A line chart's grid, tick labels, axes and axis labels (``height``: the whole chart's)."""
    left, top, pw, ph, sx, sy = plot.left, plot.top, plot.width, plot.height, plot.sx, plot.sy
    parts: list[Markup] = []
    for t in y_ticks:
        parts.append(
            Markup('<line class="grid" x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}"/>').format(left, left + pw, sy(t), sy(t))
        )
        parts.append(
            Markup('<text class="tick" x="{}" y="{:.1f}" text-anchor="end">{}</text>').format(
                left - 6, sy(t) + 4, fmt(t)
            )
        )
    for t in nice_ticks(plot.x0, plot.x1, 6):
        if plot.x0 <= t <= plot.x1:
            parts.append(
                Markup('<text class="tick" x="{:.1f}" y="{}" text-anchor="middle">{}</text>').format(
                    sx(t), top + ph + 16, fmt(t)
                )
            )
    parts.append(Markup('<line class="axis" x1="{0}" x2="{0}" y1="{1}" y2="{2}"/>').format(left, top, top + ph))
    parts.append(Markup('<line class="axis" x1="{0}" x2="{1}" y1="{2}" y2="{2}"/>').format(left, left + pw, top + ph))
    parts.append(
        Markup('<text class="label" x="{}" y="{}" text-anchor="middle">{}</text>').format(
            left + pw / 2, height - 2, x_label
        )
    )
    if y_label:
        parts.append(
            Markup(
                '<text class="label" x="12" y="{0}" text-anchor="middle" transform="rotate(-90 12 {0})">{1}</text>'
            ).format(top + ph / 2, y_label)
        )
    return parts


def _line_marks(
    plot: _Plot, series: Mapping[str, Sequence[tuple[float, float]]], colors: Mapping[str, str], x_label: str
) -> list[Markup]:
    """One polyline per series, and its points when there are at most 60, each with a hover title."""
    sx, sy = plot.sx, plot.sy
    parts: list[Markup] = []
    for name, pts in series.items():
        c = colors[name]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(
            Markup(
                '<polyline class="mark line" fill="none" stroke="{}" stroke-width="2" points="{}">'
                "<title>{}</title></polyline>"
            ).format(c, coords, name)
        )
        if len(pts) <= 60:
            for x, y in pts:
                parts.append(
                    Markup(
                        '<circle class="mark point" cx="{:.1f}" cy="{:.1f}" r="3" fill="{}">'
                        "<title>{}: {} at {} {}</title></circle>"
                    ).format(sx(x), sy(y), c, name, f"{y:.4g}", x_label, fmt(x))
                )
    return parts


def bars(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    max_value: float | None = None,
    unit: str = "",
    digits: int = 1,
    width: int = 560,
    colors: Mapping[str, str] | None = None,
) -> Markup:
    """Horizontal bars, one per (label, value), the value written beside each bar."""
    if not items:
        return Markup('<figure class="chart-box"><figcaption>{}</figcaption>{}</figure>').format(
            title, _nodata("no data")
        )
    top = max_value if max_value is not None else max((v for _, v in items), default=1.0) or 1.0
    row, label_w, value_w = 22, 150, 70
    pw = width - label_w - value_w
    height = row * len(items) + 4
    parts: list[Markup] = []
    for i, (label, value) in enumerate(items):
        y = 2 + i * row
        w = max(0.0, min(value / top, 1.0)) * pw
        fill = (colors or {}).get(label) or PALETTE[0]
        parts.append(
            Markup('<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>').format(label_w - 6, y + 15, label)
        )
        parts.append(
            Markup(
                '<rect class="mark bar" x="{}" y="{}" width="{:.1f}" height="{}" fill="{}">'
                "<title>{}: {}{}</title></rect>"
            ).format(label_w, y + 3, w, row - 6, fill, label, f"{value:.{digits}f}", unit)
        )
        parts.append(
            Markup('<text class="tick" x="{:.1f}" y="{}">{}{}</text>').format(
                label_w + w + 5, y + 15, f"{value:.{digits}f}", unit
            )
        )
    svg = Markup('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>').format(
        width, height, title, Markup("").join(parts)
    )
    return Markup('<figure class="chart-box"><figcaption>{}</figcaption>{}</figure>').format(title, svg)


def stacked_bars(
    rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    *,
    title: str,
    width: int = 560,
) -> Markup:
    """100% bars: per row label, segments ``(kind, percent)``; ``kind`` is also the CSS class
    (``correct``, ``incorrect``, ``unjudged``)."""
    if not rows:
        return Markup('<figure class="chart-box"><figcaption>{}</figcaption>{}</figure>').format(
            title, _nodata("no data")
        )
    row, label_w, value_w = 24, 220, 60
    pw = width - label_w - value_w
    height = row * len(rows) + 4
    parts: list[Markup] = []
    kinds: list[str] = []
    for i, (label, segments) in enumerate(rows):
        y, x = 2 + i * row, float(label_w)
        parts.append(
            Markup('<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>').format(label_w - 6, y + 16, label)
        )
        for kind, pct in segments:
            kinds += [kind] if kind not in kinds else []
            w = max(0.0, pct) / 100 * pw
            if w > 0:
                parts.append(
                    Markup(
                        '<rect class="mark bar seg-{0}" x="{1:.1f}" y="{2}" width="{3:.1f}" height="{4}">'
                        "<title>{5}: {0} {6}%</title></rect>"
                    ).format(kind, x, y + 3, w, row - 6, label, f"{pct:.1f}")
                )
            x += w
        first = segments[0][1] if segments else 0.0
        parts.append(
            Markup('<text class="tick" x="{}" y="{}">{}%</text>').format(label_w + pw + 6, y + 16, f"{first:.1f}")
        )
    svg = Markup('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>').format(
        width, height, title, Markup("").join(parts)
    )
    legend = Markup("").join(Markup('<li><span class="swatch seg-{0}"></span>{0}</li>').format(k) for k in kinds)
    return Markup('<figure class="chart-box"><figcaption>{}</figcaption>{}<ul class="legend">{}</ul></figure>').format(
        title, svg, legend
    )


def histogram(
    counts: Sequence[int],
    *,
    bin_width: float,
    title: str,
    unit: str = "",
    color: str = PALETTE[0],
    width: int = 260,
    height: int = 110,
) -> Markup:
    """Vertical bars of ``counts`` (bin ``i`` = [i*w, (i+1)*w); the last bin is open-ended)."""
    n = len(counts)
    total = sum(counts)
    if not n or not total:
        return Markup('<figure class="chart-box small"><figcaption>{}</figcaption>{}</figure>').format(
            title, _nodata("no rows")
        )
    left, bottom, top = 4, 16, 4
    pw, ph = width - 2 * left, height - top - bottom
    peak = max(counts)
    bw = pw / n
    parts: list[Markup] = []
    for i, c in enumerate(counts):
        if not c:
            continue
        h = c / peak * ph
        lo = i * bin_width
        span = f"≥ {fmt(lo)}" if i == n - 1 else f"{fmt(lo)}–{fmt(lo + bin_width)}"
        parts.append(
            Markup(
                '<rect class="mark bar" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}">'
                "<title>{}: {} ({}%)</title></rect>"
            ).format(
                left + i * bw + 0.5,
                top + ph - h,
                max(bw - 1, 0.5),
                h,
                color,
                f"{span} {unit}".strip(),
                f"{c:,}",
                f"{100 * c / total:.1f}",
            )
        )
    parts.append(Markup('<line class="axis" x1="{0}" x2="{1}" y1="{2}" y2="{2}"/>').format(left, left + pw, top + ph))
    parts.append(Markup('<text class="tick" x="{}" y="{}">0</text>').format(left, height - 3))
    parts.append(
        Markup('<text class="tick" x="{}" y="{}" text-anchor="end">≥ {} {}</text>').format(
            left + pw, height - 3, fmt((n - 1) * bin_width), unit
        )
    )
    svg = Markup('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>').format(
        width, height, title, Markup("").join(parts)
    )
    return Markup('<figure class="chart-box small"><figcaption>{}</figcaption>{}</figure>').format(title, svg)
