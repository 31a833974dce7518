"""Roll-up invariants, for random populations and hierarchies: every additive piece of a KPI
at locality level is the sum over its practices, and at system level the sum over its
localities and over all its practices, per breakdown cell, exactly (before disclosure)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from casefind.kpis.compute import _medians, _roll, _sums


@st.composite
def populations(draw):
    n_practices = draw(st.integers(1, 8))
    n_localities = draw(st.integers(1, n_practices))
    n_systems = draw(st.integers(1, n_localities))
    loc_of_pr = np.array(draw(st.lists(st.integers(0, n_localities - 1), min_size=n_practices, max_size=n_practices)))
    sys_of_loc = np.array(draw(st.lists(st.integers(0, n_systems - 1), min_size=n_localities, max_size=n_localities)))
    n = draw(st.integers(0, 60))
    nb = draw(st.integers(1, 4))
    practice = np.array(draw(st.lists(st.integers(0, n_practices - 1), min_size=n, max_size=n)), np.int64)
    band = np.array(draw(st.lists(st.integers(0, nb - 1), min_size=n, max_size=n)), np.int64)
    mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    valid = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    v = np.array(draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)), np.float64)
    return practice, band, nb, mask, valid, v, loc_of_pr, sys_of_loc, n_localities, n_systems


@settings(max_examples=200, deadline=None)
@given(populations())
def test_localities_and_systems_are_sums_of_their_practices(pop):
    practice, band, nb, mask, valid, v, loc_of_pr, sys_of_loc, n_loc, n_sys = pop
    pr = _sums(practice * nb + band, len(loc_of_pr) * nb, mask, v, valid)
    loc = _roll(pr, loc_of_pr, n_loc, nb)
    sy = _roll(loc, sys_of_loc, n_sys, nb)
    for k in ("n", "k", "s", "ss"):
        prs = pr[k].reshape(-1, nb)
        for li in range(n_loc):
            assert np.array_equal(loc[k].reshape(-1, nb)[li], prs[loc_of_pr == li].sum(0))
        for si in range(n_sys):
            in_sys = sys_of_loc[loc_of_pr] == si
            assert np.array_equal(sy[k].reshape(-1, nb)[si], prs[in_sys].sum(0))
        # and directly from the patients: nothing lost or counted twice
        sys_of_patient = sys_of_loc[loc_of_pr[practice]]
        direct = _sums(sys_of_patient * nb + band, n_sys * nb, mask, v, valid)[k]
        assert np.array_equal(sy[k], direct)


@settings(max_examples=100, deadline=None)
@given(populations())
def test_medians_per_group_match_numpy(pop):
    practice, band, nb, mask, valid, v, loc_of_pr, *_ = pop
    groups = practice * nb + band
    got = _medians(groups, len(loc_of_pr) * nb, mask, v, valid)
    for g in range(len(loc_of_pr) * nb):
        x = v[(groups == g) & mask & valid]
        assert (np.isnan(got[g]) and x.size == 0) or got[g] == np.median(x)
