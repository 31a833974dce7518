"""Ranks within a pool gathered beforehand (engines/pooled.py, ir.RankInPool): the sharded
store's exact two-pass merge of ``top`` and ``percentile`` (docs/scale-out.md)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from casefind.engines import pooled
from casefind.engines.base import get_engine
from casefind.errors import UsageError
from casefind.rules import ir
from casefind.store import Store
from casefind_testdata import synthetic_store

AS_OF = dt.date(2026, 10, 31)
ENGINES = ["native", "duckdb"]
NAN = float("nan")

# pool [1, 2, 2, 3, nan]: nan is the largest value and equal to itself (numpy's sort order,
# as ranking.standing counts); percentile = 100 x (members below) / 5; top 40%: fewer than
# 0.4 x 5 = 2 members above.
POOL = [3.0, NAN, 2.0, 1.0, 2.0]
#   value | percentile | top 40%
HAND = [
    (0.0,     0.0,      False),
    (1.0,     0.0,      False),
    (2.0,    20.0,      False),
    (2.5,    60.0,      False),
    (3.0,    60.0,      True),
    (9.0,    80.0,      True),
    (NAN,    80.0,      True),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store.open(synthetic_store(tmp_path_factory.mktemp("pooled"), 300, 4))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("value,percentile,top", HAND)
def test_a_rank_within_a_pool_by_hand(store, engine, value, percentile, top):
    pool = ir.Pool.of(POOL)
    x = ir.Const(value, ir.T.FLOAT)
    exprs = {"p": ir.RankInPool(x, "percentile", None, pool), "t": ir.RankInPool(x, "top", 0.4, pool)}
    out = get_engine(engine).evaluate(store, exprs, AS_OF)
    assert set(out.column("p").to_pylist()) == {percentile}
    assert set(out.column("t").to_pylist()) == {top}


@pytest.mark.parametrize("engine", ENGINES)
def test_an_empty_pool_ranks_nobody(store, engine):
    pool = ir.Pool.of([])
    out = get_engine(engine).evaluate(store, {"p": ir.RankInPool(ir.Attr("age"), "percentile", None, pool),
                                              "t": ir.RankInPool(ir.Attr("age"), "top", 0.5, pool)}, AS_OF)
    assert out.column("p").null_count == out.num_rows
    assert not any(out.column("t").to_pylist())


@pytest.mark.parametrize("engine", ENGINES)
def test_pools_from_pieces_rank_as_the_population_does(store, engine):
    """Pass 1 in pieces (as shards give them), pooled: the same values as the ranks."""
    population = ir.BINARY_CLASSES[">="](ir.Attr("age"), ir.Const(40, ir.T.INT))
    age = ir.Attr("age")
    exprs = {"pct": ir.rank("percentile", age), "top": ir.rank("top", age, 0.1),
             "both": ir.BINARY_CLASSES["and"](ir.rank("top", age, 0.25),
                                              ir.BINARY_CLASSES["<"](age, ir.Const(80, ir.T.INT)))}
    eng = get_engine(engine)
    ranks = pooled.ranks_in(exprs)
    assert len(ranks) == 3
    whole = pooled.members_values(eng, store, ranks, AS_OF, population)
    rng = np.random.default_rng(0)
    pieces = []
    for values in whole:  # three uneven pieces, in another order
        cut = np.sort(rng.integers(0, len(values), 2))
        pieces.append(np.split(rng.permutation(values), cut))
    shards = [[p[k] for p in pieces] for k in range(3)]
    swapped = pooled.with_pools(exprs, pooled.pools(ranks, shards))
    assert not any(ir.contains(n, ir.PopulationRank) for n in swapped.values())
    want = eng.evaluate(store, exprs, AS_OF, population)
    got = eng.evaluate(store, swapped, AS_OF, population)
    assert got.equals(want)
    assert 0 < sum(got.column("top").to_pylist()) < store.n_patients


def test_a_pool_is_compared_by_its_sorted_values():
    a, b = ir.Pool.of([3, 1, NAN, 2]), ir.Pool.of([NAN, 2, 1, 3])
    assert a == b and hash(a) == hash(b) and a != ir.Pool.of([1, 2, 3])
    assert a.values[:3].tolist() == [1.0, 2.0, 3.0] and np.isnan(a.values[3])
    with pytest.raises(ir.IRTypeError):
        ir.RankInPool(ir.Attr("age"), "median", None, a)


def test_ranks_the_two_passes_cannot_give_are_refused():
    age = ir.Attr("age")
    nested = {"x": ir.rank("top", ir.rank("percentile", age), 0.1)}
    with pytest.raises(UsageError, match="itself ranks"):
        pooled.ranks_in(nested)
    assert pooled.with_pools({"a": age}, {}) == {"a": age}
    shifted = {"then": ir.At(ir.rank("percentile", age), ir.Shift(ir.AsOf(), months=-12))}
    with pytest.raises(UsageError, match="inside at"):  # pass 1 pools at as_of, not a year before
        pooled.ranks_in(shifted)


def test_a_pooled_rank_reads_as_the_rank_it_stands_for():
    from casefind.describe.words import Words

    pool = ir.Pool.of([1, 2, 3])
    assert "top 10% of the rule's whole population" in Words().of(ir.RankInPool(ir.Attr("age"), "top", 0.1, pool))
    assert "percentile (0-100) of age" in Words().of(ir.RankInPool(ir.Attr("age"), "percentile", None, pool))
