"""Matching on constructed candidates: exact strata, nearest, caliper, ratio, replacement."""
from __future__ import annotations

import numpy as np
import pytest

from casefind.evaluate.match import Candidates, match
from casefind.evaluate.spec import Matching


def _m(method="nearest", caliper=None, ratio=1, replacement=False, seed=1) -> Matching:
    return Matching(exact=(), method=method, features=(("x", None),), caliper=caliper, ratio=ratio,
                    replacement=replacement, seed=seed)


def _cands(xt, xc, st=None, sc=None, month=0, treated=None, controls=None) -> Candidates:
    xt, xc = np.array(xt, float).reshape(len(xt), -1), np.array(xc, float).reshape(len(xc), -1)
    treated = np.arange(len(xt)) if treated is None else np.array(treated)
    controls = np.arange(100, 100 + len(xc)) if controls is None else np.array(controls)
    return Candidates(month, treated, controls, xt, xc,
                      np.zeros(len(xt), np.int64) if st is None else np.array(st),
                      np.zeros(len(xc), np.int64) if sc is None else np.array(sc))


def _pairs(m) -> set[tuple[int, int]]:
    return set(zip(m.treated.tolist(), m.control.tolist()))


def test_nearest_within_exact_strata():
    # treated 0 (stratum 0) is nearest to control 101 (stratum 1) but may only take 100
    c = _cands([0.0, 5.0], [3.0, 0.1, 5.2], st=[0, 1], sc=[0, 1, 1])
    m = match([c], _m(), 200)
    assert _pairs(m) == {(0, 100), (1, 102)}
    assert m.unmatched == 0


@pytest.mark.parametrize("method", ["nearest", "propensity"])
def test_caliper_leaves_the_far_unmatched(method):
    c = _cands([0.0, 10.0], [0.05, 0.1, 0.2, 0.3])
    m = match([c], _m(method=method, caliper=0.2), 200)
    assert m.unmatched == 1 and set(m.treated.tolist()) == {0}
    assert m.caliper_width is not None and m.caliper_width > 0


def test_ratio_takes_the_k_nearest_in_order():
    c = _cands([1.0], [0.0, 1.1, 5.0, 0.8, 1.05])
    m = match([c], _m(ratio=3), 200)
    assert m.control.tolist() == [104, 101, 103]
    sd = np.std([1.0, 0.0, 1.1, 5.0, 0.8, 1.05])  # distances are in SDs of the pooled feature
    assert m.distance == pytest.approx(np.array([0.05, 0.1, 0.2]) / sd)
    assert m.set_id.tolist() == [0, 0, 0]


@pytest.mark.parametrize("replacement, want", [(False, 2), (True, 1)])
def test_without_replacement_a_control_is_used_once(replacement, want):
    # two treated at the same point and one close control; the other is far
    c = _cands([1.0, 1.0], [1.0, 9.0])
    m = match([c], _m(replacement=replacement), 200)
    assert len(set(m.control.tolist())) == want


def test_without_replacement_holds_across_months():
    a = _cands([1.0], [1.0, 4.0], month=0, controls=[100, 101])
    b = _cands([1.0], [1.0, 4.0], month=1, treated=[1], controls=[100, 101])
    m = match([a, b], _m(), 200)
    assert m.control.tolist() == [100, 101] and m.month.tolist() == [0, 1]


def test_propensity_matches_on_the_score():
    # treated have high x; the nearest control on the logit is the highest x among controls
    rng = np.random.default_rng(0)
    xc = rng.normal(0, 1, 300)
    c = _cands([2.5, 2.6], xc, controls=np.arange(100, 400))
    m = match([c], _m(method="propensity", ratio=1), 500)
    chosen = xc[m.control - 100]
    assert m.unmatched == 0 and chosen.min() > 1.5  # the controls most like them
    assert len(set(m.control.tolist())) == 2


def test_1d_walk_skips_used_and_stops_at_the_caliper():
    c = _cands([0.0, 0.0, 0.0], [0.0, 0.1, -0.15, 3.0])
    m = match([c], _m(method="nearest", caliper=0.5), 200)
    assert sorted(m.control.tolist()) == [100, 101, 102]


def test_nobody_to_match():
    m = match([_cands([1.0], [5.0], sc=[1])], _m(), 200)
    assert m.unmatched == 1 and len(m.set_id) == 0


def test_one_class_propensity_scores_zero():
    from casefind.evaluate.match import scores

    c = Candidates(0, np.array([], np.int64), np.arange(3), np.zeros((0, 1)), np.ones((3, 1)),
                   np.zeros(0, np.int64), np.zeros(3, np.int64))
    _, sc, spread = scores([c], _m(method="propensity"))
    assert spread == 0.0 and sc[0].tolist() == [0, 0, 0]
