"""XmR limits and the four Making Data Count rules, on series built so each rule is just on
or just off its threshold."""
from __future__ import annotations

import math

import numpy as np
import pytest

from casefind.reports import spc


def flagged(a) -> list[int]:
    return np.flatnonzero(a).tolist()


def alternating(n: int, lo: float = -1.0, hi: float = 1.0) -> list[float]:
    """Points that cross the mean every time: no run, no trend."""
    return [lo if i % 2 == 0 else hi for i in range(n)]


def run_above(run: int, gap: bool = False) -> list[float]:
    """8 crossing points, then ``run`` points at +1 (the mean is between 0 and 1), then 7
    crossing points; -1 on both sides of the run. ``gap`` puts a NaN after its third point."""
    middle = [1.0] * run
    if gap:
        middle = middle[:3] + [math.nan] + middle[3:]
    return alternating(8, 1.0, -1.0) + middle + alternating(7)


# ---------------------------------------------------------------- limits

def test_limits_of_a_known_series_by_hand():
    c = spc.xmr([10, 12, 11, 15, 12])
    # mean 60/5 = 12; moving ranges 2, 1, 4, 3 -> mean 2.5
    assert c.mean == pytest.approx(12.0)
    assert c.mean_moving_range == pytest.approx(2.5)
    assert c.upper == pytest.approx(12 + 2.66 * 2.5)  # 18.65
    assert c.lower == pytest.approx(12 - 2.66 * 2.5)  # 5.35
    assert c.sigma == pytest.approx(2.5 / 1.128)
    assert np.isnan(c.moving_range[0])
    assert c.moving_range[1:].tolist() == [2, 1, 4, 3]
    assert c.trial_limits and c.has_limits


def test_point_exactly_on_a_limit_is_not_beyond_it():
    # sum 0 -> mean exactly 0; moving ranges 133 x3 and 29.25 x12 sum to 750 over 15 -> exactly 50;
    # so the limits are exactly +/-133, where two of the points lie.
    c = spc.xmr([133, 0, -133, 0] + [29.25, 0, -29.25, 0] * 3)
    assert (c.mean, c.mean_moving_range, c.upper, c.lower) == (0.0, 50.0, 133.0, -133.0)
    assert not c.beyond_limit.any()
    # ... and a point clearly beyond fires, on its own
    c2 = spc.xmr(alternating(20, 0, 1) + [9.0] + alternating(4, 0, 1))
    assert c2.upper < 9.0
    assert flagged(c2.beyond_limit) == [20]
    assert c2.rules_at(20) == ("beyond_limit",)


def test_constant_series_has_collapsed_limits_and_no_signal():
    c = spc.xmr([5.0] * 10)
    assert c.upper == c.lower == c.mean == 5.0
    assert not c.any_signal.any()
    assert spc.signals(c, "higher_is_better") == [spc.COMMON] * 10


# ---------------------------------------------------------------- shift

@pytest.mark.parametrize("run, fires", [(6, False), (7, True), (8, True)])
def test_shift_needs_seven_on_one_side(run, fires):
    c = spc.xmr(run_above(run))
    assert 0 < c.mean < 1  # the run is above the mean, the -1s below
    expected = list(range(8, 8 + run)) if fires else []
    assert flagged(c.shift) == expected
    assert not c.trend.any() and not c.beyond_limit.any() and not c.two_of_three.any()


def test_shift_below_the_mean_fires_too():
    c = spc.xmr([-v for v in run_above(7)])
    assert flagged(c.shift) == list(range(8, 15))
    assert all(c.side[8:15] == -1)


def test_a_point_on_the_mean_breaks_a_run():
    on_mean = spc.xmr([1, 1, 1, 0, 1, 1, 1, 1, -7])  # sum 0: mean exactly 0
    assert on_mean.mean == 0.0 and on_mean.side[3] == 0
    assert not on_mean.shift.any()
    unbroken = spc.xmr([1, 1, 1, 1, 1, 1, 1, 1, -8])
    assert flagged(unbroken.shift) == list(range(8))


