"""Diagnostics on a sharded store (docs/scale-out.md): the single store's, from per-shard pieces.

Every diagnostic reads per-patient arrays (a cohort's mask, monthly cost and admissions, the
patients' dates, sex and practice) and two of them depend on the patients' order: the crisis
curve's nearest-neighbour matching breaks ties by the rank of the pseudonymised id and takes
the first in store order. So each shard's pieces are put in one store's order (practice, then
``patient_id``): ``Patients`` is the patients and practices tables of a single store of the
same people, and ``cohorts`` / ``monthly`` give the arrays in that order. What follows is the
single store's code on those arrays. A rule that ranks within the population (``top``,
``percentile``) takes the exact two-pass pools at each date it is read at.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from casefind.diagnose import cohort, crisis
from casefind.engines.base import get_engine
from casefind.engines.pooled import over_shards, ranks_in
from casefind.lists.select import selection_expressions
from casefind.rules.compile import CompiledRule
from casefind.store import Store
from casefind.store.reader import StoredTable
from casefind.store.sharded import ShardedStore, store_order
from casefind.store.writer import StoreError

PATIENT_COLUMNS = ("patient_id", "practice", "birth_date", "sex", "registration_start", "registration_end",
                   "death_date")


class Patients:
    """A sharded store's patients in one store's order, read as one store's would be: ``table``
    gives ``patients`` (the columns the diagnostics read) and ``practices``; ``order`` takes
    the shards' concatenated rows to that order."""

    def __init__(self, store: ShardedStore, say: Callable[[str], None] = lambda s: None):
        pieces = store.map(_shard_patients, "reading the patients", say)
        for i, (_, encodings, _) in enumerate(pieces):
            if encodings != pieces[0][1]:
                raise StoreError(f"sharded store {store.root}: shard {i:03d} encodes the patients' sex differently "
                                 "from shard 000", "re-run `casefind ingest SOURCE --store STORE --shards N`")
        table = pa.concat_tables([p[0] for p in pieces])
        self.order = store_order(table.column("practice").to_numpy(), table.column("patient_id"))
        self._patients = StoredTable("patients", table.take(pa.array(self.order)), None, pieces[0][1])
        self._practices = StoredTable("practices", pieces[0][2], None, {})
        self.n_patients = table.num_rows
        self.snapshot_id = store.snapshot_id
        self.coverage = store.coverage

    def table(self, name: str) -> StoredTable:
        if name == "patients":
            return self._patients
        if name == "practices":
            return self._practices
        raise KeyError(f"a sharded store's merged view has no table {name!r} (its events stay in their shards)")

    def in_order(self, rows: np.ndarray, axis: int = 0) -> np.ndarray:
        """Shards' per-patient arrays, concatenated along ``axis`` in shard order, in store order."""
        return np.take(rows, self.order, axis=axis)


def patients(store: Store | ShardedStore, say: Callable[[str], None] = lambda s: None) -> Store | Patients:
    """What the per-patient diagnostics read: one store itself, or a sharded one's ``Patients``."""
    return store if isinstance(store, Store) else Patients(store, say)


def cohorts(store: Store | ShardedStore, people: Store | Patients, rule: CompiledRule, dates: list[dt.date],
            engine: str, say: Callable[[str], None] = lambda s: None) -> cohort.Cohorts:
    """``cohort.evaluate`` on either kind of store; a rank takes each date's pools."""
    if isinstance(store, Store):
        return cohort.evaluate(store, rule, dates, engine)
    dates = sorted(set(dates))
    exprs = selection_expressions(rule)
    if not ranks_in(exprs):
        pieces = store.map(functools.partial(_shard_cohorts, rule, exprs, dates, engine), f"evaluating {rule.name}",
                           say)
        return cohort.Cohorts(rule, tuple(dates), people.in_order(np.concatenate([p.masks for p in pieces], 1), 1))
    masks = []
    for d in dates:
        pooled = over_shards(store, get_engine(engine), exprs, d, rule.population, say)
        pieces = store.map(functools.partial(_shard_cohorts, rule, pooled, [d], engine),
                           f"evaluating {rule.name} at {d}", say)
        masks.append(people.in_order(np.concatenate([p.masks[0] for p in pieces])))
    return cohort.Cohorts(rule, tuple(dates), np.stack(masks))


def monthly(store: Store | ShardedStore, people: Store | Patients, first: int, last: int,
            say: Callable[[str], None] = lambda s: None) -> crisis.Monthly:
    """``crisis.monthly`` on either kind of store."""
    if isinstance(store, Store):
        return crisis.monthly(store, first, last)
    pieces = store.map(functools.partial(_shard_monthly, first, last), "monthly cost and admissions", say)
    return crisis.Monthly(first, people.in_order(np.concatenate([p.cost for p in pieces])),
                          people.in_order(np.concatenate([p.admissions for p in pieces])))


def _shard_patients(shard: Store, i: int):
    p = shard.table("patients")
    columns = {c: p.arrow.column(c).combine_chunks() for c in PATIENT_COLUMNS}
    columns["patient_id"] = columns["patient_id"].cast(pa.string())
    columns["practice"] = columns["practice"].cast(pa.int64())
    practices = shard.table("practices").arrow
    return pa.table(columns), {"sex": p.encodings.get("sex")}, pa.table(practices.columns, practices.column_names)


def _shard_cohorts(rule: CompiledRule, exprs, dates: list[dt.date], engine: str, shard: Store, i: int):
    return cohort.evaluate(shard, rule, dates, engine, exprs)


def _shard_monthly(first: int, last: int, shard: Store, i: int) -> crisis.Monthly:
    return crisis.monthly(shard, first, last)
