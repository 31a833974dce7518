"""Balance (standardised mean differences) and effects (difference in differences over
matched sets) on constructed numbers with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from casefind.evaluate import balance, effects
from casefind.evaluate.outcomes import month_end, months_later


# Austin, Stat Med 2009: d = (mean_T - mean_C) / sqrt((s2_T + s2_C) / 2); for a proportion
# the variance is p(1 - p).
@pytest.mark.parametrize("xt, xc, want", [
    ([1, 2, 3], [1, 2, 3], 0.0),
    ([2, 4], [0, 2], 2 / 1.0),                          # means 3 and 1, both variances 1
    ([1, 1, 0, 0], [1, 0, 0, 0], (0.5 - 0.25) / math.sqrt((0.25 + 0.1875) / 2)),
    ([5, 5], [5, 5], 0.0),                              # constant and equal
])
def test_smd_is_austins_standardised_difference(xt, xc, want):
    xt, xc = np.array(xt, float), np.array(xc, float)
    _, _, got = balance.smd(xt, np.ones(len(xt)), xc, np.ones(len(xc)))
    assert got == pytest.approx(want)


def test_smd_weights_and_missing_values():
    # a control weighted 3 counts as three copies; a NaN is left out
    xt = np.array([2.0, 4.0])
    xc, wc = np.array([0.0, 2.0, np.nan]), np.array([3.0, 1.0, 5.0])
    mt, mc, d = balance.smd(xt, np.ones(2), xc, wc)
    copies = np.array([0.0, 0, 0, 2])
    assert (mt, mc) == (3.0, 0.5)
    assert d == pytest.approx((3 - 0.5) / math.sqrt((1 + copies.var()) / 2))


def test_smd_of_constant_but_different_groups_is_infinite_and_flagged():
    _, _, d = balance.smd(np.ones(3), np.ones(3), np.zeros(3), np.ones(3))
    assert d == math.inf
    assert balance.BalanceRow("x", "after", 1, 0, d).flagged
    assert math.isnan(balance.smd(np.array([np.nan]), np.ones(1), np.ones(1), np.ones(1))[2])


@pytest.mark.parametrize("value, flagged", [(0.1, False), (-0.1, False), (0.1001, True), (-0.5, True)])
def test_flag_is_over_a_tenth(value, flagged):
    assert balance.BalanceRow("x", "after", 0, 0, value).flagged is flagged


def test_did_over_matched_sets_with_its_paired_t_interval():
    # three sets: treated change (after - before) 1, 0, 2; control mean changes 0, 1, -1
    tb, ta = np.array([1.0, 2, 0]), np.array([2.0, 2, 2])
    set_id = np.array([0, 0, 1, 2, 2])
    cb = np.array([1.0, 1, 0, 3, 1])
    ca = np.array([1.0, 1, 1, 1, 1])  # set 0: 0; set 1: +1; set 2: mean(-2, 0) = -1
    e = effects.did("y", tb, ta, cb, ca, set_id, 0.95)
    d = np.array([1 - 0, 0 - 1, 2 - (-1)])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert e.estimate == pytest.approx(d.mean())
    assert (e.lower, e.upper) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert e.sets == 3 and e.control_before == pytest.approx(np.mean([1, 0, 2]))
    assert e.relative == pytest.approx(e.estimate / (ta.mean() - e.estimate))


def test_did_of_one_set_has_no_interval():
    e = effects.did("y", np.array([0.0]), np.array([1.0]), np.array([0.0]), np.array([0.0]), np.array([0]), 0.9)
    assert e.estimate == 1.0 and math.isnan(e.lower) and math.isnan(e.std_error)
    zero = effects.Effect("y", 1, 0, 0, 0, 0, 0.0, 0, 0, 0, 0.95)
    assert math.isnan(zero.relative)


@pytest.mark.parametrize("d, k, want", [
    ((2024, 11, 13), 12, (2025, 11, 30)),
    ((2024, 2, 29), 12, (2025, 2, 28)),
    ((2025, 1, 31), 1, (2025, 2, 28)),
    ((2025, 3, 31), -12, (2024, 3, 31)),
    ((2024, 12, 1), 1, (2025, 1, 31)),
])
def test_months_later_is_a_month_end(d, k, want):
    import datetime as dt

    assert months_later(dt.date(*d), k) == dt.date(*want)
    assert month_end(2024, 14) == dt.date(2025, 2, 28)


@pytest.mark.parametrize("value, places, want", [
    (1234.5, 1, "1,234.5"), (-0.25, 2, "−0.25"), (-0.0001, 2, "0.00"), (float("nan"), 2, "–"), (None, 2, "–"),
    (math.inf, 2, "∞"), (-math.inf, 2, "−∞"),
])
def test_report_numbers(value, places, want):
    from casefind.evaluate.report import fmt

    assert fmt(value, places) == want


def test_forest_axis_includes_zero_and_skips_missing():
    from casefind.evaluate.report import forest

    e = effects.Effect("y", 3, 0, 0, 0, 0, estimate=2.0, lower=1.0, upper=3.0, std_error=0.5, confidence=0.95)
    f = forest(e)
    assert f["zero"] < f["lower"] < f["point"] < f["upper"] <= 190
    assert forest(effects.Effect("y", 1, 0, 0, 0, 0, 1.0, math.nan, math.nan, math.nan, 0.95)) is None


@pytest.mark.parametrize("means, places", [((0.52, 0.62, 0.46, 0.39), 3), ((2.75, 3.4, 12.0, 2.0), 1),
                                           ((7675.1, 9275.9, 7989.7, 8113.7), 0), ((float("nan"),) * 4, 3)])
def test_effects_are_shown_to_places_that_suit_their_size(means, places):
    """Admissions per person to three places; money to whole pounds (not 1,476.816)."""
    from types import SimpleNamespace

    from casefind.evaluate.report import effect_places

    e = SimpleNamespace(treated_before=means[0], treated_after=means[1], control_before=means[2],
                        control_after=means[3])
    assert effect_places(e) == places
