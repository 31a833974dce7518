"""The KPI history as the pack reads it: rows indexed by KPI, period, level and unit, the
KPIs' metadata, the series an SPC chart plots, and how each number is printed.

Why a module of its own: the pack, its data export and its tests all read history the same
way, so a value, a suppressed cell or a 0/0 reads identically wherever it appears. Histories
written before a column existed are read with that column's default (``OPTIONAL_COLUMNS``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from casefind.reports import integrity as ig

REQUIRED_COLUMNS = (
    "run_id", "kpi", "title", "domain", "kind", "unit_label", "multiplier", "direction", "target",
    "period", "period_start", "period_end", "level", "unit_code", "unit_name", "parent_code",
    "breakdown", "breakdown_value", "numerator", "denominator", "value", "lower", "upper",
    "standardised", "suppressed",
)
EXACT_COLUMNS = ("exact_numerator", "exact_denominator", "exact_value", "exact_lower", "exact_upper")
OPTIONAL_COLUMNS = ("basis", "framework", "integrity", "cohorts", *EXACT_COLUMNS)
DOMAINS = {
    "population_health": "Population health",
    "experience": "Experience",
    "cost": "Cost",
    "process": "Process",
}
LEVELS = ("system", "provider", "service", "locality", "practice")
SUMMARY_LEVELS = ("system", "provider", "service", "locality")
XMR_BASES = (None, "month")  # null: a history from before `basis` existed, charted as before
BASIS_NOTES = {
    "rolling_12m": "a rolling 12-month figure: consecutive points share 11 of their 12 months, so they are "
                   "not independent and an XmR chart would signal 'special cause' almost everywhere; shown as "
                   "a run chart, without process limits or signals",
    "point": "a state at each period's end (people on a register): consecutive points are largely the same "
             "people, so it is shown as a run chart, without process limits or signals",
}
SUPPRESSED = "*"
MISSING = "\u2013"
NO_DATA = "no data"
_PERIOD_KINDS = (("month", re.compile(r"^\d{4}-\d{2}$")), ("quarter", re.compile(r"^\d{4}-Q[1-4]$")),
                 ("rolling", re.compile(r"^\d+m-to-")))


@dataclass(frozen=True)
class Kpi:
    code: str
    title: str
    domain: str
    kind: str
    unit_label: str
    multiplier: float
    direction: str
    target: float | None
    standardised: bool
    basis: str | None = None
    framework: str | None = None  # None: a history from before the column; "": not stated
    integrity: ig.Assessment = ig.UNRECORDED
    cohorts: tuple[str, ...] | None = None

    @property
    def anchor(self) -> str:
        return "kpi-" + re.sub(r"[^a-z0-9]+", "-", self.code.lower()).strip("-")

    @property
    def money(self) -> bool:
        return "\u00a3" in (self.unit_label or "")

    @property
    def percent(self) -> bool:
        return (self.unit_label or "").strip() == "%" or (self.kind == "proportion" and self.multiplier == 100)

    @property
    def xmr(self) -> bool:
        """Charted as XmR: a value for the month itself (or a history from before ``basis``)."""
        return self.basis in XMR_BASES

    @property
    def basis_note(self) -> str | None:
        return None if self.xmr else BASIS_NOTES.get(self.basis, f"a '{self.basis}' figure, shown as a run chart")

    def bounds(self, values=()) -> tuple[float | None, float | None]:
        """What the measure can take: 0 to 100% for a proportion, >= 0 otherwise - unless the
        history holds a negative value (a measure that can fall below zero is left unclipped)."""
        if any(v < 0 for v in values if v is not None and not math.isnan(v)):
            return (None, None)
        return (0.0, self.multiplier) if self.kind == "proportion" else (0.0, None)


# ---------------------------------------------------------------- formatting

def fmt_value(v: float | None, kpi: Kpi) -> str:
    """A KPI value as printed everywhere in the pack: one rule per KPI, so columns line up.

    Money: £ with thousands separators (whole pounds for totals, pence otherwise);
    percentages: 1 decimal and '%'; bare fractions: 3 decimals; totals: whole numbers;
    everything else (rates, means, medians): 1 decimal with thousands separators.
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if kpi.money:
        sign = "-" if v < 0 else ""
        return f"{sign}\u00a3{abs(v):,.0f}" if kpi.kind == "total" else f"{sign}\u00a3{abs(v):,.2f}"
    if kpi.percent:
        return f"{v:.1f}%"
    if kpi.kind == "proportion" and kpi.multiplier == 1:  # a bare fraction needs more places
        return f"{v:.3f}"
    if kpi.kind == "total":
        return f"{v:,.0f}"
    return f"{v:,.1f}"


def fmt_ci(lower: float | None, upper: float | None, kpi: Kpi) -> str:
    if lower is None or upper is None:
        return MISSING
    return f"{fmt_value(lower, kpi)}\u2013{fmt_value(upper, kpi)}"


