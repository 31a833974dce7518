"""The typed intermediate representation every engine and product reads.

Nodes are frozen dataclasses. Each knows its value ``type`` and its ``domain``: one value per
patient (``PATIENT``) or one per row of an event table (``Domain("activity")``). Nodes check
themselves when built, so an IR that exists is well-typed; the compiler from YAML turns those
checks into located RuleErrors. (The shape follows ehrQL's query model; the code is ours.)

Time: every patient value is evaluated at an *evaluation date* (``AsOf``), the rule's as_of
unless an ``At`` node moves it. Events dated after the evaluation date are invisible.
Windows count back from it in calendar months or days:
``within=months(12)`` is (D − 12 months, D]; ``between=(months(12), months(6))`` is
(D − 12 months, D − 6 months]; ``ever`` is everything up to D.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class T(str, Enum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    DATE = "date"
    TEXT = "text"
    CODE = "code"


NUMERIC = (T.INT, T.FLOAT)


class IRTypeError(TypeError):
    """An IR node built with operands of the wrong type or domain; ``hint`` says what fits."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Domain:
    """None for one value per patient, else the event table whose rows the values follow."""

    table: str | None = None

    @property
    def per_patient(self) -> bool:
        return self.table is None

    def __str__(self) -> str:
        return "per patient" if self.table is None else f"per {self.table} row"


PATIENT = Domain()


def _join_domains(*domains: Domain) -> Domain:
    tables = {d.table for d in domains if d.table is not None}
    if len(tables) > 1:
        raise IRTypeError(f"cannot combine rows of different tables ({', '.join(sorted(tables))})",
                          "aggregate each table first, then combine the per-patient values")
    return Domain(tables.pop()) if tables else PATIENT


class Node:
    type: T
    domain: Domain


# --- values ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Const(Node):
    value: object
    type: T
    domain: Domain = field(default=PATIENT, init=False)


@dataclass(frozen=True)
class Param(Node):
    """A named parameter (overridable on the command line); ``value`` is its current value."""

    name: str
    value: object
    type: T
    domain: Domain = field(default=PATIENT, init=False)


@dataclass(frozen=True)
class AsOf(Node):
    type: T = field(default=T.DATE, init=False)
    domain: Domain = field(default=PATIENT, init=False)


PATIENT_ATTRIBUTES: dict[str, T] = {
    "age": T.INT, "sex": T.TEXT, "practice": T.TEXT, "locality": T.TEXT, "system": T.TEXT,
    "imd_decile": T.INT, "birth_date": T.DATE, "death_date": T.DATE, "registered": T.BOOL,
    "alive": T.BOOL, "registration_start": T.DATE, "registration_end": T.DATE,
}


@dataclass(frozen=True)
class Attr(Node):
    """A patient attribute at the evaluation date (age in whole years; registered and alive
    on that date)."""

    name: str
    domain: Domain = field(default=PATIENT, init=False)

    def __post_init__(self):
        if self.name not in PATIENT_ATTRIBUTES:
            raise IRTypeError(f"no patient attribute {self.name!r}",
                              f"attributes are {', '.join(PATIENT_ATTRIBUTES)}")

    @property
    def type(self) -> T:
        return PATIENT_ATTRIBUTES[self.name]


@dataclass(frozen=True)
class Shift(Node):
    """A date moved by whole months (calendar; the day clamps to the month's end) and days."""

    date: Node
    months: int = 0
    days: int = 0
    type: T = field(default=T.DATE, init=False)

    def __post_init__(self):
        if self.date.type is not T.DATE:
            raise IRTypeError(f"only a date can be moved by months or days, not a {self.date.type.value}")

    @property
    def domain(self) -> Domain:
        return self.date.domain


# --- event rows --------------------------------------------------------------------------

@dataclass(frozen=True)
class Column(Node):
    table: str
    column: str
    type: T

    @property
    def domain(self) -> Domain:
        return Domain(self.table)


@dataclass(frozen=True)
class Codelist:
    """Codes of one system; optional category (condition group) and weight per code. ICD-10
    prefixes match every code that starts with them."""

    name: str
    system: str
    codes: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    categories: tuple[str | None, ...] = ()   # parallel to codes + prefixes, or empty
    weights: tuple[float | None, ...] = ()    # parallel to codes + prefixes, or empty

    def __post_init__(self):
        n = len(self.codes) + len(self.prefixes)
        if n == 0:
            raise IRTypeError(f"codelist {self.name!r} is empty", "give at least one code or prefix")
        for what, values in (("categories", self.categories), ("weights", self.weights)):
            if values and len(values) != n:
                raise IRTypeError(f"codelist {self.name!r}: {what} must be given for every code")


