"""Datasets round a column at once (lists/dataset._published) exactly as lists round one
value (rules.compile.rounded): half away from zero on the decimal value, to the bit."""
import numpy as np
import pyarrow as pa
import pytest

from casefind.lists.dataset import _published
from casefind.rules.compile import rounded

EDGES = [2.675, 0.125, -0.125, 1.005, 2.5, -2.5, 0.35, 0.045, 4.999999999999999, 15.000000000000002,
         1e300, -1e300, float("inf"), float("-inf"), float("nan"), None, 0.0, -0.0, 1e20, 2.0 ** 53, 5e-324]


@pytest.mark.parametrize("places", [0, 1, 2, 3, 4])
def test_a_column_rounds_as_each_value_does(places):
    rng = np.random.default_rng(places)
    values = EDGES + [float(x) for x in rng.uniform(-1000, 1000, 20_000)] \
        + [k / 1000 for k in range(-3000, 3000)] + [k / 36 for k in range(37)] \
        + [float(x) for x in rng.uniform(0, 10, 20_000).round(places + 1)]  # many exact ties
    got = _published(pa.array(values, pa.float64()), places).to_pylist()
    for v, g in zip(values, got):
        want = None if v is None else rounded(v, places)
        assert repr(g) == repr(want), (v, g, want)


def test_no_rounding_and_non_floats_pass_through():
    col = pa.array([1.23456, None])
    assert _published(col, None) is col
    ints = pa.array([1, 2, None])
    assert _published(ints, 2) is ints