def fmt_count(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def fmt_change(delta: float | None, kpi: Kpi) -> str:
    """Change in the KPI's own units; percentages change in percentage points (pp)."""
    if delta is None:
        return MISSING
    text = fmt_value(abs(delta), kpi)
    if kpi.percent:
        text = text.rstrip("%") + " pp"
    if set(re.sub(r"[^0-9]", "", text)) <= {"0"}:
        return "no change"
    return ("+" if delta > 0 else "\u2212") + text


# ---------------------------------------------------------------- reading history

def period_kind(period: str) -> str:
    """Month, quarter or rolling window: an SPC series never mixes them."""
    for kind, pattern in _PERIOD_KINDS:
        if pattern.match(period):
            return kind
    return "other"


def read_rows(history: pa.Table) -> list[dict]:
    missing = [c for c in REQUIRED_COLUMNS if c not in history.column_names]
    if missing:
        raise ValueError(f"history is missing columns: {', '.join(missing)}")
    rows = history.to_pylist()
    absent = [c for c in OPTIONAL_COLUMNS if c not in history.column_names]
    for r in rows:
        r["breakdown"] = r["breakdown"] or ""
        r["breakdown_value"] = r["breakdown_value"] or ""
        for c in absent:
            r[c] = None
    return rows


def no_data(row: dict | None) -> bool:
    """0/0: nobody in the denominator, so there is nothing to report (not a suppressed count)."""
    if row is None:
        return False
    den = row["exact_denominator"] if row.get("exact_denominator") is not None else row["denominator"]
    num = row["exact_numerator"] if row.get("exact_numerator") is not None else row["numerator"]
    return den == 0 and num in (0, None)


def shown(row: dict | None) -> float | None:
    """The published value a chart may plot: None when absent, suppressed or 0/0."""
    if row is None or row["suppressed"] or row["value"] is None or no_data(row):
        return None
    return float(row["value"])


def exact(row: dict | None) -> float | None:
    """The value to classify with: the unrounded one where kept, else the published one.
    Never for a suppressed row: a signal must not reveal what suppression hides."""
    if shown(row) is None:
        return None
    return float(row["exact_value"]) if row.get("exact_value") is not None else float(row["value"])


class History:
    """Rows up to the pack's period, indexed for look-up."""

    def __init__(self, rows: list[dict], period: str):
        now = [r for r in rows if r["period"] == period]
        if not now:
            raise ValueError(f"period {period!r} is not in history")
        cutoff = max(r["period_end"] for r in now)
        kind = period_kind(period)
        ends = {}
        for r in rows:
            if period_kind(r["period"]) == kind and r["period_end"] <= cutoff:
                ends.setdefault(r["period"], (r["period_end"], r["period_start"], r["period"]))
        self.period = period
        self.periods = sorted(ends, key=ends.get)
        keep = set(self.periods)
        self.rows = [r for r in rows if r["period"] in keep]
        self.now = now
        self.index = {(r["kpi"], r["period"], r["level"], r["unit_code"], r["breakdown"],
                       r["breakdown_value"]): r for r in self.rows}
        self.kpis = self._kpis(now)
        self.units = self._units(now)

    @staticmethod
    def _kpis(now: list[dict]) -> list[Kpi]:
        seen: dict[str, Kpi] = {}
        for r in now:
            if r["kpi"] not in seen:
                seen[r["kpi"]] = Kpi(r["kpi"], r["title"], r["domain"], r["kind"], r["unit_label"],
                                     float(r["multiplier"]), r["direction"], r["target"],
                                     bool(r["standardised"]), r["basis"], r["framework"],
                                     ig.assessment(r["integrity"]), ig.cohorts(r["cohorts"]))
        order = list(DOMAINS)
        return sorted(seen.values(), key=lambda k: (order.index(k.domain) if k.domain in order
                                                    else len(order), list(seen).index(k.code)))

    @staticmethod
    def _units(now: list[dict]) -> dict[str, dict[str, dict]]:
        units: dict[str, dict[str, dict]] = {level: {} for level in LEVELS}
        for r in now:
            if r["breakdown"] == "" and r["level"] in units:
                units[r["level"]].setdefault(r["unit_code"], {"code": r["unit_code"], "name": r["unit_name"],
                                                              "parent": r["parent_code"], "level": r["level"]})
        return {level: dict(sorted(u.items())) for level, u in units.items()}

    def get(self, kpi: str, period: str, level: str, unit: str, breakdown: str = "",
            value: str = "") -> dict | None:
        return self.index.get((kpi, period, level, unit, breakdown, value))

    def series(self, kpi: str, level: str, unit: str, *, exact_values: bool = False) -> np.ndarray:
        read = exact if exact_values else shown
        vals = [read(self.get(kpi, p, level, unit)) for p in self.periods]
        return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)

    def system_of(self, practice: dict) -> str | None:
        locality = self.units["locality"].get(practice["parent"] or "")
        if locality is not None:
            return locality["parent"]
        if practice["parent"] in self.units["system"]:
            return practice["parent"]
        return next(iter(self.units["system"]), None) if len(self.units["system"]) == 1 else None
