"""The IR checks itself: wrong types and domains cannot be built."""
import pytest

from casefind.rules.ir import (
    PATIENT, Aggregate, AsOf, At, Attr, Binary, Case, Codelist, Column, Const, Domain, Func,
    InCodelist, IRTypeError, Not, PopulationRank, Shift, T, Trend, Window,
)

setting = Column("activity", "setting", T.TEXT)
start = Column("activity", "start_date", T.DATE)
cost = Column("activity", "cost", T.FLOAT)
ae = Binary("==", setting, Const("ae", T.TEXT))
twelve = Window("range", (12, 0), (0, 0))


def test_types_and_domains():
    n = Aggregate("count", "activity", ae, twelve)
    assert n.type is T.INT and n.domain is PATIENT
    assert ae.domain == Domain("activity") and not ae.domain.per_patient
    assert Binary("/", n, Const(36, T.INT)).type is T.FLOAT
    assert Binary(">=", Attr("age"), Const(65, T.INT)).type is T.BOOL
    assert Aggregate("last", "activity", ae, value=start).type is T.DATE
    assert Aggregate("exists", "registers", window=Window("active")).type is T.BOOL
    assert At(n, Shift(AsOf(), months=-6)).type is T.INT
    assert PopulationRank("top", Aggregate("sum", "activity", value=cost), 0.005).type is T.BOOL
    assert Case(((Binary(">", n, Const(2, T.INT)), Const("high", T.TEXT)),), Const("low", T.TEXT)).type is T.TEXT
    # an event value may use a patient value (broadcast), and nodes are hashable and equal by value
    assert Binary(">", start, Shift(AsOf(), months=-6)).domain == Domain("activity")
    assert hash(n) == hash(Aggregate("count", "activity", ae, twelve))


@pytest.mark.parametrize("build,words", [
    (lambda: Binary(">", start, Const(3, T.INT)), "cannot compare a date with a int"),
    (lambda: Binary("and", Attr("age"), Attr("alive")), "joins true/false"),
    (lambda: Binary("+", start, Const(1, T.INT)), "needs numbers"),
    (lambda: Binary("==", setting, Column("diagnoses", "source", T.TEXT)), "different tables"),
    (lambda: Aggregate("count", "diagnoses", ae), "refers to activity"),
    (lambda: Aggregate("count", "activity", Binary("+", cost, cost)), "filter must be true/false"),
    (lambda: Aggregate("sum", "activity"), "needs a column"),
    (lambda: Aggregate("sum", "activity", value=setting), "needs numbers"),
    (lambda: Aggregate("exists", "activity", window=Window("active")), "applies to registers"),
    (lambda: Window("range", (6, 0), (12, 0)), "can never match"),
    (lambda: Attr("height"), "no patient attribute"),
    (lambda: Not(Attr("age")), "'not' needs"),
    (lambda: Codelist("empty", "snomed"), "is empty"),
    (lambda: InCodelist(setting, Codelist("x", "snomed", ("1",))), "matches codes"),
    (lambda: Trend("activity", ae, 1), "at least 2 months"),
    (lambda: At(Attr("age"), Const(3, T.INT)), "needs a date"),
    (lambda: PopulationRank("top", Attr("age"), 2.0), "between 0% and 100%"),
    (lambda: Func("days_between", (Attr("age"), AsOf())), "needs dates"),
    (lambda: Case(((Attr("alive"), Const("a", T.TEXT)),), Const(1, T.INT)), "one type"),
])
def test_ill_typed_ir_cannot_be_built(build, words):
    with pytest.raises(IRTypeError, match=words):
        build()
