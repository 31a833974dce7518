"""The expression grammar: precedence, every construct's syntax, and located errors."""
import pytest

from casefind.rules.errors import RuleError, Span
from casefind.rules.expr import At, BinOp, Call, In, Name, Not, Num, Percent, Str, Tuple, parse_expression

ORIGIN = Span("rule.yml", 10, 5)


def p(text):
    return parse_expression(text, ORIGIN)


def test_precedence_and_or_not_compare_arith():
    e = p("not a and b or c >= 1 + 2 * 3")
    assert isinstance(e, BinOp) and e.op == "or"
    assert isinstance(e.left, BinOp) and e.left.op == "and" and isinstance(e.left.left, Not)
    cmp = e.right
    assert cmp.op == ">=" and cmp.right.op == "+" and cmp.right.right.op == "*"


def test_at_binds_looser_than_arithmetic():
    e = p("efi at as_of - months(6)")
    assert isinstance(e, At) and e.operand == Name(ORIGIN, ("efi",))
    assert isinstance(e.when, BinOp) and e.when.op == "-"


def test_calls_kwargs_tuples_percent_in_strings():
    e = p('count(activity, setting in ("ae", "gp"), between=(months(12), months(6)))')
    assert isinstance(e, Call) and e.func == "count" and len(e.args) == 2
    assert isinstance(e.args[1], In) and [o.value for o in e.args[1].options] == ["ae", "gp"]
    assert isinstance(e.kw("between"), Tuple)
    assert p("top(x, 0.5%)").args[1] == Percent(ORIGIN, 0.005)
    assert p("'single'") == Str(ORIGIN, "single")
    assert p("2") == Num(ORIGIN, 2.0, True) and p("2.5").is_int is False
    assert p("activity.cost").parts == ("activity", "cost")


def test_positions_point_into_the_file():
    e = p("age >= 65")
    assert (e.right.span.line, e.right.span.col) == (10, 12)


@pytest.mark.parametrize("text,col,msg", [
    ("count(activity,", 20, "ends too early"),
    ("a ! b", 7, "unexpected character '!'"),
    ("a b", 7, "unexpected 'b'"),
])
def test_syntax_errors_are_located(text, col, msg):
    with pytest.raises(RuleError) as e:
        p(text)
    assert e.value.span.line == 10 and e.value.span.col == col
    assert msg in e.value.message and e.value.hint
