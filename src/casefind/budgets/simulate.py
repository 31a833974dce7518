"""The Year of Care handbook's simulation: a baseline against a scenario, over up to three
years, for cohorts by population percentile of a risk or cost measure.

The arithmetic (``cohort_of``, ``simulate``) is pure: per-person arrays in, the simulation
table out, so the handbook's own table can be checked without a store. ``run`` evaluates a
scenario file's expressions over a store with an engine and feeds them to it.

Methods (docs/budgets.md, "Simulation"):
- Ranking: the population is ordered by the ranking measure (to 32 significant bits, so that
  sums an engine adds in another order still tie), highest first, people without a value
  last, ties broken by the pseudonymised patient id (ascending), so the order is total and
  the same on every engine. Band FROM-TO% holds the people ranked from
  floor(N x FROM + 1/2) to floor(N x TO + 1/2) - 1 (N the population, exact arithmetic): the
  top band has exactly round(N x TO) people, and bands that meet share no one.
- A person's scenario cost in year y, with the changes phased in by f = phasing[y]:
  cost + sum over settings of f x change x setting cost
       + sum over admissions of f x bed-day change x (1 + f x admission change) x bed-day cost
       + the new service's cost a person,
  where an admission setting's bed-day cost is min(bed days x excess bed day cost, its cost)
  per person. Baseline and scenario are both grown by (1 + growth)^(y - 1): year 1 is priced
  as the baseline year.
- Totals are summed in float64 and rounded to the penny; means are total / patients.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from math import floor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from casefind.budgets.scenario import EXCESS_BED_DAY_COST, Band, Changes, Scenario
from casefind.outputs import replace_dir
from casefind.store import Store

ADMISSIONS = ("emergency_admission", "elective_admission")
OUTSIDE = -1  # the cohort index of someone in no band
TIE_RULE = ("ranked by the measure (to 32 significant bits), highest first, people without a value last, "
            "ties by pseudonymised patient id (ascending); band FROM-TO% holds ranks floor(N*FROM+1/2) to "
            "floor(N*TO+1/2) - 1 (N people in the population), so the top band has exactly round(N*TO) people")
SCHEMA = pa.schema([("cohort", pa.string()), ("year", pa.int64()), ("patients", pa.int64()),
                    ("baseline_mean", pa.float64()), ("scenario_mean", pa.float64()),
                    ("difference", pa.float64()), ("baseline_total", pa.float64()),
                    ("scenario_total", pa.float64())])


@dataclass(frozen=True)
class Assumptions:
    """The scenario's arithmetic, apart from its expressions: a Changes per band."""

    bands: tuple[Band, ...]
    changes: tuple[Changes, ...]
    years: int = 1
    growth: float = 0.0
    phasing: tuple[float, ...] = (1.0,)
    excess_bed_day_cost: float = EXCESS_BED_DAY_COST

    @classmethod
    def of(cls, s: Scenario) -> Assumptions:
        return cls(s.bands, s.changes, s.years, s.growth, s.phasing, s.excess_bed_day_cost)


@dataclass(frozen=True)
class Baseline:
    """Per person (aligned arrays): the baseline year's cost, each changed setting's cost
    within it, and the admissions' bed days (absent settings count zero)."""

    cost: np.ndarray
    settings: dict[str, np.ndarray] = field(default_factory=dict)
    bed_days: dict[str, np.ndarray] = field(default_factory=dict)

    def setting(self, name: str) -> np.ndarray:
        return self.settings.get(name, np.zeros_like(self.cost))

    def bed_day_cost(self, name: str, excess_bed_day_cost: float) -> np.ndarray:
        days = self.bed_days.get(name, np.zeros_like(self.cost))
        return np.minimum(days * excess_bed_day_cost, self.setting(name))


def band_edges(n: int, bands: tuple[Band, ...]) -> list[tuple[int, int]]:
    """The [first, last) ranks of each band among n people, in exact arithmetic."""
    def edge(p: float) -> int:
        return floor(Fraction(n) * Fraction(str(p)) + Fraction(1, 2))
    return [(edge(b.low), edge(b.high)) for b in bands]


RANK_BITS = 32  # significant bits of a ranking value that count (about 9.6 decimal digits)


def ranking_value(rank: np.ndarray) -> np.ndarray:
    """``rank`` to RANK_BITS significant bits: engines may add a sum in different orders
    (equal to 1e-9, not always to the last bit), and two people whose costs are the same
    must tie, and so be ordered by id, on every engine."""
    mantissa, exponent = np.frexp(rank)
    return np.ldexp(np.round(mantissa * 2.0 ** RANK_BITS) / 2.0 ** RANK_BITS, exponent)


