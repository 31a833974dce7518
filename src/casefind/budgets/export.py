"""The budget folder as flat tables for BI tools (Power BI, Excel, Tableau): Parquet or CSV.

Why a separate export: the folder's own files follow the run's interface and may gain
columns; BI reports bind to column names, so each exported table has a fixed list of
columns and types (``TABLES``), every row carries the budget and year it belongs to (so
several years can be appended into one model), and months carry a real date.

CSV files are UTF-8 with a byte-order mark (Excel then reads £ and accents correctly),
dates ISO 8601 (YYYY-MM-DD), cells a spreadsheet would evaluate neutralised
(casefind.outputs.write_csv). The tagged activity is record-level pseudonymised data (one row
per activity record, with the patient's pseudonym): it is written apart, under
``record_level/``, and named as such in ``export.json``, so that it is not loaded into a
report by mistake. The cohort register is never exported.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from casefind.budgets.statement_folder import BudgetFolder, BudgetFolderError, read_folder, read_records
from casefind.errors import UsageError
from casefind.outputs import write_atomic, write_csv

FORMATS = ("parquet", "csv")
RECORD_LEVEL = "record_level"
S, N, F, D, B = pa.string(), pa.int64(), pa.float64(), pa.date32(), pa.bool_()  # N: whole numbers
KEYS = (("budget_name", S), ("budget_year", S))
TABLES: dict[str, tuple[tuple[str, pa.DataType], ...]] = {
    "monthly": (("level", S), ("unit_code", S), ("unit_name", S), ("parent_code", S), ("month", S),
                ("month_start", D), ("category", S), ("people", N), ("cohort_days", N), ("budget", F),
                ("actual", F), ("variance", F), ("forecast", F), ("complete", B)),
    "tariffs": (("category", S), ("label", S), ("people", N), ("trimmed", N), ("merged_into", S),
                ("baseline_mean", F), ("trimmed_mean", F), ("uplift", F), ("tariff", F), ("incentive", F),
                ("source", S)),
    "movement": (("month", S), ("month_start", D), ("joined", N), ("left_died", N), ("left_deregistered", N),
                 ("left_no_longer_qualifies", N), ("cost_joiners", F), ("cost_leavers", F),
                 ("budget_joiners", F), ("budget_leavers", F)),
    "shadow": (("scope", S), ("level", S), ("unit_code", S), ("unit_name", S), ("people", N), ("budget", F),
               ("actual", F), ("variance", F)),
    "simulation": (("cohort", S), ("year", N), ("patients", N), ("baseline_mean", F), ("scenario_mean", F),
                   ("difference", F), ("baseline_total", F), ("scenario_total", F)),
    "outcomes": (("kpi", S), ("title", S), ("target", F), ("actual", F), ("met", B), ("adjustment", F),
                 ("working", S)),
    "summary": (("title", S), ("year_start", D), ("year_end", D), ("as_of", D), ("run_id", S),
                ("store_snapshot", S), ("file_sha256", S), ("profile", S), ("people_start", N), ("people_end", N),
                ("budget", F), ("actual", F), ("variance", F), ("risk_share_variance", F),
                ("commissioner_share", F), ("provider_share", F), ("carried_forward", F), ("adjusted_total", F)),
    "tagged_activity": (("patient_id", S), ("practice_code", S), ("category", S), ("record", N), ("spell_id", S),
                        ("start_date", D), ("setting", S), ("provider_code", S), ("funding", S), ("cost", F),
                        ("month", S)),
}


def _month_start(month: str | None) -> dt.date | None:
    return dt.date.fromisoformat(f"{month}-01") if month else None


def _date(value) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise BudgetFolderError(f"statement.json: {value!r} is not a date (YYYY-MM-DD)") from None


def _int(value) -> int | None:
    return None if value is None else int(value)


def _float(value) -> float | None:
    return None if value is None else float(value)


def _text(value) -> str | None:
    if value is None:
        return None
    return "\n".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _summary_row(meta: dict) -> dict:
    totals, share = meta["totals"], meta.get("risk_share") or {}
    return {"title": meta.get("title") or meta["budget"], "year_start": _date(meta.get("year_start")),
            "year_end": _date(meta.get("year_end")), "as_of": _date(meta.get("as_of")),
            "run_id": _text(meta.get("run_id")), "store_snapshot": _text(meta.get("store_snapshot")),
            "file_sha256": _text(meta.get("file_sha256")), "profile": _text(meta.get("profile")),
            **{k: _int(totals.get(k)) for k in ("people_start", "people_end")},
            **{k: _float(totals.get(k)) for k in ("budget", "actual", "variance")},
            "risk_share_variance": _float(share.get("variance")),
            **{k: _float(share.get(k)) for k in ("commissioner_share", "provider_share", "carried_forward")},
            "adjusted_total": _float(meta.get("adjusted_total"))}


def _outcome_rows(meta: dict) -> list[dict]:
    return [{"kpi": _text(o.get("kpi")), "title": _text(o.get("title")), "target": _float(o.get("target")),
             "actual": _float(o.get("actual")), "met": o.get("met"), "adjustment": _float(o.get("adjustment")),
             "working": _text(o.get("working"))} for o in meta.get("outcomes") or []]


def _rows(folder: BudgetFolder, name: str) -> list[dict] | None:
    if name == "summary":
        return [_summary_row(folder.meta)]
    if name == "outcomes":
        return _outcome_rows(folder.meta)
    table = folder.table(name)
    if table is None:
        return None
    rows = table.to_pylist()
    if name == "movement":
        for r in rows:
            r["month_start"] = _month_start(r["month"])
    return rows


def flat_table(name: str, rows: list[dict], meta: dict) -> pa.Table:
    """``rows`` with the budget keys first and exactly TABLES[name]'s columns and types."""
    keys = {"budget_name": str(meta["budget"]), "budget_year": str(meta["year"])}
    schema = pa.schema(KEYS + TABLES[name])
    columns = {n: [keys[n]] * len(rows) for n, _ in KEYS}
    columns |= {n: [r.get(n) for r in rows] for n, _ in TABLES[name]}
    table = pa.table({n: pa.array(columns[n], t) for n, t in zip(schema.names, schema.types)})
    record_level = name == "tagged_activity"
    return table.replace_schema_metadata({"casefind.table": name, "casefind.budget": keys["budget_name"],
                                          "casefind.year": keys["budget_year"],
                                          "casefind.record_level": "pseudonymised" if record_level else "no"})


