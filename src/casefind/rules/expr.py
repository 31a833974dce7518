"""The expression language inside rule files: a grammar (lark) and the syntax tree it gives.

Expressions are parsed, never eval'd. Every node keeps its position so that type and name
errors point at the right column of the rule file.

    count(activity, setting == "emergency_admission", within=months(12)) >= 2
    case(efi > 0.36, "severe", efi > 0.24, "moderate", "fit")
    efi at as_of - months(6)
    top(cost_12m, 0.5%)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from casefind.rules.errors import RuleError, Span

GRAMMAR = r"""
?start: expr
?expr: or_
?or_: and_ (_OR and_)*
?and_: not_ (_AND not_)*
?not_: _NOT not_ -> not_op
     | comparison
?comparison: at_ (COMPOP at_)?
     | at_ _IN "(" in_item ("," in_item)* ")" -> in_op
?in_item: NUMBER "%" -> percent
     | NUMBER -> number
     | "-" NUMBER "%" -> neg_percent
     | "-" NUMBER -> neg_number
     | STRING -> string
     | _TRUE -> true
     | _FALSE -> false
     | NAME "(" STRING ")" -> literal_call
?at_: sum (_AT sum)?
?sum: product (ADDOP product)*
?product: unary (MULOP unary)*
?unary: "-" unary -> neg
     | primary
?primary: NUMBER "%" -> percent
     | NUMBER -> number
     | STRING -> string
     | _TRUE -> true
     | _FALSE -> false
     | NAME "(" [arg ("," arg)*] ")" -> call
     | dotted
     | "(" expr "," expr ("," expr)* ")" -> tuple
     | "(" expr ")"
dotted: NAME ("." NAME)*
arg: NAME "=" expr -> kwarg
   | expr
