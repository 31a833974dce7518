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


def _senses(chart: spc.XmR, classes) -> list[tuple[str, int]]:
    """(class, sense) per point: from ``spc.classify`` results, or for bare class names (older
    callers) the side of the mean, else the trend's direction."""
    out = []
    for i, c in enumerate(classes):
        if isinstance(c, spc.PointClass):
            out.append((c.status, c.sense))
            continue
        sense = int(chart.side[i]) or (1 if chart.trend_rising[i] else -1 if chart.trend_falling[i] else 0)
        out.append((c, sense))
    return out


def _segment_xs(chart: spc.XmR, xs: list[float], step: float) -> list[tuple[int, float, float]]:
    """(first point, x from, x to) of each segment (a rebase starts a new one)."""
    if chart.segment is None or not len(xs):
        return [(0, LEFT, WIDTH - RIGHT)]
    out = []
    starts = [0, *chart.rebase_at]
    ends = [*chart.rebase_at, len(xs)]
    for a, b in zip(starts, ends):
        out.append((a, xs[a] - step / 2, xs[b - 1] + step / 2))
    return out


def _limit_lines(chart: spc.XmR, ys: Scale, segs) -> tuple[list[str], list[tuple[float, str]]]:
    """Mean and limits per segment; a clipped limit is drawn dotted at the bound it was clipped to."""
    parts, labels = [], []
    tag = " (trial)" if chart.trial_limits else ""
    for k, (i, x0, x1) in enumerate(segs):
        latest = k == len(segs) - 1
        mean = chart.mean_at[i] if chart.mean_at is not None else chart.mean
        if np.isfinite(mean):
            parts.append(_seg(x0, x1, ys(mean), "", 1.2))
            if latest:
                labels.append((ys(mean), "Mean"))
        for name, raw, shown, clipped in (
                ("Upper", chart.upper_at[i], chart.upper_shown_at[i], bool(chart.upper_clipped_at[i])),
                ("Lower", chart.lower_at[i], chart.lower_shown_at[i], bool(chart.lower_clipped_at[i]))):
            if not np.isfinite(raw):
                continue
            parts.append(_seg(x0, x1, ys(shown), "2 3" if clipped else "6 3", 1.2,
                              css="clipped" if clipped else "limit"))
            if latest:
                labels.append((ys(shown), f"{name} limit (clipped)" if clipped else f"{name} limit{tag}"))
    for i in chart.rebase_at:
        x = segs[[s[0] for s in segs].index(i)][1]
        parts.append(f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#222" '
                     f'stroke-width="1" stroke-dasharray="1 2" class="rebase"/>'
                     f'<text x="{_num(x + 3)}" y="{TOP + 9}" class="tick">re-based</text>')
    return parts, labels


def _seg(x0: float, x1: float, y: float, dash: str, width: float, css: str = "mean") -> str:
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{_num(x0)}" x2="{_num(x1)}" y1="{_num(y)}" y2="{_num(y)}" stroke="#222" '
            f'stroke-width="{width}"{dash_attr} class="{css}"/>')


def _x_axis(periods: list[str], xs: list[float], vals: np.ndarray) -> list[str]:
    parts = [f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" '
             f'y2="{HEIGHT - BOTTOM}" stroke="#000"/>']
    every = max(1, int(np.ceil(len(periods) / 14)))
    for i, p in enumerate(periods):
        if i % every == 0 or i == len(periods) - 1:
            parts.append(f'<text transform="translate({_num(xs[i])},{HEIGHT - BOTTOM + 12}) rotate(-40)" '
                         f'text-anchor="end" class="tick">{escape(p)}</text>')
        if np.isnan(vals[i]):
            parts.append(f'<text x="{_num(xs[i])}" y="{HEIGHT - BOTTOM - 4}" text-anchor="middle" '
                         f'class="supp">*</text>')
    return parts


