"""The pack's data for BI tools: one row per KPI, unit and period, with the KPI's framework,
high-integrity flag and cohorts, and the SPC columns the pack draws from (mean, process limits
and whether they were clipped, variation and assurance classes and their Making Data Count
icon names), so Power BI can show the same icons.

Why from the pack's own functions: a BI report and the pack must never disagree, so the rows
come from ``pack.chart_for`` and ``spc.classify`` exactly as the charts do. Published figures
only: the unrounded ``exact_*`` columns are never written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from casefind.errors import UsageError
from casefind.reports import spc
from casefind.reports.pack import PackOptions, chart_for, check_options
from casefind.reports.view import LEVELS, History, Kpi, no_data, read_rows, shown

EXPORT_SCHEMA = pa.schema([
    ("kpi", pa.string()), ("title", pa.string()), ("basis", pa.string()), ("chart", pa.string()),
    ("framework", pa.string()), ("high_integrity", pa.bool_()), ("cohorts", pa.string()),
    ("direction", pa.string()), ("target", pa.float64()), ("period", pa.string()), ("level", pa.string()),
    ("unit_code", pa.string()), ("unit_name", pa.string()), ("parent_code", pa.string()),
    ("value", pa.float64()), ("numerator", pa.float64()), ("denominator", pa.float64()),
    ("suppressed", pa.bool_()), ("no_data", pa.bool_()),
    ("spc_mean", pa.float64()), ("spc_lower", pa.float64()), ("spc_upper", pa.float64()),
    ("spc_lower_clipped", pa.bool_()), ("spc_upper_clipped", pa.bool_()),
    ("spc_lower_computed", pa.float64()), ("spc_upper_computed", pa.float64()),
    ("spc_segment", pa.int64()), ("spc_rules", pa.string()),
    ("variation", pa.string()), ("variation_icon", pa.string()),
    ("assurance", pa.string()), ("assurance_icon", pa.string()),
])


def _num(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _spc_columns(chart: spc.XmR | None, classes, i: int, kpi: Kpi) -> dict:
    if chart is None or not chart.has_limits or np.isnan(chart.values[i]):
        status = None if chart is None else (spc.NO_DATA if np.isnan(chart.values[i]) else spc.INSUFFICIENT)
        return {"variation": status}
    point = classes[i]
    status = spc.assurance_between(chart.lower_at[i], chart.upper_at[i], kpi.direction, kpi.target)
    return {"spc_mean": _num(chart.mean_at[i]), "spc_lower": _num(chart.lower_shown_at[i]),
            "spc_upper": _num(chart.upper_shown_at[i]), "spc_lower_clipped": bool(chart.lower_clipped_at[i]),
            "spc_upper_clipped": bool(chart.upper_clipped_at[i]), "spc_lower_computed": _num(chart.lower_at[i]),
            "spc_upper_computed": _num(chart.upper_at[i]), "spc_segment": int(chart.segment[i]),
            "spc_rules": ",".join(chart.rules_at(i)), "variation": point.status, "variation_icon": point.icon,
            "assurance": status, "assurance_icon": spc.ASSURANCE_ICONS.get(status)}


def _about(kpi: Kpi) -> dict:
    """framework and cohorts as the history holds them; high_integrity null when not assessed."""
    return {"framework": kpi.framework, "high_integrity": kpi.integrity.high_integrity,
            "cohorts": None if kpi.cohorts is None else ",".join(kpi.cohorts)}


def pack_rows(history: pa.Table, period: str, options: PackOptions | None = None) -> pa.Table:
    """Every unit's series for every KPI up to ``period``, with its SPC columns."""
    options = options or PackOptions()
    h = History(read_rows(history), period)
    check_options(h, options)
    out = []
    for kpi in h.kpis:
        for level in LEVELS:
            for unit in h.units[level].values():
                chart = chart_for(h, kpi, level, unit["code"], options)
                classes = spc.classify(chart, kpi.direction) if chart is not None else None
                for i, p in enumerate(h.periods):
                    row = h.get(kpi.code, p, level, unit["code"])
                    if row is None:
                        continue
                    out.append({"kpi": kpi.code, "title": kpi.title, "basis": kpi.basis,
                                "chart": "xmr" if chart is not None else "run", **_about(kpi),
                                "direction": kpi.direction,
                                "target": kpi.target, "period": p, "level": level, "unit_code": unit["code"],
                                "unit_name": row["unit_name"], "parent_code": row["parent_code"],
                                "value": shown(row), "numerator": None if row["suppressed"] else row["numerator"],
                                "denominator": row["denominator"], "suppressed": bool(row["suppressed"]),
                                "no_data": no_data(row), **_spc_columns(chart, classes, i, kpi)})
    return pa.Table.from_pylist(out, schema=EXPORT_SCHEMA)


def check_export_path(out: Path) -> Path:
    """A .csv or .parquet file in a folder that exists (checked before anything is written)."""
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise UsageError(f"{out}: write .csv or .parquet", option="--export")
    if not out.parent.is_dir():
        raise UsageError(f"the folder {out.parent} does not exist", option="--export")
    return out


def export_pack(history: pa.Table, period: str, out: Path, options: PackOptions | None = None) -> int:
    """Write ``pack_rows`` to .csv (spreadsheet-safe) or .parquet, atomically; returns the rows."""
    import pyarrow.parquet as pq

    from casefind.outputs import write_atomic, write_csv

    out = check_export_path(out)
    table = pack_rows(history, period, options)
    if out.suffix == ".csv":
        write_csv(table, out)
    else:
        write_atomic(out, lambda tmp: pq.write_table(table, tmp))
    return table.num_rows