# ---------------------------------------------------------------- trend

@pytest.mark.parametrize("length, fires", [(6, False), (7, True)])
def test_trend_needs_seven_rising(length, fires):
    rise = [float(v) for v in range(1, length + 1)]
    c = spc.xmr([4.0] + rise + [0.0, 4.0, 2.0])  # 4 -> 1 falls, 0 after the rise breaks it
    assert flagged(c.trend) == (list(range(1, 1 + length)) if fires else [])
    assert flagged(c.trend_rising) == flagged(c.trend)
    assert not c.trend_falling.any()


@pytest.mark.parametrize("length, fires", [(6, False), (7, True)])
def test_trend_needs_seven_falling(length, fires):
    fall = [float(-v) for v in range(1, length + 1)]
    c = spc.xmr([-4.0] + fall + [0.0, -4.0, -2.0])
    assert flagged(c.trend_falling) == (list(range(1, 1 + length)) if fires else [])
    assert not c.trend_rising.any()


def test_a_tie_neither_breaks_nor_adds_to_a_trend():
    # 7 points but only 6 distinct steps' worth: 1,2,3,3,4,5,6 -> no trend
    short = spc.xmr([4.0, 1, 2, 3, 3, 4, 5, 6, 0, 4])
    assert not short.trend.any()
    # one more rise: the tie did not break it, and the tied points are part of the run
    long = spc.xmr([4.0, 1, 2, 3, 3, 4, 5, 6, 7, 0, 4])
    assert flagged(long.trend) == list(range(1, 9))


def test_rise_then_fall_marks_the_peak_in_both():
    c = spc.xmr([float(v) for v in [*range(7), *range(5, -1, -1)]])  # 0..6 then 5..0
    assert flagged(c.trend_rising) == list(range(7))
    assert flagged(c.trend_falling) == list(range(6, 13))


# ---------------------------------------------------------------- two of three

def _with(triple: list[float]) -> spc.XmR:
    base = alternating(20, 0.0, 1.0)
    return spc.xmr(base[:10] + triple + base[10:])


def _zone(c: spc.XmR, v: float) -> str:
    if v > c.upper or v < c.lower:
        return "beyond"
    return "outer" if abs(v - c.mean) > 2 * c.sigma else "inner"


def test_two_of_three_beyond_two_sigma_same_side_fires():
    c = _with([3.0, 1.0, 3.0])
    assert [_zone(c, v) for v in (3.0, 1.0, 3.0)] == ["outer", "inner", "outer"]
    assert all(c.side[10:13] == 1)
    assert flagged(c.two_of_three) == [10, 12]  # the middle point is not itself flagged
    assert not c.beyond_limit.any()


def test_one_point_beyond_two_sigma_does_not_fire():
    c = _with([3.0, 1.0, 1.0])
    assert [_zone(c, v) for v in (3.0, 1.0, 1.0)] == ["outer", "inner", "inner"]
    assert not c.two_of_three.any()


def test_two_of_three_on_opposite_sides_does_not_fire():
    c = _with([3.0, 0.0, -2.0])
    assert _zone(c, 3.0) == "outer" and _zone(c, -2.0) == "outer"
    assert c.side[10] == 1 and c.side[12] == -1
    assert not c.two_of_three.any()


def test_two_of_three_needs_the_third_point_on_the_same_side_of_the_mean():
    c = _with([3.5, 0.0, 3.5])  # MDC's tool logic: all three on one side
    assert _zone(c, 3.5) == "outer" and c.side[11] == -1
    assert not c.two_of_three.any()


def test_points_beyond_the_limit_count_towards_two_of_three():
    base = alternating(20, 0.0, 1.0)
    c = spc.xmr(base[:10] + [4.5, 10.0, 2.0] + base[10:])
    assert _zone(c, 4.5) == "outer" and _zone(c, 10.0) == "beyond" and _zone(c, 2.0) == "inner"
    assert all(c.side[10:13] == 1)
    assert flagged(c.two_of_three) == [10, 11]
    assert flagged(c.beyond_limit) == [11]


