"""Give each contract column its contract type, remembering which values would not parse.

The result per column is a typed Arrow array (null where the value was missing or bad) plus
three masks: ``present`` (the source had a value), ``failed`` (it had one that would not
parse) and ``implausible`` (a date outside the contract's window). Validation turns those
into ``missing_value``, ``unparseable_*`` and ``out_of_range`` reasons.

Before that, the table's columns are made safe to keep: dictionary and large text columns
read as text; a contract column of a type the contract cannot read is an error; extra
columns that identify people are removed (never stored), those the store cannot hold and
those named like a derived contract column (computed on ingest, never read) are dropped, and
the rest are renamed ``extra__<name>`` so that no source column can take the
place of a store or quarantine column.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.contract import Table
from casefind.contract.dates import NULL_DAY, to_day
from casefind.contract.nhs_number import valid_mask
from casefind.contract.schema import EARLIEST_DATE, EXTRA_PREFIX, IDENTIFIER_NAMES, IDENTIFIER_PREFIXES, LATEST_DATE
from casefind.ingest.encode import days, mask
from casefind.ingest.sources import IngestError

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
_TEN_DIGITS = r"^\d{10}$"
_EARLIEST, _LATEST = to_day(EARLIEST_DATE), to_day(LATEST_DATE)
_UNITS_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


@dataclass
class NormalTable:
    name: str
    raw: pa.Table
    columns: dict[str, pa.Array]
    present: dict[str, np.ndarray]
    failed: dict[str, np.ndarray]
    implausible: dict[str, np.ndarray]
    extras: list[str]  # kept, as named in ``raw`` and the store (extra__<source name>)
    missing_columns: list[str]
    identifiers: list[str] = field(default_factory=list)  # removed: they identify people
    dropped: dict[str, str] = field(default_factory=dict)  # removed: name -> why

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
            arr = pc.if_else(pc.equal(pc.cast(as_int, pa.float64(), safe=False), arr),
                             pc.cast(as_int, pa.string()), pc.cast(arr, pa.string()))
        else:
            arr = pc.cast(arr, pa.string())
    arr = pc.utf8_trim_whitespace(arr)
    empty = pc.equal(arr, "")
    if not pc.any(empty).as_py():
        return arr
    return pc.if_else(empty, pa.scalar(None, pa.string()), arr)


def text_key(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A text column (a spell id) as ingest compares it: plain text, trimmed, "" as missing,
    3.0 as "3"; all missing where its type is not one ingest reads as text."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    try:
        return _text(arr)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(arr), pa.string())


def _day_numbers(arr: pa.Array) -> np.ndarray:
    """Days since 1970 of a date or timestamp array, in int64 so that no value overflows
    (0 where null)."""
    t = arr.type
    raw = pc.cast(arr, pa.int32() if pa.types.is_date32(t) else pa.int64())
    out = raw.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_date64(t):
        return out // 86_400_000
    if pa.types.is_timestamp(t):
        return out // _UNITS_PER_DAY[t.unit]
    return out


def _parse_iso(arr: pa.Array) -> pa.Array:
    s = _text(arr)
    parsed = pc.strptime(s, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2026-02-30 over to 2026-03-02: keep only values that print back the same
    back = pc.strftime(parsed, format="%Y-%m-%d")
    ok = pc.and_(pc.match_substring_regex(s, _ISO_DATE), pc.equal(back, s))
    return pc.cast(pc.if_else(ok, parsed, pa.scalar(None, parsed.type)), pa.date32())


def _date(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """date32 (null where missing, not a date, or outside the window) and the mask of
    dates outside the window (year 0, 9999-12-31, an overflowed timestamp)."""
    t = arr.type
    outside = np.zeros(len(arr), dtype=bool)
    if pa.types.is_date32(t) or pa.types.is_date64(t) or pa.types.is_timestamp(t):
        rough = _day_numbers(arr)
        inside = (rough >= _EARLIEST - 1) & (rough <= _LATEST + 1)  # a time zone moves a day at most
        outside = mask(pc.is_valid(arr)) & ~inside
        if outside.any():  # never cast what would overflow
            arr = pc.if_else(pa.array(~outside), arr, pa.scalar(None, t))
        typed = arr if pa.types.is_date32(t) else pc.cast(arr, pa.date32())
    else:
        typed = _parse_iso(arr)
    day = days(typed)
    edge = (day != NULL_DAY) & ((day < _EARLIEST) | (day > _LATEST))
    if edge.any():
        typed = pc.if_else(pa.array(~edge), typed, pa.scalar(None, pa.date32()))
    return typed, outside | edge


def _number(arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pc.cast(arr, pa.float64(), safe=False)  # huge values stay huge, and are out of range
    if pa.types.is_boolean(t):
        return pc.cast(pc.cast(arr, pa.int8()), pa.float64())
    s = _text(arr)
    ok = pc.match_substring_regex(s, _NUMBER)
    return pc.cast(pc.if_else(ok, s, pa.scalar(None, pa.string())), pa.float64())


def patient_id_text(arr: pa.Array) -> pa.Array:
    if pa.types.is_integer(arr.type):
        try:
            return pc.cast(arr, pa.int64())
        except pa.ArrowInvalid:  # uint64 beyond int64: compared as text
            pass
    return _text(arr)


# --- making the table's columns safe to keep ------------------------------------------------

def _plain_types(spec: Table, raw: pa.Table) -> pa.Table:
    """Dictionary-encoded, large and view text columns as plain text (and plain values)."""
    for i, f in enumerate(raw.schema):
        t = f.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        if t != f.type:
            try:
                raw = raw.set_column(i, f.name, raw.column(i).cast(t))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise IngestError(f"table {spec.name}: column {f.name} of type {f.type} cannot be "
                                  f"read as {t} ({e})", "give it as plain text") from e
    return raw


def _readable(t: pa.DataType) -> bool:
    """Types a contract column can be given in: text, numbers, booleans, dates, timestamps."""
    return (pa.types.is_null(t) or pa.types.is_boolean(t) or pa.types.is_integer(t)
            or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_string(t)
            or pa.types.is_date(t) or pa.types.is_timestamp(t))


def _storable(t: pa.DataType) -> bool:
    """Types of extra columns the store keeps: flat values it can sort with their rows."""
    return not (pa.types.is_nested(t) or pa.types.is_interval(t) or isinstance(t, pa.ExtensionType))


def _check_contract_types(spec: Table, raw: pa.Table) -> None:
    for c in spec.source_columns:
        if c.name in raw.column_names and not _readable(raw.schema.field(c.name).type):
            t = raw.schema.field(c.name).type
            raise IngestError(f"table {spec.name}: column {c.name} has type {t}, which the contract "
                              f"cannot read as {c.kind}",
                              "give it as text, a number or a date (see docs/data-contract.md)")


def is_identifier_name(name: str) -> bool:
    """``NHS Number``, ``nhs_no``, ``Address_line_1``, ...: named like something that
    identifies a person."""
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return key in IDENTIFIER_NAMES or key.startswith(IDENTIFIER_PREFIXES)


def holds_nhs_numbers(col: pa.ChunkedArray) -> bool:
    """More than half of the non-null values are valid NHS numbers."""
    t = col.type
    if not (pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_floating(t)
            or pa.types.is_decimal(t)):
        return False
    values = _text(_single(col)).drop_null()
    if len(values) == 0:
        return False
    ten = values.filter(pc.match_substring_regex(values, _TEN_DIGITS))
    if 2 * len(ten) <= len(values):
        return False
    valid = valid_mask(np.asarray(ten.to_numpy(zero_copy_only=False), dtype="U10"))
    return 2 * int(valid.sum()) > len(values)


def _extras(spec: Table, raw: pa.Table) -> tuple[pa.Table, list[str], list[str], dict[str, str]]:
    """Sort the extra columns: removed (identifiers, in an analysis table), dropped (types
    the store cannot hold; every extra of identities; a column named like a derived one) or
    kept under the extras' prefix.
    Returns the table of contract and kept columns, the kept, the identifiers, the dropped."""
    keep, names, kept, identifiers, dropped = [], [], [], [], {}
    derived = {c.name for c in spec.columns if c.derived}
    for i, name in enumerate(raw.column_names):
        col = raw.column(i)
        if name in derived:
            dropped[name] = "derived on ingest from the table's other columns; a source column of this name is not read"
        elif name in spec.names:
            keep.append(i)
            names.append(name)
        elif spec.restricted:
            dropped[name] = "identities hold only the contract's columns"
        elif is_identifier_name(name) or holds_nhs_numbers(col):
            identifiers.append(name)
        elif not _storable(col.type):
            dropped[name] = f"the store cannot hold type {col.type}"
        else:
            keep.append(i)
            names.append(EXTRA_PREFIX + name)
            kept.append(EXTRA_PREFIX + name)
    return raw.select(keep).rename_columns(names), kept, identifiers, dropped


def normalise(spec: Table, raw: pa.Table) -> NormalTable:
    raw = _plain_types(spec, raw)
    names = set(raw.column_names)
    missing = [c.name for c in spec.source_columns if c.name not in names]
    required_missing = [c for c in missing if not spec.column(c).nullable]
    if required_missing:
        raise IngestError(f"table {spec.name}: missing column(s) {', '.join(required_missing)}; "
                          f"the contract's columns are {', '.join(spec.names)}")
    _check_contract_types(spec, raw)
    raw, extras, identifiers, dropped = _extras(spec, raw)
    n = raw.num_rows
    columns, present, failed, implausible = {}, {}, {}, {}
    for c in spec.source_columns:  # derived columns are computed later, from these
        implausible[c.name] = np.zeros(n, dtype=bool)
        if c.name not in names:
            columns[c.name] = pa.nulls(n, pa.string())
            present[c.name] = np.zeros(n, dtype=bool)
            failed[c.name] = np.zeros(n, dtype=bool)
            continue
        src = _single(raw.column(c.name))
        if c.kind == "date":
            typed, implausible[c.name] = _date(src)
        elif c.kind in ("float", "int"):
            typed = _number(src)
        elif c.kind == "patient_id":
            typed = patient_id_text(src)
        else:
            typed = _text(src)
        if c.kind in ("date", "float", "int") and _is_text(src.type):
            present[c.name] = mask(pc.is_valid(_text(src)))  # "" and "  " count as missing
        elif c.kind in ("date", "float", "int"):
            present[c.name] = mask(pc.is_valid(src))
        else:
            present[c.name] = mask(pc.is_valid(typed))
        failed[c.name] = present[c.name] & ~mask(pc.is_valid(typed)) & ~implausible[c.name]
        columns[c.name] = typed
    return NormalTable(spec.name, raw, columns, present, failed, implausible, extras, missing,
                       identifiers, dropped)


def unify_patient_ids(tables: dict[str, NormalTable]) -> None:
    """Patient ids compare as integers when every table gives integers, else as text."""
    ids = [t.columns["patient_id"] for t in tables.values() if "patient_id" in t.columns]
    if all(pa.types.is_integer(a.type) for a in ids):
        return
    for t in tables.values():
        if "patient_id" in t.columns and not pa.types.is_string(t.columns["patient_id"].type):
            t.columns["patient_id"] = pc.cast(t.columns["patient_id"], pa.string())
