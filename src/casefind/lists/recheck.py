"""The list's checks before anything is written: each patient once, nobody the policy leaves
out, and the listed patients' values re-computed by the reference engine (a safety check on
the engine that made the list: all of them up to RECHECK_ALL_UP_TO, a fixed random sample of
that many beyond). The reference engine reads only the re-checked patients' rows, unless a
percentile or top needs everyone's values."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from casefind.engines.base import REFERENCE, get_engine
from casefind.errors import CasefindError
from casefind.rules import ir
from casefind.rules.compile import CompiledRule

RECHECK_ALL_UP_TO = 10_000


class ValidationError(CasefindError):
    """The list failed its checks; nothing was written."""


def validate(store, rule: CompiledRule, exprs: dict[str, ir.Node], values: pa.Table, sel, policy_out: dict,
             evaluator) -> int:
    """The list's own checks, then the re-check against the reference engine; returns how
    many patients were re-checked (none when the reference engine made the list: checking
    it against itself would prove nothing)."""
    if len(np.unique(sel.patients)) != len(sel.patients):
        raise ValidationError("a patient appears twice on the list; nothing was written")
    for name, mask in policy_out.items():
        if mask[sel.patients].any():
            raise ValidationError(f"a listed patient is {name}; nothing was written")
    if evaluator.reference or not len(sel.patients):
        return 0
    return recheck(store, rule, exprs, values, sel.patients, evaluator.name)


def recheck(store, rule: CompiledRule, exprs: dict[str, ir.Node], values: pa.Table, listed: np.ndarray,
            engine: str) -> int:
    """Re-evaluate ``listed`` (store indices) with the reference engine; raise on any
    difference from ``values`` (what ``engine`` gave, one row per evaluated patient in store
    order). Returns how many patients were compared."""
    check = np.sort(listed)
    if len(check) > RECHECK_ALL_UP_TO:
        check = np.sort(np.random.default_rng(0).choice(listed, RECHECK_ALL_UP_TO, replace=False))
    evaluated = values.column("patient").to_numpy()
    mine = values.take(pa.array(np.searchsorted(evaluated, check)))
    own, ranked, pooled = _by_reach(exprs)
    for part, patients in ((own, check), (ranked, check), (pooled, None)):
        if part:
            ref = get_engine(REFERENCE).evaluate(store, part, rule.as_of, rule.population, patients=patients)
            if patients is None:
                ref = ref.take(pa.array(np.searchsorted(ref.column("patient").to_numpy(), check)))
            _compare(mine, ref, ["patient", *part], check, engine)
    return len(check)


def _by_reach(exprs: dict[str, ir.Node]) -> tuple[dict[str, ir.Node], ...]:
    """The expressions the re-checked patients' own rows decide; those with a percentile or
    top, which rank within the whole population (apart, so that only these make the
    reference engine read everyone's rows); and those ranked within a sharded store's pool
    (``RankInPool``), evaluated for the whole population as pass 1 evaluated the pool:
    DuckDB may add a patient's costs in another order when asked for fewer patients, and
    one bit's difference from the patient's value in the pool moves them across a tie."""
    pooled = {k: v for k, v in exprs.items() if ir.contains(v, ir.RankInPool)}
    ranked = {k: v for k, v in exprs.items() if k not in pooled and ir.contains(v, ir.PopulationRank)}
    return {k: v for k, v in exprs.items() if k not in pooled and k not in ranked}, ranked, pooled


def _compare(mine: pa.Table, ref: pa.Table, names: list[str], check: np.ndarray, engine: str) -> None:
    for name in names:
        bad = _differs(mine.column(name), ref.column(name))
        if bad is not None:
            v, w = mine.column(name)[bad].as_py(), ref.column(name)[bad].as_py()
            raise ValidationError(f"engines disagree for patient {int(check[bad])} on {name}: "
                                  f"{engine} {v!r}, reference {w!r}; nothing was written")


def _differs(a: pa.ChunkedArray, b: pa.ChunkedArray) -> int | None:
    """The first position where two columns differ (floats to 1e-9 relative, missing only
    equal to missing), or None."""
    a_null = np.asarray(a.is_null().to_numpy(zero_copy_only=False), bool)
    b_null = np.asarray(b.is_null().to_numpy(zero_copy_only=False), bool)
    if pa.types.is_floating(a.type) or pa.types.is_floating(b.type):
        x = a.cast(pa.float64()).fill_null(0.0).to_numpy()
        y = b.cast(pa.float64()).fill_null(0.0).to_numpy()
        with np.errstate(invalid="ignore"):
            same = (np.abs(x - y) <= 1e-9 * np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))) | (x == y)
        same |= np.isnan(x) & np.isnan(y)
    else:
        same = np.fromiter((v == w for v, w in zip(a.to_pylist(), b.to_pylist())), bool, len(a))
    bad = np.flatnonzero(~same | (a_null != b_null))
    return int(bad[0]) if bad.size else None