def spc_chart(periods: list[str], chart: spc.XmR, classes, *, target: float | None,
              label: str, fmt=_tick_text, values=None) -> str:
    """The XmR chart: points, mean, process limits (per segment; clipped ones dotted at the bound),
    target; each point's marker from its class (``spc.classify``), with the rule codes.

    Missing (suppressed) points are not plotted; a '*' on the axis marks their period.
    ``values``: what to plot (the published figures) when the chart was built from unrounded ones.
    """
    vals = chart.values if values is None else np.asarray(values, dtype=np.float64)
    extra = [*chart.lower_shown_at.tolist(), *chart.upper_shown_at.tolist()] if chart.has_limits else []
    lo, hi = _padded([*vals[~np.isnan(vals)].tolist(), *extra, target])
    ys = Scale(lo, hi, HEIGHT - BOTTOM, TOP)
    step = (WIDTH - LEFT - RIGHT) / max(len(periods), 1)
    xs = [LEFT + step * (i + 0.5) for i in range(len(periods))]
    parts = _y_axis(ys, fmt) + _x_axis(periods, xs, vals)
    labels: list[tuple[float, str]] = []
    if chart.has_limits:
        lines, labels = _limit_lines(chart, ys, _segment_xs(chart, xs, step))
        parts.extend(lines)
    elif chart.n:
        parts.append(_hline(ys(chart.mean), ""))
        labels.append((ys(chart.mean), "Mean"))
    if target is not None:
        parts.append(_hline(ys(target), "10 3 2 3", 1.6))
        labels.append((ys(target), "Target"))
    parts.extend(_right_labels(labels))
    parts.extend(_series_lines(xs, vals, ys))
    for i, (kind, sense) in enumerate(_senses(chart, classes)):
        if np.isnan(vals[i]):
            continue
        x, y = xs[i], ys(vals[i])
        codes = "".join(RULE_CODES[r] for r in chart.rules_at(i))
        name = spc.variation_icon(kind, sense)
        parts.append(f'<g class="pt" data-period="{escape(periods[i])}" data-class="{kind}"'
                     f'{f" data-icon={chr(34)}{name}{chr(34)}" if name else ""}><title>{escape(periods[i])}: '
                     f'{escape(fmt(vals[i]))}{" (" + codes + ")" if codes else ""}</title>'
                     f'{marker(kind, x, y, sense)}')
        if codes:
            parts.append(f'<text x="{_num(x)}" y="{_num(y - 9)}" text-anchor="middle" class="code">'
                         f'{codes}</text>')
        parts.append("</g>")
    return _svg(parts, label)


def run_chart(periods: list[str], values, *, label: str, fmt=_tick_text, target: float | None = None) -> str:
    """A run chart (points joined, median line, no limits, no signals): for rolling-year and
    point-in-time figures, whose consecutive points are not independent enough for XmR."""
    vals = np.asarray(values, dtype=np.float64)
    ok = vals[~np.isnan(vals)]
    lo, hi = _padded([*ok.tolist(), target])
    ys = Scale(lo, hi, HEIGHT - BOTTOM, TOP)
    step = (WIDTH - LEFT - RIGHT) / max(len(periods), 1)
    xs = [LEFT + step * (i + 0.5) for i in range(len(periods))]
    parts = _y_axis(ys, fmt) + _x_axis(periods, xs, vals)
    labels = []
    if ok.size:
        median = float(np.median(ok))
        parts.append(_hline(ys(median), "", 1.2))
        labels.append((ys(median), "Median"))
    if target is not None:
        parts.append(_hline(ys(target), "10 3 2 3", 1.6))
        labels.append((ys(target), "Target"))
    parts.extend(_right_labels(labels))
    parts.extend(_series_lines(xs, vals, ys))
    for i, v in enumerate(vals):
        if not np.isnan(v):
            parts.append(f'<g class="pt" data-period="{escape(periods[i])}"><title>{escape(periods[i])}: '
                         f'{escape(fmt(v))}</title><circle cx="{_num(xs[i])}" cy="{_num(ys(v))}" r="3" '
                         f'fill="#fff" stroke="#5f6b73" stroke-width="1.5"/></g>')
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
                 label: str, uid: str, fmt=_tick_text, phi: float = 1.0) -> str:
    """Practices' values against the system value with 95% and 99.8% limits (x = denominator);
    ``phi`` > 1: the limits widened for overdispersion."""
    dens = [p.denominator for p in points]
    x_lo, x_hi = 0.0, max(dens) * 1.08
    grid = np.linspace(max(min(dens) * 0.5, x_hi / 200), x_hi, 120)
    f = fn.funnel(kind, centre, grid, multiplier, phi)
    at_min = fn.funnel(kind, centre, [min(dens)], multiplier, phi)
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


