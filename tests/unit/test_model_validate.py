"""The validation metrics against values worked out by hand or by brute force."""
from __future__ import annotations

import numpy as np
import pytest

from casefind.models import validate


@pytest.mark.parametrize("y, score, c", [
    ([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1], 0.75),      # pairs: (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) = 3/4
    ([1, 0], [0.2, 0.2], 0.5),                       # a tie counts a half
    ([1, 1, 0], [0.3, 0.8, 0.1], 1.0),
    ([0, 0, 1], [0.3, 0.8, 0.1], 0.0),
])
def test_c_statistic_by_hand(y, score, c):
    assert validate.c_statistic(np.array(y, bool), np.array(score))["c"] == pytest.approx(c)


def test_c_statistic_of_one_class_is_missing():
    assert validate.c_statistic(np.ones(3, bool), np.arange(3.0))["c"] is None


def _delong_brute(y, s):
    """DeLong's variance from the placement values, pair by pair (DeLong et al. 1988, eq. 4-5)."""
    pos, neg = s[y], s[~y]
    psi = lambda a, b: 1.0 if a > b else 0.5 if a == b else 0.0  # noqa: E731
    v10 = np.array([np.mean([psi(p, n) for n in neg]) for p in pos])
    v01 = np.array([np.mean([psi(p, n) for p in pos]) for n in neg])
    return v10.mean(), np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))


def test_delong_interval_matches_the_pairwise_definition():
    r = np.random.default_rng(4)
    y = r.random(300) < 0.3
    s = np.round(r.normal(y * 0.8, 1.0), 1)          # rounded: ties included
    auc, se = _delong_brute(y, s)
    got = validate.c_statistic(y, s)
    assert got["c"] == pytest.approx(auc) and got["se"] == pytest.approx(se)
    assert got["low"] == pytest.approx(auc - 1.959964 * se, abs=1e-6)
    assert got["high"] == pytest.approx(auc + 1.959964 * se, abs=1e-6)


def test_calibration_of_true_probabilities_is_ideal():
    r = np.random.default_rng(1)
    p = r.uniform(0.01, 0.6, 200_000)
    y = r.random(p.size) < p
    line = validate.calibration_line(y, p)
    assert line["slope"] == pytest.approx(1.0, abs=0.03) and line["intercept"] == pytest.approx(0.0, abs=0.02)
    # predictions pulled too far from the mean on the logit scale: slope below 1
    logit = np.log(p / (1 - p))
    extreme = 1 / (1 + np.exp(-2 * (logit - logit.mean()) - logit.mean()))
    assert validate.calibration_line(y, extreme)["slope"] == pytest.approx(0.5, abs=0.03)
    # every risk halved: observed above predicted, intercept above 0
    assert validate.calibration_line(y, p / 2)["intercept"] > 0.5


def test_deciles_and_brier():
    p = np.linspace(0.05, 0.95, 20)
    y = np.array([0] * 10 + [1] * 10, bool)
    d = validate.calibration_deciles(y, p)
    assert [r["n"] for r in d] == [2] * 10
    assert d[0]["predicted"] == pytest.approx((0.05 + p[1]) / 2) and d[0]["observed"] == 0
    assert d[9]["observed"] == 1
    assert validate.brier(np.array([1, 0], bool), np.array([0.8, 0.4])) == pytest.approx((0.04 + 0.16) / 2)


@pytest.mark.parametrize("k, selected, hits", [(0.5, 1, 1), (2.0, 2, 2), (5.0, 5, 3), (20.0, 20, 4)])
def test_top_percent(k, selected, hits):
    # 100 patients, score = index; the outcome in patients 99, 98, 96 and 80
    y = np.zeros(100, bool)
    y[[99, 98, 96, 80]] = True
    row = next(r for r in validate.top_percent(y, np.arange(100.0)) if r["top_percent"] == k)
    assert (row["selected"], row["true_positives"]) == (selected, hits)
    assert row["sensitivity"] == pytest.approx(hits / 4) and row["ppv"] == pytest.approx(hits / selected)


def test_top_percent_ties_break_by_store_order():
    y = np.array([True, False, False, False])
    s = np.ones(4)
    assert [r["true_positives"] for r in validate.top_percent(y, s, (25.0,))] == [1]
    assert validate.top_percent(~y, s, (25.0,))[0]["true_positives"] == 0
