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

Baselines, as MDC's tools allow: ``baseline=N`` takes the mean and limits from the first N
points of a segment and holds them for the rest (later points are judged against them);
``rebase_at=[i, ...]`` starts a new segment at point i (a change in the service): limits are
recomputed from there, and no run, trend or moving range crosses a rebase. The scalar
``mean``/``lower``/``upper`` are the latest segment's; ``*_at`` arrays give each point's.

Clipping: ``bounds=(lo, hi)`` is what the measure can take (0-100 for a percentage, >= 0 for a
count). Signals use the computed limits; the ``*_shown`` limits are clipped to the bounds, with
flags saying so, so no chart shows a limit of 108.5% or -8 admissions.

One class per point (``classify``): a point's class comes from the highest-precedence rule
it is part of - beyond a limit, then trend, then two of three, then shift (the order
NHSRplotthedots gives the rule that flags a point, PR #180; issue #200 notes that the
astronomical point takes preference). Its sense is that rule's: the side of the mean, or for a
trend the direction of travel. So a point above the upper limit of a lower-is-better measure
is a concern even inside an improving run. The chart's markers and the pack's signals table
both read ``classify``.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

D2 = 1.128
LIMIT_FACTOR = 2.66
RUN_LENGTH = 7
MIN_POINTS_FIRM = 12  # fewer points than this: limits are "trial" (NHSRplotthedots warns likewise)

RULES = ("beyond_limit", "shift", "trend", "two_of_three")
PRECEDENCE = ("beyond_limit", "trend", "two_of_three", "shift")
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

PASS = "consistent_pass"
FAIL = "consistent_fail"
HIT_AND_MISS = "hit_and_miss"


@dataclass(frozen=True, eq=False)
class XmR:
    """One XmR chart: the limits and, per input point, which rules it is part of.

    ``side`` is +1 above / -1 below / 0 on the mean or missing. ``trend`` is
    ``trend_rising | trend_falling``; the turning point between a rise and a fall can be in
    both. ``n`` counts all non-missing points, ``n_basis`` those the latest limits come from.
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
    mean_at: np.ndarray | None = None
    lower_at: np.ndarray | None = None
    upper_at: np.ndarray | None = None
    segment: np.ndarray | None = None
    n_basis: int = 0
    baseline: int | None = None
    rebase_at: tuple[int, ...] = ()
    bounds: tuple[float | None, float | None] = (None, None)

    @property
    def trend(self) -> np.ndarray:
        return self.trend_rising | self.trend_falling

    @property
    def has_limits(self) -> bool:
        return self.n_basis >= 2

    @property
    def trial_limits(self) -> bool:
        """Limits from so few points that MDC would call them provisional."""
        return self.n_basis < MIN_POINTS_FIRM

    @property
    def any_signal(self) -> np.ndarray:
        return self.beyond_limit | self.shift | self.trend | self.two_of_three

    def rules_at(self, i: int) -> tuple[str, ...]:
        """Names of the rules point ``i`` is part of, in RULES order."""
        return tuple(r for r in RULES if getattr(self, r)[i])

    # limits as shown: clipped to what the measure can take
    @property
    def lower_shown_at(self) -> np.ndarray:
        lo = self.bounds[0]
        return self.lower_at if lo is None else np.where(self.lower_at < lo, lo, self.lower_at)

    @property
    def upper_shown_at(self) -> np.ndarray:
        hi = self.bounds[1]
        return self.upper_at if hi is None else np.where(self.upper_at > hi, hi, self.upper_at)

    @property
    def lower_clipped_at(self) -> np.ndarray:
        lo = self.bounds[0]
        return np.zeros(self.values.size, bool) if lo is None else np.nan_to_num(self.lower_at, nan=lo) < lo

    @property
    def upper_clipped_at(self) -> np.ndarray:
        hi = self.bounds[1]
        return np.zeros(self.values.size, bool) if hi is None else np.nan_to_num(self.upper_at, nan=hi) > hi

    @property
    def lower_shown(self) -> float:
        lo = self.bounds[0]
        return self.lower if lo is None or not self.lower < lo else float(lo)

    @property
    def upper_shown(self) -> float:
        hi = self.bounds[1]
        return self.upper if hi is None or not self.upper > hi else float(hi)

    @property
    def lower_clipped(self) -> bool:
        return self.bounds[0] is not None and self.lower < self.bounds[0]

    @property
    def upper_clipped(self) -> bool:
        return self.bounds[1] is not None and self.upper > self.bounds[1]


def _segments(size: int, rebase_at) -> list[tuple[int, int]]:
    cuts = sorted({int(i) for i in rebase_at})
    if any(i <= 0 or i >= size for i in cuts):
        raise ValueError(f"rebase points must lie inside the series (1 to {size - 1}), not {cuts}")
    edges = [0, *cuts, size]
    return list(pairwise(edges))


def xmr(values, *, baseline: int | None = None, rebase_at=(), bounds=(None, None)) -> XmR:
    """Build the XmR chart for a series in time order (NaN = missing point).

    ``baseline``: limits from the first N points of each segment, then held; ``rebase_at``:
    indices where a new segment (new limits) starts; ``bounds``: (lo, hi) the measure can take.
    """
    if baseline is not None and baseline < 2:
        raise ValueError(f"a baseline needs at least 2 points, not {baseline}")
    x = np.asarray(values, dtype=np.float64).copy()
    x.setflags(write=False)
    size = x.size
    cols = {k: np.zeros(size, bool) for k in ("beyond_limit", "shift", "trend_rising", "trend_falling",
                                               "two_of_three")}
    mean_at, lower_at, upper_at, mr_full = (np.full(size, np.nan) for _ in range(4))
    side_full = np.zeros(size, dtype=np.int8)
    segment = np.zeros(size, dtype=np.int64)
    last = {"mean": np.nan, "mmr": np.nan, "n_basis": 0}
    for s_i, (a, b) in enumerate(_segments(size, rebase_at) if size else []):
        segment[a:b] = s_i
        keep = a + np.flatnonzero(~np.isnan(x[a:b]))
        v = x[keep]
        basis = v if baseline is None else v[:baseline]
        mean = float(basis.mean()) if basis.size else np.nan
        mmr = float(np.abs(np.diff(basis)).mean()) if basis.size >= 2 else np.nan
        side = np.sign(v - mean).astype(np.int8)
        mean_at[a:b], lower_at[a:b], upper_at[a:b] = mean, mean - LIMIT_FACTOR * mmr, mean + LIMIT_FACTOR * mmr
        mr_full[keep[1:]] = np.abs(np.diff(v))
        side_full[keep] = side
        if basis.size >= 2:
            for name, flag in _flags(v, side, mean, mmr).items():
                cols[name][keep] = flag
        last = {"mean": mean, "mmr": mmr, "n_basis": int(basis.size)}
    mean, mmr = last["mean"], last["mmr"]
    return XmR(
        values=x, n=int(np.count_nonzero(~np.isnan(x))), mean=mean, mean_moving_range=mmr, sigma=mmr / D2,
        lower=mean - LIMIT_FACTOR * mmr, upper=mean + LIMIT_FACTOR * mmr,
        moving_range=mr_full, side=side_full, **cols,
        mean_at=mean_at, lower_at=lower_at, upper_at=upper_at, segment=segment, n_basis=last["n_basis"],
        baseline=baseline, rebase_at=tuple(sorted({int(i) for i in rebase_at})), bounds=tuple(bounds),
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


@dataclass(frozen=True)
class PointClass:
    """What one point shows: its variation class, the rule that decided it and its sense."""

    status: str
    rule: str | None = None
    sense: int = 0  # +1 high / rising, -1 low / falling, 0 none

    @property
    def icon(self) -> str:
        """The Making Data Count variation icon name (see ``variation_icon``)."""
        return variation_icon(self.status, self.sense)


def _rule_sense(chart: XmR, i: int, rule: str) -> int:
    if rule == "trend":
        return 1 if chart.trend_rising[i] and not chart.trend_falling[i] else (
            -1 if chart.trend_falling[i] and not chart.trend_rising[i] else int(chart.side[i]) or 1)
    return int(chart.side[i])


def classify(chart: XmR, direction: str) -> list[PointClass]:
    """Per point, the one class both the chart marker and the signals table show."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    good = {"higher_is_better": 1, "lower_is_better": -1}.get(direction)
    out = []
    for i in range(chart.values.size):
        if np.isnan(chart.values[i]):
            out.append(PointClass(NO_DATA))
            continue
        rule = next((r for r in PRECEDENCE if getattr(chart, r)[i]), None)
        sense = _rule_sense(chart, i, rule) if rule else 0
        if rule is None or sense == 0:
            out.append(PointClass(COMMON))
        elif good is None:
            out.append(PointClass(NEUTRAL_HIGH if sense > 0 else NEUTRAL_LOW, rule, sense))
        else:
            out.append(PointClass(IMPROVEMENT if sense == good else CONCERN, rule, sense))
    return out


