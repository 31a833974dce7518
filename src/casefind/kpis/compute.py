"""Compute a KPI file for many periods in one evaluation, then roll up and add intervals.

Every measure's population and value, for every period, is one expression evaluated at the
period's end (``x at <end>``); all of them go to the engine together, so the native engine
fuses every period into the same scan of each table. What follows is per-patient numpy:
sums per practice (and breakdown), then localities as sums of their practices and the
system as the sum of its localities, so counts roll up exactly. Intervals come after the
sums; disclosure control comes last (kpis/disclosure.py), never before roll-up.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.engines.base import get_engine
from casefind.kpis import stats
from casefind.kpis.define import KpiSet, Measure, load_kpis
from casefind.kpis.periods import Period
from casefind.plan import bind
from casefind.rules import ir
from casefind.store import Store
from casefind_native.aggregate import group_sums

LEVELS = ("practice", "locality", "system")
AGE_BANDS = ((0, 17, "0-17"), (18, 64, "18-64"), (65, 74, "65-74"), (75, 84, "75-84"), (85, 200, "85+"))

RESULT_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("kpi_set", pa.string()), ("kpi", pa.string()), ("title", pa.string()),
    ("domain", pa.string()), ("kind", pa.string()), ("unit_label", pa.string()), ("multiplier", pa.float64()),
    ("direction", pa.string()), ("target", pa.float64()), ("period", pa.string()),
    ("period_start", pa.date32()), ("period_end", pa.date32()), ("level", pa.string()),
    ("unit_code", pa.string()), ("unit_name", pa.string()), ("parent_code", pa.string()),
    ("breakdown", pa.string()), ("breakdown_value", pa.string()), ("numerator", pa.float64()),
    ("denominator", pa.float64()), ("value", pa.float64()), ("lower", pa.float64()), ("upper", pa.float64()),
    ("standardised", pa.bool_()), ("suppressed", pa.bool_()),
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
    denominator), and age and segment for breakdowns and standardisation. They may hold the
    KPI's ``period``, bound per period by the engine."""
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


STATIC = {"sex": ir.Attr("sex"), "imd_decile": ir.Attr("imd_decile")}  # the same in every period


def compile_for(path, periods: list[Period], params: dict[str, str] | None = None) -> dict[Period, KpiSet]:
    """The KPI file compiled once for every period (``period`` is a placeholder, bound per period)."""
    ks = load_kpis(path, params=params)
    return {p: ks for p in periods}


def evaluate(store: Store, ksets: dict[Period, KpiSet], engine: str = "native") -> pa.Table:
    """Every period's per-patient values, as columns ``<expression>|<period label>`` (and
    ``sex``, ``imd_decile`` once). An engine that evaluates periods together (the native
    engine's ``evaluate_periods``) runs each table's scan once for all of them, with kernels
    whose size does not depend on how many there are; any other is given each period's
    expressions with ``period`` bound (casefind.plan.bind)."""
    eng = get_engine(engine)
    by_set: dict[int, list[Period]] = {}
    for p in sorted(ksets, key=lambda q: q.end):
        by_set.setdefault(id(ksets[p]), []).append(p)
    columns: dict[str, pa.Array] = {}
    for periods in by_set.values():
        exprs = expressions(ksets[periods[0]])
        if hasattr(eng, "evaluate_periods"):
            tables = eng.evaluate_periods(store, exprs, [(p.end, p.days) for p in periods])
        else:
            tables = [eng.evaluate(store, {k: bind(v, p.days) for k, v in exprs.items()}, p.end) for p in periods]
        for p, t in zip(periods, tables):
            columns.setdefault("patient", t.column("patient"))
            columns.update({f"{name}|{p.label}": t.column(name) for name in exprs})
    first = min(ksets, key=lambda q: q.end)
    static = eng.evaluate(store, STATIC, first.end)
    columns.update({name: static.column(name) for name in STATIC})
    order = ["patient"] + [f"{name}|{p.label}" for p, ks in ksets.items() for name in expressions(ks)] + list(STATIC)
    return pa.table({k: columns[k] for k in order})


