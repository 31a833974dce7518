"""The statement's cumulative chart: budget and actual spend through the year, and the
forecast outturn, as a small inline SVG (no script, no URL; line styles differ by dash as
well as colour, so it reads in black and white)."""
from __future__ import annotations

import math
from html import escape

from casefind.budgets import statement_money as money

WIDTH, HEIGHT = 720, 250
LEFT, RIGHT, TOP, BOTTOM = 78, 150, 14, 46


def _step(hi: float) -> float:
    raw = hi / 5 or 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _polyline(points: list[tuple[float, float]], colour: str, dash: str, width: float = 2.0) -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="{width}"{dash_attr}/>'


def cumulative_chart(months: list[str], budget: list[float], actual: list[float | None],
                     forecast: float | None, *, label: str) -> str:
    """``actual`` is None for months past the data; ``forecast`` is the outturn for the year."""
    cum_budget = [math.fsum(budget[: i + 1]) for i in range(len(budget))]
    done = [a for a in actual if a is not None]
    cum_actual = [math.fsum(done[: i + 1]) for i in range(len(done))]
    hi = max([*cum_budget, *cum_actual, forecast or 0.0, 1.0])
    step = _step(hi)
    top_value = math.ceil(hi / step) * step
    x_step = (WIDTH - LEFT - RIGHT) / max(len(months), 1)

    def x(i: float) -> float:
        return LEFT + x_step * (i + 1)

    def y(v: float) -> float:
        return HEIGHT - BOTTOM - (v / top_value) * (HEIGHT - TOP - BOTTOM)

    parts = [f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#000"/>',
             f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" stroke="#000"/>']
    for k in range(round(top_value / step) + 1):
        v = k * step
        parts.append(f'<line x1="{LEFT - 4}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{LEFT - 6}" y="{y(v) + 3.5:.1f}" text-anchor="end" class="tick">'
                     f'{escape(money.pounds(v))}</text>')
    for i, m in enumerate(months):
        parts.append(f'<text transform="translate({x(i):.1f},{HEIGHT - BOTTOM + 12}) rotate(-40)" '
                     f'text-anchor="end" class="tick">{escape(m)}</text>')
    origin = (LEFT, y(0))
    parts.append(_polyline([origin] + [(x(i), y(v)) for i, v in enumerate(cum_budget)], "#5f6b73", "6 3"))
    labels = [(y(cum_budget[-1]) if cum_budget else y(0), "Budget (cumulative)")]
    if cum_actual:
        parts.append(_polyline([origin] + [(x(i), y(v)) for i, v in enumerate(cum_actual)], "#1c5fa8", ""))
        parts.extend(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="#1c5fa8"/>'
                     for i, v in enumerate(cum_actual))
        labels.append((y(cum_actual[-1]), "Actual (cumulative)"))
        if forecast is not None and len(cum_actual) < len(months):
            last = (x(len(cum_actual) - 1), y(cum_actual[-1]))
            parts.append(_polyline([last, (x(len(months) - 1), y(forecast))], "#c25e00", "2 3"))
            labels.append((y(forecast), "Forecast outturn"))
    parts.extend(_labels(labels))
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(label)}"><title>{escape(label)}</title>{"".join(parts)}</svg>')


def _labels(labels: list[tuple[float, str]], gap: float = 12.0) -> list[str]:
    """Line labels in the right margin, nudged apart so none overlap."""
    out, last = [], -1e9
    for y, text in sorted(labels):
        y = max(y + 3.5, last + gap)
        last = y
        out.append(f'<text x="{WIDTH - RIGHT + 6}" y="{y:.1f}" class="lbl">{escape(text)}</text>')
    return out