def signals(chart: XmR, direction: str) -> list[str]:
    """Per point, MDC's variation class (improvement, concern, neutral high/low or common),
    as ``classify`` decides it."""
    return [p.status for p in classify(chart, direction)]


def latest_class(chart: XmR, direction: str) -> PointClass:
    """The class of the latest non-missing point: what MDC's variation icon shows."""
    if chart.n == 0:
        return PointClass(NO_DATA)
    if not chart.has_limits:
        return PointClass(INSUFFICIENT)
    last = int(np.flatnonzero(~np.isnan(chart.values))[-1])
    return classify(chart, direction)[last]


def variation_status(chart: XmR, direction: str) -> str:
    """The MDC variation icon for the chart: the class of its latest non-missing point."""
    return latest_class(chart, direction).status


def variation_icon(status: str, sense: int = 0) -> str | None:
    """Icon name, as MDC draws them: common cause; improvement/concern/neither, high or low."""
    if status == COMMON:
        return "common_cause"
    high_low = "high" if sense > 0 else "low"
    if status == IMPROVEMENT:
        return f"improvement_{high_low}"
    if status == CONCERN:
        return f"concern_{high_low}"
    if status in (NEUTRAL_HIGH, NEUTRAL_LOW):
        return "neither_high" if status == NEUTRAL_HIGH else "neither_low"
    return None


def assurance(chart: XmR, direction: str, target: float | None) -> str | None:
    """MDC's assurance: can the process, as its latest limits describe it, meet the target?

    A target beyond the limits is consistently passed or failed (which, by the measure's
    direction); one between them (or on a limit) is hit and miss. No target, no preferred
    direction or no limits: no assurance (None).
    """
    if not chart.has_limits:
        return None
    return assurance_between(chart.lower, chart.upper, direction, target)


def assurance_between(lower: float, upper: float, direction: str, target: float | None) -> str | None:
    """``assurance`` for one pair of process limits (a segment's)."""
    if target is None or direction == "neutral" or not (np.isfinite(lower) and np.isfinite(upper)):
        return None
    higher = direction == "higher_is_better"
    if target > upper:
        return FAIL if higher else PASS
    if target < lower:
        return PASS if higher else FAIL
    return HIT_AND_MISS


ASSURANCE_ICONS = {PASS: "assurance_pass", FAIL: "assurance_fail", HIT_AND_MISS: "assurance_hit_and_miss"}
