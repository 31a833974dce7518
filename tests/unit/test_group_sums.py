"""The KPI roll-up's grouped sums (casefind_native.aggregate) against a Python reference:
counts exact, sums compensated, so that the same patients in any order, or split in parts
whose sums are then added (shards), give the same bits as one pass."""
from __future__ import annotations

import math

import numpy as np
import pytest

from casefind_native.aggregate import add_compensated, group_sums, group_sums_into


def _reference(group, n_groups, mask, value, valid):
    """n, k and the correctly rounded sums (math.fsum) per group."""
    rows = [[i for i in range(len(group)) if mask[i] and group[i] == g] for g in range(n_groups)]
    n = [len(r) for r in rows]
    k = [sum(1 for i in r if valid[i]) for r in rows]
    s = [math.fsum(value[i] for i in r if valid[i]) for r in rows]
    ss = [math.fsum(value[i] * value[i] for i in r if valid[i]) for r in rows]
    return n, k, s, ss


def _into(group, n_groups, mask, value, valid):
    out = np.zeros((6, n_groups))
    group_sums_into(out, group, mask, value, valid)
    return out


CASES = {  # name: (group, n_groups, mask, value, valid)
    "one group": ([0, 0, 0], 1, [1, 1, 1], [1.5, 2.25, -0.75], [1, 1, 1]),
    "masked and invalid rows": ([0, 1, 0, 1], 2, [1, 0, 1, 1], [1.0, 9.0, 2.0, 3.0], [1, 1, 0, 1]),
    "an empty group": ([1, 1], 3, [1, 1], [4.0, 5.0], [1, 1]),
    "pence that do not add exactly": ([0] * 7, 1, [1] * 7, [0.1, 0.2, 0.3, 1e7 + 0.01, 0.07, 1234.56, 0.05], [1] * 7),
    "cancellation": ([0, 0, 0, 0], 1, [1] * 4, [1e16, 1.0, -1e16, 1.0], [1] * 4),
}


@pytest.mark.parametrize("name", CASES)
def test_group_sums_into_matches_the_reference(name):
    group, n_groups, mask, value, valid = CASES[name]
    group, value = np.asarray(group, np.int64), np.asarray(value, np.float64)
    mask, valid = np.asarray(mask, bool), np.asarray(valid, bool)
    out = _into(group, n_groups, mask, value, valid)
    n, k, s, ss = _reference(group, n_groups, mask, value, valid)
    assert out[0].tolist() == n and out[1].tolist() == k
    assert (out[2] + out[4]).tolist() == s and (out[3] + out[5]).tolist() == ss
    plain = group_sums(group, n_groups, mask, value, valid)  # the uncompensated one agrees on counts
    assert plain[0].tolist() == n and plain[1].tolist() == k


def test_any_order_and_any_split_give_the_same_bits():
    rng = np.random.default_rng(5)
    n = 20_000
    value = np.round(rng.gamma(0.6, 900.0, n), 2)  # costs in pounds and pence, as activity has
    group = rng.integers(0, 7, n)
    mask, valid = rng.random(n) < 0.9, rng.random(n) < 0.95
    one = _into(group, 7, mask, value, valid)
    want_s, want_ss = one[2] + one[4], one[3] + one[5]
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(n)
        parts = np.array_split(order, 1 + seed)  # 1..5 "shards", each summed alone, then added
        acc = _into(group[parts[0]], 7, mask[parts[0]], value[parts[0]], valid[parts[0]])
        for part in parts[1:]:
            other = _into(group[part], 7, mask[part], value[part], valid[part])
            acc[:2] += other[:2]
            for hi, lo in ((2, 4), (3, 5)):
                add_compensated(acc[hi], acc[lo], other[hi], other[lo])
        assert (acc[2] + acc[4]).tolist() == want_s.tolist()
        assert (acc[3] + acc[5]).tolist() == want_ss.tolist()


def test_block_sums_are_each_columns_group_sums_to_the_bit():
    """block_sums_into (a KPI split by provider: one value per provider, all valid) gives
    for each column what group_sums_into gives that column alone, to the bit, zeros and
    negative amounts included."""
    from casefind_native.aggregate import block_sums_into, sparse_block_sums_into

    rng = np.random.default_rng(11)
    n, n_values, n_groups = 5_000, 9, 5
    block = np.round(rng.gamma(0.3, 300.0, (n, n_values)), 2) * (rng.random((n, n_values)) < 0.2)
    block[::7, 3] *= -1.0
    group, mask = rng.integers(0, n_groups, n), rng.random(n) < 0.8
    out = np.zeros((n_values, 6, n_groups))
    half = n // 2  # added in two calls, as chunks are
    block_sums_into(out, group[:half], mask[:half], np.ascontiguousarray(block[:half]))
    block_sums_into(out, group[half:], mask[half:], np.ascontiguousarray(block[half:]))
    for j in range(n_values):
        one = np.zeros((6, n_groups))
        for lo, hi in ((0, half), (half, n)):
            group_sums_into(one, group[lo:hi], mask[lo:hi], block[lo:hi, j].copy(), np.ones(hi - lo, bool))
        assert out[j].tobytes() == one.tobytes(), j
    assert out[:, 2].any() and (out[:, 0] == out[:, 1]).all()
    by_member = np.zeros_like(out)  # the native engine's layout: members x patients, seen transposed
    for lo, hi in ((0, half), (half, n)):
        block_sums_into(by_member, group[lo:hi], mask[lo:hi], np.ascontiguousarray(block[lo:hi].T).T)
    assert by_member.tobytes() == out.tobytes()
    counts = np.zeros((n_values, 3, n), np.int64)  # a value group's counts: members x periods x patients
    counts[:, 1] = rng.poisson(0.4, (n_values, n))
    from_counts, from_floats = np.zeros_like(out), np.zeros_like(out)
    for lo, hi in ((0, half), (half, n)):
        block_sums_into(from_counts, group[lo:hi], mask[lo:hi], counts[:, 1, lo:hi].T)
        block_sums_into(from_floats, group[lo:hi], mask[lo:hi], counts[:, 1, lo:hi].T.astype(np.float64))
    assert from_counts.tobytes() == from_floats.tobytes() and from_counts[:, 2].any()
    from_records = np.zeros_like(out)  # the same counts as a scan's sparse group records them
    for lo, hi in ((0, half), (half, n)):
        member, at = np.nonzero(counts[:, 1, lo:hi])
        order = np.lexsort((member, at))  # in patient order
        sparse_block_sums_into(from_records, group[lo:hi], mask[lo:hi], at[order], member[order],
                               counts[member[order], 1, lo + at[order]])
    assert from_records.tobytes() == from_counts.tobytes()