# ---------------------------------------------------------------- Making Data Count icons
# Drawn here after MDC's icon set (circle; H/L for a special cause high or low, P/F/? for
# assurance), not copied from it. Colours: blue improvement, orange concern, purple neither,
# grey common cause and hit-and-miss.
ICON_COLOURS = {"improvement": "#1c5fa8", "concern": "#c25e00", "neither": "#6a3d9a", "common": "#5f6b73",
                "assurance_pass": "#1c5fa8", "assurance_fail": "#c25e00", "assurance_hit_and_miss": "#5f6b73"}
ICON_TEXT = {
    "common_cause": "Common cause variation: no significant change",
    "improvement_high": "Special cause variation, improvement: higher values",
    "improvement_low": "Special cause variation, improvement: lower values",
    "concern_high": "Special cause variation, concern: higher values",
    "concern_low": "Special cause variation, concern: lower values",
    "neither_high": "Special cause variation, neither improvement nor concern: higher values",
    "neither_low": "Special cause variation, neither improvement nor concern: lower values",
    "assurance_pass": "Assurance: the process will consistently pass the target",
    "assurance_fail": "Assurance: the process will consistently fail the target",
    "assurance_hit_and_miss": "Assurance: hit and miss; the target lies within the process limits",
}
_DOTS = {0: (0, 0, 0, 0, 0), 1: (0, 0, 0, -1.6, -3.2), -1: (0, 0, 0, 1.4, 2.8)}


def _icon_frame(colour: str, letter: str, label: str, body: str, size: int, labelled: bool) -> str:
    """The circle and letter; ``labelled``: its own text alternative (role img, title), else
    aria-hidden because a visible label beside it says the same."""
    text = escape(label)
    a11y = f'role="img" aria-label="{text}"><title>{text}</title>' if labelled else 'aria-hidden="true">'
    letter_svg = (f'<text x="12" y="10.4" text-anchor="middle" font-size="8" font-weight="700" '
                  f'font-family="Arial, Helvetica, sans-serif" fill="{colour}">{escape(letter)}</text>'
                  if letter else "")
    return (f'<svg class="icon" viewBox="0 0 24 24" width="{size}" height="{size}" {a11y}'
            f'<circle cx="12" cy="12" r="10.6" fill="#fff" stroke="{colour}" stroke-width="2"/>'
            f'{letter_svg}{body}</svg>')


def variation_icon_svg(name: str, size: int = 22, labelled: bool = True) -> str:
    """One variation icon: a row of dots, level for common cause, ending up (H) or down (L)."""
    family, _, high_low = name.partition("_")
    key = "common" if name == "common_cause" else family
    colour = ICON_COLOURS[key]
    sense = {"high": 1, "low": -1}.get(high_low, 0)
    dots = []
    for k, dy in enumerate(_DOTS[sense]):
        fill = colour if sense and k >= 3 else "#8a949b"
        dots.append(f'<circle cx="{5 + 3.2 * k:.1f}" cy="{16.5 + dy:.1f}" r="1.2" fill="{fill}"/>')
    letter = {1: "H", -1: "L"}.get(sense, "")
    return _icon_frame(colour, letter, ICON_TEXT[name], "".join(dots), size, labelled)


def assurance_icon_svg(name: str, size: int = 22, labelled: bool = True) -> str:
    """One assurance icon: P (pass), F (fail) or ? (hit and miss) over a dashed target line and
    the process's band: clear of the target, or crossing it."""
    colour = ICON_COLOURS[name]
    letter = {"assurance_pass": "P", "assurance_fail": "F"}.get(name, "?")
    wave = {"assurance_pass": "M5 13.4 q1.75 -1.2 3.5 0 t3.5 0 t3.5 0 t3.5 0",
            "assurance_fail": "M6 18.8 q1.5 -1.1 3 0 t3 0 t3 0 t3 0",
            "assurance_hit_and_miss": "M4.5 14.4 q2.5 -1.2 5 1.6 t5 1.6 t5 -1.6"}[name]
    body = (f'<line x1="2.6" x2="21.4" y1="16" y2="16" stroke="#8a949b" stroke-width="0.9" '
            f'stroke-dasharray="1.6 0.8"/><path d="{wave}" fill="none" stroke="{colour}" stroke-width="1.3"/>')
    return _icon_frame(colour, letter, ICON_TEXT[name], body, size, labelled)
