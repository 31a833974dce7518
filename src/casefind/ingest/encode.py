"""Turn typed Arrow columns into the store's scan-friendly numpy encodings.

dates → int32 day numbers (NULL_DAY for missing); enumerations → int8 index into the
contract's values (-1 missing); text → int32 index into a sorted dictionary (-1 missing);
numbers → float64 (NaN missing). Sorted dictionaries make a code prefix a contiguous range.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.contract.dates import NULL_DAY


def days(arr: pa.Array) -> np.ndarray:
    ints = pc.cast(arr, pa.int32())
    if ints.null_count:
        ints = ints.fill_null(NULL_DAY)
    return ints.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)


def numbers(arr: pa.Array) -> np.ndarray:
    f = pc.cast(arr, pa.float64())
    if f.null_count:
        f = f.fill_null(np.nan)
    return f.to_numpy(zero_copy_only=False)


def lookup(arr: pa.Array, values: pa.Array, dtype=np.int32) -> np.ndarray:
    """Index of each value in ``values`` (-1 where missing or not found)."""
    if arr.null_count == len(arr):
        return np.full(len(arr), -1, dtype=dtype)
    if len(arr) > 100_000 and len(values) < 1_000:  # few distinct values: look up each once
        enc = pc.dictionary_encode(arr)
        per_value = pc.index_in(enc.dictionary, value_set=values).fill_null(-1).to_numpy(zero_copy_only=False)
        idx = enc.indices.fill_null(len(per_value)).to_numpy(zero_copy_only=False)
        return np.append(per_value, -1).astype(dtype)[idx]
    return pc.index_in(arr, value_set=values).fill_null(-1).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def enum(arr: pa.Array, values: tuple[str, ...]) -> np.ndarray:
    return lookup(arr, pa.array(values, pa.string()), np.int8)


def sorted_unique(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    u = pc.unique(arr).drop_null()
    return u.take(pc.sort_indices(u))


def text(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    dictionary = sorted_unique(arr)
    return lookup(arr, dictionary), dictionary


def mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count:
        arr = arr.fill_null(False)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)
