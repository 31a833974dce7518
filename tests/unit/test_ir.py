"""The IR checks itself: wrong types and domains cannot be built; one class per operation,
named by the factories; one walker."""
import dataclasses
import pickle

import pytest

from casefind.rules import ir
from casefind.rules.ir import (
    PATIENT,
    Active,
    And,
    AsOf,
    At,
    Attr,
    Case,
    Codelist,
    Column,
    Const,
    Count,
    Div,
    Domain,
    Eq,
    Exists,
    Ge,
    Gt,
    InCodelist,
    IRTypeError,
    IsIn,
    Last,
    Not,
    Percentile,
    Range,
    Shift,
    Sum,
    T,
    Top,
    Trend,
)

setting = Column("activity", "setting", T.TEXT)
start = Column("activity", "start_date", T.DATE)
cost = Column("activity", "cost", T.FLOAT)
ae = Eq(setting, Const("ae", T.TEXT))
twelve = Range((12, 0))


def test_types_and_domains():
    n = Count("activity", ae, twelve)
    assert n.type is T.INT and n.domain is PATIENT
    assert ae.domain == Domain("activity") and not ae.domain.per_patient
    assert Div(n, Const(36, T.INT)).type is T.FLOAT
    assert ir.binary("+", n, Const(36, T.INT)).type is T.INT
    assert Ge(Attr("age"), Const(65, T.INT)).type is T.BOOL
    assert Last("activity", ae, value=start).type is T.DATE
    assert Exists("registers", window=Active()).type is T.BOOL
    assert At(n, Shift(AsOf(), months=-6)).type is T.INT
    assert Top(Sum("activity", value=cost), 0.005).type is T.BOOL
    assert Percentile(Sum("activity", value=cost)).type is T.FLOAT
    assert Case(((Gt(n, Const(2, T.INT)), Const("high", T.TEXT)),), Const("low", T.TEXT)).type is T.TEXT
    assert ir.func("min", (Attr("age"), Const(3, T.INT))).type is T.INT
    assert ir.func("days_between", (AsOf(), AsOf())).type is T.INT
    # an event value may use a patient value (broadcast), and nodes are hashable and equal by value
    assert Gt(start, Shift(AsOf(), months=-6)).domain == Domain("activity")
    assert hash(n) == hash(Count("activity", ae, twelve)) and n == Count("activity", ae, twelve)
    # one class per operation: the same operands under another operation are another node
    assert Sum("activity", value=cost) != ir.aggregate("mean", "activity", value=cost)
    assert ir.binary("<", cost, cost) != ir.binary(">", cost, cost)