def _column(values: pa.Table, name: str, fill) -> np.ndarray:
    col = values.column(name)
    if pa.types.is_boolean(col.type):
        return np.asarray(col.fill_null(False).to_numpy(zero_copy_only=False), bool)
    return np.asarray(col.cast(pa.float64()).fill_null(fill).to_numpy(zero_copy_only=False), np.float64)


def _labels(values: pa.Table, name: str, period: Period, kind: str) -> tuple[np.ndarray, list[str]]:
    """Breakdown codes per patient (int) and their labels."""
    if kind == "age_band":
        age = _column(values, f"age|{period.label}", -1)
        code = np.full(len(age), len(AGE_BANDS), np.int64)
        for i, (lo, hi, _) in enumerate(AGE_BANDS):
            code[(age >= lo) & (age <= hi)] = i
        return code, [b[2] for b in AGE_BANDS] + ["unknown"]
    if kind == "imd_quintile":
        dec = _column(values, "imd_decile", 0)
        code = np.where(dec > 0, (dec.astype(np.int64) + 1) // 2 - 1, 5)
        return code, ["1 (most deprived)", "2", "3", "4", "5 (least deprived)", "unknown"]
    column = "sex" if kind == "sex" else f"segment|{period.label}"
    enc = pc.dictionary_encode(values.column(column).fill_null("(none)")).combine_chunks()
    labels = enc.dictionary.to_pylist()
    order = np.argsort(np.array(labels, dtype=object))  # labels sorted, codes renumbered to match
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels))
    code = rank[enc.indices.to_numpy(zero_copy_only=False)] if len(labels) else np.zeros(len(enc), np.int64)
    return code, [str(labels[i]) for i in order]


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


def compute(store: Store, ksets: dict[Period, KpiSet], values: pa.Table, run_id: str,
            level: float = 0.95) -> pa.Table:
    """The long-format results (before disclosure control) for every period, measure, level,
    unit and breakdown."""
    roll = _Rollup(store, run_id, level)
    static: dict[str, tuple] = {}  # sex and IMD do not change with the period
    for p, ks in ksets.items():
        splits = {"": (np.zeros(len(roll.practice), np.int64), ["all"])}
        for b in sorted({b for m in ks.measures.values() for b in m.breakdowns}):
            if b in ("sex", "imd_quintile"):
                if b not in static:
                    static[b] = _labels(values, b, p, b)
                splits[b] = static[b]
            else:
                splits[b] = _labels(values, b, p, b)
        esp_band = None
        for m in ks.measures.values():
            mask, v, valid, den = _measure_columns(values, m, p)
            for breakdown in [""] + list(m.breakdowns):
                roll.breakdown(p, ks, m, breakdown, splits[breakdown], mask, v, valid, den)
            if m.standardise == "esp2013":
                if esp_band is None:  # per period, and only when a measure is standardised
                    esp_band = stats.age_band(np.maximum(_column(values, f"age|{p.label}", 0), 0).astype(np.int64))
                roll.standardised(p, ks, m, esp_band, mask, v, valid)
    return _assemble(roll.chunks)


