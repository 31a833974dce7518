"""The budget statement: one self-contained, printable HTML file from a budget output folder.

Why one file: like the KPI pack it is emailed and opened on locked-down machines, so CSS and
SVG charts are inline, nothing is fetched and no script runs. Every figure comes from the
folder (statement_folder); the only things computed here are sums over months or units, the
SPC furniture (casefind.reports.spc) and the rounding to whole pounds (statement_money), done
so that the rows of every table add up to the totals printed. The statement holds counts
and money only: it never reads the cohort register or the tagged records, so no pseudonym
can appear in it.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import jinja2
from markupsafe import Markup

from casefind.budgets import statement_money as money
from casefind.budgets.statement_chart import cumulative_chart
from casefind.budgets.statement_folder import BudgetFolder, read_folder
from casefind.budgets.statement_sections import (
    cohort_movement,
    outcome_adjustments,
    risk_share,
    shadow_budgets,
    simulation_table,
    tariff_table,
)
from casefind.outputs import write_atomic
from casefind.reports import charts, spc

TEMPLATES = Path(__file__).parent / "templates"
SPEND_DIRECTION = "lower_is_better"  # as the KPI pack's cost per head: spend above its usual level is a concern
VARIATION = {spc.COMMON: "common cause", spc.IMPROVEMENT: "special cause improvement (spend lower than usual)",
             spc.CONCERN: "special cause concern (spend higher than usual)", spc.INSUFFICIENT: "too few points",
             spc.NO_DATA: "no data"}
LEVEL_NAMES = {"practice": "Practice", "locality": "Locality", "system": "System"}


def _rows(table, **where) -> list[dict]:
    return [r for r in table.to_pylist() if all(r[k] == v for k, v in where.items())]


def _months(folder: BudgetFolder) -> list[str]:
    return sorted({r["month"] for r in folder.monthly.to_pylist()})


def _complete_months(folder: BudgetFolder) -> set[str]:
    """Months within the data for the system (the data cut-off is one for all units)."""
    return {r["month"] for r in _rows(folder.monthly, level="system", category="all") if r["complete"]}


def _money_columns(rows: list[dict], names: tuple[str, ...]) -> dict[str, list[int]]:
    """Each column in whole pounds, rows adding up to the column's rounded total."""
    return {n: money.controlled([float(r[n] or 0.0) for r in rows]) for n in names}


# ---------------------------------------------------------------- month by month

def _month_table(rows: list[dict]) -> dict:
    """One unit's months, with totals for the complete months, the rest and the whole year.

    Complete and incomplete months are each rounded to their own subtotal, so the three
    total rows add up as printed. A variance is shown for complete months only: past the
    data, the actual is partial or nil and budget minus actual would read as an underspend.
    """
    groups = {"to_date": [r for r in rows if r["complete"]], "rest": [r for r in rows if not r["complete"]]}
    shown: dict[str, dict[str, int]] = defaultdict(dict)
    totals: dict[str, dict[str, int]] = {}
    for name in ("budget", "actual"):
        year = money.whole(math.fsum(float(r[name] or 0.0) for r in rows))
        to_date = money.whole(math.fsum(float(r[name] or 0.0) for r in groups["to_date"]))
        totals[name] = {"to_date": to_date, "rest": year - to_date, "year": year}
        for key, group in groups.items():
            for r, v in zip(group, money.controlled([float(r[name] or 0.0) for r in group], totals[name][key])):
                shown[r["month"]][name] = v
    lines = [{"month": r["month"], "people": money.count(r["people"]),
              "budget": money.pounds(shown[r["month"]]["budget"]),
              "actual": money.pounds(shown[r["month"]]["actual"]),
              "variance": money.pounds(shown[r["month"]]["budget"] - shown[r["month"]]["actual"])
              if r["complete"] else money.MISSING,
              "forecast": money.pounds(r["forecast"]), "complete": bool(r["complete"])} for r in rows]
    total_lines = {k: {"budget": money.pounds(totals["budget"][k]), "actual": money.pounds(totals["actual"][k])}
                   for k in ("to_date", "rest", "year")}
    total_lines["to_date"]["variance"] = money.pounds(totals["budget"]["to_date"] - totals["actual"]["to_date"])
    return {"lines": lines, "totals": total_lines, "months_done": len(groups["to_date"]), "months": len(rows),
            "raw": totals}


