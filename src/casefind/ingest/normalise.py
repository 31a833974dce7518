"""Give each contract column its contract type, remembering which values would not parse.

The result per column is a typed Arrow array (null where the value was missing or bad) plus
two masks: ``present`` (the source had a value) and ``failed`` (it had one that would not
parse). Validation turns those into ``missing_value`` and ``unparseable_*`` reasons.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.contract import Table
from casefind.ingest.encode import mask
from casefind.ingest.sources import IngestError

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"


@dataclass
class NormalTable:
    name: str
    raw: pa.Table
    columns: dict[str, pa.Array]
    present: dict[str, np.ndarray]
    failed: dict[str, np.ndarray]
    extras: list[str]
    missing_columns: list[str]

    @property
    def num_rows(self) -> int:
        return self.raw.num_rows


def _single(col: pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _text(arr: pa.Array) -> pa.Array:
    if not _is_text(arr.type):
        if pa.types.is_floating(arr.type):  # 3.0 written by a spreadsheet: keep "3"
            as_int = pc.cast(arr, pa.int64(), safe=False)
            arr = pc.if_else(pc.equal(pc.cast(as_int, pa.float64()), arr),
                             pc.cast(as_int, pa.string()), pc.cast(arr, pa.string()))
        else:
            arr = pc.cast(arr, pa.string())
    arr = pc.utf8_trim_whitespace(arr)
    empty = pc.equal(arr, "")
    if not pc.any(empty).as_py():
        return arr
    return pc.if_else(empty, pa.scalar(None, pa.string()), arr)


def _date(arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_date32(t):
        return arr
    if pa.types.is_date64(t) or pa.types.is_timestamp(t):
        return pc.cast(arr, pa.date32())
    s = _text(arr)
    parsed = pc.strptime(s, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2026-02-30 over to 2026-03-02: keep only values that print back the same
    back = pc.strftime(parsed, format="%Y-%m-%d")
    ok = pc.and_(pc.match_substring_regex(s, _ISO_DATE), pc.equal(back, s))
    return pc.cast(pc.if_else(ok, parsed, pa.scalar(None, parsed.type)), pa.date32())


def _number(arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pc.cast(arr, pa.float64())
    if pa.types.is_boolean(t):
        return pc.cast(pc.cast(arr, pa.int8()), pa.float64())
    s = _text(arr)
    ok = pc.match_substring_regex(s, _NUMBER)
    return pc.cast(pc.if_else(ok, s, pa.scalar(None, pa.string())), pa.float64())


def _patient_id(arr: pa.Array) -> pa.Array:
    if pa.types.is_integer(arr.type):
        return pc.cast(arr, pa.int64())
    return _text(arr)


def normalise(spec: Table, raw: pa.Table) -> NormalTable:
    names = set(raw.column_names)
    missing = [c.name for c in spec.columns if c.name not in names]
    required_missing = [c for c in missing if not spec.column(c).nullable]
    if required_missing:
        raise IngestError(f"table {spec.name}: missing column(s) {', '.join(required_missing)}; "
                          f"the contract's columns are {', '.join(spec.names)}")
    n = raw.num_rows
    columns, present, failed = {}, {}, {}
    for c in spec.columns:
        if c.name not in names:
            columns[c.name] = pa.nulls(n, pa.string())
            present[c.name] = np.zeros(n, dtype=bool)
            failed[c.name] = np.zeros(n, dtype=bool)
            continue
        src = _single(raw.column(c.name))
        if c.kind == "date":
            typed = _date(src)
        elif c.kind in ("float", "int"):
            typed = _number(src)
        elif c.kind == "patient_id":
            typed = _patient_id(src)
        else:
            typed = _text(src)
        if c.kind in ("date", "float", "int") and _is_text(src.type):
            present[c.name] = mask(pc.is_valid(_text(src)))  # "" and "  " count as missing
        elif c.kind in ("date", "float", "int"):
            present[c.name] = mask(pc.is_valid(src))
        else:
            present[c.name] = mask(pc.is_valid(typed))
        failed[c.name] = present[c.name] & ~mask(pc.is_valid(typed))
        columns[c.name] = typed
    extras = [nm for nm in raw.column_names if nm not in spec.names]
    return NormalTable(spec.name, raw, columns, present, failed, extras, missing)


def unify_patient_ids(tables: dict[str, NormalTable]) -> None:
    """Patient ids compare as integers when every table gives integers, else as text."""
    ids = [t.columns["patient_id"] for t in tables.values() if "patient_id" in t.columns]
    if all(pa.types.is_integer(a.type) for a in ids):
        return
    for t in tables.values():
        if "patient_id" in t.columns and not pa.types.is_string(t.columns["patient_id"].type):
            t.columns["patient_id"] = pc.cast(t.columns["patient_id"], pa.string())
