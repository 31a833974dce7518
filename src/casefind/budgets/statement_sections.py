"""The budget statement's tables other than the month-by-month ones: tariffs, cohort
movement, shadow budgets, risk share, outcome adjustments and the simulation, each as plain
display values (strings), money in whole pounds adding up to the totals shown."""
from __future__ import annotations

import math

import pyarrow as pa

from casefind.budgets import statement_money as money

LEAVE_REASONS = (("left_died", "died"), ("left_deregistered", "deregistered"),
                 ("left_no_longer_qualifies", "no longer qualifies"))
SCOPES = (("whole_population", "Whole registered population"), ("cohort", "Cohort"))
LEVEL_ORDER = {"system": 0, "locality": 1, "practice": 2}


def _number(v) -> str:
    """A KPI target or value as given: whole numbers plainly, others to 2 places at most."""
    if v is None:
        return money.MISSING
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if not math.isfinite(v):
        return money.MISSING
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}".rstrip("0").rstrip(".")


def _lines(working) -> list[str]:
    if working is None:
        return []
    return [str(w) for w in working] if isinstance(working, (list, tuple)) else [str(working)]


def tariff_table(table: pa.Table) -> dict:
    rows = table.to_pylist()
    labels = {r["category"]: r["label"] or r["category"] for r in rows}
    lines = [{"category": r["category"], "label": r["label"] or r["category"], "people": money.count(r["people"]),
              "trimmed": money.count(r["trimmed"]),
              "merged_into": labels.get(r["merged_into"], r["merged_into"]) if r["merged_into"] else "",
              "baseline_mean": money.pence(r["baseline_mean"]), "trimmed_mean": money.pence(r["trimmed_mean"]),
              "uplift": money.percent(r["uplift"]), "tariff": money.pence(r["tariff"]),
              "incentive": money.pence(r["incentive"]) if r["incentive"] else money.MISSING,
              "source": r["source"] or ""} for r in rows]
    return {"lines": lines, "people": money.count(sum(int(r["people"] or 0) for r in rows)),
            "trimmed": money.count(sum(int(r["trimmed"] or 0) for r in rows)),
            "any_manual": any(r["source"] == "manual" for r in rows),
            "any_merged": any(r["merged_into"] for r in rows)}


def cohort_movement(table: pa.Table) -> dict:
    """Joiners and leavers by month and reason, and what each group cost."""
    rows = sorted(table.to_pylist(), key=lambda r: r["month"])
    names = ("cost_joiners", "cost_leavers", "budget_joiners", "budget_leavers")
    cols = {n: money.controlled([float(r[n] or 0.0) for r in rows]) for n in names}
    lines = []
    for i, r in enumerate(rows):
        left = sum(int(r[k] or 0) for k, _ in LEAVE_REASONS)
        lines.append({"month": r["month"], "joined": money.count(r["joined"]),
                      **{k: money.count(r[k]) for k, _ in LEAVE_REASONS}, "net": f"{int(r['joined'] or 0) - left:+,}",
                      **{n: money.pounds(cols[n][i]) for n in names}})
    joined = sum(int(r["joined"] or 0) for r in rows)
    left_by = {k: sum(int(r[k] or 0) for r in rows) for k, _ in LEAVE_REASONS}
    left = sum(left_by.values())
    cost = {n: sum(cols[n]) for n in names}
    return {"lines": lines, "reasons": LEAVE_REASONS,
            "total": {"joined": money.count(joined), **{k: money.count(v) for k, v in left_by.items()},
                      "net": f"{joined - left:+,}", **{n: money.pounds(v) for n, v in cost.items()}},
            "per_joiner": money.pounds(cost["cost_joiners"] / joined) if joined else money.MISSING,
            "per_leaver": money.pounds(cost["cost_leavers"] / left) if left else money.MISSING,
            "joined": joined, "left": left, "died": left_by["left_died"]}