@dataclass(frozen=True)
class InCodelist(Node):
    """True for rows whose code is in the codelist (a listed code, or one starting with a
    listed prefix) and whose code system is the codelist's."""

    column: Node
    codelist: Codelist
    type: T = field(default=T.BOOL, init=False)

    def __post_init__(self):
        if self.column.type is not T.CODE:
            raise IRTypeError(f"a codelist matches codes, not a {self.column.type.value}")

    @property
    def domain(self) -> Domain:
        return self.column.domain


# --- operators -----------------------------------------------------------------------------

_COMPARE = ("==", "!=", "<", "<=", ">", ">=")
_ARITH = ("+", "-", "*", "/")
_LOGIC = ("and", "or")


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node

    def __post_init__(self):
        lt, rt = self.left.type, self.right.type
        if self.op in _LOGIC:
            if lt is not T.BOOL or rt is not T.BOOL:
                raise IRTypeError(f"'{self.op}' joins true/false values, not {lt.value} and {rt.value}",
                                  "compare a number first, e.g. count >= 1")
        elif self.op in _COMPARE:
            same = lt == rt or (lt in NUMERIC and rt in NUMERIC) or {lt, rt} <= {T.TEXT, T.CODE}
            if not same:
                raise IRTypeError(f"cannot compare a {lt.value} with a {rt.value}",
                                  "compare dates with dates (e.g. as_of - months(6)) and numbers with numbers")
            if lt in (T.BOOL, T.TEXT, T.CODE) and self.op not in ("==", "!="):
                raise IRTypeError(f"'{self.op}' needs numbers or dates, not {lt.value}")
        elif self.op in _ARITH:
            if lt not in NUMERIC or rt not in NUMERIC:
                raise IRTypeError(f"'{self.op}' needs numbers, not {lt.value} and {rt.value}",
                                  "to move a date use months(n) or days(n): as_of - months(6); "
                                  "for the days between dates use days_between(a, b)")
        else:
            raise IRTypeError(f"unknown operator {self.op!r}")
        _join_domains(self.left.domain, self.right.domain)

    @property
    def type(self) -> T:
        if self.op in _COMPARE or self.op in _LOGIC:
            return T.BOOL
        if self.op == "/":
            return T.FLOAT
        return T.INT if (self.left.type is T.INT and self.right.type is T.INT) else T.FLOAT

    @property
    def domain(self) -> Domain:
        return _join_domains(self.left.domain, self.right.domain)


@dataclass(frozen=True)
class Not(Node):
    operand: Node
    type: T = field(default=T.BOOL, init=False)

    def __post_init__(self):
        if self.operand.type is not T.BOOL:
            raise IRTypeError(f"'not' needs a true/false value, not a {self.operand.type.value}")

    @property
    def domain(self) -> Domain:
        return self.operand.domain


@dataclass(frozen=True)
class Neg(Node):
    operand: Node

    def __post_init__(self):
        if self.operand.type not in NUMERIC:
            raise IRTypeError(f"'-' needs a number, not a {self.operand.type.value}")

    @property
    def type(self) -> T:
        return self.operand.type

    @property
    def domain(self) -> Domain:
        return self.operand.domain


@dataclass(frozen=True)
class IsIn(Node):
    operand: Node
    options: tuple[Const, ...]
    type: T = field(default=T.BOOL, init=False)

    def __post_init__(self):
        for o in self.options:
            ok = o.type == self.operand.type or {o.type, self.operand.type} <= {T.TEXT, T.CODE} \
                or (o.type in NUMERIC and self.operand.type in NUMERIC)
            if not ok:
                raise IRTypeError(f"'in' compares a {self.operand.type.value} with a {o.type.value}")

    @property
    def domain(self) -> Domain:
        return self.operand.domain