# ---------------------------------------------------------------- missing points and short series

def test_nan_points_are_skipped():
    values = run_above(7, gap=True)
    c = spc.xmr(values)
    clean = spc.xmr([v for v in values if not math.isnan(v)])
    assert c.n == clean.n == len(values) - 1
    assert c.mean == pytest.approx(clean.mean)
    assert c.upper == pytest.approx(clean.upper)
    assert np.isnan(c.moving_range[11]) and c.moving_range[12] == 0.0  # 1 -> (gap) -> 1
    assert flagged(c.shift) == [8, 9, 10, 12, 13, 14, 15]  # the run of 7 spans the gap
    assert not c.shift[11]
    sig = spc.signals(c, "higher_is_better")
    assert sig[11] == spc.NO_DATA and sig[8] == spc.IMPROVEMENT


@pytest.mark.parametrize("values", [[], [math.nan, math.nan]])
def test_empty_series(values):
    c = spc.xmr(values)
    assert c.n == 0 and not c.has_limits and math.isnan(c.mean)
    assert not c.any_signal.any()
    assert spc.variation_status(c, "higher_is_better") == spc.NO_DATA


def test_single_point_has_a_mean_but_no_limits():
    c = spc.xmr([math.nan, 7.0])
    assert c.mean == 7.0 and not c.has_limits and math.isnan(c.upper)
    assert spc.signals(c, "lower_is_better") == [spc.NO_DATA, spc.COMMON]
    assert spc.variation_status(c, "lower_is_better") == spc.INSUFFICIENT


def test_two_points_have_limits():
    c = spc.xmr([1.0, 3.0])
    assert c.upper == pytest.approx(2 + 2.66 * 2) and c.lower == pytest.approx(2 - 2.66 * 2)


# ---------------------------------------------------------------- improvement and concern

def _shift_up():
    return spc.xmr(run_above(7))


@pytest.mark.parametrize("direction, expected", [
    ("higher_is_better", spc.IMPROVEMENT),
    ("lower_is_better", spc.CONCERN),
    ("neutral", spc.NEUTRAL_HIGH),
])
def test_direction_decides_improvement_or_concern(direction, expected):
    sig = spc.signals(_shift_up(), direction)
    assert sig[8:15] == [expected] * 7
    assert sig[:8] == [spc.COMMON] * 8 and sig[15:] == [spc.COMMON] * 7


def test_falling_trend_is_improvement_when_lower_is_better():
    c = spc.xmr([-4.0] + [float(-v) for v in range(1, 8)] + [0.0, -4.0, -2.0])
    sig = spc.signals(c, "lower_is_better")
    assert set(sig[1:8]) == {spc.IMPROVEMENT}
    assert set(spc.signals(c, "higher_is_better")[1:8]) == {spc.CONCERN}


def test_a_trend_decides_over_a_shift():
    # a run of 7 above the mean that is also falling: the shift says 'high', the trend 'falling';
    # trend comes before shift in the precedence (NHSRplotthedots PR #180), so the points show
    # the trend's sense
    values = alternating(12, -3, 3) + [7.0, 6.5, 6, 5.5, 5, 4.5, 4] + alternating(6, -3, 3)
    c = spc.xmr(values)
    assert c.shift[12:19].all() and c.trend_falling[12:19].all()
    assert not (c.beyond_limit.any() or c.two_of_three.any())
    assert set(spc.signals(c, "higher_is_better")[12:19]) == {spc.CONCERN}
    assert set(spc.signals(c, "lower_is_better")[12:19]) == {spc.IMPROVEMENT}
    assert {p.rule for p in spc.classify(c, "lower_is_better")[12:19]} == {"trend"}


