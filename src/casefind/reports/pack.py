"""The monthly KPI pack: one self-contained, printable HTML file from the KPI ``history`` table.

Why one file: packs are emailed and read on locked-down machines, so everything (CSS, SVG
charts) is inline, nothing is fetched and no script runs. Every number shown comes from
``history``; the only things computed here are chart furniture: XmR means and limits and
SPC signals (``spc``) and funnel limits (``funnel``).
"""
from __future__ import annotations

import datetime as dt
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import pyarrow as pa
from markupsafe import Markup

from casefind.reports import charts, spc
from casefind.reports import funnel as fn

REQUIRED_COLUMNS = (
    "run_id", "kpi", "title", "domain", "kind", "unit_label", "multiplier", "direction", "target",
    "period", "period_start", "period_end", "level", "unit_code", "unit_name", "parent_code",
    "breakdown", "breakdown_value", "numerator", "denominator", "value", "lower", "upper",
    "standardised", "suppressed",
)
DOMAINS = {
    "population_health": "Population health",
    "experience": "Experience",
    "cost": "Cost",
    "process": "Process",
}
VARIATION = {  # label, css class, glyph: the glyph keeps the badge legible in black and white
    spc.IMPROVEMENT: ("Special cause improvement", "improve", "\u25b2"),
    spc.CONCERN: ("Special cause concern", "concern", "\u25a0"),
    spc.NEUTRAL_HIGH: ("Special cause (high), neither improvement nor concern", "neutral", "\u25c6"),
    spc.NEUTRAL_LOW: ("Special cause (low), neither improvement nor concern", "neutral", "\u25c6"),
    spc.COMMON: ("Common cause", "common", "\u25cf"),
    spc.INSUFFICIENT: ("Too few points for limits", "none", "\u2013"),
    spc.NO_DATA: ("No data", "none", "\u2013"),
}
SUPPRESSED = "*"
MISSING = "\u2013"
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

    @property
    def anchor(self) -> str:
        return "kpi-" + re.sub(r"[^a-z0-9]+", "-", self.code.lower()).strip("-")

    @property
    def money(self) -> bool:
        return "\u00a3" in (self.unit_label or "")

    @property
    def percent(self) -> bool:
        return (self.unit_label or "").strip() == "%" or (self.kind == "proportion" and self.multiplier == 100)


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


def _rows(history: pa.Table) -> list[dict]:
    missing = [c for c in REQUIRED_COLUMNS if c not in history.column_names]
    if missing:
        raise ValueError(f"history is missing columns: {', '.join(missing)}")
    rows = history.to_pylist()
    for r in rows:
        r["breakdown"] = r["breakdown"] or ""
        r["breakdown_value"] = r["breakdown_value"] or ""
    return rows


def _shown(row: dict | None) -> float | None:
    """The value a chart may plot: None when absent or suppressed."""
    if row is None or row["suppressed"] or row["value"] is None:
        return None
    return float(row["value"])


class _History:
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
                                     bool(r["standardised"]))
        order = list(DOMAINS)
        return sorted(seen.values(), key=lambda k: (order.index(k.domain) if k.domain in order
                                                    else len(order), list(seen).index(k.code)))

    @staticmethod
    def _units(now: list[dict]) -> dict[str, dict[str, dict]]:
        units: dict[str, dict[str, dict]] = {"system": {}, "locality": {}, "practice": {}}
        for r in now:
            if r["breakdown"] == "" and r["level"] in units:
                units[r["level"]].setdefault(r["unit_code"], {"code": r["unit_code"], "name": r["unit_name"],
                                                              "parent": r["parent_code"]})
        return {level: dict(sorted(u.items())) for level, u in units.items()}

    def get(self, kpi: str, period: str, level: str, unit: str, breakdown: str = "",
            value: str = "") -> dict | None:
        return self.index.get((kpi, period, level, unit, breakdown, value))

    def series(self, kpi: str, level: str, unit: str) -> np.ndarray:
        vals = [_shown(self.get(kpi, p, level, unit)) for p in self.periods]
        return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)

    def system_of(self, practice: dict) -> str | None:
        locality = self.units["locality"].get(practice["parent"] or "")
        if locality is not None:
            return locality["parent"]
        if practice["parent"] in self.units["system"]:
            return practice["parent"]
        return next(iter(self.units["system"]), None) if len(self.units["system"]) == 1 else None