def _spc_block(rows: list[dict], name: str) -> dict:
    """XmR of monthly in-scope spend over the complete months (months past the data are left out)."""
    done = [r for r in rows if r["complete"]]
    periods = [r["month"] for r in done]
    values = [float("nan") if r["actual"] is None else float(r["actual"]) for r in done]
    chart = spc.xmr(values, bounds=(0.0, None))  # spend is never negative: a limit below 0 is clipped
    classes = spc.classify(chart, SPEND_DIRECTION)
    svg = charts.spc_chart(periods, chart, classes, target=None, fmt=money.pounds,
                           label=f"XmR chart of monthly in-scope spend, {name}")
    latest = spc.latest_class(chart, SPEND_DIRECTION)
    status = latest.status
    icon = Markup(charts.variation_icon_svg(latest.icon)) if latest.icon else None
    signalled = [f"{p} ({', '.join(spc.RULE_LABELS[r] for r in chart.rules_at(i))})"
                 for i, p in enumerate(periods) if chart.any_signal[i]]
    limits = None
    if chart.has_limits:
        limits = {"mean": money.pounds(chart.mean), "lower": money.pounds(max(chart.lower, 0.0)),
                  "upper": money.pounds(chart.upper), "trial": chart.trial_limits, "clipped": chart.lower < 0}
    return {"svg": Markup(svg), "n": chart.n, "limits": limits, "status": VARIATION.get(status, status), "icon": icon,
            "signals": signalled, "legend": [(Markup(charts.legend_marker(k, 1)), VARIATION[k])
                                             for k in (spc.COMMON, spc.IMPROVEMENT, spc.CONCERN)],
            "rules": [(charts.RULE_CODES[r], spc.RULE_LABELS[r]) for r in spc.RULES]}


def _systems(folder: BudgetFolder) -> list[dict]:
    rows = sorted(_rows(folder.monthly, level="system", category="all"), key=lambda r: (r["unit_code"], r["month"]))
    by_unit: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_unit[r["unit_code"]].append(r)
    out = []
    for code, months in by_unit.items():
        name = months[0]["unit_name"] or code
        forecast = _latest_forecast(months)
        out.append({"code": code, "name": name, "table": _month_table(months), "spc": _spc_block(months, name),
                    "forecast": forecast, "forecast_text": money.pounds(forecast),
                    "cumulative": _cumulative(months, name, forecast)})
    return out


def _cumulative(rows: list[dict], name: str, forecast: float | None) -> Markup:
    actual = [float(r["actual"] or 0.0) if r["complete"] else None for r in rows]
    return Markup(cumulative_chart([r["month"] for r in rows], [float(r["budget"] or 0.0) for r in rows], actual,
                                   forecast, label=f"Cumulative budget and actual spend, {name}"))


def _latest_forecast(rows: list[dict]) -> float | None:
    done = [r for r in rows if r["complete"] and r["forecast"] is not None]
    return float(done[-1]["forecast"]) if done else None


# ---------------------------------------------------------------- practices and localities

def _unit_rows(folder: BudgetFolder, level: str, complete: set[str]) -> list[dict]:
    """Per unit at ``level``: the year's budget, budget and actual to date, people and forecast now."""
    units: dict[str, dict] = {}
    for r in sorted(_rows(folder.monthly, level=level, category="all"), key=lambda r: r["month"]):
        u = units.setdefault(r["unit_code"], {"code": r["unit_code"], "name": r["unit_name"] or r["unit_code"],
                                              "parent": r["parent_code"], "budget_year": 0.0, "budget": 0.0,
                                              "actual": 0.0, "people": None, "forecast": None})
        u["budget_year"] += float(r["budget"] or 0.0)
        if r["month"] in complete:
            u["budget"] += float(r["budget"] or 0.0)
            u["actual"] += float(r["actual"] or 0.0)
            u["people"], u["forecast"] = r["people"], r["forecast"]
    return sorted(units.values(), key=lambda u: (u["parent"] or "", u["code"]))


def _unit_table(folder: BudgetFolder, level: str, complete: set[str], parents: dict[str, str]) -> dict:
    rows = _unit_rows(folder, level, complete)
    cols = _money_columns(rows, ("budget_year", "budget", "actual", "forecast"))
    lines = []
    for i, u in enumerate(rows):
        lines.append({"code": u["code"], "name": u["name"], "parent": parents.get(u["parent"] or "", u["parent"] or ""),
                      "people": money.count(u["people"]), "budget_year": money.pounds(cols["budget_year"][i]),
                      "budget": money.pounds(cols["budget"][i]), "actual": money.pounds(cols["actual"][i]),
                      "variance": money.pounds(cols["budget"][i] - cols["actual"][i]),
                      "forecast": money.pounds(cols["forecast"][i]) if u["forecast"] is not None else money.MISSING})
    people = sum(int(u["people"] or 0) for u in rows)
    total = {k: money.pounds(sum(v)) for k, v in cols.items()}
    total["variance"] = money.pounds(sum(cols["budget"]) - sum(cols["actual"]))
    total["people"] = money.count(people)
    return {"level": level, "title": LEVEL_NAMES[level], "lines": lines, "total": total}