def improving_run_with_a_high_point() -> list[float]:
    """A lower-is-better measure: a falling trend of 8 points whose first point is beyond the
    upper limit (the brief's case: 'a point above the upper limit drawn as an improvement')."""
    return alternating(12, 10.0, 11.0) + [30.0, 14, 12, 10, 9, 8, 7, 6] + alternating(8, 10.0, 11.0)


def test_a_point_beyond_a_limit_is_a_concern_even_inside_an_improving_run():
    c = spc.xmr(improving_run_with_a_high_point())
    assert c.beyond_limit[12] and c.side[12] == 1 and c.trend_falling[12:20].all()
    classes = spc.classify(c, "lower_is_better")
    # the rule: beyond a limit > trend > two of three > shift; the sense is that rule's
    assert classes[12] == spc.PointClass(spc.CONCERN, "beyond_limit", 1)
    assert {p.status for p in classes[13:20]} == {spc.IMPROVEMENT}
    assert {p.rule for p in classes[13:20]} <= {"trend", "beyond_limit"}
    assert spc.signals(c, "lower_is_better") == [p.status for p in classes]


def test_variation_status_is_the_latest_point():
    assert spc.variation_status(_shift_up(), "higher_is_better") == spc.COMMON
    ends_in_shift = spc.xmr(alternating(8, 1.0, -1.0) + [1.0] * 7)
    assert spc.variation_status(ends_in_shift, "higher_is_better") == spc.IMPROVEMENT
    assert spc.variation_status(ends_in_shift, "lower_is_better") == spc.CONCERN


def test_unknown_direction_is_an_error():
    with pytest.raises(ValueError):
        spc.signals(_shift_up(), "up")


def test_unknown_direction_is_an_error_for_classify_too():
    with pytest.raises(ValueError):
        spc.classify(_shift_up(), "down")


# ---------------------------------------------------------------- Making Data Count icons

def ends_high(n_run: int = 7) -> list[float]:
    return alternating(8, 1.0, -1.0) + [1.0] * n_run


@pytest.mark.parametrize("values, direction, icon", [
    (alternating(15), "higher_is_better", "common_cause"),
    (ends_high(), "higher_is_better", "improvement_high"),
    ([-v for v in ends_high()], "lower_is_better", "improvement_low"),
    (ends_high(), "lower_is_better", "concern_high"),
    ([-v for v in ends_high()], "higher_is_better", "concern_low"),
    (ends_high(), "neutral", "neither_high"),
    ([-v for v in ends_high()], "neutral", "neither_low"),
])
def test_each_variation_icon(values, direction, icon):
    assert spc.latest_class(spc.xmr(values), direction).icon == icon


def test_no_icon_without_data_or_limits():
    assert spc.latest_class(spc.xmr([]), "higher_is_better").status == spc.NO_DATA
    assert spc.latest_class(spc.xmr([4.0]), "higher_is_better").status == spc.INSUFFICIENT
    assert spc.variation_icon(spc.NO_DATA) is None and spc.variation_icon(spc.INSUFFICIENT) is None


# limits of alternating(20, 9, 11): mean 10, mean moving range 2 -> 10 +/- 5.32 = 4.68 to 15.32
@pytest.mark.parametrize("target, direction, expected", [
    (16.0, "higher_is_better", spc.FAIL),     # above the upper limit: never reached
    (16.0, "lower_is_better", spc.PASS),      # always below it
    (4.0, "higher_is_better", spc.PASS),
    (4.0, "lower_is_better", spc.FAIL),
    (10.0, "higher_is_better", spc.HIT_AND_MISS),
    (15.32, "lower_is_better", spc.HIT_AND_MISS),  # on a limit: inside
    (10.0, "neutral", None),
    (None, "higher_is_better", None),
])
def test_each_assurance_case(target, direction, expected):
    c = spc.xmr(alternating(20, 9.0, 11.0))
    assert (c.lower, c.upper) == pytest.approx((4.68, 15.32))
    assert spc.assurance(c, direction, target) == expected


def test_no_assurance_without_limits():
    assert spc.assurance(spc.xmr([3.0]), "higher_is_better", 2.0) is None