# ---------------------------------------------------------------- building the page

def _badge(status: str) -> dict:
    label, css, glyph = VARIATION[status]
    return {"label": label, "css": css, "glyph": glyph}


def _cell(row: dict | None, kpi: Kpi) -> dict:
    if row is None:
        return {"value": MISSING, "ci": MISSING, "numerator": MISSING, "denominator": MISSING,
                "suppressed": False}
    if row["suppressed"]:
        return {"value": SUPPRESSED, "ci": SUPPRESSED, "numerator": SUPPRESSED,
                "denominator": fmt_count(row["denominator"]), "suppressed": True}
    numerator = fmt_count(row["numerator"])
    if kpi.money and row["numerator"] is not None:  # a cost KPI's numerator is money too
        numerator = ("-" if row["numerator"] < 0 else "") + "\u00a3" + fmt_count(abs(row["numerator"]))
    return {"value": fmt_value(row["value"], kpi), "ci": fmt_ci(row["lower"], row["upper"], kpi),
            "numerator": numerator, "denominator": fmt_count(row["denominator"]),
            "suppressed": False}


def _target(kpi: Kpi, value: float | None) -> dict | None:
    if kpi.target is None:
        return None
    sign = {"higher_is_better": "\u2265", "lower_is_better": "\u2264"}.get(kpi.direction, "=")
    text = f"target {sign} {fmt_value(kpi.target, kpi)}"
    if value is None or kpi.direction == "neutral":
        return {"status": "n/a", "css": "none", "text": text}
    met = value >= kpi.target if kpi.direction == "higher_is_better" else value <= kpi.target
    return {"status": "Met" if met else "Missed", "css": "met" if met else "missed", "text": text}


def _status_now(h: _History, kpi: Kpi, level: str, unit: str) -> str:
    chart = spc.xmr(h.series(kpi.code, level, unit))
    if chart.n == 0:
        return spc.NO_DATA
    if not chart.has_limits:
        return spc.INSUFFICIENT
    return spc.signals(chart, kpi.direction)[h.periods.index(h.period)]


def _summary_row(h: _History, kpi: Kpi, level: str, unit: str) -> dict:
    row = h.get(kpi.code, h.period, level, unit)
    pos = h.periods.index(h.period)
    prev_period = h.periods[pos - 1] if pos else None
    now, before = _shown(row), _shown(h.get(kpi.code, prev_period, level, unit)) if prev_period else None
    delta = None if now is None or before is None else now - before
    return {"kpi": kpi, "cell": _cell(row, kpi), "change": fmt_change(delta, kpi),
            "previous": prev_period, "variation": _badge(_status_now(h, kpi, level, unit)),
            "target": _target(kpi, now)}


def _summary(h: _History) -> list[dict]:
    out = []
    for level in ("system", "locality"):
        for unit in h.units[level].values():
            domains = []
            for domain, domain_title in DOMAINS.items():
                kpis = [k for k in h.kpis if k.domain == domain]
                if kpis:
                    domains.append({"title": domain_title,
                                    "rows": [_summary_row(h, k, level, unit["code"]) for k in kpis]})
            out.append({"level": level, "unit": unit, "domains": domains})
    return out