def cohort_of(rank: np.ndarray, keys: np.ndarray, in_population: np.ndarray,
              bands: tuple[Band, ...]) -> np.ndarray:
    """Each person's band index (OUTSIDE if none). ``rank`` is float with NaN for missing,
    ``keys`` the pseudonymised ids that break ties, ``in_population`` who is ranked."""
    who = np.flatnonzero(in_population)
    value = ranking_value(rank[who])
    missing = np.isnan(value)
    order = who[np.lexsort((keys[who], np.where(missing, 0.0, -value), missing))]
    out = np.full(len(rank), OUTSIDE, np.int64)
    for i, (first, last) in enumerate(band_edges(len(who), bands)):
        out[order[first:last]] = i
    return out


def scenario_cost(base: Baseline, changes: Changes, phase: float, excess_bed_day_cost: float) -> np.ndarray:
    """Each person's scenario cost at baseline-year prices under one cohort's changes."""
    out = base.cost.astype(np.float64).copy()
    for setting, change in changes.settings:
        out += phase * change * base.setting(setting)
    if changes.bed_days:
        for setting in ADMISSIONS:
            out += (phase * changes.bed_days * (1 + phase * changes.of(setting))
                    * base.bed_day_cost(setting, excess_bed_day_cost))
    return out + changes.new_service


def simulate(cohort: np.ndarray, base: Baseline, a: Assumptions) -> pa.Table:
    """The simulation table: per year and cohort, patients, mean and total cost, baseline
    and scenario, and the difference a person (simulation.parquet's columns)."""
    rows = []
    for year in range(1, a.years + 1):
        grow = (1 + a.growth) ** (year - 1)
        for i, band in enumerate(a.bands):
            mine = cohort == i
            people = int(mine.sum())
            sub = Baseline(base.cost[mine], {k: v[mine] for k, v in base.settings.items()},
                           {k: v[mine] for k, v in base.bed_days.items()})
            baseline = round(float(sub.cost.sum()) * grow, 2)
            scenario = round(float(scenario_cost(sub, a.changes[i], a.phasing[year - 1],
                                                 a.excess_bed_day_cost).sum()) * grow, 2)
            rows.append(_row(band.label, year, people, baseline, scenario))
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _row(label: str, year: int, people: int, baseline: float, scenario: float) -> dict:
    bm = baseline / people if people else None
    sm = scenario / people if people else None
    return {"cohort": label, "year": year, "patients": people, "baseline_mean": bm, "scenario_mean": sm,
            "difference": sm - bm if people else None, "baseline_total": baseline, "scenario_total": scenario}


def totals(table: pa.Table) -> list[dict]:
    """Per year: every cohort together (the table's last line)."""
    out = []
    for year in sorted(set(table.column("year").to_pylist())):
        rows = [r for r in table.to_pylist() if r["year"] == year]
        people = sum(r["patients"] for r in rows)
        out.append(_row("total", year, people, round(sum(r["baseline_total"] for r in rows), 2),
                        round(sum(r["scenario_total"] for r in rows), 2)))
    return out


def assumptions_text(s: Scenario) -> list[str]:
    """The assumptions in words, for simulation.json and the console."""
    lines = [f"population: {s.texts['population']}", f"ranked by: {s.texts['rank_by']}",
             f"baseline cost a person: {s.texts['cost']} (the 12 months to as_of)",
             f"ranking and ties: {TIE_RULE}",
             f"excess bed day cost: £{s.excess_bed_day_cost:,.2f}; a setting's bed-day cost a person is "
             "min(bed days x excess bed day cost, that setting's cost)",
             f"years: {s.years}; growth {s.growth:.1%} a year on baseline and scenario (year 1 at baseline-year "
             f"prices); changes phased {', '.join(f'{p:.0%}' for p in s.phasing)} (the new service's cost "
             "is not phased)",
             "the cohort is closed: the same people every year (no deaths, joiners or leavers)"]
    for band, ch in zip(s.bands, s.changes):
        parts = [f"{setting} {change:+.1%}" for setting, change in ch.settings]
        parts += [f"bed days {ch.bed_days:+.1%}"] if ch.bed_days else []
        parts += [f"new service £{ch.new_service:,.2f} a person a year"] if ch.new_service else []
        lines.append(f"{band.label}: {', '.join(parts) or 'no change'}")
    return lines


@dataclass(frozen=True)
class SimulationResult:
    table: pa.Table
    meta: dict


