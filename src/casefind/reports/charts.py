"""Inline SVG charts for the KPI pack: an XmR chart and a funnel plot.

Why hand-drawn SVG: the pack must open offline, print crisply and carry no scripts, so
each chart is a small self-contained <svg> string. Markers differ by *shape* as well as
colour so the charts still read when printed in black and white. No xmlns attribute: inline
SVG in HTML needs none, so the pack holds no URL at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np

from casefind.reports import funnel as fn
from casefind.reports import spc

WIDTH, HEIGHT = 720, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 16, 56

# shape per variation class: the legend in the template names the same shapes
COLOURS = {spc.COMMON: "#5f6b73", spc.IMPROVEMENT: "#1c5fa8", spc.CONCERN: "#c25e00",
           spc.NEUTRAL_HIGH: "#6a3d9a", spc.NEUTRAL_LOW: "#6a3d9a"}
RULE_CODES = {"beyond_limit": "L", "shift": "S", "trend": "T", "two_of_three": "2"}


@dataclass(frozen=True)
class Scale:
    """Linear map from data to pixels along one axis."""

    lo: float
    hi: float
    p0: float
    p1: float

    def __call__(self, v) -> float:
        span = self.hi - self.lo or 1.0
        return self.p0 + (float(v) - self.lo) / span * (self.p1 - self.p0)


def _num(x: float) -> str:
    return f"{x:.1f}"


def _padded(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round-number ticks spanning [lo, hi]."""
    raw = (hi - lo) / count or 1.0
    mag = 10 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = np.ceil(lo / step) * step
    ticks = np.arange(first, hi + step * 1e-9, step)
    return [0.0 if abs(t) < step * 1e-9 else float(t) for t in ticks]  # no "-0.0"


def _tick_text(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:,.2f}".rstrip("0")


def marker(kind: str, x: float, y: float, sense: int = 0) -> str:
    """One point marker; ``sense`` (+1/-1) points an improvement/concern triangle."""
    colour = COLOURS.get(kind, "#000")
    if kind == spc.COMMON:
        return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="3.2" fill="{colour}"/>'
    if kind == spc.IMPROVEMENT:
        d = -1 if sense >= 0 else 1  # tip up for a high point
        pts = f"{_num(x)},{_num(y + 6 * d)} {_num(x - 5.5)},{_num(y - 4 * d)} {_num(x + 5.5)},{_num(y - 4 * d)}"
        return f'<polygon points="{pts}" fill="{colour}" stroke="#000" stroke-width="0.6"/>'
    if kind == spc.CONCERN:
        return (f'<rect x="{_num(x - 4.5)}" y="{_num(y - 4.5)}" width="9" height="9" '
                f'fill="#fff" stroke="{colour}" stroke-width="2.4"/>')
    pts = f"{_num(x)},{_num(y - 6)} {_num(x + 6)},{_num(y)} {_num(x)},{_num(y + 6)} {_num(x - 6)},{_num(y)}"
    return f'<polygon points="{pts}" fill="#fff" stroke="{colour}" stroke-width="2"/>'


def _hline(y: float, dash: str, width: float = 1.2) -> str:
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y)}" y2="{_num(y)}" stroke="#222" '
            f'stroke-width="{width}"{dash_attr}/>')


def _right_labels(labels: list[tuple[float, str]], gap: float = 11.0) -> list[str]:
    """Labels in the right margin at their lines' heights, nudged apart so none overlap."""
    placed: list[list] = []
    for y, text in sorted(labels):
        y = min(max(y, TOP - 4), HEIGHT - BOTTOM + 4) + 3.5  # lines clipped off the plot: label at its edge
        if placed and y - placed[-1][0] < gap:
            y = placed[-1][0] + gap
        placed.append([y, text])
    overflow = (placed[-1][0] - (HEIGHT - 4)) if placed else 0
    if overflow > 0:  # pushed off the bottom: shift the stack up
        for p in placed:
            p[0] -= overflow
    return [f'<text x="{WIDTH - RIGHT + 4}" y="{_num(y)}" class="lbl">{escape(text)}</text>'
            for y, text in placed]


