"""Turning the internal column arrays into Arrow tables with the contract's columns (synth.blocks
writes them, Parquet or CSV, into the build that replaces the target whole)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.contract import TABLES
from casefind.synth._common import NULL


def to_arrow(name: str, cols: dict, pid_vocab: pa.Array) -> pa.Table:
    """The contract's source columns in order (never a derived one: ingest computes those);
    dates as date32, codes, enums and spell ids as strings, patient_id as pseudonym."""
    t = TABLES[name]
    arrays = []
    for c in t.source_columns:
        v = cols[c.name]
        if c.kind == "patient_id" and isinstance(v, np.ndarray) and v.dtype.kind == "i":
            arrays.append(pid_vocab.take(pa.array(v)))
        elif isinstance(v, tuple):
            vocab, idx = v
            idx = np.asarray(idx)
            arrays.append(pa.array(list(vocab), pa.string()).take(pa.array(idx, mask=idx < 0)))
        elif c.kind == "date":
            arrays.append(pa.array(v.astype(np.int32), mask=v == NULL).cast(pa.date32()))
        elif c.kind == "float":
            arrays.append(pa.array(v.astype(float), mask=np.isnan(v)))
        elif c.kind == "int":  # NULL marks a missing value
            arrays.append(pa.array(v.astype(np.int64), mask=v == NULL))
        else:
            arrays.append(pa.array(v, pa.string()))
    return pa.Table.from_arrays(arrays, names=[c.name for c in t.source_columns])


def stringify(tbl: pa.Table, numbers: bool) -> pa.Table:
    """ISO strings for dates (and numbers, when asked) so that bad values can be written."""
    for i, f in enumerate(tbl.schema):
        if pa.types.is_date(f.type) or (numbers and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))):
            tbl = tbl.set_column(i, f.name, pc.cast(tbl.column(i), pa.string()))
    return tbl
