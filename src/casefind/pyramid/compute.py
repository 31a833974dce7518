"""The pyramid's figures per practice, locality and system (docs/pyramid.md, "Method").

``band_rows`` is the arithmetic, pure: a unit's people, admissions and cost per band in, its
rows out, so the sources' table can be checked without a store. ``unit_table`` sums people
per unit and band (bands are ranked once, over the whole population: a practice's pyramid
shows where its people stand in the system's ranking). ``run`` evaluates a rule's score and
the outcomes over a store with an engine.

The outcome year (``--outcome``): ``next`` (the default) takes the score and the population
at as_of - 12 months and counts what follows, in (as_of - 12 months, as_of], as the sources'
pyramid does (a prediction judged on the year it predicts); ``concurrent`` takes the score at
as_of and counts the 12 months to as_of, the same year the score was built from.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from casefind.contract.dates import shift_date
from casefind.errors import UsageError
from casefind.pyramid.bands import OUTSIDE, TIE_RULE, Band, assign, edge_ties
from casefind.pyramid.options import OUTCOMES
from casefind.pyramid.source import Scored
from casefind.rules import ir
from casefind.rules.errors import Span
from casefind.rules.load import Located
from casefind.store import Store
from casefind.store.coverage import Coverage

LEVELS = ("practice", "locality", "system")
ALL = "all"  # the band label of a unit's total row
ADMISSIONS = 'count(activity, setting == "emergency_admission", within=months(12))'
COST = "sum(activity.cost, within=months(12))"
SCHEMA = pa.schema([
    ("level", pa.string()), ("unit_code", pa.string()), ("unit_name", pa.string()),
    ("parent_code", pa.string()), ("band", pa.string()), ("band_from", pa.float64()),
    ("band_to", pa.float64()), ("people", pa.int64()), ("people_share", pa.float64()),
    ("admissions", pa.int64()), ("admissions_per_1000", pa.float64()), ("relative_rate", pa.float64()),
    ("admissions_share", pa.float64()), ("cost", pa.float64()), ("cost_share", pa.float64()),
    ("cost_per_head", pa.float64()), ("cut", pa.float64()), ("to_avoid", pa.float64()),
    ("avoid_share", pa.float64()), ("achievable", pa.bool_()),
])


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def band_rows(bands: tuple[Band, ...], people: np.ndarray, admissions: np.ndarray, cost: np.ndarray,
              cut: float) -> list[dict]:
    """One unit's rows, a band each and then ``all``: people, admissions per 1,000, the rate
    relative to the unit's, shares of its admissions and cost, and the opportunity: to cut
    all the unit's admissions by ``cut`` through this band alone, ``avoid_share`` of the band's
    admissions would have to be avoided (cut / the band's share; over 1 is not achievable)."""
    n, a, c = int(people.sum()), int(admissions.sum()), float(cost.sum())
    rate = _ratio(1000.0 * a, n)
    rows = []
    for label, low, high, bn, ba, bc in zip([b.label for b in bands] + [ALL], [b.low for b in bands] + [0.0],
                                            [b.high for b in bands] + [1.0], [*people, n], [*admissions, a],
                                            [*cost, c]):
        band_rate = _ratio(1000.0 * int(ba), int(bn))
        share = _ratio(int(ba), a)
        avoid = _ratio(cut, share) if share else None
        rows.append({"band": label, "band_from": low, "band_to": high, "people": int(bn),
                     "people_share": _ratio(int(bn), n), "admissions": int(ba), "admissions_per_1000": band_rate,
                     "relative_rate": _ratio(band_rate, rate) if band_rate is not None and rate else None,
                     "admissions_share": share, "cost": round(float(bc), 2), "cost_share": _ratio(float(bc), c),
                     "cost_per_head": _ratio(float(bc), int(bn)), "cut": cut, "to_avoid": cut * a,
                     "avoid_share": avoid, "achievable": None if avoid is None else bool(avoid <= 1.0)})
    return rows


@dataclass(frozen=True)
class Units:
    """The units of each level, and each ranked person's unit at that level."""

    of_person: dict[str, np.ndarray]
    codes: dict[str, list[str]]
    names: dict[str, list[str]]
    parents: dict[str, list[str | None]]

    @classmethod
    def of(cls, h, practice: np.ndarray) -> Units:
        """The units of people at ``practice`` (indices into the hierarchy ``h``'s practices)."""
        locality = h.locality_of_practice[practice]
        return cls({"practice": practice, "locality": locality, "system": h.system_of_locality[locality]},
                   h.codes, h.names, {lv: h.parents(lv) for lv in LEVELS})


def unit_table(units: Units, band: np.ndarray, admissions: np.ndarray, cost: np.ndarray,
               bands: tuple[Band, ...], cut: float) -> pa.Table:
    """Every unit's rows (units with no ranked person left out), practices, then localities,
    then systems. ``band`` holds each ranked person's band index; ``admissions`` and ``cost``
    their outcomes."""
    nb, rows = len(bands), []
    for level in LEVELS:
        unit, n_units = units.of_person[level], len(units.codes[level])
        people, adm, money = (_cells(unit * nb + band, w, n_units, nb) for w in (None, admissions, cost))
        for u in np.flatnonzero(people.sum(axis=1)):
            head = {"level": level, "unit_code": units.codes[level][u], "unit_name": units.names[level][u],
                    "parent_code": units.parents[level][u]}
            rows += [{**head, **r} for r in band_rows(bands, people[u], np.rint(adm[u]), money[u], cut)]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _cells(cell: np.ndarray, weights: np.ndarray | None, n_units: int, nb: int) -> np.ndarray:
    """Sums (counts without weights) per unit and band: an (n_units, nb) array."""
    return np.bincount(cell, weights=weights, minlength=n_units * nb).reshape(n_units, nb)


@dataclass(frozen=True)
class Dates:
    """The score's date and the outcome year (from, to]."""

    score: dt.date
    outcome_from: dt.date
    outcome_to: dt.date

    @classmethod
    def of(cls, as_of: dt.date, outcome: str) -> Dates:
        if outcome not in OUTCOMES:
            raise UsageError(f"no outcome {outcome!r}", f"choose {' or '.join(OUTCOMES)}", option="--outcome")
        year_before = shift_date(as_of, -12)
        return cls(year_before if outcome == "next" else as_of, year_before, as_of)


def expressions(source: Scored, outcome: str) -> dict[str, ir.Node]:
    """What the engine evaluates at as_of: the population and score (moved to a year before
    with ``next``) and the outcome year's emergency admissions and cost."""
    c, span = source.compiler(), Span(str(source.path), 1, 1)
    population, value = source.population, source.score
    if outcome == "next":
        year_before = c.expression(Located("as_of - months(12)", span))
        population, value = ir.At(population, year_before), ir.At(value, year_before)
    return {"in_population": population, "score": value, "admissions": c.expression(Located(ADMISSIONS, span)),
            "cost": c.expression(Located(COST, span))}


@dataclass(frozen=True)
class PyramidResult:
    table: pa.Table
    meta: dict


def _numbers(values: pa.Table, name: str, fill: float) -> np.ndarray:
    col = values.column(name).cast(pa.float64()).fill_null(fill)
    return np.asarray(col.to_numpy(zero_copy_only=False), np.float64)


@dataclass(frozen=True)
class Options:
    """How to rank and what to count."""

    bands: tuple[Band, ...]
    outcome: str = "next"
    cut: float = 0.10
    engine: str = "native"
    allow_partial: bool = False


def check_coverage(cov, source: Scored, exprs: dict[str, ir.Node], allow_partial: bool) -> str | None:
    """Refuse an outcome year (and the score's look-back) the store's data does not cover."""
    from casefind.plan import make_plan
    from casefind.plan.lookback import read_span
    from casefind.store.coverage import check_span

    first, last = read_span(make_plan(exprs, source.as_of, source.population))
    return check_span(cov, first, last, what=f"as_of {source.as_of}", option="--as-of",
                      allow_partial=allow_partial)


@dataclass(frozen=True)
class Members:
    """The population's members in one store's order (practice, then patient_id): their
    practice index, pseudonymised id, score and outcomes; and the practices' hierarchy."""

    practice: np.ndarray
    keys: np.ndarray
    scores: np.ndarray
    admissions: np.ndarray
    cost: np.ndarray
    hierarchy: object


def run(store, source: Scored, opts: Options) -> PyramidResult:
    """Evaluate the source's population and score and the outcomes over ``store`` (one, or
    sharded: docs/scale-out.md), rank into the bands and count per unit. A rule's criteria
    play no part: its population and score do."""
    from casefind.store.sharded import ShardedStore

    dates = Dates.of(source.as_of, opts.outcome)
    exprs = expressions(source, opts.outcome)
    sharded = isinstance(store, ShardedStore)
    cov = store.coverage if sharded else Coverage.of(store.manifest)
    warnings = [*source.notes, *(w for w in [check_coverage(cov, source, exprs, opts.allow_partial)] if w)]
    m = (_sharded_members if sharded else _members)(store, exprs, source, opts.engine)
    band = assign(m.scores, m.keys, opts.bands)
    ranked = band != OUTSIDE
    table = unit_table(Units.of(m.hierarchy, m.practice[ranked]), band[ranked], m.admissions[ranked],
                       m.cost[ranked], opts.bands, opts.cut)
    counts = {"population": len(m.keys), "ranked": int(ranked.sum()), "unscored": int(len(m.keys) - ranked.sum())}
    return PyramidResult(table, _meta(store, source, opts, dates, counts, edge_ties(m.scores, m.keys, opts.bands),
                                      warnings))


def _member_table(store: Store, exprs: dict[str, ir.Node], source: Scored, engine: str) -> tuple[pa.Table, np.ndarray]:
    """One store's members: patient_id, practice (index), score, admissions and cost; and
    their practices again (for ``in_store_order``)."""
    from casefind.engines.base import get_engine

    values = get_engine(engine).evaluate(store, exprs, source.as_of, source.population)
    member = _numbers(values, "in_population", 0.0).astype(bool)
    patients = values.column("patient").to_numpy().astype(np.int64)[member]
    practice = store.table("patients")["practice"][patients].astype(np.int64)
    table = pa.table({"patient_id": store.table("patients").arrow.column("patient_id").take(pa.array(patients)),
                      "practice": pa.array(practice),
                      **{k: pa.array(_numbers(values, k, fill)[member])
                         for k, fill in (("score", np.nan), ("admissions", 0.0), ("cost", 0.0))}})
    return table, practice


def _members(store: Store, exprs, source: Scored, engine: str) -> Members:
    from casefind.kpis.compute import Hierarchy

    table, _ = _member_table(store, exprs, source, engine)
    return _as_members(table, Hierarchy.of(store))


def _sharded_members(store, exprs, source: Scored, engine: str) -> Members:
    """Every shard's members, put in one store's order, so that the sums per unit and band
    add the same numbers in the same order as one store. A score that ranks within the
    population takes the two-pass pools (engines/pooled.py)."""
    import functools

    from casefind.engines.base import get_engine
    from casefind.engines.pooled import over_shards
    from casefind.kpis.compute import Hierarchy
    from casefind.store.sharded import in_store_order

    exprs = over_shards(store, get_engine(engine), exprs, source.as_of, source.population)
    parts = store.map(functools.partial(_shard_members, exprs, source, engine), f"evaluating ({engine} engine)")
    return _as_members(in_store_order(parts), Hierarchy.of(store.open_shard(0)))


def _shard_members(exprs, source: Scored, engine: str, shard: Store, i: int):
    return _member_table(shard, exprs, source, engine)


def _as_members(table: pa.Table, hierarchy) -> Members:
    keys = np.asarray(table.column("patient_id").to_numpy(zero_copy_only=False), dtype=str)
    return Members(table.column("practice").to_numpy(), keys,
                   *(table.column(k).to_numpy() for k in ("score", "admissions", "cost")), hierarchy)


def _meta(store: Store, source: Scored, opts: Options, dates: Dates, counts: dict, ties: list,
          warnings: list[str]) -> dict:
    labels = [b.label for b in opts.bands]
    run_id = hashlib.sha256(json.dumps([source.file_sha256, store.snapshot_id, source.as_of.isoformat(),
                                        source.score_name, opts.outcome, labels, opts.cut]).encode()).hexdigest()[:16]
    return {"rule": source.name, "title": source.title, "file": str(source.path.resolve()),
            "file_sha256": source.file_sha256, "score": source.score_name, "outcome": opts.outcome,
            "as_of": source.as_of.isoformat(), "score_date": dates.score.isoformat(),
            "outcome_from": dates.outcome_from.isoformat(), "outcome_to": dates.outcome_to.isoformat(),
            "engine": opts.engine, "store_snapshot": store.snapshot_id, "run_id": run_id, "bands": labels,
            "cut": opts.cut, **counts, "tie_rule": TIE_RULE,
            "edges": [{**t.__dict__, "straddles": t.straddles} for t in ties],
            "method": method_lines(source, opts, dates), "warnings": warnings}


def method_lines(source: Scored, opts: Options, dates: Dates) -> list[str]:
    """The method in words, for pyramid.json, the HTML and the console."""
    same = "that follow" if opts.outcome == "next" else "to the same date (concurrent: the year the score reads)"
    return [f"population: {source.name}'s population; score: {source.score_name}",
            f"outcome year: the score and the population at {dates.score.isoformat()}; emergency admissions and "
            f"cost in the 12 months {same}, {dates.outcome_from.isoformat()} (exclusive) to "
            f"{dates.outcome_to.isoformat()}",
            f"emergency admissions: {ADMISSIONS}; cost: {COST}",
            f"ranking and ties: {TIE_RULE}; bands are ranked once over the whole population, and a unit's rows "
            "count its people in them",
            "relative rate: the band's admissions per 1,000 / its unit's; shares are of the unit's people, "
            "admissions and cost",
            f"opportunity: to cut all the unit's emergency admissions by {opts.cut:.0%} through one band alone, "
            "that share of the band's admissions would have to be avoided (cut / the band's share of admissions; "
            "over 100% is not achievable)"]