def run(store, s: Scenario, as_of: dt.date, engine: str = "native") -> SimulationResult:
    """Evaluate the scenario's expressions over ``store`` at ``as_of`` and simulate. A sharded
    store's people are put in one store's order (practice, then pseudonymised id), and ranks
    in the expressions take the two-pass pools, so the table is the single store's."""
    from casefind.store.sharded import ShardedStore

    values = (_sharded_people if isinstance(store, ShardedStore) else _people)(store, s.expressions(), as_of, engine)
    keys = np.asarray(values.column("patient_id").to_pylist(), dtype=str)
    in_population = _numbers(values, "in_population", 0.0).astype(bool)
    rank = _numbers(values, "rank", np.nan)
    base = Baseline(_numbers(values, "cost", 0.0),
                    {k[5:]: _numbers(values, k, 0.0) for k in values.column_names if k.startswith("cost_")},
                    {k[9:]: _numbers(values, k, 0.0) for k in values.column_names if k.startswith("bed_days_")})
    table = simulate(cohort_of(rank, keys, in_population, s.bands), base, Assumptions.of(s))
    return SimulationResult(table, _meta(store, s, as_of, engine, int(in_population.sum()), table))


def _person_table(store: Store, exprs: dict, as_of: dt.date, engine: str) -> tuple[pa.Table, np.ndarray]:
    """One store's people: the expressions' values with each one's ``patient_id``; and their
    practices (for ``in_store_order``)."""
    from casefind.engines.base import get_engine

    values = get_engine(engine).evaluate(store, exprs, as_of)
    patients = pa.array(values.column("patient").to_numpy().astype(np.int64))
    ids = store.table("patients").arrow.column("patient_id").cast(pa.string()).take(patients)
    practice = store.table("patients")["practice"][patients.to_numpy()].astype(np.int64)
    return values.drop_columns(["patient"]).append_column("patient_id", ids), practice


def _people(store: Store, exprs: dict, as_of: dt.date, engine: str) -> pa.Table:
    return _person_table(store, exprs, as_of, engine)[0]


def _sharded_people(store, exprs: dict, as_of: dt.date, engine: str) -> pa.Table:
    """Every shard's people in one store's order; a rank within the population (the
    ranking measure may use one) by the two-pass pools (engines/pooled.py)."""
    import functools

    from casefind.engines.base import get_engine
    from casefind.engines.pooled import over_shards
    from casefind.store.sharded import in_store_order

    exprs = over_shards(store, get_engine(engine), exprs, as_of, None)
    return in_store_order(store.map(functools.partial(_shard_people, exprs, as_of, engine), "evaluating"))


def _shard_people(exprs: dict, as_of: dt.date, engine: str, shard: Store, i: int):
    return _person_table(shard, exprs, as_of, engine)


def _numbers(values: pa.Table, name: str, fill: float) -> np.ndarray:
    col = values.column(name)
    return np.asarray(col.cast(pa.float64()).fill_null(fill).to_numpy(zero_copy_only=False), np.float64)


def _meta(store: Store, s: Scenario, as_of: dt.date, engine: str, population: int, table: pa.Table) -> dict:
    run_id = hashlib.sha256(json.dumps([s.file_sha256, store.snapshot_id, as_of.isoformat(), s.years])
                            .encode()).hexdigest()[:16]
    return {"scenario": s.name, "title": s.title, "file": str(s.path.resolve()), "file_sha256": s.file_sha256,
            "scenario_text": s.path.read_text(encoding="utf-8"), "store_snapshot": store.snapshot_id,
            "as_of": as_of.isoformat(), "engine": engine, "run_id": run_id, "years": s.years,
            "population": population, "cohorts": [b.label for b in s.bands],
            "totals": totals(table), "assumptions": assumptions_text(s)}


def write(folder: Path, result: SimulationResult) -> list[Path]:
    """simulation.parquet and simulation.json into ``folder``, each written to a temporary
    name and renamed, so a reader sees the old file or the new one, never half of one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parquet, meta = folder / "simulation.parquet", folder / "simulation.json"
    tmp_parquet, tmp_meta = folder / f".simulation.parquet.{os.getpid()}", folder / f".simulation.json.{os.getpid()}"
    try:
        pq.write_table(result.table, tmp_parquet)
        tmp_meta.write_text(json.dumps(result.meta, indent=1), encoding="utf-8")
        os.replace(tmp_parquet, parquet)
        os.replace(tmp_meta, meta)
    finally:
        for tmp in (tmp_parquet, tmp_meta):
            tmp.unlink(missing_ok=True)
    return [parquet, meta]


def write_folder(target: Path, result: SimulationResult) -> list[Path]:
    """A folder of its own (``OUT/simulation-<name>/``), built beside ``target`` and renamed
    into place: a reader sees the previous simulation or this one, whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp, result)
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [target / "simulation.parquet", target / "simulation.json"]
