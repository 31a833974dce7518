"""The crisis curve as an inline SVG line chart (no scripts, no external references).

Series differ by dash pattern and marker as well as colour, so the chart still reads when
printed in black and white; month 0 (identification) is marked by a vertical rule."""
from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 34, 40
STYLES = {"cohort": ("#c25e00", "", "circle"), "matched_cohort": ("#6a3d9a", "4 3", "square"),
          "comparison": ("#1c5fa8", "8 4", "triangle")}
LABELS = {"cohort": "identified (all)", "matched_cohort": "identified (matched)", "comparison": "matched comparison"}


def _marker(shape: str, x: float, y: float, colour: str) -> str:
    if shape == "square":
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="{colour}"/>'
    if shape == "triangle":
        return f'<path d="M{x:.1f} {y - 4:.1f} L{x + 4:.1f} {y + 3:.1f} L{x - 4:.1f} {y + 3:.1f} Z" fill="{colour}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>'


def nice_step(raw: float) -> float:
    """The axis step at or above ``raw`` that is 1, 2 or 5 times a power of ten, so the ticks
    read £0, £500, £1,000 rather than £396, £792."""
    if not raw > 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))


def line_chart(months: list[int], series: dict[str, list[float | None]], title: str, money: bool) -> str:
    """One value per month per series (None: nobody in the group)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        return '<p class="empty">No one was identified in the window.</p>'
    step = nice_step(max(values) / 4)
    hi = 4 * step
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP

    def sx(m: int) -> float:
        return x0 + (m - months[0]) / (months[-1] - months[0]) * (x1 - x0)

    def sy(v: float) -> float:
        return y0 + v / hi * (y1 - y0)

    places = 0 if step >= 1 else min(4, len(f"{step:.10f}".rstrip("0").split(".")[1]))
    fmt = (lambda v: f"£{v:,.{places}f}") if money else (lambda v: f"{v:.{places}f}")
    out = [f'<svg class="chart" role="img" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
           f"<title>{escape(title)}</title>",
           f'<text x="{x0}" y="16" font-size="12" font-weight="bold">{escape(title)}</text>',
           f'<line x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}" stroke="#888"/>',
           f'<line x1="{sx(0):.1f}" x2="{sx(0):.1f}" y1="{y0}" y2="{y1}" stroke="#bbb" stroke-dasharray="2 2"/>']
    for t in range(5):
        v = hi * t / 4
        out.append(f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" font-size="10" text-anchor="end">{fmt(v)}</text>')
    for m in months[::3]:
        out.append(f'<text x="{sx(m):.1f}" y="{y0 + 14}" font-size="10" text-anchor="middle">{m:+d}</text>'
                   if m else f'<text x="{sx(m):.1f}" y="{y0 + 14}" font-size="10" text-anchor="middle">0</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{HEIGHT - 6}" font-size="10" text-anchor="middle">'
               "months from identification</text>")
    for i, (name, vs) in enumerate(series.items()):
        colour, dash, shape = STYLES[name]
        pts = [(sx(m), sy(v)) for m, v in zip(months, vs) if v is not None]
        path = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f} {y:.1f}" for j, (x, y) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"'
                   + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        out += [_marker(shape, x, y, colour) for x, y in pts[::3]]
        ly = TOP + 14 + 18 * i
        out.append(_marker(shape, x1 + 16, ly - 4, colour))
        out.append(f'<text x="{x1 + 26}" y="{ly}" font-size="11">{escape(LABELS[name])}</text>')
    out.append("</svg>")
    return "".join(out)