COMPOP: "==" | "!=" | ">=" | "<=" | ">" | "<"
ADDOP: "+" | "-"
MULOP: "*" | "/"
_OR.2: /or\b/
_AND.2: /and\b/
_NOT.2: /not\b/
_IN.2: /in\b/
_AT.2: /at\b/
_TRUE.2: /true\b/
_FALSE.2: /false\b/
NAME: /(?!(and|or|not|in|at|true|false)\b)[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /\d+(\.\d+)?/
STRING: /"[^"\n]*"/ | /'[^'\n]*'/
%ignore /[ \t\r\n]+/
%ignore /#[^\n]*/
"""



def _grammar_cache() -> str | bool:
    """Where Lark keeps the analysed grammar between processes (building it takes about
    60 ms, loading it 7 ms): the user's cache folder. Lark checks a digest of the grammar,
    its options and versions inside the file, so a changed grammar is rebuilt. No cache
    when the folder cannot be made."""
    import os

    import platformdirs

    folder = os.path.join(platformdirs.user_cache_dir("casefind"), "grammar")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.path.join(folder, "rules-expr.lark")


_parser = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False, cache=_grammar_cache())

MAX_DEPTH = 100          # levels of the parse tree: brackets, calls, not, -
INT_MAX = 2 ** 63 - 1    # whole numbers are 64-bit in both engines
BALANCE_FROM = 16        # a longer chain of + (or *, and, or) is built as a balanced tree
_DURATION_CALLS = ("days", "months", "years")


@dataclass(frozen=True)
class Node:
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Num(Node):
    value: float | int  # exact for whole numbers
    is_int: bool = False


@dataclass(frozen=True)
class Percent(Node):
    value: float  # as a fraction: 0.5% -> 0.005


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Bool(Node):
    value: bool


@dataclass(frozen=True)
class Name(Node):
    parts: tuple[str, ...]  # ("efi",) or ("activity", "cost")

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]
    kwargs: tuple[tuple[str, Node], ...]

    def kw(self, name: str) -> Node | None:
        return dict(self.kwargs).get(name)


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / == != < <= > >= and or
    left: Node
    right: Node


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class Neg(Node):
    operand: Node


@dataclass(frozen=True)
class In(Node):
    operand: Node
    options: tuple[Node, ...]


@dataclass(frozen=True)
class At(Node):
    operand: Node
    when: Node


@dataclass(frozen=True)
class Tuple(Node):
    items: tuple[Node, ...]


class _Build(Transformer):
    def __init__(self, origin: Span):
        super().__init__()
        self.origin = origin

    def _span(self, item) -> Span:
        line = getattr(item, "line", None) or getattr(getattr(item, "meta", None), "line", 1) or 1
        col = getattr(item, "column", None) or getattr(getattr(item, "meta", None), "column", 1) or 1
        return self.origin.shifted(line, col)

    @v_args(meta=True)
    def number(self, meta, c):
        (tok,) = c
        is_int = "." not in tok
        return Num(self._span(tok), _number(str(tok), self._span(tok), is_int), is_int)

    @v_args(meta=True)
    def percent(self, meta, c):
        return Percent(self._span(c[0]), _number(str(c[0]), self._span(c[0]), False) / 100)

    @v_args(meta=True)
    def neg_number(self, meta, c):
        return Neg(self.origin.shifted(meta.line, meta.column), self.number(meta, c))

    @v_args(meta=True)
    def neg_percent(self, meta, c):
        return Neg(self.origin.shifted(meta.line, meta.column), self.percent(meta, c))

    @v_args(meta=True)
    def literal_call(self, meta, c):  # date("2026-01-01") among the values of `in`
        name, text = c
        return Call(self._span(name), str(name), (Str(self._span(text), str(text)[1:-1]),), ())

    @v_args(meta=True)
    def string(self, meta, c):
        return Str(self._span(c[0]), str(c[0])[1:-1])

    @v_args(meta=True)
    def true(self, meta, c):
        return Bool(self.origin.shifted(meta.line, meta.column), True)

    @v_args(meta=True)
    def false(self, meta, c):
        return Bool(self.origin.shifted(meta.line, meta.column), False)

    @v_args(meta=True)
    def dotted(self, meta, c):
        return Name(self._span(c[0]), tuple(str(t) for t in c))

    @v_args(meta=True)
    def call(self, meta, c):
        name, *args = c
        pos = tuple(a for a in args if not isinstance(a, tuple))
        kws = tuple(a for a in args if isinstance(a, tuple))
        return Call(self._span(name), str(name), pos, kws)

    def kwarg(self, c):
        return (str(c[0]), c[1])

    def arg(self, c):
        return c[0]

    @v_args(meta=True)
    def tuple(self, meta, c):
        return Tuple(self.origin.shifted(meta.line, meta.column), tuple(c))

    def _chain(self, c, op_of=None):
        terms, ops = [c[0]], []
        i = 1
        while i < len(c):
            if isinstance(c[i], Token):
                ops.append(str(c[i]))
                terms.append(c[i + 1])
                i += 2
            else:
                ops.append(op_of)
                terms.append(c[i])
                i += 1
        if len(terms) > BALANCE_FROM:
            balanced = _balanced_terms(terms, ops)
            if balanced is not None:
                return _balanced(*balanced)
        node = terms[0]
        for op, right in zip(ops, terms[1:]):
            node = BinOp(node.span, op, node, right)
        return node

    def or_(self, c):
        return self._chain(c, "or")

    def and_(self, c):
        return self._chain(c, "and")

    def comparison(self, c):
        return self._chain(c)

    def sum(self, c):
        return self._chain(c)

    def product(self, c):
        return self._chain(c)

    @v_args(meta=True)
    def not_op(self, meta, c):
        return Not(self.origin.shifted(meta.line, meta.column), c[0])

    @v_args(meta=True)
    def neg(self, meta, c):
        return Neg(self.origin.shifted(meta.line, meta.column), c[0])

    def in_op(self, c):
        return In(c[0].span, c[0], tuple(c[1:]))

    def at_(self, c):
        return At(c[0].span, c[0], c[1])


def _number(text: str, span: Span, is_int: bool) -> float | int:
    """A literal's value; too large for the engines' 64-bit numbers is an error here, not
    an overflow (or a crash) mid-run."""
    if is_int:
        if len(text.lstrip("0")) <= 19 and int(text) <= INT_MAX:
            return int(text)
        raise RuleError(span, f"{_short(text)} is too large: whole numbers are at most {INT_MAX:,}",
                        "a smaller number, or a decimal (with a point) up to about 1.8e308")
    value = float(text)
    if not math.isfinite(value):
        raise RuleError(span, f"{_short(text)} is too large: decimals are at most about 1.8e308")
    return value


def _short(text: str) -> str:
    return text if len(text) <= 30 else f"{text[:12]}...{text[-6:]} ({len(text)} digits)"


def _balanced_terms(terms: list[Node], ops: list[str]) -> tuple[str, list[Node]] | None:
    """A long chain as one operator over its terms, when regrouping it keeps its meaning:
    ``and``, ``or``, ``*``, and ``+``/``-`` (``a - b`` as ``a + (-b)``) unless the chain
    moves a date by a duration. None: build it left to right."""
    kinds = set(ops)
    if kinds <= {"and"} or kinds <= {"or"} or kinds <= {"*"}:
        return ops[0], terms
    if kinds <= {"+", "-"}:
        if any((isinstance(t, Call) and t.func in _DURATION_CALLS) or (isinstance(t, Name) and t.parts == ("period",))
               for t in terms):
            return None
        signed = [terms[0]] + [Neg(t.span, t) if op == "-" else t for op, t in zip(ops, terms[1:])]
        return "+", signed
    return None


def _balanced(op: str, terms: list[Node]) -> Node:
    """``op`` over ``terms`` as a tree of depth log2(len(terms)), so that a 400-term sum
    nests 9 levels, not 400 (every stage after parsing recurses over the tree)."""
    if len(terms) == 1:
        return terms[0]
    mid = len(terms) // 2
    left, right = _balanced(op, terms[:mid]), _balanced(op, terms[mid:])
    return BinOp(left.span, op, left, right)


def _in_list_at(text: str, pos: int | None) -> bool:
    """Whether position ``pos`` is inside the brackets of an ``in (...)`` (for the message)."""
    if pos is None:
        return False
    before = re.sub(r'"[^"\n]*"|\'[^\'\n]*\'', "s", text[:pos])
    opened = [m.end() for m in re.finditer(r"\bin\s*\(", before)]
    return bool(opened) and ")" not in before[opened[-1]:].replace("date(s)", "")


def _tree_depth(tree: Tree) -> int:
    """The depth of a parse tree, found without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
    return deepest