def _episodes(chart: spc.XmR, periods: list[str], direction: str) -> list[dict]:
    """Signals as readable runs: which rule, which periods, improvement or concern."""
    good = {"higher_is_better": 1, "lower_is_better": -1}.get(direction)
    flags = [("beyond_limit", chart.beyond_limit, chart.side), ("shift", chart.shift, chart.side),
             ("trend", chart.trend_rising, np.ones_like(chart.side)),
             ("trend", chart.trend_falling, -np.ones_like(chart.side)),
             ("two_of_three", chart.two_of_three, chart.side)]
    valid = np.flatnonzero(~np.isnan(chart.values))
    out = []
    for rule, flag, sense in flags:
        group: list[int] = []
        for i in [*valid, None]:
            if i is not None and flag[i] and (not group or sense[group[0]] == sense[i]):
                group.append(i)
                continue
            if group:
                s = int(sense[group[0]])
                if good is None:
                    status = spc.NEUTRAL_HIGH if s > 0 else spc.NEUTRAL_LOW
                else:
                    status = spc.IMPROVEMENT if s == good else spc.CONCERN
                out.append({"rule": spc.RULE_LABELS[rule], "code": charts.RULE_CODES[rule],
                            "start": periods[group[0]], "end": periods[group[-1]], "points": len(group),
                            "where": _where(rule, s), "variation": _badge(status)})
            group = [i] if i is not None and flag[i] else []
    return sorted(out, key=lambda e: (periods.index(e["start"]), e["code"]))


def _where(rule: str, sense: int) -> str:
    if rule == "trend":
        return "rising" if sense > 0 else "falling"
    return "above the mean" if sense > 0 else "below the mean"


def _spc_block(h: _History, kpi: Kpi, system: dict) -> dict:
    chart = spc.xmr(h.series(kpi.code, "system", system["code"]))
    classes = spc.signals(chart, kpi.direction)
    svg = charts.spc_chart(h.periods, chart, classes, target=kpi.target,
                           label=f"XmR chart: {kpi.title}, {system['name']}",
                           fmt=lambda v: fmt_value(v, kpi))
    return {"svg": Markup(svg), "episodes": _episodes(chart, h.periods, kpi.direction),
            "n": chart.n, "trial": chart.has_limits and chart.trial_limits,
            "limits": {"mean": fmt_value(chart.mean, kpi), "lower": fmt_value(chart.lower, kpi),
                       "upper": fmt_value(chart.upper, kpi)} if chart.has_limits else None}


def _funnel_x(row: dict, kpi: Kpi) -> float | None:
    """The denominator a practice sits at; for age-standardised rates the 'derived denominator'
    (count / standardised rate), which gives the count the Poisson spread it actually has."""
    if kpi.standardised and kpi.kind == "rate":
        num, val = row["numerator"], row["value"]
        return num / (val / kpi.multiplier) if num and val else None
    return row["denominator"]


def _practice_block(h: _History, kpi: Kpi, system: dict, uid: str) -> dict:
    practices = [p for p in h.units["practice"].values() if h.system_of(p) == system["code"]]
    centre = _shown(h.get(kpi.code, h.period, "system", system["code"]))
    points, rows = [], []
    for p in practices:
        row = h.get(kpi.code, h.period, "practice", p["code"])
        x = _funnel_x(row, kpi) if _shown(row) is not None else None
        status = fn.NOT_ASSESSED
        if x and x > 0 and centre is not None and kpi.kind in fn.KINDS:
            status = fn.classify([row["value"]], [x], kpi.kind, centre, kpi.multiplier)[0]
            points.append(charts.FunnelPoint(p["code"], float(row["value"]), float(x), status))
        locality = h.units["locality"].get(p["parent"] or "")
        rows.append({"code": p["code"], "name": p["name"], "locality": locality["name"] if locality else "",
                     "cell": _cell(row, kpi),
                     "funnel": MISSING if status == fn.NOT_ASSESSED else fn.CLASS_LABELS[status]})
    note = None
    if kpi.kind not in fn.KINDS:
        note = f"No funnel plot: funnel limits apply to proportions and rates, not to a {kpi.kind}."
    elif centre is None:
        note = "No funnel plot: the system value for this period is missing or suppressed."
    elif not points:
        note = "No funnel plot: no practice has a value that can be shown."
    svg = None
    if note is None:
        svg = Markup(charts.funnel_chart(kpi.kind, centre, kpi.multiplier, points, uid=uid,
                                         label=f"Funnel plot: {kpi.title}, practices in {system['name']}, "
                                               f"{h.period}", fmt=lambda v: fmt_value(v, kpi)))
    return {"svg": svg, "note": note, "rows": rows, "centre": fmt_value(centre, kpi),
            "derived_x": kpi.standardised and kpi.kind == "rate",
            "any_suppressed": any(r["cell"]["suppressed"] for r in rows)}