@dataclass(frozen=True)
class Case(Node):
    """The value of the first true condition, else the default (null when there is none)."""

    whens: tuple[tuple[Node, Node], ...]
    default: Node | None

    def __post_init__(self):
        if not self.whens:
            raise IRTypeError("case needs at least one condition and value")
        values = [v for _, v in self.whens] + ([self.default] if self.default is not None else [])
        kinds = {v.type for v in values}
        if not (len(kinds) == 1 or kinds <= set(NUMERIC)):
            raise IRTypeError(f"case values must all be of one type, got {', '.join(sorted(k.value for k in kinds))}")
        for cond, _ in self.whens:
            if cond.type is not T.BOOL:
                raise IRTypeError(f"a case condition must be true/false, not a {cond.type.value}")
        _join_domains(*(n.domain for pair in self.whens for n in pair))

    @property
    def type(self) -> T:
        kinds = {v.type for _, v in self.whens} | ({self.default.type} if self.default is not None else set())
        return kinds.pop() if len(kinds) == 1 else T.FLOAT

    @property
    def domain(self) -> Domain:
        nodes = [n for pair in self.whens for n in pair] + ([self.default] if self.default else [])
        return _join_domains(*(n.domain for n in nodes))


@dataclass(frozen=True)
class Func(Node):
    """Scalar functions over per-patient numbers: logistic, exp, log, abs, round, min, max,
    days_between(a, b) (dates → int)."""

    name: str
    args: tuple[Node, ...]

    _ARITY = {"logistic": 1, "exp": 1, "log": 1, "abs": 1, "round": 1, "days_between": 2}

    def __post_init__(self):
        want = self._ARITY.get(self.name)
        if want is None and self.name not in ("min", "max"):
            raise IRTypeError(f"no function {self.name!r}")
        if want is not None and len(self.args) != want:
            raise IRTypeError(f"{self.name} takes {want} argument(s), got {len(self.args)}")
        need = T.DATE if self.name == "days_between" else None
        for a in self.args:
            ok = a.type is need if need else a.type in NUMERIC
            if not ok:
                raise IRTypeError(f"{self.name} needs {'dates' if need else 'numbers'}, not a {a.type.value}")
        _join_domains(*(a.domain for a in self.args))

    @property
    def type(self) -> T:
        if self.name in ("days_between", "round"):
            return T.INT
        if self.name in ("min", "max", "abs"):
            return T.INT if all(a.type is T.INT for a in self.args) else T.FLOAT
        return T.FLOAT

    @property
    def domain(self) -> Domain:
        return _join_domains(*(a.domain for a in self.args))


# --- from rows to one value per patient ----------------------------------------------------

@dataclass(frozen=True)
class Window:
    """Which event dates an aggregation sees, counting back from the evaluation date D.

    kind 'ever': date <= D. kind 'range': D - start < date <= D - end (start, end as
    (months, days) offsets back). kind 'active': a start/end interval covering D (registers).
    """

    kind: str = "ever"
    start: tuple[int, int] | None = None
    end: tuple[int, int] = (0, 0)

    def __post_init__(self):
        if self.kind not in ("ever", "range", "active"):
            raise IRTypeError(f"unknown window {self.kind!r}")
        if self.kind == "range":
            if self.start is None:
                raise IRTypeError("a window needs a start")
            if _approx_days(self.start) <= _approx_days(self.end):
                raise IRTypeError("this window can never match: its start is not before its end",
                                  "between=(months(12), months(6)) means from 12 months back to 6 months back")


def _approx_days(offset: tuple[int, int]) -> float:
    return offset[0] * 30.44 + offset[1]


AGGREGATES = ("exists", "count", "count_distinct", "sum", "mean", "min", "max", "first", "last",
              "days_since", "weighted_categories")