def _check_depth(tree: Tree, text: str, origin: Span) -> None:
    if _tree_depth(tree) > MAX_DEPTH:
        raise RuleError(origin, f"the expression nests more than {MAX_DEPTH} levels deep "
                        f"({len(text):,} characters)", "split it into features that refer to each other")


def parse_expression(text: str, origin: Span) -> Node:
    """Parse one expression; ``origin`` is where its first character sits in the file."""
    text = str(text)
    try:
        tree = _parser.parse(text)
    except UnexpectedEOF:
        raise RuleError(origin.shifted(1, len(text) + 1), f"the expression ends too early: {text!r}",
                        "is a closing bracket or an operand missing?") from None
    except UnexpectedCharacters as e:
        raise RuleError(origin.shifted(e.line, e.column),
                        f"unexpected character {text.splitlines()[e.line - 1][e.column - 1]!r}",
                        "strings need double quotes; "
                        "operators are and, or, not, ==, !=, <, <=, >, >=, + - * /") from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            raise RuleError(origin.shifted(1, len(text.rstrip()) + 1), f"the expression ends too early: {text!r}",
                            "is a closing bracket or an operand missing?") from None
        where = origin.shifted(getattr(tok, "line", 1) or 1, getattr(tok, "column", 1) or 1)
        if _in_list_at(text, getattr(tok, "start_pos", None)):
            raise RuleError(where, "the options of 'in' must be literal values",
                            'text, numbers, true/false or date("..."): setting in ("ae", "gp")') from None
        raise RuleError(where, f"unexpected {str(tok)!r}",
                        "check for a missing operator, comma or bracket just before it") from None
    except UnexpectedInput as e:  # pragma: no cover - other lark errors
        raise RuleError(origin, f"cannot parse the expression ({e.__class__.__name__})") from None
    _check_depth(tree, text, origin)
    try:
        return _Build(origin).transform(tree)
    except VisitError as e:  # lark wraps what the tree builder raises
        if isinstance(e.orig_exc, RuleError):
            raise e.orig_exc from None
        raise
