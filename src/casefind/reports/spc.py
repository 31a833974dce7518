"""XmR (individuals) charts with the four NHS England "Making Data Count" (MDC) signal rules.

Why XmR: MDC recommends it for board-level KPIs because its limits come from the
point-to-point variation actually seen, not from an assumed distribution.

Constants and rules as MDC / "plot the dots" state them:

* centre line: mean of the points; moving range: |x_i - x_(i-1)|; process limits:
  mean +/- 2.66 x mean moving range (2.66 = 3 / d2, d2 = 1.128 for ranges of two);
  sigma = mean moving range / 1.128.
* rule ``beyond_limit``: a point strictly beyond a process limit (a point exactly on a
  limit is inside, as in NHSRplotthedots).
* rule ``shift``: 7 or more consecutive points all above, or all below, the mean; every
  point of the run is flagged. A point exactly on the mean is on neither side and ends a
  run (NHSRplotthedots does the same).
* rule ``trend``: 7 or more consecutive points each higher (or each lower) than the one
  before. Ties follow the NHS Institute guide "A guide to creating and interpreting run
  and control charts" (p.24, cited in NHSRplotthedots PR #24): a point equal to the
  previous one neither breaks nor adds to a trend, so 7 *distinct steps' worth* of points
  are needed (1,2,3,3,4,5,6 does not fire; 1,2,3,3,4,5,6,7 does) and the tied points in
  the run are flagged with it.
* rule ``two_of_three``: in three consecutive points all on the same side of the mean, two
  or three lie beyond 2 sigma on that side; the points beyond 2 sigma are flagged. This is
  MDC's logic since its 2023 tool update (NHSRplotthedots issue #194): points beyond the
  process limit count too, the third point must be on the same side of the mean but is
  not itself flagged.

Missing (NaN, e.g. suppressed) points are skipped: statistics, moving ranges and runs are
computed over the remaining points in order, as if the gap were not there, and the missing
points carry no flags. With fewer than 2 points there are no limits and no signals.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

D2 = 1.128
LIMIT_FACTOR = 2.66
RUN_LENGTH = 7
MIN_POINTS_FIRM = 12  # fewer points than this: limits are "trial" (NHSRplotthedots warns likewise)

RULES = ("beyond_limit", "shift", "trend", "two_of_three")
RULE_LABELS = {
    "beyond_limit": "Point beyond a process limit",
    "shift": f"Shift: {RUN_LENGTH} or more points in a row above or below the mean",
    "trend": f"Trend: {RUN_LENGTH} or more points in a row rising or falling",
    "two_of_three": "Two of three points beyond 2 sigma on the same side",
}

COMMON = "common_cause"
IMPROVEMENT = "special_cause_improvement"
CONCERN = "special_cause_concern"
NEUTRAL_HIGH = "special_cause_neutral_high"
NEUTRAL_LOW = "special_cause_neutral_low"
NO_DATA = "no_data"
INSUFFICIENT = "insufficient_data"
DIRECTIONS = ("higher_is_better", "lower_is_better", "neutral")


@dataclass(frozen=True, eq=False)
class XmR:
    """One XmR chart: the limits and, per input point, which rules it is part of.

    ``side`` is +1 above / -1 below / 0 on the mean or missing. ``trend`` is
    ``trend_rising | trend_falling``; the turning point between a rise and a fall can be in
    both.
    """

    values: np.ndarray
    n: int
    mean: float
    mean_moving_range: float
    sigma: float
    lower: float
    upper: float
    moving_range: np.ndarray
    side: np.ndarray
    beyond_limit: np.ndarray
    shift: np.ndarray
    trend_rising: np.ndarray
    trend_falling: np.ndarray
    two_of_three: np.ndarray

    @property
    def trend(self) -> np.ndarray:
        return self.trend_rising | self.trend_falling

    @property
    def has_limits(self) -> bool:
        return self.n >= 2

    @property
    def trial_limits(self) -> bool:
        """Limits from so few points that MDC would call them provisional."""
        return self.n < MIN_POINTS_FIRM

    @property
    def any_signal(self) -> np.ndarray:
        return self.beyond_limit | self.shift | self.trend | self.two_of_three

    def rules_at(self, i: int) -> tuple[str, ...]:
        """Names of the rules point ``i`` is part of, in RULES order."""
        return tuple(r for r in RULES if getattr(self, r)[i])


def xmr(values) -> XmR:
    """Build the XmR chart for a series in time order (NaN = missing point)."""
    x = np.asarray(values, dtype=np.float64).copy()
    x.setflags(write=False)
    size = x.size
    keep = np.flatnonzero(~np.isnan(x))
    v = x[keep]
    n = int(v.size)
    nan = float("nan")
    mean = float(v.mean()) if n else nan
    mr = np.abs(np.diff(v))
    mmr = float(mr.mean()) if n >= 2 else nan
    side = np.sign(v - mean).astype(np.int8)
    flags = _flags(v, side, mean, mmr) if n >= 2 else {}

    def spread(name: str) -> np.ndarray:
        out = np.zeros(size, dtype=bool)
        if name in flags:
            out[keep] = flags[name]
        return out

    mr_full = np.full(size, np.nan)
    mr_full[keep[1:]] = mr
    side_full = np.zeros(size, dtype=np.int8)
    side_full[keep] = side
    return XmR(
        values=x, n=n, mean=mean, mean_moving_range=mmr, sigma=mmr / D2,
        lower=mean - LIMIT_FACTOR * mmr, upper=mean + LIMIT_FACTOR * mmr,
        moving_range=mr_full, side=side_full,
        beyond_limit=spread("beyond_limit"), shift=spread("shift"),
        trend_rising=spread("trend_rising"), trend_falling=spread("trend_falling"),
        two_of_three=spread("two_of_three"),
    )


def _flags(v, side, mean, mmr) -> dict[str, np.ndarray]:
    """The rules over the non-missing points (all arrays the length of ``v``)."""
    lower, upper = mean - LIMIT_FACTOR * mmr, mean + LIMIT_FACTOR * mmr
    return {
        "beyond_limit": (v > upper) | (v < lower),
        "shift": _shift(side),
        "trend_rising": _trend(v, 1),
        "trend_falling": _trend(v, -1),
        "two_of_three": _two_of_three(v, side, mean, mmr / D2),
    }


def _runs(keys: np.ndarray):
    """Yield (start, stop, key) for maximal runs of equal keys."""
    start = 0
    for i in range(1, keys.size + 1):
        if i == keys.size or keys[i] != keys[start]:
            yield start, i, keys[start]
            start = i


def _shift(side: np.ndarray) -> np.ndarray:
    out = np.zeros(side.size, dtype=bool)
    for start, stop, key in _runs(side):
        if key != 0 and stop - start >= RUN_LENGTH:
            out[start:stop] = True
    return out


def _trend(v: np.ndarray, sense: int) -> np.ndarray:
    """Points in runs moving in ``sense`` (+1 up, -1 down); ties neither break nor count."""
    out = np.zeros(v.size, dtype=bool)
    steps = np.sign(np.diff(v)).astype(np.int8)
    i = 0
    while i < steps.size:
        if steps[i] == -sense:
            i += 1
            continue
        j = i
        while j < steps.size and steps[j] != -sense:
            j += 1
        # steps[i:j] are all `sense` or ties: points i..j form one candidate run
        if 1 + int(np.count_nonzero(steps[i:j])) >= RUN_LENGTH:
            out[i:j + 1] = True
        i = j
    return out


def _two_of_three(v, side, mean, sigma) -> np.ndarray:
    out = np.zeros(v.size, dtype=bool)
    far = np.abs(v - mean) > 2.0 * sigma
    for i in range(v.size - 2):
        s = side[i]
        if s != 0 and side[i + 1] == s and side[i + 2] == s and far[i:i + 3].sum() >= 2:
            out[i:i + 3] |= far[i:i + 3]
    return out


def signals(chart: XmR, direction: str) -> list[str]:
    """Per point, MDC's variation class: improvement, concern, neutral (high/low) or common.

    A rule's sense is the side of the mean for limit, shift and two-of-three signals and the
    direction of travel for trends. When one point carries both an improving and a
    concerning signal, improvement wins, as in MDC's Single Chart tool (NHSRplotthedots #194).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    out = []
    for i in range(chart.values.size):
        if np.isnan(chart.values[i]):
            out.append(NO_DATA)
            continue
        senses = _senses(chart, i)
        if not senses:
            out.append(COMMON)
        elif direction == "neutral":
            out.append(NEUTRAL_HIGH if 1 in senses else NEUTRAL_LOW)
        else:
            good = 1 if direction == "higher_is_better" else -1
            out.append(IMPROVEMENT if good in senses else CONCERN)
    return out


def _senses(chart: XmR, i: int) -> set[int]:
    senses = set()
    if chart.beyond_limit[i] or chart.shift[i] or chart.two_of_three[i]:
        senses.add(int(chart.side[i]))
    if chart.trend_rising[i]:
        senses.add(1)
    if chart.trend_falling[i]:
        senses.add(-1)
    senses.discard(0)
    return senses


def variation_status(chart: XmR, direction: str) -> str:
    """The MDC variation icon for the chart: the class of its latest non-missing point."""
    if chart.n == 0:
        return NO_DATA
    if not chart.has_limits:
        return INSUFFICIENT
    last = int(np.flatnonzero(~np.isnan(chart.values))[-1])
    return signals(chart, direction)[last]