@dataclass(frozen=True)
class Aggregate(Node):
    """One value per patient from the rows of ``table`` that pass ``where`` within ``window``.

    ``value`` is the per-row value aggregated (a column, or the codelist category for
    count_distinct of categories); ``first``/``last`` order rows by the table's date.
    ``weighted_categories`` sums the codelist weight of each distinct category present once.
    """

    func: str
    table: str
    where: Node | None = None
    window: Window = Window()
    value: Node | None = None
    codelist: Codelist | None = None
    domain: Domain = field(default=PATIENT, init=False)

    def __post_init__(self):
        if self.func not in AGGREGATES:
            raise IRTypeError(f"no aggregation {self.func!r}", f"aggregations are {', '.join(AGGREGATES)}")
        for part, node in (("filter", self.where), ("value", self.value)):
            if node is not None and node.domain.table not in (self.table, None):
                raise IRTypeError(f"the {part} refers to {node.domain.table}, not {self.table}")
        if self.where is not None and self.where.type is not T.BOOL:
            raise IRTypeError(f"a filter must be true/false, not a {self.where.type.value}",
                              'e.g. setting == "ae"')
        needs_value = self.func in ("sum", "mean", "min", "max", "count_distinct")
        if needs_value and self.value is None:
            raise IRTypeError(f"{self.func} needs a column, e.g. {self.func}({self.table}.cost)")
        if self.func in ("sum", "mean") and self.value.type not in NUMERIC:
            raise IRTypeError(f"{self.func} needs numbers, not {self.value.type.value}")
        if self.func == "weighted_categories" and (self.codelist is None or not self.codelist.weights):
            raise IRTypeError("a weighted score needs a codelist with a weight column")
        if self.window.kind == "active" and self.table != "registers":
            raise IRTypeError("'active' applies to registers (start and end dates)",
                              "for other tables use within=months(n)")

    @property
    def type(self) -> T:
        f = self.func
        if f == "exists":
            return T.BOOL
        if f in ("count", "count_distinct", "days_since"):
            return T.INT
        if f in ("sum", "mean", "weighted_categories"):
            return T.FLOAT
        return self.value.type if self.value is not None else T.DATE  # first/last/min/max


@dataclass(frozen=True)
class Trend(Node):
    """Least-squares slope per month of monthly counts (or sums of ``value``) over the last
    ``months`` whole months up to D; 0 when fewer than two months have any events."""

    table: str
    where: Node | None
    months: int
    value: Node | None = None
    type: T = field(default=T.FLOAT, init=False)
    domain: Domain = field(default=PATIENT, init=False)

    def __post_init__(self):
        if self.months < 2:
            raise IRTypeError("a trend needs at least 2 months", "over=months(6) or more")


@dataclass(frozen=True)
class At(Node):
    """``operand`` evaluated with the evaluation date moved to ``when``."""

    operand: Node
    when: Node

    def __post_init__(self):
        if self.when.type is not T.DATE or not self.when.domain.per_patient:
            raise IRTypeError("'at' needs a date, e.g. efi at as_of - months(6)")
        if not self.operand.domain.per_patient:
            raise IRTypeError("'at' applies to per-patient values")

    @property
    def type(self) -> T:
        return self.operand.type

    @property
    def domain(self) -> Domain:
        return PATIENT


@dataclass(frozen=True)
class PopulationRank(Node):
    """Where a patient stands within the rule's population: ``percentile`` (0-100, ties get
    the same value) or ``top`` (true for the highest ``fraction``)."""

    kind: str
    operand: Node
    fraction: float | None = None
    domain: Domain = field(default=PATIENT, init=False)

    def __post_init__(self):
        if self.operand.type not in NUMERIC:
            raise IRTypeError(f"{self.kind} ranks numbers, not {self.operand.type.value}")
        if not self.operand.domain.per_patient:
            raise IRTypeError(f"{self.kind} ranks per-patient values")
        if self.kind == "top" and not (self.fraction and 0 < self.fraction <= 1):
            raise IRTypeError("top needs a share between 0% and 100%, e.g. top(cost_12m, 0.5%)")

    @property
    def type(self) -> T:
        return T.BOOL if self.kind == "top" else T.FLOAT


# --- walking the tree ----------------------------------------------------------------------

def children(n: Node) -> list[Node]:
    """The operands of an operator node. Aggregate, Trend and At are not opened: their parts
    are evaluated per row or at another date, which callers handle themselves."""
    if isinstance(n, Binary):
        return [n.left, n.right]
    if isinstance(n, (Not, Neg, IsIn, PopulationRank)):
        return [n.operand]
    if isinstance(n, Case):
        return [x for pair in n.whens for x in pair] + ([n.default] if n.default is not None else [])
    if isinstance(n, Func):
        return list(n.args)
    if isinstance(n, Shift):
        return [n.date]
    if isinstance(n, InCodelist):
        return [n.column]
    return []


def walk(n: Node):
    """Every node in the tree under ``n``, ``n`` first (through ``at`` too)."""
    stack = [n]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(children(x) + ([x.operand, x.when] if isinstance(x, At) else []))


def contains(n: Node, kind: type) -> bool:
    """Whether ``kind`` occurs anywhere in the tree under ``n`` (through ``at`` too)."""
    return any(isinstance(x, kind) for x in walk(n))
