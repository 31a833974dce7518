"""What the KPI sums read of a chunk's per-patient values (kpis/compute._Sums): a table from
any engine, or the native engine's arrays as they are.

The sums need numbers, masks, text codes and blocks as numpy. Through Arrow, every column was
converted twice (numpy to Arrow in the engine, back in the sums): about 2.5 s of 12 months of
``triple_aim.yml`` at 1M. ``ArrayValues`` hands over the native engine's arrays instead;
``TableValues`` reads any engine's table. Both give the same arrays, value for value (the
KPI engines property test compares the reference engine's tables with the native arrays)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.engines.base import block_column, block_values
from casefind.rules import ir

NONE = "(none)"  # the label of a missing text value


def _sorted_codes(codes: np.ndarray, labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """Codes into ``labels`` renumbered so that the labels are in sorted order."""
    order = np.argsort(np.array(labels, dtype=object))
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels))
    code = rank[codes] if len(labels) else np.zeros(len(codes), np.int64)
    return code, [str(labels[i]) for i in order]


class TableValues:
    """A table of per-patient values (``patient``, then a column per expression)."""

    def __init__(self, table: pa.Table):
        self.table = table

    @property
    def column_names(self) -> list[str]:
        return self.table.column_names

    def column(self, name: str):
        return self.table.column(name)

    def patients(self) -> np.ndarray:
        return self.table.column("patient").to_numpy(zero_copy_only=False).astype(np.int64)

    def numbers(self, name: str, fill, whole: bool = False) -> np.ndarray:
        """Booleans as bool (missing: false), anything else as float64 (missing: ``fill``);
        ``whole``: whole numbers with none missing as they are (int64), for a reader that
        casts each value itself (the sums), so no float copy is made."""
        col = self.table.column(name)
        if col.null_count == 0 and col.num_chunks == 1:  # most columns: no copy, or one cast
            if pa.types.is_boolean(col.type):
                return col.chunk(0).to_numpy(zero_copy_only=False)
            x = col.chunk(0).to_numpy()
            return x if whole and x.dtype == np.int64 else x.astype(np.float64, copy=False)
        if pa.types.is_boolean(col.type):
            return np.asarray(col.fill_null(False).to_numpy(zero_copy_only=False), bool)
        # unsafe: a whole number beyond 2**53 is rounded to the nearest double, as numpy does
        return np.asarray(col.cast(pa.float64(), safe=False).fill_null(fill).to_numpy(zero_copy_only=False), np.float64)

    def present(self, name: str) -> np.ndarray | None:
        """Where the value is present; None where every one is."""
        col = self.table.column(name)
        return None if col.null_count == 0 else np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool)

    def text(self, name: str) -> tuple[np.ndarray, list[str]]:
        """Each patient's text as a code into the labels met, sorted (missing: ``(none)``)."""
        enc = pc.dictionary_encode(self.table.column(name).fill_null(NONE)).combine_chunks()
        return _sorted_codes(enc.indices.to_numpy(zero_copy_only=False), enc.dictionary.to_pylist())

    def block(self, name: str, size: int) -> np.ndarray:
        return block_values(self.table.column(name), size)


@dataclass
class ArrayValues:
    """The native engine's values for one chunk: ``vecs`` (name -> (Vec, type): values,
    validity, labels for text), ``blocks`` (name -> patients x members float64), and the
    ``static`` table (sex, IMD: the same in every period), in the column order of ``names``."""

    patient: np.ndarray
    vecs: dict
    blocks: dict[str, np.ndarray]
    static: pa.Table
    names: list[str]

    @property
    def column_names(self) -> list[str]:
        return self.names

    def column(self, name: str) -> pa.Array:
        """One column as Arrow (for callers that want a table's view of a chunk)."""
        if name == "patient":
            return pa.array(self.patient.astype(np.int32))
        if name in self.blocks:
            return block_column(self.blocks[name])
        if name not in self.vecs:
            return self.static.column(name)
        v, t = self.vecs[name]
        mask = None if v.valid.all() else ~v.valid
        if v.labels is not None:
            return pa.array(v.labels, pa.string()).take(pa.array(v.values, mask=mask)) if len(v.labels) else \
                pa.nulls(len(v.values), pa.string())
        arrow = {ir.T.BOOL: pa.bool_(), ir.T.INT: pa.int64(), ir.T.FLOAT: pa.float64(), ir.T.DATE: pa.int32()}[t]
        values = v.values.astype(bool) if t is ir.T.BOOL else np.where(v.valid, v.values, 0)
        out = pa.array(values.astype(arrow.to_pandas_dtype()), arrow, mask=mask)
        return out.cast(pa.date32()) if t is ir.T.DATE else out

    def patients(self) -> np.ndarray:
        return self.patient

    def numbers(self, name: str, fill, whole: bool = False) -> np.ndarray:
        """As TableValues.numbers."""
        if name not in self.vecs:
            return TableValues(self.static).numbers(name, fill, whole)
        v, t = self.vecs[name]
        full = bool(v.valid.all())
        if t is ir.T.BOOL:
            x = v.values.astype(bool, copy=False)
            return x if full else x & v.valid
        if full and whole and v.values.dtype == np.int64:
            return v.values
        x = v.values.astype(np.float64, copy=False)
        return x if full else np.where(v.valid, x, fill)

    def present(self, name: str) -> np.ndarray | None:
        if name not in self.vecs:
            return TableValues(self.static).present(name)
        valid = self.vecs[name][0].valid
        return None if valid.all() else valid

    def text(self, name: str) -> tuple[np.ndarray, list[str]]:
        if name not in self.vecs or self.vecs[name][0].labels is None:
            return TableValues(pa.table({name: self.column(name)})).text(name)
        v, _ = self.vecs[name]
        labels = list(v.labels) + [NONE]
        code = np.where(v.valid, v.values, len(labels) - 1)
        # the labels met, in order, as Arrow's dictionary holds them: np.unique's inverse
        # without its sort (a count per label, then each code renumbered)
        met = np.flatnonzero(np.bincount(code.ravel(), minlength=len(labels)))
        remap = np.zeros(len(labels), np.int64)
        remap[met] = np.arange(len(met))
        code = remap[code]
        names = [labels[i] for i in met]
        if len(set(names)) < len(names):  # a label spelt "(none)": Arrow's dictionary merges the two
            return TableValues(pa.table({name: self.column(name)})).text(name)
        return _sorted_codes(code.ravel(), names)

    def block(self, name: str, size: int) -> np.ndarray:
        return self.blocks[name]


def values_of(piece) -> TableValues | ArrayValues:
    """A chunk's values as the sums read them."""
    return TableValues(piece) if isinstance(piece, pa.Table) else piece
