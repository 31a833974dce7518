"""The fused per-patient loop's plan (engines/fused.py): what it computes itself and what it
reads as a leaf, and a text case's labels in the numpy path's order. Its values are checked
against the numpy path by the per-patient spec tests (tests/spec/conftest.py runs them with
the loop forced) and by tests/property/test_engines_agree.py::test_fused_loop_equals_numpy."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from casefind.engines import fused, native
from casefind.rules import ir

COUNT = ir.Count("activity")
COST = ir.Sum("activity", value=ir.Column("activity", "cost", ir.T.FLOAT))
AGE = ir.Attr("age")
SEX = ir.Attr("sex")


def c(value, t: ir.T) -> ir.Const:
    return ir.Const(value, t)


@pytest.mark.parametrize(("node", "computed"), [
    (ir.Add(COUNT, c(1, ir.T.INT)), True),
    (ir.And(ir.Ge(AGE, c(65, ir.T.INT)), ir.Exists("activity")), True),
    (ir.Div(COST, COUNT), True),
    (ir.Case(((ir.Gt(COUNT, c(2, ir.T.INT)), c("high", ir.T.TEXT)),), c("low", ir.T.TEXT)), True),
    (ir.Least((COST, COUNT)), True),
    (ir.IsIn(AGE, (c(1, ir.T.INT), c(2, ir.T.INT))), True),
    (COUNT, False),  # an aggregation: the scans' value, read as a leaf
    (AGE, False),  # an attribute: numpy computes it
    (ir.Eq(SEX, c("F", ir.T.TEXT)), False),  # text compared: the numpy path's labels
    (ir.Case(((ir.Gt(COUNT, c(2, ir.T.INT)), SEX),), None), False),  # a text branch that is not a label
])
def test_what_the_loop_computes_itself(node, computed):
    assert fused.fusible(node) is computed


def test_leaves_are_read_once_and_shared_nodes_computed_once():
    over = ir.Gt(COUNT, c(2, ir.T.INT))
    f = fused.fuse([ir.And(over, ir.Ge(AGE, c(65, ir.T.INT))), ir.Not(over), COUNT])
    assert f.leaves == [COUNT, AGE]
    assert len(f.outputs) == 2  # COUNT itself is a leaf: the caller reads it as it is
    assert f.fused == 4  # >, >=, and, not: the shared > once


def test_a_text_case_numbers_its_labels_in_branch_order():
    """The numpy path numbers labels as the branches give them (whens, then the default);
    the loop must write the same codes."""
    case = ir.Case(((ir.Gt(COUNT, c(2, ir.T.INT)), c("high", ir.T.TEXT)),
                    (ir.Gt(COUNT, c(0, ir.T.INT)), c("some", ir.T.TEXT))), c("none", ir.T.TEXT))
    assert fused.fuse([case]).labels[case] == ["high", "some", "none"]


def test_a_period_placeholder_is_left_to_the_numpy_path():
    """``period`` is bound per period (casefind.plan.bind): never a literal in the source."""
    assert not fused.fusible(c(ir.PeriodDays(1), ir.T.INT))


def test_the_source_depends_on_the_expressions_alone():
    exprs = [ir.Add(COUNT, c(1, ir.T.INT)), ir.Mul(COST, c(2.5, ir.T.FLOAT))]
    assert fused.fuse(exprs).source == fused.fuse(list(exprs)).source
    assert "np.int64(1)" in fused.fuse(exprs).source and "2.5" in fused.fuse(exprs).source


@pytest.mark.parametrize(("patients", "periods", "chunked", "pays"), [
    (100_000, 12, False, False),  # triple_aim at 100k: the compile costs more than it saves
    (65_536, 12, True, True),  # a chunk of 1M patients' KPIs: the run's patients count
    (1_000_000, 12, False, True),
    (1_000_000, 1, False, False),  # a list at 1M
])
def test_the_loop_is_compiled_only_where_it_pays(patients, periods, chunked, pays):
    """FUSE_MIN_WORK weighs a first run's compile against what the loop saves."""
    class Store:
        n_patients = 1_000_000 if chunked else patients

    engine = native.NativeEngine(Store())
    engine.periods = ((None, None),) * periods
    engine.rows = np.arange(patients) if chunked else None
    engine.run_patients = 1_000_000 if chunked else None
    assert engine.fusing_pays(102) is pays


def test_below_the_threshold_nothing_is_fused():
    class Tiny:
        n_patients = 3

    engine = native.NativeEngine(Tiny())
    engine.prefuse([ir.Add(COUNT, c(1, ir.T.INT))], dt.date(2026, 1, 1))
    assert engine.cache == {}
