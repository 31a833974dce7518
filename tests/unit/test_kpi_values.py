"""The KPI sums read the native engine's arrays (kpis/values.ArrayValues) as they would read
the same values as a table (TableValues): numbers, masks, text codes and blocks alike."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from casefind.engines.native import Vec
from casefind.kpis.values import ArrayValues, TableValues
from casefind.rules import ir

N = 6
VALID = np.array([True, False, True, True, False, True])
TEXT = np.array(["frailty", "dementia", "(none)"], dtype=object)
VECS = {
    "flag": (Vec(np.array([1.0, 1.0, 0.0, 2.0, 0.0, 1.0]), VALID), ir.T.BOOL),  # a numpy case's bools: floats
    "mask": (Vec(np.array([True, False, True, False, True, True]), np.ones(N, bool)), ir.T.BOOL),
    "count": (Vec(np.array([3, 99, 0, 2**53 + 1, -7, 1], dtype=np.int64), VALID), ir.T.INT),
    "cost": (Vec(np.array([1.5, np.nan, 0.0, 2.25, 7.0, -1.0]), VALID), ir.T.FLOAT),
    "all": (Vec(np.arange(N, dtype=np.int64), np.ones(N, bool)), ir.T.INT),
    "segment": (Vec(np.array([1, 0, 2, 0, 1, 1], dtype=np.int32), VALID, TEXT), ir.T.TEXT),
    "plain": (Vec(np.array([1, 0, 0, 1, 0, 1], dtype=np.int32), np.ones(N, bool), TEXT[:2]), ir.T.TEXT),
}
STATIC = pa.table({"patient": pa.array(np.arange(N, dtype=np.int32)), "sex": ["F", None, "M", "F", "F", "M"],
                   "imd_decile": pa.array([1, None, 5, 10, 2, 3], pa.int64())})
BLOCK = np.arange(N * 3, dtype=np.float64).reshape(N, 3)


@pytest.fixture
def both():
    names = ["patient", *VECS, "block", "sex", "imd_decile"]
    arrays = ArrayValues(np.arange(N, dtype=np.int64), VECS, {"block": BLOCK}, STATIC, names)
    table = pa.table({name: arrays.column(name) for name in names})
    return arrays, TableValues(table)


@pytest.mark.parametrize("name", ["flag", "mask", "count", "cost", "all", "imd_decile"])
@pytest.mark.parametrize("fill", [0.0, -1])
def test_numbers_and_masks(both, name, fill):
    arrays, table = both
    a, t = arrays.numbers(name, fill), table.numbers(name, fill)
    assert a.dtype == t.dtype and a.tobytes() == t.tobytes()
    pa_, pt = arrays.present(name), table.present(name)
    assert (pa_ is None and pt is None) or pa_.tolist() == pt.tolist()


@pytest.mark.parametrize("name", ["segment", "plain", "sex"])
def test_text_codes_are_the_labels_met_in_sorted_order(both, name):
    arrays, table = both
    (ca, la), (ct, lt) = arrays.text(name), table.text(name)
    assert la == lt and ca.tolist() == ct.tolist()


def test_a_label_spelt_none_is_one_label_with_the_missing():
    """Arrow's dictionary merges a missing value filled with "(none)" and a real "(none)"."""
    _, labels = TableValues(pa.table({"x": pa.array(["(none)", None], pa.string())})).text("x")
    vec = Vec(np.array([2, 0], dtype=np.int32), np.array([True, False]), TEXT)
    assert ArrayValues(np.arange(2), {"x": (vec, ir.T.TEXT)}, {}, STATIC, []).text("x")[1] == labels == ["(none)"]


def test_blocks_and_patients(both):
    arrays, table = both
    assert arrays.block("block", 3).tobytes() == table.block("block", 3).tobytes()
    assert arrays.patients().tolist() == table.patients().tolist() == list(range(N))