def _breakdowns(h: _History, kpi: Kpi, system: dict) -> list[dict]:
    rows = [r for r in h.now if r["kpi"] == kpi.code and r["level"] == "system"
            and r["unit_code"] == system["code"] and r["breakdown"] != ""]
    rows.sort(key=lambda r: (r["breakdown"], r["breakdown_value"]))
    return [{"breakdown": r["breakdown"].replace("_", " "), "value": r["breakdown_value"],
             "cell": _cell(r, kpi)} for r in rows]


def _kpi_sections(h: _History) -> list[dict]:
    out = []
    for k_i, kpi in enumerate(h.kpis):
        systems = []
        for s_i, system in enumerate(h.units["system"].values()):
            systems.append({"unit": system, "spc": _spc_block(h, kpi, system),
                            "practices": _practice_block(h, kpi, system, uid=f"{k_i}-{s_i}"),
                            "breakdowns": _breakdowns(h, kpi, system)})
        out.append({"kpi": kpi, "domain": DOMAINS.get(kpi.domain, kpi.domain),
                    "target": fmt_value(kpi.target, kpi) if kpi.target is not None else None,
                    "systems": systems})
    return out


def _as_list(v) -> list[str]:
    if v is None:
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple, set)) else [str(v)]


def _header(h: _History, meta: dict) -> dict:
    run_ids = _as_list(meta.get("run_ids", meta.get("run_id"))) or sorted({r["run_id"] for r in h.rows})
    snapshots = (_as_list(meta.get("snapshot_ids", meta.get("snapshot_id")))
                 or sorted({str(r["snapshot_id"]) for r in h.rows if r.get("snapshot_id")}))
    generated = meta.get("generated") or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    known = {"run_ids", "run_id", "snapshot_ids", "snapshot_id", "generated"}
    extra = [(str(k).replace("_", " "), str(v)) for k, v in meta.items() if k not in known]
    start = min(r["period_start"] for r in h.now)
    end = max(r["period_end"] for r in h.now)
    return {"run_ids": run_ids, "snapshots": snapshots or ["not recorded"], "generated": str(generated),
            "extra": extra, "start": start.isoformat(), "end": end.isoformat()}


def _legend() -> dict:
    return {
        "spc": [(Markup(charts.legend_marker(kind, 1)), VARIATION[kind][0])
                for kind in (spc.COMMON, spc.IMPROVEMENT, spc.CONCERN, spc.NEUTRAL_HIGH)],
        "rules": [(charts.RULE_CODES[r], spc.RULE_LABELS[r]) for r in spc.RULES],
        "funnel": [(Markup(charts.legend_funnel_marker(s)), label) for s, label in
                   ((fn.WITHIN, "Within the 95% limits"), (fn.ABOVE_95, "Beyond a 95% limit"),
                    (fn.ABOVE_998, "Beyond a 99.8% limit"))],
    }


def build_context(history: pa.Table, period: str, *, title: str, meta: dict | None = None) -> dict:
    """Everything the template shows, as plain values (tests can inspect it without HTML)."""
    h = _History(_rows(history), period)
    return {"title": title, "period": period, "periods": h.periods, "header": _header(h, meta or {}),
            "summary": _summary(h), "kpis": _kpi_sections(h), "legend": _legend(),
            "run_length": spc.RUN_LENGTH, "min_firm": spc.MIN_POINTS_FIRM}


# ---------------------------------------------------------------- output

def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("casefind.reports", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def write_atomic(out_path: Path, text: str) -> Path:
    """Write via a temporary file in the same folder, then rename: readers never see half a pack."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    mode = out_path.stat().st_mode & 0o777 if out_path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        os.chmod(tmp, mode)  # mkstemp makes 0600; a pack is meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def render_pack(history: pa.Table, period: str, out_path: Path, *, title: str = "casefind KPI pack",
                meta: dict | None = None) -> Path:
    """Render the KPI pack for ``period`` to one self-contained HTML file; returns its path."""
    context = build_context(history, period, title=title, meta=meta)
    html = _environment().get_template("pack.html.j2").render(**context)
    return write_atomic(Path(out_path), html)