# ---------------------------------------------------------------- clipped limits

def test_a_percentage_near_100_has_its_upper_limit_clipped():
    c = spc.xmr([96.0, 100.0] * 8, bounds=(0.0, 100.0))
    assert c.upper == pytest.approx(98 + 2.66 * 4) and c.upper > 100  # 108.64: impossible for a %
    assert c.upper_shown == 100.0 and c.upper_clipped
    assert c.upper_shown_at.max() == 100.0 and c.upper_clipped_at.all()
    assert not c.lower_clipped and c.lower_shown == c.lower
    assert not c.beyond_limit.any()  # signals use the computed limits


def test_a_count_near_zero_has_its_lower_limit_clipped_at_zero():
    c = spc.xmr([0.0, 3.0] * 8, bounds=(0.0, None))
    assert c.lower == pytest.approx(1.5 - 2.66 * 3) and c.lower < 0  # -6.48 admissions
    assert c.lower_shown == 0.0 and c.lower_clipped and c.lower_clipped_at.all()
    assert not c.upper_clipped and c.upper_shown == c.upper


def test_no_bounds_no_clipping():
    c = spc.xmr([0.0, 3.0] * 8)
    assert not c.lower_clipped and c.lower_shown == c.lower and not c.lower_clipped_at.any()


# ---------------------------------------------------------------- baselines

def test_a_fixed_baseline_takes_the_limits_from_the_first_points_and_holds_them():
    values = alternating(12, 9.0, 11.0) + [20.0, 21.0, 19.0, 20.0]
    fixed = spc.xmr(values, baseline=12)
    first = spc.xmr(values[:12])
    assert (fixed.mean, fixed.upper, fixed.lower) == pytest.approx((first.mean, first.upper, first.lower))
    assert fixed.n_basis == 12 and fixed.n == 16 and not fixed.trial_limits
    assert flagged(fixed.beyond_limit) == [12, 13, 14, 15]  # judged against the held limits
    assert spc.xmr(values).upper > fixed.upper + 3  # limits from all points would absorb the jump


def test_a_rebase_recomputes_limits_from_that_point():
    before, after = alternating(12, 9.0, 11.0), alternating(10, 19.0, 23.0)
    c = spc.xmr(before + after, rebase_at=[12])
    b, a = spc.xmr(before), spc.xmr(after)
    assert c.mean_at[0] == pytest.approx(b.mean) and c.upper_at[11] == pytest.approx(b.upper)
    assert c.mean_at[12] == pytest.approx(a.mean) and c.lower_at[21] == pytest.approx(a.lower)
    assert (c.mean, c.upper) == pytest.approx((a.mean, a.upper))  # the latest segment's
    assert c.segment.tolist() == [0] * 12 + [1] * 10
    assert np.isnan(c.moving_range[12])  # no moving range across the rebase
    assert not c.any_signal.any()
    assert spc.xmr(before + after).shift.any()  # without the rebase: a shift


def test_runs_do_not_cross_a_rebase():
    values = alternating(8, 0.0, 2.0) + [1.5] * 4 + [1.5] * 3 + alternating(8, 0.0, 2.0)
    assert flagged(spc.xmr(values).shift) == list(range(7, 15))
    assert not spc.xmr(values, rebase_at=[12]).shift.any()


def test_baseline_within_each_rebased_segment():
    values = alternating(6, 9.0, 11.0) + [30.0] + alternating(6, 49.0, 51.0) + [80.0]
    c = spc.xmr(values, baseline=6, rebase_at=[7])
    assert flagged(c.beyond_limit) == [6, 13]
    assert c.mean_at[7] == pytest.approx(50.0)


@pytest.mark.parametrize("kw", [{"baseline": 1}, {"rebase_at": [0]}, {"rebase_at": [5]}])
def test_bad_baseline_or_rebase_is_an_error(kw):
    with pytest.raises(ValueError):
        spc.xmr([1.0, 2.0, 3.0, 4.0, 5.0], **kw)