def _units(folder: BudgetFolder, complete: set[str]) -> list[dict]:
    names = {r["unit_code"]: r["unit_name"] or r["unit_code"] for r in folder.monthly.to_pylist()}
    return [t for t in (_unit_table(folder, lvl, complete, names) for lvl in ("locality", "practice")) if t["lines"]]


# ---------------------------------------------------------------- headline and checks

def _headline(folder: BudgetFolder, systems: list[dict]) -> dict:
    """The year's budget and cohort as the run states them; to-date figures from the complete months."""
    meta, totals = folder.meta, folder.meta["totals"]
    year_budget = money.whole(float(totals["budget"]))
    to_date = {k: sum(s["table"]["raw"][k]["to_date"] for s in systems) for k in ("budget", "actual")}
    forecasts = [s["forecast"] for s in systems if s["forecast"] is not None]
    forecast = money.whole(math.fsum(forecasts)) if forecasts else None
    adjusted = meta.get("adjusted_total")
    return {"year": meta["year"], "title": meta.get("title") or meta["budget"], "budget_name": meta["budget"],
            "people_start": money.count(totals["people_start"]), "people_end": money.count(totals["people_end"]),
            "budget": money.pounds(year_budget), "budget_to_date": money.pounds(to_date["budget"]),
            "actual": money.pounds(to_date["actual"]), "variance": money.pounds(to_date["budget"] - to_date["actual"]),
            "underspend": to_date["budget"] >= to_date["actual"],
            "months_done": sum(s["table"]["months_done"] for s in systems) // max(len(systems), 1),
            "forecast": money.pounds(forecast), "forecast_variance":
                money.pounds(year_budget - forecast) if forecast is not None else money.MISSING,
            "adjusted_total": money.pounds(adjusted) if adjusted is not None else money.MISSING,
            "adjusted_means": str(meta.get("adjusted_total_means") or "")}


def _checks(folder: BudgetFolder, systems: list[dict]) -> list[str]:
    """Differences between the statement's totals and the monthly table, said rather than hidden."""
    totals, notes = folder.meta["totals"], []
    for name, label in (("budget", "budget"), ("actual", "actual")):
        monthly = sum(s["table"]["raw"][name]["year"] for s in systems)
        stated = money.whole(float(totals[name]))
        if systems and monthly != stated:
            notes.append(f"The months add up to a {label} of {money.pounds(monthly)}, the run's total is "
                         f"{money.pounds(stated)}: the difference is {money.pounds(stated - monthly)}.")
    return notes


def _plain(value) -> str:
    """A stated method's value for a reader: numbers to 2 places at most, mappings as 'key value'."""
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')} {_plain(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _provenance(meta: dict) -> list[tuple[str, str]]:
    fields = [("Budget file", meta.get("file")), ("File SHA-256", meta.get("file_sha256")),
              ("Store snapshot", meta.get("store_snapshot")), ("Data as of", meta.get("as_of")),
              ("Run id", meta.get("run_id")), ("Year", f"{meta['year']} ({meta.get('year_start', '?')} to "
                                                    f"{meta.get('year_end', '?')})"),
              ("Payment profile", meta.get("profile")), ("Tariff baseline year", meta.get("baseline_year")),
              ("Outlier trim", meta.get("trim"))]
    return [(k, _plain(v)) for k, v in fields if v not in (None, "")]


def build_context(folder: BudgetFolder) -> dict:
    """Everything the template shows, as plain values (tests can inspect it without HTML)."""
    complete = _complete_months(folder)
    systems = _systems(folder)
    return {"head": _headline(folder, systems), "provenance": _provenance(folder.meta),
            "months": _months(folder), "systems": systems, "units": _units(folder, complete),
            "tariffs": tariff_table(folder.tariffs), "movement": cohort_movement(folder.movement),
            "shadow": shadow_budgets(folder.shadow), "risk_share": risk_share(folder.meta.get("risk_share")),
            "outcomes": outcome_adjustments(folder.meta.get("outcomes") or []),
            "simulation": simulation_table(folder.simulation, folder.simulation_meta),
            "notes": [str(n) for n in folder.meta.get("notes") or []], "checks": _checks(folder, systems)}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                              autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_statement(folder: Path, out: Path | None = None) -> Path:
    """Write the statement for ``folder`` (to ``folder/statement.html`` unless ``out``); its path."""
    data = read_folder(folder)
    html = _environment().get_template("statement.html.j2").render(**build_context(data))
    target = Path(out) if out is not None else data.path / "statement.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(target, lambda tmp: Path(tmp).write_text(html, encoding="utf-8", newline="\n"))
