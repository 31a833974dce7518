"""Risk share and outcome-linked adjustments, each with its working written out.

Risk share: the variance (budget - actual; positive is an underspend) is split band by
band, each band a slice of the variance measured as a fraction of the budget: in the
example file the first 2% is all the provider's, the rest shared 50/50. The provider's
share is then capped (a fraction of the budget), and a fraction of it may be carried into
next year rather than settled now. The same bands apply to over- and underspends.

Outcomes: a KPI from the KPI history (system level, no breakdown, not age-standardised, at
the period named or the year's last complete month) against its target: met, the budget is
topped up by ``reward`` (a fraction); missed, reduced by ``penalty``. A KPI not in the
history adjusts nothing, and the statement says why.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from casefind.budgets.define import Outcome, RiskShare
from casefind.errors import CasefindError


def _money(x: float) -> str:
    return f"-£{-x:,.2f}" if x < 0 else f"£{x:,.2f}"


def risk_share(rs: RiskShare, budget: float, variance: float) -> dict:
    """The provider's and commissioner's shares of ``variance``, with the working."""
    what = "underspend" if variance >= 0 else "overspend"
    size, sign = abs(variance), 1.0 if variance >= 0 else -1.0
    working = [f"variance {_money(variance)} ({what}) on a budget of {_money(budget)}"]
    provider, lower = 0.0, 0.0
    for band in rs.bands:
        upper = size if band.up_to is None else min(size, band.up_to * budget)
        amount = max(upper - lower, 0.0)
        if amount > 0:
            edge = f"up to {band.up_to:.1%} of the budget" if band.up_to is not None else "beyond"
            working.append(f"band {edge}: {_money(amount)} x provider share {band.provider:.0%} = "
                           f"{_money(amount * band.provider)}")
        provider += amount * band.provider
        lower = max(lower, upper)
    provider *= sign
    if rs.cap is not None and abs(provider) > rs.cap * budget:
        working.append(f"provider share {_money(provider)} capped at {rs.cap:.1%} of the budget")
        provider = sign * rs.cap * budget
    carried = provider * rs.carry_forward
    if rs.carry_forward:
        working.append(f"{rs.carry_forward:.0%} of the provider share carried into next year: {_money(carried)}")
    working.append(f"provider {_money(provider)}, commissioner {_money(variance - provider)}")
    return {"rule": describe(rs), "variance": variance, "provider_share": provider,
            "commissioner_share": variance - provider, "carried_forward": carried, "working": working}


def describe(rs: RiskShare) -> str:
    parts, lower = [], 0.0
    for band in rs.bands:
        edge = f"{lower:.1%}-{band.up_to:.1%}" if band.up_to is not None else f"beyond {lower:.1%}"
        parts.append(f"{edge} of the budget: provider {band.provider:.0%}")
        lower = band.up_to or lower
    if rs.cap is not None:
        parts.append(f"provider share capped at {rs.cap:.1%} of the budget")
    if rs.carry_forward:
        parts.append(f"{rs.carry_forward:.0%} of the provider share carried forward")
    return "; ".join(parts)


def outcomes(items: tuple[Outcome, ...], history_path: Path, period: str, budget: float) -> list[dict]:
    """Each outcome's KPI against its target and the adjustment it makes."""
    return [_outcome(o, history_path, o.period or period, budget) for o in items]


def _outcome(o: Outcome, history_path: Path, period: str, budget: float) -> dict:
    row, why = _kpi_row(o, history_path, period)
    out = {"kpi": o.kpi, "kpi_set": o.kpi_set, "title": o.title, "period": period, "target": o.target,
           "actual": None, "met": None, "adjustment": 0.0, "working": why}
    if row is None:
        return out
    target = o.target if o.target is not None else row["target"]
    direction = o.direction or row["direction"]
    out.update(target=target, actual=row["value"])
    if target is None or row["value"] is None or direction not in ("lower_is_better", "higher_is_better"):
        out["working"] = f"{o.kpi} {period}: no target or direction to judge it by; no adjustment"
        return out
    met = row["value"] <= target if direction == "lower_is_better" else row["value"] >= target
    adjustment = budget * (o.reward if met else -o.penalty)
    rel = "<=" if direction == "lower_is_better" else ">="
    out.update(met=met, adjustment=adjustment, working=(
        f"{o.kpi} {period} (system {row['unit_code']}): {row['value']:.4g} {rel} target {target:.4g}? "
        f"{'met' if met else 'missed'}: {'+' if met else '-'}{(o.reward if met else o.penalty):.2%} of "
        f"{_money(budget)} = {_money(adjustment)}"))
    return out


def _kpi_row(o: Outcome, path: Path, period: str) -> tuple[dict | None, str]:
    from casefind.kpis import history

    try:
        table = history.read(path, o.kpi_set, [period])
    except CasefindError as e:
        return None, f"{o.kpi} {period}: the KPI history could not be read ({e.message}); no adjustment"
    keep = pc.and_(pc.and_(pc.equal(table["kpi"], o.kpi), pc.equal(table["level"], "system")),
                   pc.and_(pc.equal(table["breakdown"], ""), pc.invert(table["standardised"])))
    rows = table.filter(keep).to_pylist()
    if not rows:
        return None, (f"{o.kpi} ({o.kpi_set}) {period} is not in the KPI history {path}; no adjustment "
                      f"(run casefind kpi {o.kpi_set} --period {period})")
    return rows[0], ""