def _write(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "csv":
        write_csv(table, path, bom=True)
    else:
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def export_for_bi(folder: str | Path, out_dir: str | Path, fmt: str = "parquet", *, records: bool = True) -> dict:
    """Write the flat tables of ``folder`` into ``out_dir``; returns what ``export.json`` says."""
    if fmt not in FORMATS:
        raise UsageError(f"{fmt!r} is not a format", f"give one of {', '.join(FORMATS)}", option="--format")
    data = read_folder(folder)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file; give a folder to write the tables in", option="--export")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TABLES:
        if name == "tagged_activity":
            continue
        rows = _rows(data, name)
        if rows is None:
            continue
        table = flat_table(name, rows, data.meta)
        _write(table, out_dir / f"{name}.{fmt}", fmt)
        written.append({"table": name, "file": f"{name}.{fmt}", "rows": table.num_rows,
                        "columns": table.column_names, "record_level": False})
    if records:
        (out_dir / RECORD_LEVEL).mkdir(exist_ok=True)
        table = flat_table("tagged_activity", read_records(data.path).to_pylist(), data.meta)
        path = f"{RECORD_LEVEL}/tagged_activity.{fmt}"
        _write(table, out_dir / path, fmt)
        written.append({"table": "tagged_activity", "file": path, "rows": table.num_rows,
                        "columns": table.column_names, "record_level": "pseudonymised",
                        "note": "one row per activity record inside the capitation, with the patient's "
                                "pseudonym: record-level data, handle under your information governance rules"})
    manifest = {"budget": data.meta["budget"], "year": data.meta["year"], "run_id": data.meta.get("run_id"),
                "source": str(data.path), "format": fmt, "csv_encoding": "utf-8-sig" if fmt == "csv" else None,
                "tables": written}
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    write_atomic(out_dir / "export.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return manifest
