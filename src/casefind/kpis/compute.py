"""Compute a KPI file for many periods in one evaluation, then roll up and add intervals.

Every measure's population and value, for every period, is one expression evaluated at the
period's end (``x at <end>``); all of them go to the engine together, so the native engine
fuses every period into the same scan of each table. What follows is per-patient numpy:
sums per practice (and breakdown), then localities as sums of their practices and the
system as the sum of its localities, so counts roll up exactly. A measure with ``levels:``
also has a value per provider (kpis/levels.py), summed to its system, for provider and
service rows that add up to the system's. Intervals come after the sums; an annualised
(``per_year``) measure's multiplier is x 365 / the period's days; disclosure control comes
last (kpis/disclosure.py), never before roll-up.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from casefind.contract import TABLES
from casefind.engines.base import SparseBlock, block_column, block_members, get_engine
from casefind.engines.native import in_batches
from casefind.engines.native_codegen import equality_splits
from casefind.engines.reducers import SPARSE_MIN
from casefind.kpis import levels as split_levels
from casefind.kpis import stats
from casefind.kpis.define import KpiSet, Measure, load_kpis
from casefind.kpis.disclosure import EXACT_COLUMNS
from casefind.kpis.measure_meta import NOT_ASSESSED
from casefind.kpis.periods import Period
from casefind.kpis.values import ArrayValues, TableValues, values_of
from casefind.plan import bind
from casefind.rules import ir
from casefind.store import Store
from casefind_native.aggregate import (
    add_compensated,
    band_codes,
    block_sums_into,
    group_sums,
    group_sums_into,
    sparse_block_sums_into,
)

if TYPE_CHECKING:
    from casefind.engines.base import Blocks

LEVELS = ("practice", "locality", "system")
IMD_LABELS = ("1 (most deprived)", "2", "3", "4", "5 (least deprived)", "unknown")
AGE_BANDS = ((0, 17, "0-17"), (18, 64, "18-64"), (65, 74, "65-74"), (75, 84, "75-84"), (85, 200, "85+"))
_AGE_LIMITS = tuple(np.array([b[i] for b in AGE_BANDS], np.float64) for i in (0, 1))  # lows, highs

RESULT_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("kpi_set", pa.string()), ("kpi", pa.string()), ("title", pa.string()),
    ("domain", pa.string()), ("kind", pa.string()), ("unit_label", pa.string()), ("multiplier", pa.float64()),
    ("direction", pa.string()), ("target", pa.float64()), ("period", pa.string()),
    ("period_start", pa.date32()), ("period_end", pa.date32()), ("level", pa.string()),
    ("unit_code", pa.string()), ("unit_name", pa.string()), ("parent_code", pa.string()),
    ("breakdown", pa.string()), ("breakdown_value", pa.string()), ("numerator", pa.float64()),
    ("denominator", pa.float64()), ("value", pa.float64()), ("lower", pa.float64()), ("upper", pa.float64()),
    ("standardised", pa.bool_()), ("suppressed", pa.bool_()),
    ("basis", pa.string()), ("framework", pa.string()), ("integrity", pa.string()), ("cohorts", pa.string()),
    # the unrounded figures, filled in by disclosure control (kpis/disclosure.py), never published
    *((name, pa.float64()) for name in EXACT_COLUMNS),
])


@dataclass(frozen=True)
class Hierarchy:
    """practice → locality → system, as indexes, with codes and names for the output."""

    practice_of_patient: np.ndarray
    locality_of_practice: np.ndarray
    system_of_locality: np.ndarray
    codes: dict[str, list[str]]
    names: dict[str, list[str]]

    @classmethod
    def of(cls, store: Store) -> Hierarchy:
        pr = store.table("practices").arrow
        col = {c: pr.column(c).to_pylist() for c in pr.column_names}
        loc_codes, loc_of_pr = np.unique(np.array(col["locality_code"], dtype=object), return_inverse=True)
        sys_codes, sys_of_pr = np.unique(np.array(col["system_code"], dtype=object), return_inverse=True)
        sys_of_loc = np.zeros(len(loc_codes), np.int64)
        sys_of_loc[loc_of_pr] = sys_of_pr  # every practice of a locality is in the same system
        loc_name, sys_name = [""] * len(loc_codes), [""] * len(sys_codes)
        for li, si, ln, sn in zip(loc_of_pr, sys_of_pr, col["locality_name"], col["system_name"]):
            loc_name[li], sys_name[si] = ln, sn
        return cls(store.table("patients")["practice"].astype(np.int64), loc_of_pr.astype(np.int64), sys_of_loc,
                   {"practice": col["practice_code"], "locality": loc_codes.tolist(), "system": sys_codes.tolist()},
                   {"practice": col["practice_name"], "locality": loc_name, "system": sys_name})

    def parents(self, level: str) -> list[str | None]:
        if level == "practice":
            return [self.codes["locality"][i] for i in self.locality_of_practice]
        if level == "locality":
            return [self.codes["system"][i] for i in self.system_of_locality]
        return [None] * len(self.codes["system"])


def expressions(ks: KpiSet) -> dict[str, ir.Node]:
    """What each period needs: every measure's population and value (and a ratio's
    denominator), and age and segment for breakdowns and standardisation (a split measure's
    values per provider come as a block: kpis/levels.blocks). They may hold the KPI's
    ``period``, bound per period by the engine."""
    exprs: dict[str, ir.Node] = {}
    for m in ks.measures.values():
        exprs[f"{m.name}|pop"] = m.population
        exprs[f"{m.name}|val"] = m.value
        if m.denominator is not None:
            exprs[f"{m.name}|den"] = m.denominator
    exprs["age"] = ir.Attr("age")
    if ks.segment is not None:
        exprs["segment"] = ks.segment
    return exprs


def providers_of(store: Store, ksets: dict[Period, KpiSet]) -> tuple[str, ...]:
    """The store's provider codes, when a measure is split by provider; else none."""
    if not any(m.split.levels for ks in ksets.values() for m in ks.measures.values()):
        return ()
    return split_levels.provider_codes(store)