def shadow_budgets(table: pa.Table) -> list[dict]:
    """The whole-population and the cohort shadow budgets of each unit, side by side."""
    units: dict[tuple, dict] = {}
    for r in table.to_pylist():
        key = (LEVEL_ORDER.get(r["level"], 9), r["level"], r["unit_code"])
        u = units.setdefault(key, {"level": r["level"], "code": r["unit_code"],
                                   "name": r["unit_name"] or r["unit_code"], "scopes": {}})
        budget, actual = money.whole(float(r["budget"] or 0.0)), money.whole(float(r["actual"] or 0.0))
        u["scopes"][r["scope"]] = {"people": money.count(r["people"]), "budget": money.pounds(budget),
                                   "actual": money.pounds(actual), "variance": money.pounds(budget - actual)}
    empty = dict.fromkeys(("people", "budget", "actual", "variance"), money.MISSING)
    out = []
    for _, u in sorted(units.items()):
        out.append({**u, "scopes": [u["scopes"].get(s, empty) for s, _ in SCOPES]})
    return out


def risk_share(share: dict | None) -> dict | None:
    if not share:
        return None
    return {"rule": _lines(share.get("rule")), "variance": money.pounds(share.get("variance")),
            "commissioner": money.pounds(share.get("commissioner_share")),
            "provider": money.pounds(share.get("provider_share")),
            "carried": money.pounds(share.get("carried_forward")), "working": _lines(share.get("working"))}


def outcome_adjustments(outcomes: list[dict]) -> dict:
    lines = [{"kpi": str(o.get("kpi", "")), "title": str(o.get("title") or o.get("kpi", "")),
              "target": _number(o.get("target")), "actual": _number(o.get("actual")),
              "met": {True: "met", False: "not met"}.get(o.get("met"), money.MISSING),
              "adjustment": money.pounds(o.get("adjustment")), "working": _lines(o.get("working"))}
             for o in outcomes]
    total = math.fsum(float(o.get("adjustment") or 0.0) for o in outcomes)
    return {"lines": lines, "total": money.pounds(total)}


def _simulation_year(rows: list[dict]) -> dict:
    base = money.controlled([float(r["baseline_total"]) for r in rows])
    scen = money.controlled([float(r["scenario_total"]) for r in rows])
    patients = sum(int(r["patients"]) for r in rows)
    lines = [{"cohort": r["cohort"], "patients": money.count(r["patients"]),
              "baseline_mean": money.pounds(r["baseline_mean"]), "scenario_mean": money.pounds(r["scenario_mean"]),
              "difference": money.pounds(r["difference"]), "baseline_total": money.pounds(b),
              "scenario_total": money.pounds(s), "total_difference": money.pounds(s - b)}
             for r, b, s in zip(rows, base, scen)]
    b, s = sum(base), sum(scen)

    def mean(total: int) -> str:
        return money.pounds(total / patients) if patients else money.MISSING

    return {"year": rows[0]["year"], "lines": lines,
            "total": {"patients": money.count(patients), "baseline_total": money.pounds(b),
                      "scenario_total": money.pounds(s), "total_difference": money.pounds(s - b),
                      "baseline_mean": mean(b), "scenario_mean": mean(s),
                      "difference": mean(s - b)}}


def simulation_table(table: pa.Table | None, meta: dict | None) -> dict | None:
    """The handbook's simulation table, one block per simulated year; None when not simulated."""
    if table is None:
        return None
    rows = table.to_pylist()
    years = sorted({int(r["year"]) for r in rows})
    blocks = [_simulation_year([r for r in rows if int(r["year"]) == y]) for y in years]
    meta = meta or {}
    assumptions = meta.get("assumptions")
    about = [(label, str(meta[key])) for key, label in (("scenario", "Scenario"), ("title", "Title"),
                                                         ("file", "Scenario file"), ("as_of", "Baseline year to"),
                                                         ("run_id", "Run id")) if meta.get(key)]
    return {"years": blocks, "about": about, "assumptions": _lines(assumptions)}
