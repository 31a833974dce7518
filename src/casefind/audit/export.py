"""The audit log's entries, filtered, as a CSV (for a spreadsheet: formula cells neutralised,
UTF-8 with a BOM) or Parquet file, written under a temporary name and renamed."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from casefind.audit.log import FIELDS, entries
from casefind.errors import UsageError
from casefind.outputs import write_atomic, write_csv

SUFFIXES = (".csv", ".parquet")


def as_table(rows: list[dict], *, flat: bool) -> pa.Table:
    """Entries as columns; ``flat`` (CSV) joins patient_ids with spaces and shows detail as JSON."""
    def column(name: str) -> pa.Array:
        values = [r.get(name) for r in rows]
        if name == "seq":
            return pa.array(values, pa.int64())
        if name == "detail":
            return pa.array([json.dumps(v, sort_keys=True, ensure_ascii=False) for v in values], pa.string())
        if name == "patient_ids":
            if flat:
                return pa.array([" ".join(v) if v else None for v in values], pa.string())
            return pa.array(values, pa.list_(pa.string()))
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table({name: column(name) for name in FIELDS})


def export(store_root: str | Path, output: Path, **filters) -> int:
    """Write the entries ``entries(store_root, **filters)`` returns to ``output`` (.csv or
    .parquet); returns how many."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"{output.name}: give a .csv or .parquet file", option="--output")
    if output.is_dir():
        raise UsageError(f"{output} is a folder; give the file's name", option="--output")
    if not output.parent.is_dir():
        raise UsageError(f"no folder {output.parent} to write {output.name} in", option="--output")
    rows = entries(store_root, **filters)
    if suffix == ".csv":
        write_csv(as_table(rows, flat=True), output, bom=True)
    else:
        table = as_table(rows, flat=False)
        write_atomic(output, lambda tmp: pq.write_table(table, tmp))
    return len(rows)