STATIC = {"sex": ir.Attr("sex"), "imd_decile": ir.Attr("imd_decile")}  # the same in every period


def compile_for(path, periods: list[Period], params: dict[str, str] | None = None) -> dict[Period, KpiSet]:
    """The KPI file compiled once for every period (``period`` is a placeholder, bound per period)."""
    ks = load_kpis(path, params=params)
    return {p: ks for p in periods}


def _sets(ksets: dict[Period, KpiSet]) -> list[list[Period]]:
    """The periods in date order, grouped by the compiled KPI set they share."""
    by_set: dict[int, list[Period]] = {}
    for p in sorted(ksets, key=lambda q: q.end):
        by_set.setdefault(id(ksets[p]), []).append(p)
    return list(by_set.values())


def evaluate(store: Store, ksets: dict[Period, KpiSet], engine: str = "native",
             providers: tuple[str, ...] | None = None) -> pa.Table:
    """Every period's per-patient values, as columns ``<expression>|<period label>`` (and
    ``sex``, ``imd_decile`` once). An engine that evaluates periods together (the native
    engine's ``evaluate_periods``) runs each table's scan once for all of them, with kernels
    whose size does not depend on how many there are; any other is given each period's
    expressions with ``period`` bound (casefind.plan.bind)."""
    eng = get_engine(engine)
    columns: dict[str, pa.Array] = {}
    providers = providers_of(store, ksets) if providers is None else providers
    for periods in _sets(ksets):
        exprs, blocks = expressions(ksets[periods[0]]), split_levels.blocks(ksets[periods[0]], providers)
        if hasattr(eng, "evaluate_periods"):
            tables = eng.evaluate_periods(store, exprs, [(p.end, p.days) for p in periods], blocks=blocks)
        else:
            every = {**exprs, **block_members(blocks)}
            tables = [_stacked(eng.evaluate(store, {k: bind(v, p.days) for k, v in every.items()}, p.end), blocks)
                      for p in periods]
        _put(columns, [*exprs, *blocks], periods, tables)
    first = min(ksets, key=lambda q: q.end)
    return _table(ksets, columns, eng.evaluate(store, STATIC, first.end), providers)


CHUNK_PATIENTS = 65_536  # the most patients evaluated at a time by evaluate_chunks
CHUNK_BYTES = 512 << 20  # ... and about the most bytes of values a chunk holds (per copy)


