"""The unit-cost reference a row's cost is checked against: national unit costs per setting
(``data/unit_costs.csv``, shipped with its sources), or an analyst's own file of local prices
in the same columns (``--unit-costs FILE``)."""
from __future__ import annotations

import csv
import io
import math
from importlib.resources import files
from pathlib import Path

import pyarrow as pa

from casefind.contract.schema import SETTINGS
from casefind.errors import UsageError

COLUMNS = ("setting", "unit", "cost_gbp", "excess_bed_day_gbp", "trim_days", "max_days", "source", "release")
_NUMBERS = ("cost_gbp", "excess_bed_day_gbp", "trim_days", "max_days")
MAX_BYTES = 1024 * 1024
OPTION = "--unit-costs"


def shipped_path() -> Path:
    return Path(str(files("casefind.quality") / "data" / "unit_costs.csv"))


def load(path: Path | None = None) -> list[dict]:
    """The reference rows (numbers as floats, None where empty); a bad file is a usage error
    naming ``--unit-costs`` and the line."""
    given = path is not None
    path = Path(path) if given else shipped_path()
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UsageError(f"{path} is larger than {MAX_BYTES // 1024} KiB", option=OPTION)
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}", "give a UTF-8 CSV file", option=OPTION) from e
    lines = [line for line in io.StringIO(text, newline="") if not line.startswith("#")]
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS[:3] if c not in (reader.fieldnames or [])]
    if missing:
        raise UsageError(f"{path} has no column(s) {', '.join(missing)}",
                         f"columns: {', '.join(COLUMNS)} (see docs/quality.md)", option=OPTION)
    rows, seen = [], set()
    for n, raw in enumerate(reader, start=2):
        rows.append(_row(raw, path, n, seen))
    return rows


def _row(raw: dict, path: Path, line: int, seen: set) -> dict:
    where = f"{path.name} row {line - 1}"
    setting = (raw.get("setting") or "").strip()
    if setting not in SETTINGS:
        raise UsageError(f"{where}: {setting[:40]!r} is not a setting of the contract",
                         f"settings: {', '.join(SETTINGS)}", option=OPTION)
    if setting in seen:
        raise UsageError(f"{where}: setting {setting} given twice", option=OPTION)
    seen.add(setting)
    row = {c: (raw.get(c) or "").strip() or None for c in COLUMNS}
    row["setting"] = setting
    for c in _NUMBERS:
        if row[c] is None:
            continue
        try:
            value = float(row[c])
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{where}: {c} {row[c][:40]!r} is not a number of 0 or more", option=OPTION)
        row[c] = value
    if row["cost_gbp"] is None or row["cost_gbp"] <= 0:
        raise UsageError(f"{where}: cost_gbp must be a positive number", option=OPTION)
    return row


def as_table(rows: list[dict]) -> pa.Table:
    """The rows as the table the SQL joins on (setting, numbers)."""
    return pa.table({"setting": pa.array([r["setting"] for r in rows], pa.string()),
                     **{c: pa.array([r[c] for r in rows], pa.float64()) for c in _NUMBERS}})