def _measure_columns(values: pa.Table, m: Measure, p: Period):
    """A measure's per-patient population mask, value, validity and (ratios) denominator."""
    mask = _column(values, f"{m.name}|pop|{p.label}", False)
    raw = values.column(f"{m.name}|val|{p.label}")
    valid = np.asarray(raw.is_valid().to_numpy(zero_copy_only=False), bool)
    v = _column(values, f"{m.name}|val|{p.label}", 0.0).astype(np.float64)
    if m.kind in ("rate", "total", "per_head", "proportion", "ratio"):
        valid = np.ones(len(v), bool)  # a missing count or cost is none
    den = _column(values, f"{m.name}|den|{p.label}", 0.0).astype(np.float64) if m.kind == "ratio" else None
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
        self.chunks: list[dict] = []

    def emit(self, p: Period, ks: KpiSet, m: Measure, lv: str, breakdown: str, labels: list[str],
             parts: tuple, standardised: bool = False) -> None:
        """Rows for every unit (× breakdown cell) of one level; a breakdown cell with no
        one in it gets no row."""
        nb = len(labels)
        unit = np.repeat(np.arange(self.n_units[lv]), nb)
        cell = np.tile(np.arange(nb), self.n_units[lv])
        keep = parts[1] != 0 if breakdown else np.ones(len(unit), bool)
        chunk = {name: np.where(np.isfinite(x[keep]), x[keep], np.nan)
                 for name, x in zip(("numerator", "denominator", "value", "lower", "upper"), parts)}
        chunk.update({k: v[unit[keep]] for k, v in self.unit_cols[lv].items()})
        chunk["breakdown_value"] = np.array(labels if breakdown else [""] * nb, dtype=object)[cell[keep]]
        chunk["_constants"] = {
            "run_id": self.run_id, "kpi_set": ks.name, "kpi": m.name, "title": m.title, "domain": m.domain,
            "kind": m.kind, "unit_label": m.unit_label + (", age-standardised (ESP 2013)" if standardised else ""),
            "multiplier": m.multiplier, "direction": m.direction, "target": m.target, "period": p.label,
            "period_start": p.start, "period_end": p.end, "level": lv, "breakdown": breakdown,
            "standardised": standardised, "suppressed": False}
        self.chunks.append(chunk)

    def levels(self, sums: dict, nb: int) -> list[tuple[str, dict]]:
        """Practice sums and their exact roll-up to localities and the system."""
        loc = _roll(sums, self.h.locality_of_practice, self.n_units["locality"], nb)
        return [("practice", sums), ("locality", loc),
                ("system", _roll(loc, self.h.system_of_locality, self.n_units["system"], nb))]

    def breakdown(self, p, ks, m, breakdown, split, mask, v, valid, den) -> None:
        code, labels = split
        nb = len(labels)
        group = self.practice * nb + code
        if m.kind == "median":
            self.medians(p, ks, m, breakdown, labels, code, mask, v, valid)
            return
        pr = _sums(group, self.n_units["practice"] * nb, mask, v, valid)
        if den is not None:  # events over events: the denominator is the events' sum
            pr["n"] = _sums(group, self.n_units["practice"] * nb, mask, den, valid)["s"]
        for lv, s in self.levels(pr, nb):
            self.emit(p, ks, m, lv, breakdown, labels, _finish(m, s, self.level))

    def medians(self, p, ks, m, breakdown, labels, code, mask, v, valid) -> None:
        """Medians do not add up: each level's groups are sorted apart."""
        nb, h, practice = len(labels), self.h, self.practice
        for lv, g in (("practice", practice * nb + code), ("locality", h.locality_of_practice[practice] * nb + code),
                      ("system", h.system_of_locality[h.locality_of_practice[practice]] * nb + code)):
            sums = _sums(g, self.n_units[lv] * nb, mask, v, valid)
            med = _medians(g, self.n_units[lv] * nb, mask, v, valid)
            nan = np.full(len(med), np.nan)
            self.emit(p, ks, m, lv, breakdown, labels, (nan, sums["k"], med * m.multiplier, nan, nan))

    def standardised(self, p, ks, m, esp_band, mask, v, valid) -> None:
        """A rate directly age-standardised to the European Standard Population 2013."""
        nbands = len(self.esp.weights)
        group = self.practice * nbands + esp_band
        pr = _sums(group, self.n_units["practice"] * nbands, mask, v, valid)
        for lv, s in self.levels(pr, nbands):
            counts = s["s"].reshape(-1, nbands)
            pops = s["n"].reshape(-1, nbands)
            value, lo, hi = stats.dsr(counts, pops, self.esp.weights, m.multiplier, self.level)
            self.emit(p, ks, m, lv, "", ["all"], (counts.sum(1), pops.sum(1), value, lo, hi), standardised=True)


def _assemble(chunks: list[dict]) -> pa.Table:
    sizes = np.array([len(c["numerator"]) for c in chunks], np.int64)
    out = {}
    for f in RESULT_SCHEMA:
        if chunks and f.name in chunks[0] and f.name != "_constants":
            arr = np.concatenate([c[f.name] for c in chunks])
            out[f.name] = pa.array(arr, f.type, from_pandas=True) if arr.dtype != object else pa.array(arr.tolist(), f.type)
        else:
            consts = [c["_constants"][f.name] for c in chunks]
            idx = np.repeat(np.arange(len(chunks)), sizes)
            out[f.name] = pa.array(consts, f.type).take(pa.array(idx)) if chunks else pa.array([], f.type)
    return pa.table(out)