def chunk_size(n_columns: int, size: int = CHUNK_PATIENTS) -> int:
    """Patients per chunk: ``size``, fewer when the columns (expressions x periods: a measure
    split by sixty providers is sixty of them) would hold more than CHUNK_BYTES."""
    return min(size, max(1024, CHUNK_BYTES // (8 * max(n_columns, 1))))


def evaluate_chunks(store: Store, ksets: dict[Period, KpiSet], engine: str = "native",
                    size: int = CHUNK_PATIENTS, providers: tuple[str, ...] | None = None) -> Iterator:
    """``evaluate``'s table in pieces of at most ``size`` consecutive patients, for
    ``compute``: tables, or the native engine's arrays as they are (kpis/values.ArrayValues,
    with the table's column names; no Arrow between the engine and the sums). An engine
    that evaluates chunks (the native engine's ``evaluate_periods_chunks``, with one plan and
    one set of kernels for all of them) then
    holds one chunk's values at a time, so memory does not grow with patients x periods x
    columns (chunk_size); any other gives one piece."""
    eng = get_engine(engine)
    if not hasattr(eng, "evaluate_periods_chunks"):
        yield evaluate(store, ksets, engine, providers)
        return
    sets = _sets(ksets)
    providers = providers_of(store, ksets) if providers is None else providers
    exprs = [expressions(ksets[periods[0]]) for periods in sets]
    blocks = [split_levels.blocks(ksets[periods[0]], providers) for periods in sets]
    n_columns = sum((len(e) + sum(_dense_members(m) for m in b.values())) * len(ps)
                    for e, b, ps in zip(exprs, blocks, sets))
    n, size = store.n_patients, chunk_size(n_columns, size)
    chunks = [np.arange(lo, min(lo + size, n), dtype=np.int64) for lo in range(0, n, size)]
    streams = [eng.evaluate_periods_chunks(store, e, [(p.end, p.days) for p in periods], chunks, blocks=b, arrays=True)
               for e, b, periods in zip(exprs, blocks, sets)]
    first = min(ksets, key=lambda q: q.end)
    for rows, parts in zip(chunks, zip(*streams)):
        static = eng.evaluate(store, STATIC, first.end, patients=rows)
        if any(isinstance(t, pa.Table) for tables in parts for t in tables):  # a ranking: tables, cut
            columns: dict[str, pa.Array] = {}
            for e, b, periods, tables in zip(exprs, blocks, sets, parts):
                _put(columns, [*e, *b], periods, tables)
            yield _table(ksets, columns, static, providers)
            continue
        vecs, block_rows = {}, {}
        for periods, values in zip(sets, parts):
            for p, (_, v, b) in zip(periods, values):
                vecs.update({f"{name}|{p.label}": x for name, x in v.items()})
                block_rows.update({f"{name}|{p.label}": x for name, x in b.items()})
        yield ArrayValues(parts[0][0][0], vecs, block_rows, static, _names(ksets, providers))


def _dense_members(members: tuple[ir.Node, ...]) -> int:
    """How many of a block's members take a value per patient in memory: none of those in
    a value group of counts that the native engine keeps sparse (only the counts that are
    not 0; a patient sees few of sixty providers). Counted as the engine groups them
    (native_codegen._value_groups): members whose filters differ only in one ``column ==
    constant`` test share a group, each member in the largest it can join, and a group of
    SPARSE_MIN or more counts is sparse. Six providers split by four settings are groups
    of six (or four): all 24 dense."""
    if not all(isinstance(m, ir.Aggregate) and m.func == "count" for m in members):
        return len(members)
    options = [_group_keys(m) for m in members]
    size = Counter(key for keys in options for key in keys)
    return sum(1 for keys in options if max((size[k] for k in keys), default=0) < SPARSE_MIN)


def _group_keys(m: ir.Aggregate) -> list[tuple]:
    """The value groups a count could join: per ``column == constant`` test of its filter
    that the engine groups by (native_codegen.equality_splits), that column, the rest of the
    filter and the rest of the count."""
    return [(col.column, others, m.table, m.window, m.func)
            for col, _, others in equality_splits(TABLES[m.table], m.where)]


def _put(columns: dict, names: list[str], periods: list[Period], tables: list[pa.Table]) -> None:
    for p, t in zip(periods, tables):
        columns.setdefault("patient", t.column("patient"))
        columns.update({f"{name}|{p.label}": t.column(name) for name in names})


def _table(ksets: dict[Period, KpiSet], columns: dict, static: pa.Table, providers: tuple[str, ...]) -> pa.Table:
    columns.update({name: static.column(name) for name in STATIC})
    return pa.table({k: columns[k] for k in _names(ksets, providers)})


def _names(ksets: dict[Period, KpiSet], providers: tuple[str, ...]) -> list[str]:
    """The columns of evaluate's table, in order."""
    return ["patient"] + [f"{name}|{p.label}" for p, ks in ksets.items()
                          for name in [*expressions(ks), *_block_names(ks, providers)]] + list(STATIC)


def _block_names(ks: KpiSet, providers: tuple[str, ...]) -> list[str]:
    return [split_levels.block_name(m) for m in ks.measures.values() if split_levels.units(m, providers)]


def _stacked(table: pa.Table, blocks: Blocks) -> pa.Table:
    """``table`` with each block's member columns (``name#j``) as one column of fixed-size
    lists, missing values as 0: what the native engine gives for a block."""
    for name, nodes in blocks.items():
        members = [f"{name}#{j}" for j in range(len(nodes))]
        values = np.stack([TableValues(table).numbers(c, 0.0) for c in members], axis=1)
        table = table.drop_columns(members).append_column(name, block_column(values))
    return table


def _labels(values, name: str, period: Period, kind: str) -> tuple[np.ndarray, list[str]]:
    """Breakdown codes per patient (int) and their labels (``values``: kpis/values.py)."""
    if kind == "age_band":
        age = values.numbers(f"age|{period.label}", -1)
        code = band_codes(age, *_AGE_LIMITS, len(AGE_BANDS))
        return code, [b[2] for b in AGE_BANDS] + ["unknown"]
    if kind == "imd_quintile":
        dec = values.numbers("imd_decile", 0)
        code = np.where(dec > 0, (dec.astype(np.int64) + 1) // 2 - 1, 5)
        return code, list(IMD_LABELS)
    return values.text("sex" if kind == "sex" else f"segment|{period.label}")


def _sums(group: np.ndarray, n_groups: int, mask: np.ndarray, v: np.ndarray, valid: np.ndarray) -> dict:
    """Additive pieces per group: people, people with a value, sum, sum of squares."""
    n, k, s, ss = group_sums(group, n_groups, mask, v, valid)
    return {"n": n, "k": k, "s": s, "ss": ss}


def _roll(sums: dict, parent: np.ndarray, n_parent: int, nb: int) -> dict:
    """Sum groups (unit × breakdown) into their parents' groups: exact roll-up."""
    units = len(parent)
    to = (parent[:, None] * nb + np.arange(nb)[None, :]).ravel()
    return {k: np.bincount(to, weights=a[: units * nb], minlength=n_parent * nb) for k, a in sums.items()}


def _medians(group: np.ndarray, n_groups: int, mask: np.ndarray, v: np.ndarray, valid: np.ndarray) -> np.ndarray:
    keep = mask & valid
    g, x = group[keep], v[keep]
    order = np.lexsort((x, g))
    g, x = g[order], x[order]
    starts = np.searchsorted(g, np.arange(n_groups))
    ends = np.searchsorted(g, np.arange(n_groups), side="right")
    out = np.full(n_groups, np.nan)
    has = ends > starts
    lo = (starts + (ends - starts - 1) // 2)[has]
    hi = (starts + (ends - starts) // 2)[has]
    out[has] = (x[lo] + x[hi]) / 2
    return out


def _finish(m: Measure, s: dict, level: float = 0.95) -> tuple[np.ndarray, ...]:
    """numerator, denominator, value, lower, upper from the additive pieces."""
    n, k, tot, ss = s["n"], s["k"], s["s"], s["ss"]
    nan = np.full(len(n), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        if m.kind in ("proportion", "ratio"):  # a ratio's n is its denominator's sum (events)
            lo, hi = stats.wilson(np.minimum(tot, n), n, level)
            return tot, n, tot / n * m.multiplier, lo * m.multiplier, hi * m.multiplier
        if m.kind == "rate":
            value, lo, hi = stats.rate_ci(tot, n, m.multiplier, level)
            return tot, n, value, lo, hi
        if m.kind in ("mean", "per_head"):
            count = k if m.kind == "mean" else n
            mean = tot / count
            var = np.maximum(ss / count - mean ** 2, 0) * count / np.maximum(count - 1, 1)
            half = stats.z_value(level) * np.sqrt(var / count)
            return tot, count, mean * m.multiplier, (mean - half) * m.multiplier, (mean + half) * m.multiplier
        if m.kind == "total":
            return tot, n, tot * m.multiplier, nan, nan
    raise ValueError(m.kind)  # pragma: no cover - medians are finished apart


def compute(store: Store, ksets: dict[Period, KpiSet], values: pa.Table | Iterable[pa.Table], run_id: str,
            level: float = 0.95) -> pa.Table:
    """The long-format results (before disclosure control) for every period, measure, level,
    unit and breakdown. ``values``: ``evaluate``'s table, or ``evaluate_chunks``' pieces
    (consecutive patients in store order), added up piece by piece."""
    roll = _Rollup(store, run_id, level)
    sums = _Sums(ksets, roll.practice, len(roll.h.codes["practice"]), providers_of(store, ksets))
    for piece in [values] if isinstance(values, pa.Table) else values:
        sums.add(piece)
    sums.finish(roll)
    return _assemble(roll.chunks)


class _Labels:
    """A breakdown's labels: fixed ones in their order, or text labels numbered as they
    appear and sorted at the end (so chunks that see different labels agree)."""

    def __init__(self, fixed: list[str] | None = None):
        self.fixed = fixed is not None
        self.names: list[str] = list(fixed or [])
        self.index = {x: i for i, x in enumerate(self.names)}

    def ids(self, labels: list[str]) -> np.ndarray:
        for x in labels:
            if x not in self.index:
                self.index[x] = len(self.names)
                self.names.append(x)
        return np.array([self.index[x] for x in labels], dtype=np.int64)

    def order(self) -> tuple[list[str], np.ndarray]:
        """The labels as the results list them, and each one's id."""
        ids = np.arange(len(self.names)) if self.fixed else np.argsort(np.array(self.names, dtype=object))
        return [self.names[i] for i in ids], np.asarray(ids, dtype=np.int64)


def _add_pieces(mine: np.ndarray, theirs: np.ndarray) -> None:
    """``theirs`` added to ``mine`` in place (both indexed by _Acc's six rows first): the
    counts plainly, the sums and sums of squares as compensated pairs (two-sum)."""
    mine[:2] += theirs[:2]
    for hi, lo in ((2, 4), (3, 5)):
        add_compensated(mine[hi], mine[lo], theirs[hi], theirs[lo])


class _Acc:
    """The additive pieces (rows n, k, s, ss, and the compensations of s and ss) per
    label x practice, grown as labels appear."""

    ROWS = 6

    def __init__(self, n_practices: int):
        self.n_practices = n_practices
        self.parts = np.zeros((self.ROWS, 0))

    def grown(self, n_labels: int) -> np.ndarray:
        size = n_labels * self.n_practices
        if self.parts.shape[1] < size:
            more = np.zeros((self.ROWS, size - self.parts.shape[1]))
            self.parts = np.concatenate([self.parts, more], axis=1)
        return self.parts

    def merge(self, other: _Acc, ids: np.ndarray, n_labels: int) -> None:
        """``other``'s pieces added in, its label ``j`` being my label ``ids[j]``."""
        theirs = other.grown(len(ids)).reshape(self.ROWS, len(ids), self.n_practices)
        mine = self.grown(n_labels).reshape(self.ROWS, n_labels, self.n_practices)
        cells = mine[:, ids, :]
        _add_pieces(cells, theirs)
        mine[:, ids, :] = cells

    def add_call(self, cell, n_labels: int, mask, v, valid) -> tuple:
        """The call that adds these patients in (``in_batches`` runs a chunk's calls).
        ``cell``: each patient's label x n_practices + practice (the same for every measure
        of a period and breakdown: made once, by _Sums.add)."""
        return group_sums_into, self.grown(n_labels), cell, mask, v, valid

    def __getstate__(self) -> dict:
        """Pickled without its rows of zeros (a shard's sums go to the driver: on Spark, all
        the shards' at once; the compensations of whole-number sums are zero)."""
        rows = [i for i in range(self.ROWS) if self.parts[i].any()]
        return {"n_practices": self.n_practices, "width": self.parts.shape[1], "rows": rows,
                "data": self.parts[rows]}

    def __setstate__(self, state: dict) -> None:
        self.n_practices = state["n_practices"]
        self.parts = np.zeros((self.ROWS, state["width"]))
        self.parts[state["rows"]] = state["data"]

    def by_practice(self, ids: np.ndarray, n_labels: int) -> dict:
        """The pieces per practice x label (labels in ``ids`` order), as group_sums gives them."""
        parts = self.grown(n_labels).reshape(self.ROWS, n_labels, self.n_practices)[:, ids, :]
        flat = parts.transpose(0, 2, 1).reshape(self.ROWS, -1)
        return {"n": flat[0], "k": flat[1], "s": flat[2] + flat[4], "ss": flat[3] + flat[5]}


class _Variants:
    """A split measure's additive pieces per provider unit x practice (kpis/levels.py):
    rows as _Acc's, added from the block of every unit's values in one pass. The values are
    counts and sums of activity, so every patient of the population has one (k = n)."""

    def __init__(self, size: int, n_practices: int):
        self.size = size
        self.parts = np.zeros((size, _Acc.ROWS, n_practices))

    def add_call(self, practice, mask, block) -> tuple:
        """The call that adds these patients in, as _Acc.add_call."""
        if isinstance(block, SparseBlock):  # a scan's sparse counts: only those not 0 are read
            return sparse_block_sums_into, self.parts, practice, mask, block.at, block.member, block.count
        return block_sums_into, self.parts, practice, mask, block

    def merge(self, other: _Variants) -> None:
        _add_pieces(self.parts.swapaxes(0, 1), other.parts.swapaxes(0, 1))  # views: added in place

    def __getstate__(self) -> dict:
        """Pickled small (a shard's sums go to the driver): the people per practice once
        (rows n and k are the same for every unit), then only the unit x practice cells
        with a sum, since a practice's patients see few of a region's providers."""
        unit, practice = np.nonzero(self.parts[:, 2:].any(axis=1))
        return {"shape": self.parts.shape, "people": self.parts[0, :2], "unit": unit, "practice": practice,
                "cells": self.parts[unit, 2:, practice]}

    def __setstate__(self, state: dict) -> None:
        self.parts = np.zeros(state["shape"])
        self.parts[:, :2] = state["people"]  # block_sums_into and merge add the same people to every unit
        self.parts[state["unit"], 2:, state["practice"]] = state["cells"]
        self.size = self.parts.shape[0]

    def by_practice(self, j: int) -> dict:
        x = self.parts[j]
        return {"n": x[0], "k": x[1], "s": x[2] + x[4], "ss": x[3] + x[5]}


class _Kept:
    """A median's population members with a value: label, practice and value of each."""

    def __init__(self):
        self.parts: list[tuple] = []

    def add(self, label, practice, mask, v, valid) -> None:
        keep = mask & valid
        self.parts.append((label[keep], practice[keep], v[keep]))

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return tuple(np.concatenate(x) for x in zip(*self.parts))


def _fixed_labels(kind: str) -> list[str] | None:
    if kind == "":
        return ["all"]
    if kind == "age_band":
        return [b[2] for b in AGE_BANDS] + ["unknown"]
    if kind == "imd_quintile":
        return list(IMD_LABELS)
    return None


class _Sums:
    """What each (period, measure, breakdown) needs of the patients, added up as their
    values come: additive sums per practice x label, or a median's values."""

    def __init__(self, ksets: dict[Period, KpiSet], practice: np.ndarray, n_practices: int,
                 providers: tuple[str, ...] = ()):
        self.ksets, self.practice, self.n_practices = ksets, practice, n_practices
        self.n_bands = len(stats.european_standard_population().weights)
        self.labels: dict[tuple, _Labels] = {}
        self.acc: dict[tuple, _Acc | _Kept] = {}
        for p, ks in ksets.items():
            for m in ks.measures.values():
                for b in [""] + list(m.breakdowns):
                    static = b in ("sex", "imd_quintile")  # one label set for every period
                    self.labels.setdefault((None if static else p, b), _Labels(_fixed_labels(b)))
                    self.acc[(p, m.name, b)] = _Kept() if m.kind == "median" else _Acc(n_practices)
                    if m.kind == "ratio":
                        self.acc[(p, m.name, b, "den")] = _Acc(n_practices)
                if m.standardise == "esp2013":
                    self.acc[(p, m.name, "esp2013")] = _Acc(n_practices)
        self.variants = {(p, m.name): _Variants(len(split_levels.units(m, providers)), n_practices)
                         for p, ks in ksets.items() for m in ks.measures.values() if m.split.levels}

    def split(self, p: Period, b: str) -> _Labels:
        return self.labels.get((p, b)) or self.labels[(None, b)]

    def add(self, piece) -> None:
        """One piece of evaluate's table, or of evaluate_chunks' values (the next patients in
        store order)."""
        values = values_of(piece)
        practice = self.practice[values.patients()]
        static: dict[str, np.ndarray] = {}
        calls: list[tuple] = []  # each to an accumulator of its own: run together, on every core
        for p, ks in self.ksets.items():
            label = {"": np.zeros(len(practice), np.int64)}
            for b in {b for m in ks.measures.values() for b in m.breakdowns}:
                if b not in static:
                    code, names = _labels(values, b, p, b)
                    label[b] = self.split(p, b).ids(names)[code]
                    if b in ("sex", "imd_quintile"):
                        static[b] = label[b]
                else:
                    label[b] = static[b]
            cell = {b: _cells(x, len(self.split(p, b).names), self.n_practices, practice)
                    for b, x in label.items()}  # one per breakdown and period
            esp_cell = None
            for m in ks.measures.values():
                mask, v, valid, den = _measure_columns(values, m, p)
                for b in [""] + list(m.breakdowns):
                    acc, n_labels = self.acc[(p, m.name, b)], len(self.split(p, b).names)
                    if isinstance(acc, _Kept):
                        acc.add(label[b], practice, mask, v, valid)
                        continue
                    calls.append(acc.add_call(cell[b], n_labels, mask, v, valid))
                    if den is not None:  # events over events: the denominator is the events' sum
                        calls.append(self.acc[(p, m.name, b, "den")].add_call(cell[b], n_labels, mask, den, valid))
                if m.standardise == "esp2013":
                    if esp_cell is None:  # per period, and only when a measure is standardised
                        band = stats.age_band(np.maximum(values.numbers(f"age|{p.label}", 0), 0).astype(np.int64))
                        esp_cell = _cells(band, self.n_bands, self.n_practices, practice)
                    calls.append(self.acc[(p, m.name, "esp2013")].add_call(esp_cell, self.n_bands, mask, v, valid))
                if (p, m.name) in self.variants:  # the value per provider
                    acc = self.variants[(p, m.name)]
                    if acc.size:
                        block = values.block(f"{split_levels.block_name(m)}|{p.label}", acc.size)
                        calls.append(acc.add_call(practice, mask, block))
        in_batches(calls)

    def merge(self, other: _Sums) -> None:
        """``other``'s sums (the same KPI sets over other patients: a shard) added in. Text
        labels are matched by name, since each side numbered them as they appeared."""
        to_mine = {key: self.labels[key].ids(lab.names) for key, lab in other.labels.items()}
        for key, acc in other.acc.items():
            ids, n_mine = self._label_map(key, to_mine)
            mine = self.acc[key]
            if isinstance(acc, _Kept):
                mine.parts += [(ids[label], practice, v) for label, practice, v in acc.parts]
                continue
            mine.merge(acc, ids, n_mine)
        for key, acc in other.variants.items():
            self.variants[key].merge(acc)

    def _label_map(self, key: tuple, to_mine: dict) -> tuple[np.ndarray, int]:
        """For an accumulator's key: other's label id -> mine, and how many labels I have."""
        p, b = key[0], key[2]
        if b == "esp2013":
            return np.arange(self.n_bands), self.n_bands
        return to_mine[(p, b) if (p, b) in to_mine else (None, b)], len(self.split(p, b).names)

    def finish(self, roll: _Rollup) -> None:
        """Every result row, in the order of periods, measures and breakdowns."""
        for p, ks in self.ksets.items():
            for m in ks.measures.values():
                for b in [""] + list(m.breakdowns):
                    labels, ids = self.split(p, b).order()
                    acc, n_labels = self.acc[(p, m.name, b)], len(ids)
                    if isinstance(acc, _Kept):
                        rank = np.empty(n_labels, np.int64)
                        rank[ids] = np.arange(n_labels)
                        label, practice, v = acc.arrays()
                        roll.medians(p, ks, m, b, labels, rank[label], practice, v)
                        continue
                    pr = acc.by_practice(ids, n_labels)
                    if m.kind == "ratio":
                        pr["n"] = self.acc[(p, m.name, b, "den")].by_practice(ids, n_labels)["s"]
                    roll.sums(p, ks, m, b, labels, pr)
                if m.standardise == "esp2013":
                    esp = self.acc[(p, m.name, "esp2013")]
                    roll.standardised(p, ks, m, esp.by_practice(np.arange(self.n_bands), self.n_bands))
                if m.split.levels:
                    acc = self.variants[(p, m.name)]
                    total = self.acc[(p, m.name, "")].by_practice(np.zeros(1, np.int64), 1)
                    roll.split(p, ks, m, total, [acc.by_practice(j) for j in range(acc.size)])


def _cells(label: np.ndarray, n_labels: int, n_practices: int, practice: np.ndarray) -> np.ndarray:
    """Each patient's accumulator cell, label x n_practices + practice: int32 where every
    cell fits (always, short of two billion cells), since the sums read one per patient per
    measure and are bound by how many bytes they read."""
    cell = label * n_practices + practice
    return cell.astype(np.int32) if n_labels * n_practices <= 2**31 else cell


def _measure_columns(values, m: Measure, p: Period):
    """A measure's per-patient population mask, value, validity and (ratios) denominator."""
    mask = values.numbers(f"{m.name}|pop|{p.label}", False)
    v = values.numbers(f"{m.name}|val|{p.label}", 0.0, whole=m.kind != "median")  # sums cast each value
    present = None if m.kind in ("rate", "total", "per_head", "proportion", "ratio") else \
        values.present(f"{m.name}|val|{p.label}")  # a missing count or cost is none
    valid = np.ones(len(v), bool) if present is None else present
    den = values.numbers(f"{m.name}|den|{p.label}", 0.0, whole=True) if m.kind == "ratio" else None
    return mask, v, valid, den


class _Rollup:
    """Sums per practice (× breakdown cell), rolled up to localities and the system, and
    the result rows they make (``chunks``: one dict of equal-length columns per emit)."""

    def __init__(self, store: Store, run_id: str, level: float):
        self.h = h = Hierarchy.of(store)
        self.run_id, self.level = run_id, level
        self.n_units = {lv: len(h.codes[lv]) for lv in LEVELS}
        self.unit_cols = {lv: {"unit_code": np.array(h.codes[lv], dtype=object),
                               "unit_name": np.array(h.names[lv], dtype=object),
                               "parent_code": np.array(h.parents(lv), dtype=object)} for lv in LEVELS}
        self.esp = stats.european_standard_population()
        self.practice = h.practice_of_patient
        self.store = store
        self.providers: split_levels.Providers | None = None  # read when a measure is split
        self.chunks: list[dict] = []

    def emit(self, p: Period, ks: KpiSet, m: Measure, lv: str, breakdown: str, labels: list[str],
             parts: tuple, standardised: bool = False) -> None:
        """Rows for every unit (× breakdown cell) of one level; a breakdown cell with no
        one in it gets no row."""
        self.emit_units(p, ks, m, lv, breakdown, labels, parts, self.unit_cols[lv], standardised)

    def emit_units(self, p: Period, ks: KpiSet, m: Measure, lv: str, breakdown: str, labels: list[str],
                   parts: tuple, unit_cols: dict[str, np.ndarray], standardised: bool = False) -> None:
        """``emit`` for units given as columns (unit_code, unit_name, parent_code)."""
        nb, n_units = len(labels), len(unit_cols["unit_code"])
        unit = np.repeat(np.arange(n_units), nb)
        cell = np.tile(np.arange(nb), n_units)
        keep = parts[1] != 0 if breakdown else np.ones(len(unit), bool)
        chunk = {name: np.where(np.isfinite(x[keep]), x[keep], np.nan)
                 for name, x in zip(("numerator", "denominator", "value", "lower", "upper"), parts)}
        chunk.update({k: v[unit[keep]] for k, v in unit_cols.items()})
        chunk["breakdown_value"] = np.array(labels if breakdown else [""] * nb, dtype=object)[cell[keep]]
        chunk["_constants"] = {
            "run_id": self.run_id, "kpi_set": ks.name, "kpi": m.name, "title": m.title, "domain": m.domain,
            "kind": m.kind, "unit_label": m.unit_label + (", age-standardised (ESP 2013)" if standardised else ""),
            "multiplier": _scale(m, p), "direction": m.direction, "target": m.target, "period": p.label,
            "period_start": p.start, "period_end": p.end, "level": lv, "breakdown": breakdown,
            "standardised": standardised, "suppressed": False, **_about(m)}
        self.chunks.append(chunk)

    def split(self, p: Period, ks: KpiSet, m: Measure, total: dict, variants: list[dict]) -> None:
        """Provider and service rows of a split measure (kpis/levels.py): each variant's and
        the total's practice pieces summed to their system first."""
        if self.providers is None:
            h = self.h
            system = h.system_of_locality[h.locality_of_practice[self.practice]]
            self.providers = split_levels.Providers.of(self.store, system, self.n_units["system"])
        total_sys = self.levels(total, 1)[2][1]
        variant_sys = [self.levels(v, 1)[2][1] for v in variants]
        for lv in m.split.levels:
            rows = split_levels.unit_rows(m, lv, self.providers)
            sums = split_levels.unit_sums(rows, variant_sys, total_sys)
            cols = {"unit_code": np.array(rows.codes, dtype=object), "unit_name": np.array(rows.names, dtype=object),
                    "parent_code": np.array(self.h.codes["system"], dtype=object)[rows.system]}
            self.emit_units(p, ks, m, lv, "", ["all"], _finish(_annualised(m, p), sums, self.level), cols)

    def levels(self, sums: dict, nb: int) -> list[tuple[str, dict]]:
        """Practice sums and their exact roll-up to localities and the system."""
        loc = _roll(sums, self.h.locality_of_practice, self.n_units["locality"], nb)
        return [("practice", sums), ("locality", loc),
                ("system", _roll(loc, self.h.system_of_locality, self.n_units["system"], nb))]

    def sums(self, p, ks, m, breakdown, labels, pr: dict) -> None:
        """Rows of every level from the practices' additive pieces (practice x label)."""
        for lv, s in self.levels(pr, len(labels)):
            self.emit(p, ks, m, lv, breakdown, labels, _finish(_annualised(m, p), s, self.level))

    def medians(self, p, ks, m, breakdown, labels, code, practice, v) -> None:
        """Medians do not add up: each level's groups are sorted apart (``v``: the values of
        the population's members with one, ``practice`` and breakdown ``code`` theirs)."""
        nb, h, everyone = len(labels), self.h, np.ones(len(v), bool)
        for lv, g in (("practice", practice * nb + code), ("locality", h.locality_of_practice[practice] * nb + code),
                      ("system", h.system_of_locality[h.locality_of_practice[practice]] * nb + code)):
            sums = _sums(g, self.n_units[lv] * nb, everyone, v, everyone)
            med = _medians(g, self.n_units[lv] * nb, everyone, v, everyone)
            nan = np.full(len(med), np.nan)
            self.emit(p, ks, m, lv, breakdown, labels, (nan, sums["k"], med * _scale(m, p), nan, nan))

    def standardised(self, p, ks, m, pr: dict) -> None:
        """A rate directly age-standardised to the European Standard Population 2013
        (``pr``: the pieces per practice x age band)."""
        nbands = len(self.esp.weights)
        for lv, s in self.levels(pr, nbands):
            counts = s["s"].reshape(-1, nbands)
            pops = s["n"].reshape(-1, nbands)
            value, lo, hi = stats.dsr(counts, pops, self.esp.weights, _scale(m, p), self.level)
            self.emit(p, ks, m, lv, "", ["all"], (counts.sum(1), pops.sum(1), value, lo, hi), standardised=True)


def _scale(m: Measure, p: Period) -> float:
    """What the value is multiplied by: ``per``, and for an annualised measure also
    365 / the period's days (so a month's events read as a rate a year)."""
    return m.multiplier * 365 / p.days if m.per_year else m.multiplier


def _annualised(m: Measure, p: Period) -> Measure:
    return dataclasses.replace(m, multiplier=_scale(m, p)) if m.per_year else m


def _about(m: Measure) -> dict[str, str]:
    """The measure's basis, framework, integrity (JSON) and cohorts, as result columns."""
    return {"basis": m.basis, "framework": m.framework,
            "integrity": m.integrity.as_json() if m.integrity is not None else NOT_ASSESSED,
            "cohorts": ",".join(m.cohorts)}


def _assemble(chunks: list[dict]) -> pa.Table:
    sizes = np.array([len(c["numerator"]) for c in chunks], np.int64)
    out = {}
    for f in RESULT_SCHEMA:
        if f.name in EXACT_COLUMNS:  # disclosure control fills them in
            out[f.name] = pa.nulls(int(sizes.sum()), f.type)
        elif chunks and f.name in chunks[0] and f.name != "_constants":
            arr = np.concatenate([c[f.name] for c in chunks])
            coded = arr.dtype == object
            out[f.name] = pa.array(arr.tolist(), f.type) if coded else pa.array(arr, f.type, from_pandas=True)
        else:
            consts = [c["_constants"][f.name] for c in chunks]
            idx = np.repeat(np.arange(len(chunks)), sizes)
            out[f.name] = pa.array(consts, f.type).take(pa.array(idx)) if chunks else pa.array([], f.type)
    return pa.table(out)