def _y_axis(scale: Scale, fmt) -> list[str]:
    parts = [f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#000"/>']
    for t in _ticks(scale.lo, scale.hi):
        y = scale(t)
        parts.append(f'<line x1="{LEFT - 4}" x2="{LEFT}" y1="{_num(y)}" y2="{_num(y)}" stroke="#000"/>'
                     f'<text x="{LEFT - 6}" y="{_num(y + 3.5)}" text-anchor="end" class="tick">'
                     f'{escape(fmt(t))}</text>')
    return parts


def _svg(parts: list[str], label: str) -> str:
    body = "".join(parts)
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(label)}">'
            f'<title>{escape(label)}</title>{body}</svg>')


def spc_chart(periods: list[str], chart: spc.XmR, classes: list[str], *, target: float | None,
              label: str, fmt=_tick_text) -> str:
    """The XmR chart: points, mean, process limits, target; signals as shaped markers + rule codes.

    Missing (suppressed) points are not plotted; a '*' on the axis marks their period.
    """
    vals = chart.values
    extra = [chart.lower, chart.upper] if chart.has_limits else []
    lo, hi = _padded([*vals[~np.isnan(vals)].tolist(), *extra, target])
    ys = Scale(lo, hi, HEIGHT - BOTTOM, TOP)
    step = (WIDTH - LEFT - RIGHT) / max(len(periods), 1)
    xs = [LEFT + step * (i + 0.5) for i in range(len(periods))]
    parts = _y_axis(ys, fmt)
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" '
                 f'y2="{HEIGHT - BOTTOM}" stroke="#000"/>')
    every = max(1, int(np.ceil(len(periods) / 14)))
    for i, p in enumerate(periods):
        if i % every == 0 or i == len(periods) - 1:
            x = xs[i]
            parts.append(f'<text transform="translate({_num(x)},{HEIGHT - BOTTOM + 12}) rotate(-40)" '
                         f'text-anchor="end" class="tick">{escape(p)}</text>')
        if np.isnan(vals[i]):
            parts.append(f'<text x="{_num(xs[i])}" y="{HEIGHT - BOTTOM - 4}" text-anchor="middle" '
                         f'class="supp">*</text>')
    lines: list[tuple[float, str, str, float]] = []
    if chart.n:
        lines.append((ys(chart.mean), "Mean", "", 1.2))
    if chart.has_limits:
        tag = " (trial)" if chart.trial_limits else ""
        lines.append((ys(chart.upper), "Upper process limit" + tag, "6 3", 1.2))
        lines.append((ys(chart.lower), "Lower process limit" + tag, "6 3", 1.2))
    if target is not None:
        lines.append((ys(target), "Target", "10 3 2 3", 1.6))
    parts.extend(_hline(y, dash, width) for y, _, dash, width in lines)
    parts.extend(_right_labels([(y, text) for y, text, _, _ in lines]))
    parts.extend(_series_lines(xs, vals, ys))
    for i in range(len(periods)):
        if np.isnan(vals[i]):
            continue
        x, y = xs[i], ys(vals[i])
        sense = int(chart.side[i]) or (1 if chart.trend_rising[i] else -1 if chart.trend_falling[i] else 0)
        codes = "".join(RULE_CODES[r] for r in chart.rules_at(i))
        parts.append(f'<g class="pt" data-period="{escape(periods[i])}"><title>{escape(periods[i])}: '
                     f'{escape(fmt(vals[i]))}{" (" + codes + ")" if codes else ""}</title>'
                     f'{marker(classes[i], x, y, sense)}')
        if codes:
            parts.append(f'<text x="{_num(x)}" y="{_num(y - 9)}" text-anchor="middle" class="code">'
                         f'{codes}</text>')
        parts.append("</g>")
    return _svg(parts, label)


def _series_lines(xs: list[float], vals: np.ndarray, ys: Scale) -> list[str]:
    """Join neighbouring periods only: a suppressed period leaves a gap in the line."""
    out = []
    for i in range(1, len(xs)):
        if not (np.isnan(vals[i - 1]) or np.isnan(vals[i])):
            out.append(f'<line x1="{_num(xs[i - 1])}" y1="{_num(ys(vals[i - 1]))}" x2="{_num(xs[i])}" '
                       f'y2="{_num(ys(vals[i]))}" stroke="#8a949b" stroke-width="1.2"/>')
    return out


@dataclass(frozen=True)
class FunnelPoint:
    code: str
    value: float
    denominator: float
    status: str