def test_the_engines_read_each_operation_by_name():
    """What the native engine reads: ``func``, ``op``, ``name``, ``kind`` on the classes."""
    assert Count("activity").func == "count" and ir.WeightedScore.func == "weighted_categories"
    assert ae.op == "==" and ir.And.op == "and" and ir.Div.op == "/"
    assert ir.func("round", (cost,)).name == "round" and ir.Least.name == "min"
    assert Top(Attr("age"), 0.1).kind == "top" and twelve.kind == "range" and ir.Ever().kind == "ever"
    assert ir.AGGREGATES == ("exists", "count", "count_distinct", "sum", "mean", "median", "min", "max", "first",
                             "last", "days_since", "weighted_categories")
    assert set(ir.BINARY_CLASSES) == {"and", "or", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/"}


def test_every_operation_class_has_a_name_the_factory_finds():
    for table, factory in ((ir.AGGREGATE_CLASSES, "func"), (ir.BINARY_CLASSES, "op"),
                           (ir.FUNC_CLASSES, "name"), (ir.RANK_CLASSES, "kind"), (ir.WINDOW_CLASSES, "kind")):
        for name, cls in table.items():
            assert getattr(cls, factory) == name and not cls.__subclasses__()
    assert isinstance(ir.window("range", (6, 0)), Range) and ir.window() == ir.Ever()
    assert isinstance(ir.rank("top", Attr("age"), 0.5), Top)


@pytest.mark.parametrize("build,words,hint", [
    (lambda: ir.aggregate("summ", "activity"), "no aggregation 'summ'", "did you mean 'sum'?"),
    (lambda: ir.binary("and_", cost, cost), "no operator 'and_'", "did you mean 'and'?"),
    (lambda: ir.func("logistc", (cost,)), "no function 'logistc'", "did you mean 'logistic'?"),
    (lambda: ir.window("always"), "no window 'always'", "windows: ever, active, range"),
])
def test_unknown_names_are_refused_with_a_suggestion(build, words, hint):
    with pytest.raises(IRTypeError, match=words) as e:
        build()
    assert e.value.hint == hint


@pytest.mark.parametrize("build,words", [
    (lambda: Gt(start, Const(3, T.INT)), "cannot compare a date with a int"),
    (lambda: Gt(setting, Const("a", T.TEXT)), "'>' needs numbers or dates"),
    (lambda: And(Attr("age"), Attr("alive")), "joins true/false"),
    (lambda: ir.binary("+", start, Const(1, T.INT)), "needs numbers"),
    (lambda: Eq(setting, Column("diagnoses", "source", T.TEXT)), "different tables"),
    (lambda: Count("diagnoses", ae), "refers to activity"),
    (lambda: Count("activity", ir.binary("+", cost, cost)), "filter must be true/false"),
    (lambda: Sum("activity"), "needs a column"),
    (lambda: Sum("activity", value=setting), "needs numbers"),
    (lambda: ir.aggregate("max", "activity", value=setting), "needs numbers or dates"),
    (lambda: Exists("activity", window=Active()), "applies to registers"),
    (lambda: Range((6, 0), (12, 0)), "can never match"),
    (lambda: Attr("height"), "no patient attribute"),
    (lambda: Not(Attr("age")), "'not' needs"),
    (lambda: Codelist("empty", "snomed"), "is empty"),
    (lambda: InCodelist(setting, Codelist("x", "snomed", ("1",))), "matches codes"),
    (lambda: ir.CategoryOf(Codelist("x", "snomed", ("1",)), setting), "categories are those of codes"),
    (lambda: Trend("activity", ae, 1), "at least 2 months"),
    (lambda: At(Attr("age"), Const(3, T.INT)), "needs a date"),
    (lambda: Top(Attr("age"), 2.0), "between 0% and 100%"),
    (lambda: Percentile(Attr("sex")), "ranks numbers"),
    (lambda: ir.func("days_between", (Attr("age"), AsOf())), "needs dates"),
    (lambda: ir.func("log", (cost, cost)), "takes 1 argument"),
    (lambda: Case(((Attr("alive"), Const("a", T.TEXT)),), Const(1, T.INT)), "one type"),
    (lambda: ir.aggregate("count", "activity", hierarchy=(("a", "b"),)), "hierarchy orders"),
    (lambda: ir.WeightedScore("diagnoses", codelist=Codelist("x", "icd10", ("A",))), "weight column"),
])
def test_ill_typed_ir_cannot_be_built(build, words):
    with pytest.raises(IRTypeError, match=words):
        build()


def test_children_come_from_the_fields_and_closed_fields_stay_closed():
    n = Count("activity", ae, twelve)
    low = Gt(n, Const(2, T.INT))
    moved = At(n, Shift(AsOf(), months=-6))
    assert ir.children(low) == [n, low.right]
    assert ir.children(n) == [] and ir.parts(n) == [ae]  # the filter is evaluated per row
    assert ir.children(moved) == [] and ir.parts(moved) == [n, moved.when]
    opts = IsIn(setting, tuple(Const(str(i), T.TEXT) for i in range(1000)))
    assert ir.children(opts) == [setting] and opts.size == 2  # an in list is one lookup
    assert ir.node_fields(Count) == (("where", ir.ROWS), ("value", ir.ROWS))
    assert ir.node_fields(Case) == (("whens", None), ("default", None))


def test_walk_visits_each_node_once_through_at_and_into_rows_when_asked():
    n = Count("activity", ae, twelve)
    both = And(Gt(n, Const(2, T.INT)), Gt(At(n, AsOf()), Const(2, T.INT)))
    shared = And(both, both)
    assert sum(1 for x in ir.walk(shared) if x is both) == 1
    assert {type(x) for x in ir.walk(both)} == {And, Gt, Count, Const, At, AsOf}
    assert ae in list(ir.walk(both, into=(ir.ROWS, ir.DATE))) and ae not in list(ir.walk(both))
    assert ir.contains(both, Count) and not ir.contains(both, Column)
    assert ir.contains(both, Column, into=(ir.ROWS, ir.DATE))
    assert [x for x in ir.walk(both, stop=lambda x: isinstance(x, Gt)) if isinstance(x, Count)] == []
    assert [type(x) for x in ir.walk(both)][:4] == [And, Gt, Count, Const]  # preorder, left first


def test_patient_parts_are_the_largest_per_patient_pieces_of_a_row_expression():
    n = Count("activity", ae, twelve)
    row = And(ae, Gt(cost, ir.binary("*", n, Attr("age"))))
    assert ir.patient_parts(row) == [row.right.right]
    assert ir.patient_parts(ae) == []  # constants need nothing


def test_the_tree_shows_each_node_once_with_its_fields():
    n = Count("activity", ae, twelve)
    text = ir.tree(And(Gt(n, Const(2, T.INT)), Gt(n, Const(5, T.INT))))
    lines = text.splitlines()
    assert lines[0] == "And"
    assert "  left: Gt" in lines and "    left: Count(table=activity, window=(12m0d, 0m0d] back)" in lines
    assert "      where: Eq" in lines and "        left: Column(table=activity, column=setting, type=text)" in lines
    assert "    left: Count(table=activity, window=(12m0d, 0m0d] back) (again)" in lines
    cl = Codelist("hf", "icd10", ("I50",), ("I11",))
    assert "codelist=hf (2 codes)" in ir.tree(InCodelist(Column("diagnoses", "code", T.CODE), cl))


def test_hashes_are_cached_and_not_pickled():
    n = Count("activity", ae, twelve)
    assert hash(n) == n.__dict__["_hash"]
    again = pickle.loads(pickle.dumps(n))
    assert again == n and "_hash" not in again.__dict__ and hash(again) == hash(n)
    # the dataclass fields are what an engine may rebuild a node from (plan.bind does)
    assert dataclasses.replace(n, window=Range((6, 0))) == Count("activity", ae, Range((6, 0)))