def funnel_chart(kind: str, centre: float, multiplier: float, points: list[FunnelPoint], *,
                 label: str, uid: str, fmt=_tick_text) -> str:
    """Practices' values against the system value with 95% and 99.8% limits (x = denominator)."""
    dens = [p.denominator for p in points]
    x_lo, x_hi = 0.0, max(dens) * 1.08
    grid = np.linspace(max(min(dens) * 0.5, x_hi / 200), x_hi, 120)
    f = fn.funnel(kind, centre, grid, multiplier)
    at_min = fn.funnel(kind, centre, [min(dens)], multiplier)
    lo, hi = _padded([*(p.value for p in points), centre, float(at_min.lower998[0]),
                      float(at_min.upper998[0])])
    lo = max(lo, 0.0)  # proportions and rates are never negative
    xs = Scale(x_lo, x_hi, LEFT, WIDTH - RIGHT)
    ys = Scale(lo, hi, HEIGHT - BOTTOM, TOP)
    clip = f"clip-{uid}"  # ids must be unique within the page
    parts = [f'<defs><clipPath id="{clip}"><rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
             f'height="{HEIGHT - TOP - BOTTOM}"/></clipPath></defs>']
    parts += _y_axis(ys, fmt)
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" '
                 f'stroke="#000"/>')
    for t in _ticks(x_lo, x_hi):
        x = xs(t)
        parts.append(f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{HEIGHT - BOTTOM}" '
                     f'y2="{HEIGHT - BOTTOM + 4}" stroke="#000"/><text x="{_num(x)}" '
                     f'y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" class="tick">{escape(_tick_text(t))}</text>')
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" text-anchor="middle" '
                 f'class="lbl">Denominator</text>')
    curves = [(f.lower95, "95% limits", "6 3"), (f.upper95, None, "6 3"),
              (f.lower998, "99.8% limits", "2 2"), (f.upper998, None, "2 2")]
    parts.append(f'<g clip-path="url(#{clip})">')
    for ys_curve, _, dash in curves:
        pts = " ".join(f"{_num(xs(x))},{_num(ys(y))}" for x, y in zip(grid, ys_curve) if np.isfinite(y))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#222" stroke-width="1.2" '
                     f'stroke-dasharray="{dash}"/>')
    parts.append("</g>")
    parts.append(_hline(ys(centre), ""))
    parts.extend(_right_labels([(ys(centre), "System value"), (ys(float(f.upper95[-1])), "95%"),
                                (ys(float(f.upper998[-1])), "99.8%")]))
    for p in points:
        x, y = xs(p.denominator), ys(p.value)
        parts.append(f'<g class="pt" data-unit="{escape(p.code)}"><title>{escape(p.code)}: {escape(fmt(p.value))}'
                     f' ({escape(fn.CLASS_LABELS[p.status])})</title>{_funnel_marker(p.status, x, y)}')
        if p.status not in (fn.WITHIN, fn.NOT_ASSESSED):
            parts.append(f'<text x="{_num(x + 7)}" y="{_num(y - 5)}" class="code">{escape(p.code)}</text>')
        parts.append("</g>")
    return _svg(parts, label)


def _funnel_marker(status: str, x: float, y: float) -> str:
    if status in (fn.ABOVE_998, fn.BELOW_998):
        pts = f"{_num(x)},{_num(y - 6)} {_num(x + 6)},{_num(y)} {_num(x)},{_num(y + 6)} {_num(x - 6)},{_num(y)}"
        return f'<polygon points="{pts}" fill="#000"/>'
    if status in (fn.ABOVE_95, fn.BELOW_95):
        return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="4" fill="#000"/>'
    return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="4" fill="#fff" stroke="#000" stroke-width="1.3"/>'


def legend_marker(kind: str, sense: int = 1) -> str:
    """A tiny standalone SVG of one SPC marker, for the legend and the summary icons."""
    return (f'<svg class="mk" viewBox="0 0 16 16" width="14" height="14" '
            f'aria-hidden="true">{marker(kind, 8, 8, sense)}</svg>')


def legend_funnel_marker(status: str) -> str:
    return (f'<svg class="mk" viewBox="0 0 16 16" width="14" height="14" '
            f'aria-hidden="true">{_funnel_marker(status, 8, 8)}</svg>')
