"""The typed intermediate representation every engine and product reads.

Nodes are frozen dataclasses. Each knows its value ``type`` and its ``domain``: one value per
patient (``PATIENT``) or one per row of an event table (``Domain("activity")``). Nodes check
themselves when built, so an IR that exists is well-typed; the compiler from YAML turns those
checks into located RuleErrors. (The shape follows ehrQL's query model; the code is ours.)

One class per operation: ``Sum``, ``Gt``, ``Logistic``, ``Top``, ``Range``, each naming itself
(``func``, ``op``, ``name``, ``kind``) and checking its own operands; ``aggregate``, ``binary``,
``func``, ``rank`` and ``window`` map the rule's words to them. A node's operands are the
fields that hold nodes; ``rows()`` and ``moved()`` mark the ones an engine evaluates itself
(per event row, at another date), and ``children``/``parts``/``walk`` are the one walker.

Time: every patient value is evaluated at an *evaluation date* (``AsOf``), the rule's as_of
unless an ``At`` node moves it. Events dated after the evaluation date are invisible.
Windows count back from it in calendar months or days:
``within=months(12)`` is (D − 12 months, D]; ``between=(months(12), months(6))`` is
(D − 12 months, D − 6 months]; ``ever`` is everything up to D.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from functools import cached_property
from typing import ClassVar

from casefind.errors import EXIT_RULE, CasefindError


class T(str, Enum):  # noqa: UP042  StrEnum would change str() of the members, which messages show
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    DATE = "date"
    TEXT = "text"
    CODE = "code"


NUMERIC = (T.INT, T.FLOAT)


class PeriodDays(int):
    """A KPI file's ``period`` (ehrQL's measures INTERVAL placeholder): a day count that is
    ``periods`` reporting periods plus ``plus`` days, standing where a window or a shift
    holds days, so that one compiled KPI file serves every period. ``bound(days)`` is the
    number for a period of that many days (engines bind it per period: casefind.plan.bind).
    As an int it is the longest it can be (a period is at most 366 days), so the checks a
    compiler makes on day counts see the worst case; it equals only the same placeholder.
    Sums and products with whole numbers stay placeholders."""

    LONGEST = 366

    def __new__(cls, periods: int = 1, plus: int = 0):
        self = super().__new__(cls, periods * cls.LONGEST + plus)
        self.periods, self.plus = periods, plus
        return self

    def bound(self, days: int) -> int:
        return self.periods * days + self.plus

    def __getnewargs__(self):
        return (self.periods, self.plus)

    def __repr__(self) -> str:
        return f"PeriodDays({self.periods}, {self.plus})"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, PeriodDays) and (self.periods, self.plus) == (other.periods, other.plus)

    def __ne__(self, other) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("period", self.periods, self.plus))

    def __add__(self, other):
        if isinstance(other, PeriodDays):
            return PeriodDays(self.periods + other.periods, self.plus + other.plus)
        return PeriodDays(self.periods, self.plus + other) if type(other) is int else int(self) + other

    __radd__ = __add__

    def __neg__(self):
        return PeriodDays(-self.periods, -self.plus)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        return PeriodDays(self.periods * other, self.plus * other) if type(other) is int else int(self) * other

    __rmul__ = __mul__


class IRTypeError(CasefindError, TypeError):
    """An IR node built with operands of the wrong type or domain; ``hint`` says what fits.
    The rules compiler turns it into a located RuleError; one that escapes is still an
    error in the rule (a TypeError too, for code that builds IR)."""

    exit_code = EXIT_RULE


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


ROWS = "rows"  # a closed field evaluated on each row of an event table (an aggregation's filter)
DATE = "date"  # a closed field evaluated at a date the engine works out (``at``)


def rows(**kw):
    """A field holding nodes evaluated per event row: walkers of one domain leave it closed."""
    return field(metadata={"closed": ROWS}, **kw)


def moved(**kw):
    """A field holding nodes evaluated at another evaluation date (``at``): closed."""
    return field(metadata={"closed": DATE}, **kw)


def literal(**kw):
    """A field holding fixed values (an ``in`` list), never walked however many there are."""
    return field(metadata={"literal": True}, **kw)


class Node:
    """An IR node. ``type``, ``domain`` and the sizes below are worked out once per node
    (cached): features share sub-trees, so a value recomputed from its operands on every
    use would cost as much as the tree with every shared feature written out, which a
    hostile rule can make astronomically large."""

    type: T
    domain: Domain

    @cached_property
    def depth(self) -> int:
        """Levels of nodes, counting through features, ``at`` and aggregations."""
        return 1 + max((p.depth for p in parts(self)), default=0)

    @cached_property
    def size(self) -> int:
        """Nodes in the tree with every shared feature counted at each use: what SQL text
        and per-node work grow with (``in`` lists count once, as one lookup)."""
        return 1 + sum(p.size for p in parts(self))

    @cached_property
    def reach(self) -> int:
        """About how many days away from its evaluation date this value can look, or move
        a date (windows, ``at`` and ``months()``/``days()`` shifts added up)."""
        return max((p.reach for p in parts(self)), default=0)


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

    @cached_property
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

    @cached_property
    def reach(self) -> int:
        return self.date.reach + _offset_days((abs(self.months), abs(self.days)))

    @cached_property
    def domain(self) -> Domain:
        return self.date.domain


# --- event rows --------------------------------------------------------------------------

@dataclass(frozen=True)
class Column(Node):
    table: str
    column: str
    type: T

    @cached_property
    def domain(self) -> Domain:
        return Domain(self.table)


@dataclass(frozen=True)
class Codelist:
    """Codes of one system; optional category (condition group) and weight per code. ICD-10
    prefixes match every code that starts with them.

    ``file``, ``digest`` and ``provenance`` say where the codes came from (the CSV as the
    rule names it, the sha256 of its bytes, and the key/value pairs of its
    ``<name>.provenance.json`` sidecar: source, release, date retrieved, licence, counts).
    They are records, not meaning: two codelists with the same codes are equal and hash
    alike wherever they came from, and they stay out of ``repr`` (the kernel cache key)."""

    name: str
    system: str
    codes: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    categories: tuple[str | None, ...] = ()   # parallel to codes + prefixes, or empty
    weights: tuple[float | None, ...] = ()    # parallel to codes + prefixes, or empty
    file: str = field(default="", compare=False, repr=False)    # as the rule names it; "" inline
    digest: str = field(default="", compare=False, repr=False)  # sha256 of the file's bytes
    provenance: tuple[tuple[str, object], ...] = field(default=(), compare=False, repr=False)
    selected: tuple[str, ...] = field(default=(), compare=False, repr=False)  # category: chosen in the rule

    def __post_init__(self):
        n = len(self.codes) + len(self.prefixes)
        if n == 0:
            raise IRTypeError(f"codelist {self.name!r} is empty", "give at least one code or prefix")
        for what, values in (("categories", self.categories), ("weights", self.weights)):
            if values and len(values) != n:
                raise IRTypeError(f"codelist {self.name!r}: {what} must be given for every code")

    @cached_property
    def weight_places(self) -> int:
        """Decimal places a score of this codelist is exact to: the most any weight has as
        written (its shortest decimal form: 7.1 has 1, 3 has 0, 0.25 has 2)."""
        return max((decimal_places(w) for w in self.weights if w is not None), default=0)

    @cached_property
    def scaled_weights(self) -> tuple[int | None, ...]:
        """Each weight as a whole number of 10^-weight_places units (7.1 at 1 place is 71):
        scores add these exactly in 64 bits and divide once by 10^weight_places."""
        k = self.weight_places
        return tuple(None if w is None else int(Decimal(repr(float(w))).scaleb(k)) for w in self.weights)

    @cached_property
    def category_weights(self) -> dict[str, int]:
        """Each category's scaled weight: the largest among its codes (0 when none has one)."""
        best: dict[str, int | None] = {}
        weights = self.scaled_weights or (None,) * len(self.categories)
        for cat, w in zip(self.categories, weights):
            if cat is not None:
                known = best.get(cat)
                best[cat] = w if known is None else known if w is None else max(known, w)
        return {cat: 0 if w is None else w for cat, w in best.items()}


MAX_WEIGHT_PLACES = 4          # decimal places of a codelist weight (HFRS has 1)
MAX_SCALED_TOTAL = 2 ** 53 - 1  # a score's scaled weights added up: exact as int64 and as a double


def decimal_places(w: float) -> int:
    """Decimal places of a number in its shortest decimal form (7.1: 1; 3.0: 0; 1e-05: 5)."""
    exponent = Decimal(repr(float(w))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


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

    @cached_property
    def domain(self) -> Domain:
        return self.column.domain


@dataclass(frozen=True)
class _OfCode(Node):
    """Per row, what the codelist gives ``code``: its categories or its weight."""

    codelist: Codelist
    code: Node
    what: ClassVar[str]

    def __post_init__(self):
        if self.code.type is not T.CODE:
            raise IRTypeError(f"a codelist's {self.what} are those of codes, not of a {self.code.type.value}")

    @cached_property
    def domain(self) -> Domain:
        return self.code.domain


@dataclass(frozen=True)
class CategoryOf(_OfCode):
    """Per row, the categories of ``code`` in the codelist: what ``count_distinct(table.category,
    codelist=c)`` counts (a code in two categories counts for both)."""

    type = T.TEXT
    what = "categories"


@dataclass(frozen=True)
class WeightOf(_OfCode):
    """Per row, the weight of ``code`` in the codelist: what a score (or ``sum(table.weight,
    codelist=c)``) adds up, once per category."""

    type = T.FLOAT
    what = "weights"


@dataclass(frozen=True)
class SpellHas(Node):
    """True for rows of ``outer`` whose hospital spell (``spell_id``) has a row of ``table``
    that passes ``where``, dated on or before the evaluation date: "the admission's primary
    diagnosis is asthma", "a cardiac procedure was done in this spell". Spell numbers are
    store-wide, so the spell's rows are found by number. ``where`` reads only ``table``'s
    columns and fixed values (one answer per spell, the same for every patient)."""

    outer: str
    table: str
    where: Node | None = rows(default=None)
    type: T = field(default=T.BOOL, init=False)

    def __post_init__(self):
        from casefind.contract import TABLES  # the contract names which tables carry spells

        for t in (self.outer, self.table):
            if t not in TABLES or "spell_id" not in TABLES[t].names:
                carriers = ", ".join(n for n, x in TABLES.items() if "spell_id" in x.names)
                raise IRTypeError(f"{t} rows do not belong to hospital spells", f"tables with spells: {carriers}")
        if self.where is not None:
            if self.where.type is not T.BOOL:
                raise IRTypeError(f"a filter must be true/false, not a {self.where.type.value}")
            if self.where.domain.table not in (self.table, None):
                raise IRTypeError(f"the filter refers to {self.where.domain.table}, not {self.table}")

    @cached_property
    def domain(self) -> Domain:
        return Domain(self.outer)


# --- operators -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Binary(Node):
    """Two operands joined by an operator: each operator is a subclass, named by ``op``
    (what the rule writes); ``binary(op, left, right)`` picks it."""

    op: ClassVar[str]
    left: Node
    right: Node

    def __post_init__(self):
        self.check(self.left.type, self.right.type)
        _join_domains(self.left.domain, self.right.domain)

    def check(self, lt: T, rt: T) -> None:
        raise NotImplementedError  # pragma: no cover - every operator class checks its operands

    @cached_property
    def domain(self) -> Domain:
        return _join_domains(self.left.domain, self.right.domain)


class Logical(Binary):
    """``and`` / ``or`` of true/false values (a missing one is false)."""

    type = T.BOOL

    def check(self, lt: T, rt: T) -> None:
        if lt is not T.BOOL or rt is not T.BOOL:
            raise IRTypeError(f"'{self.op}' joins true/false values, not {lt.value} and {rt.value}",
                              "compare a number first, e.g. count >= 1")


class And(Logical):
    op = "and"


class Or(Logical):
    op = "or"


class Comparison(Binary):
    """A comparison: of numbers, dates, text with codes, or (``==``, ``!=`` only) true/false
    and text; false when either side is missing."""

    type = T.BOOL
    ordered: ClassVar[bool] = True  # <, <=, >, >=: needs numbers or dates

    def check(self, lt: T, rt: T) -> None:
        same = lt == rt or (lt in NUMERIC and rt in NUMERIC) or {lt, rt} <= {T.TEXT, T.CODE}
        if not same:
            raise IRTypeError(f"cannot compare a {lt.value} with a {rt.value}",
                              "compare dates with dates (e.g. as_of - months(6)) and numbers with numbers")
        if lt in (T.BOOL, T.TEXT, T.CODE) and self.ordered:
            raise IRTypeError(f"'{self.op}' needs numbers or dates, not {lt.value}")


class Eq(Comparison):
    op, ordered = "==", False


class Ne(Comparison):
    op, ordered = "!=", False


class Lt(Comparison):
    op = "<"


class Le(Comparison):
    op = "<="


class Gt(Comparison):
    op = ">"


class Ge(Comparison):
    op = ">="


class Arithmetic(Binary):
    """``+ - * /`` of numbers: whole numbers stay whole (missing when beyond 64 bits), except
    that ``/`` always gives a decimal (missing when dividing by zero)."""

    def check(self, lt: T, rt: T) -> None:
        if lt not in NUMERIC or rt not in NUMERIC:
            raise IRTypeError(f"'{self.op}' needs numbers, not {lt.value} and {rt.value}",
                              "to move a date use months(n) or days(n): as_of - months(6); "
                              "for the days between dates use days_between(a, b)")

    @cached_property
    def type(self) -> T:
        return T.INT if (self.left.type is T.INT and self.right.type is T.INT) else T.FLOAT


class Add(Arithmetic):
    op = "+"


class Sub(Arithmetic):
    op = "-"


class Mul(Arithmetic):
    op = "*"


class Div(Arithmetic):
    op = "/"
    type = T.FLOAT


@dataclass(frozen=True)
class Not(Node):
    operand: Node
    type = T.BOOL

    def __post_init__(self):
        if self.operand.type is not T.BOOL:
            raise IRTypeError(f"'not' needs a true/false value, not a {self.operand.type.value}")

    @cached_property
    def domain(self) -> Domain:
        return self.operand.domain


@dataclass(frozen=True)
class Neg(Node):
    operand: Node

    def __post_init__(self):
        if self.operand.type not in NUMERIC:
            raise IRTypeError(f"'-' needs a number, not a {self.operand.type.value}")

    @cached_property
    def type(self) -> T:
        return self.operand.type

    @cached_property
    def domain(self) -> Domain:
        return self.operand.domain


@dataclass(frozen=True)
class IsIn(Node):
    """Whether ``operand`` is one of ``options`` (fixed values: a list, not sub-expressions,
    so walkers pass them by and an ``in`` list counts as one node however long)."""

    operand: Node
    options: tuple[Const, ...] = literal()
    type = T.BOOL

    def __post_init__(self):
        for o in self.options:
            ok = o.type == self.operand.type or {o.type, self.operand.type} <= {T.TEXT, T.CODE} \
                or (o.type in NUMERIC and self.operand.type in NUMERIC)
            if not ok:
                raise IRTypeError(f"'in' compares a {self.operand.type.value} with a {o.type.value}")

    @cached_property
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

    @cached_property
    def type(self) -> T:
        kinds = {v.type for _, v in self.whens} | ({self.default.type} if self.default is not None else set())
        return kinds.pop() if len(kinds) == 1 else T.FLOAT

    @cached_property
    def domain(self) -> Domain:
        nodes = [n for pair in self.whens for n in pair] + ([self.default] if self.default else [])
        return _join_domains(*(n.domain for n in nodes))


@dataclass(frozen=True)
class Func(Node):
    """A scalar function: each is a subclass, named by ``name`` (what the rule writes);
    ``func(name, args)`` picks it. ``arity``: how many arguments (None: one or more);
    ``wants``: the types they may have; ``per_row``: whether it may be computed on each
    event row (the others apply to per-patient values only)."""

    name: ClassVar[str]
    arity: ClassVar[int | None] = 1
    wants: ClassVar[tuple[T, ...]] = NUMERIC
    per_row: ClassVar[bool] = False
    args: tuple[Node, ...]

    def __post_init__(self):
        if self.arity is not None and len(self.args) != self.arity:
            raise IRTypeError(f"{self.name} takes {self.arity} argument(s), got {len(self.args)}")
        for a in self.args:
            if a.type not in self.wants:
                raise IRTypeError(f"{self.name} needs {'dates' if self.wants == (T.DATE,) else 'numbers'}, "
                                  f"not a {a.type.value}")
        _join_domains(*(a.domain for a in self.args))

    @cached_property
    def type(self) -> T:
        return T.FLOAT

    @cached_property
    def domain(self) -> Domain:
        return _join_domains(*(a.domain for a in self.args))


class _WholeIfWhole(Func):
    """A function whose result is whole when every argument is."""

    @cached_property
    def type(self) -> T:
        return T.INT if all(a.type is T.INT for a in self.args) else T.FLOAT


class Logistic(Func):
    name = "logistic"


class Exp(Func):
    name = "exp"


class Log(Func):
    name = "log"


class Abs(_WholeIfWhole):
    name = "abs"


class Round(Func):
    name = "round"
    type = T.INT


class Least(_WholeIfWhole):
    name, arity = "min", None


class Greatest(_WholeIfWhole):
    name, arity = "max", None


class DaysBetween(Func):
    name, arity, wants, per_row = "days_between", 2, (T.DATE,), True
    type = T.INT


class Weekday(Func):
    """The ISO day of the week of a date: 1 Monday ... 6 Saturday, 7 Sunday."""

    name, arity, wants, per_row = "weekday", 1, (T.DATE,), True
    type = T.INT


# --- from rows to one value per patient ----------------------------------------------------

class Window:
    """Which event dates an aggregation sees, counting back from the evaluation date D.
    Each kind is a subclass: ``Ever`` (date <= D), ``Range`` (D - start < date <= D - end,
    start and end as (months, days) offsets back), ``Active`` (a start/end interval covering
    D: registers). ``window(kind, ...)`` picks one by name."""

    kind: ClassVar[str]

    @property
    def reach(self) -> int:
        """At least how many days back from D it reads (0: none, or for ever)."""
        return 0


@dataclass(frozen=True)
class Ever(Window):
    kind = "ever"
    start, end = None, (0, 0)  # as a range would say it: no start, up to D


@dataclass(frozen=True)
class Active(Window):
    kind = "active"
    start, end = None, (0, 0)


@dataclass(frozen=True)
class Range(Window):
    kind = "range"
    start: tuple[int, int]
    end: tuple[int, int] = (0, 0)

    def __post_init__(self):
        if self.start is None:
            raise IRTypeError("a window needs a start")
        if _approx_days(self.start) <= _approx_days(self.end):
            raise IRTypeError("this window can never match: its start is not before its end",
                              "between=(months(12), months(6)) means from 12 months back to 6 months back")

    @property
    def reach(self) -> int:
        return max(_offset_days(self.start), _offset_days(self.end))


def _approx_days(offset: tuple[int, int]) -> float:
    return offset[0] * 30.44 + offset[1]


def _offset_days(offset: tuple[int, int]) -> int:
    """At least the days in (months, days): a month counts 31."""
    return offset[0] * 31 + offset[1]


@dataclass(frozen=True)
class Aggregate(Node):
    """One value per patient from the rows of ``table`` that pass ``where`` within ``window``.
    Each aggregation is a subclass named by ``func`` (what the rule writes; ``aggregate(func,
    ...)`` picks it). ``value`` is the per-row value aggregated; ``where`` and ``value`` are
    evaluated per row, so walkers that stay in one domain do not open them (``rows()``)."""

    func: ClassVar[str]
    needs_value: ClassVar[bool] = False
    row_value: ClassVar[bool] = False  # its value may be computed per row (value=days_between(...))
    table: str
    where: Node | None = rows(default=None)
    window: Window = Ever()
    value: Node | None = rows(default=None)
    domain = PATIENT

    def __post_init__(self):
        for part, node in (("filter", self.where), ("value", self.value)):
            if node is not None and node.domain.table not in (self.table, None):
                raise IRTypeError(f"the {part} refers to {node.domain.table}, not {self.table}")
        if self.where is not None and self.where.type is not T.BOOL:
            raise IRTypeError(f"a filter must be true/false, not a {self.where.type.value}",
                              'e.g. setting == "ae"')
        if self.needs_value and self.value is None:
            raise IRTypeError(f"{self.func} needs a column, e.g. {self.func}({self.table}.cost)")
        if self.window.kind == "active" and self.table != "registers":
            raise IRTypeError("'active' applies to registers (start and end dates)",
                              "for other tables use within=months(n)")
        self.check()

    def check(self) -> None:
        """What this aggregation needs of its value and codelist (beyond the checks above)."""

    @cached_property
    def reach(self) -> int:
        return self.window.reach + max((p.reach for p in parts(self)), default=0)

    @cached_property
    def type(self) -> T:
        return self.value.type if self.value is not None else T.DATE


class Exists(Aggregate):
    """Whether any row passes (false over none)."""

    func, type = "exists", T.BOOL


class Count(Aggregate):
    """How many rows pass (0 over none)."""

    func, type = "count", T.INT


class CountDistinct(Aggregate):
    """How many distinct values (0 over none): of a column, or of the codelist categories of
    the rows' codes (``CategoryOf``)."""

    func, type, needs_value = "count_distinct", T.INT, True

    @property
    def codelist(self) -> Codelist | None:
        """The codelist whose categories are counted (None: a column's values)."""
        return self.value.codelist if isinstance(self.value, CategoryOf) else None


class _OfNumbers(Aggregate):
    needs_value = row_value = True
    type = T.FLOAT

    def check(self) -> None:
        if self.value.type not in NUMERIC:
            raise IRTypeError(f"{self.func} needs numbers, not {self.value.type.value}")


class Sum(_OfNumbers):
    """The sum of the values, missing ones skipped (0 over none)."""

    func = "sum"


class Mean(_OfNumbers):
    """The mean of the values present (missing over none)."""

    func = "mean"


class Median(_OfNumbers):
    """The median of the values present: the middle one, or the mean of the two middle ones
    when their number is even (missing over none)."""

    func = "median"


class _Extreme(Aggregate):
    needs_value = row_value = True

    def check(self) -> None:
        if self.value.type not in (T.INT, T.FLOAT, T.DATE):
            raise IRTypeError(f"{self.func} needs numbers or dates, not {self.value.type.value}",
                              "for the earliest or latest text, use first() or last()")


class Min(_Extreme):
    func = "min"


class Max(_Extreme):
    func = "max"


class First(Aggregate):
    """The value of the earliest row by the table's date (ties: store order)."""

    func, needs_value = "first", True


class Last(Aggregate):
    """The value of the latest row by the table's date (ties: store order)."""

    func, needs_value = "last", True


class DaysSince(Aggregate):
    """Days from the latest row's date to the evaluation date (missing over none)."""

    func, type = "days_since", T.INT


@dataclass(frozen=True)
class WeightedScore(Aggregate):
    """The codelist weight of each distinct category present, added once, exactly: weights are
    whole numbers of 10^-k units (k = the codelist's ``weight_places``), added in 64 bits and
    divided once by 10^k, so the score is the double nearest to the exact decimal sum (and
    compares exactly with a threshold such as 5 or 15). ``hierarchy`` pairs (higher, lower)
    of its categories: when a patient has both, only the higher counts."""

    func, type = "weighted_categories", T.FLOAT
    codelist: Codelist | None = None
    hierarchy: tuple[tuple[str, str], ...] = ()

    def check(self) -> None:
        if self.codelist is None or not self.codelist.weights:
            raise IRTypeError("a weighted score needs a codelist with a weight column")
        if not any(c is not None for c in self.codelist.categories):
            raise IRTypeError(f"a score adds the weight of each category, and codelist {self.codelist.name!r} "
                              "has no categories", "give the codelist a category column (a code may be its own)")
        check_score_weights(self.codelist)
        if self.hierarchy:
            check_hierarchy(self.hierarchy, self.codelist)


def check_score_weights(cl: Codelist) -> None:
    """Weights a score can add exactly: at most MAX_WEIGHT_PLACES decimal places, and
    together (each category's, as whole units) at most MAX_SCALED_TOTAL."""
    if cl.weight_places > MAX_WEIGHT_PLACES:
        w = next(w for w in cl.weights if w is not None and decimal_places(w) > MAX_WEIGHT_PLACES)
        raise IRTypeError(f"codelist {cl.name!r}: weight {w!r} has {decimal_places(w)} decimal places; "
                          f"a score adds weights of at most {MAX_WEIGHT_PLACES}",
                          f"round the weights to {MAX_WEIGHT_PLACES} places or fewer")
    if sum(abs(w) for w in cl.category_weights.values()) > MAX_SCALED_TOTAL:
        raise IRTypeError(f"codelist {cl.name!r}: the weights are too large to add exactly",
                          f"together at most {MAX_SCALED_TOTAL / 10 ** cl.weight_places:,.0f}")


def check_hierarchy(pairs: tuple[tuple[str, str], ...], cl: Codelist) -> None:
    """(higher, lower) pairs of the codelist's categories, without a category above itself
    (directly or through others)."""
    cats = {c for c in cl.categories if c is not None}
    above: dict[str, set[str]] = {}
    for hi, lo in pairs:
        for c in (hi, lo):
            if c not in cats:
                raise IRTypeError(f"codelist {cl.name!r} has no category {c!r}")
        if hi == lo:
            raise IRTypeError(f"{hi} > {lo}: a category cannot be above itself")
        above.setdefault(lo, set()).add(hi)

    def reaches(start: str, target: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            c = stack.pop()
            if c == target:
                return True
            if c not in seen:
                seen.add(c)
                stack.extend(above.get(c, ()))
        return False

    for hi, lo in pairs:
        if reaches(hi, lo):
            raise IRTypeError(f"the hierarchy goes round in a circle: {lo} is above {hi} and {hi} above {lo}")


@dataclass(frozen=True)
class Trend(Node):
    """Least-squares slope per month of monthly counts (or sums of ``value``) over the last
    ``months`` whole months up to D; 0 when fewer than two months have any events."""

    table: str
    where: Node | None = rows()
    months: int
    value: Node | None = rows(default=None)
    type = T.FLOAT
    domain = PATIENT

    def __post_init__(self):
        if self.months < 2:
            raise IRTypeError("a trend needs at least 2 months", "over=months(6) or more")

    @cached_property
    def window(self) -> Window:
        """The rows it reads: the last ``months`` months up to D."""
        return Range((self.months, 0))

    @cached_property
    def reach(self) -> int:
        return self.window.reach + max((p.reach for p in parts(self)), default=0)


@dataclass(frozen=True)
class At(Node):
    """``operand`` evaluated with the evaluation date moved to ``when`` (a date the same for
    everyone, which engines work out themselves: both fields are ``moved()``)."""

    operand: Node = moved()
    when: Node = moved()

    def __post_init__(self):
        if self.when.type is not T.DATE or not self.when.domain.per_patient:
            raise IRTypeError("'at' needs a date, e.g. efi at as_of - months(6)")
        if not self.operand.domain.per_patient:
            raise IRTypeError("'at' applies to per-patient values")

    @cached_property
    def reach(self) -> int:
        return self.when.reach + self.operand.reach

    @cached_property
    def type(self) -> T:
        return self.operand.type

    domain = PATIENT


@dataclass(frozen=True)
class PopulationRank(Node):
    """Where a patient stands within the rule's population; each ranking is a subclass
    named by ``kind`` (``rank(kind, operand, fraction)`` picks it)."""

    kind: ClassVar[str]
    operand: Node
    domain = PATIENT

    def __post_init__(self):
        if self.operand.type not in NUMERIC:
            raise IRTypeError(f"{self.kind} ranks numbers, not {self.operand.type.value}")
        if not self.operand.domain.per_patient:
            raise IRTypeError(f"{self.kind} ranks per-patient values")


class Percentile(PopulationRank):
    """0-100: the share of members with a smaller value (ties get the same value)."""

    kind, type = "percentile", T.FLOAT


@dataclass(frozen=True)
class Top(PopulationRank):
    """True for the members with the highest ``fraction`` of values."""

    kind, type = "top", T.BOOL
    fraction: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not (self.fraction and 0 < self.fraction <= 1):
            raise IRTypeError("top needs a share between 0% and 100%, e.g. top(cost_12m, 0.5%)")


@dataclass(frozen=True)
class Pool:
    """The population's values a rank is taken within, gathered beforehand (a sharded store's
    first pass: docs/scale-out.md), sorted as numpy sorts (nan last). Compared and hashed by
    ``digest`` (of the sorted values' bytes), not by the values."""

    digest: str
    values: object = field(compare=False, repr=False)  # numpy float64, sorted

    @classmethod
    def of(cls, values) -> Pool:
        import hashlib

        import numpy as np

        v = np.sort(np.ascontiguousarray(values, dtype=np.float64))
        v.flags.writeable = False
        return cls(hashlib.sha256(v.tobytes()).hexdigest(), v)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class RankInPool(Node):
    """A ``percentile`` or ``top`` of ``operand`` taken within a ``Pool`` instead of within
    the population it is evaluated with: the same value for every patient as the rank over
    the patients whose values made the pool, so a shard ranks its patients exactly as the
    whole store would. Made only by the sharded merge (engines/pooled.py), never by a rule."""

    operand: Node
    kind: str = field(metadata={"literal": True})
    fraction: float | None
    pool: Pool
    domain = PATIENT

    def __post_init__(self):
        if self.kind not in RANK_KINDS:
            raise IRTypeError(f"a pooled rank is one of {', '.join(RANK_KINDS)}, not {self.kind}")
        if self.operand.type not in NUMERIC or not self.operand.domain.per_patient:
            raise IRTypeError(f"{self.kind} ranks per-patient numbers")

    @cached_property
    def type(self) -> T:
        return T.FLOAT if self.kind == "percentile" else T.BOOL


RANK_KINDS = ("percentile", "top")


# --- walking the tree ----------------------------------------------------------------------
# A node's operands are its fields that hold nodes (found from the annotations). Fields made
# with rows() or moved() are closed: evaluated per row of another table, or at another date,
# which engines handle themselves; literal() fields hold fixed values, never walked.

_NODE_FIELDS: dict[type, tuple[tuple[str, str | None], ...]] = {}


def _holds_nodes(hint) -> bool:
    if isinstance(hint, type):
        return issubclass(hint, Node)
    return any(_holds_nodes(a) for a in typing.get_args(hint))


def node_fields(cls: type) -> tuple[tuple[str, str | None], ...]:
    """(field name, closed as ROWS or DATE, or None when open) for each field of ``cls``
    that holds nodes, in field order."""
    known = _NODE_FIELDS.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = tuple((f.name, f.metadata.get("closed")) for f in dataclasses.fields(cls)
                      if not f.metadata.get("literal") and _holds_nodes(hints[f.name]))
        _NODE_FIELDS[cls] = known
    return known


def _nodes_in(value) -> Iterator[Node]:
    if isinstance(value, Node):
        yield value
    elif isinstance(value, tuple):
        for v in value:
            yield from _nodes_in(v)


def _operands(n: Node, opened: tuple[str | None, ...]) -> list[Node]:
    return [x for name, closed in node_fields(type(n)) if closed in opened for x in _nodes_in(getattr(n, name))]


def conjuncts(n: Node | None) -> list[Node]:
    """The parts of an ``and`` chain (a filter's conditions), left to right."""
    if n is None:
        return []
    if isinstance(n, And):
        return conjuncts(n.left) + conjuncts(n.right)
    return [n]


def children(n: Node) -> list[Node]:
    """The open operands of ``n``: not the parts of an aggregation, ``spell_has`` or ``at``
    (evaluated per row or at another date, which callers handle themselves)."""
    return _operands(n, (None,))


def parts(n: Node) -> list[Node]:
    """Every node ``n`` is computed from: its open operands and its closed ones."""
    return _operands(n, (None, ROWS, DATE))


def walk(n: Node, into: tuple[str, ...] = (DATE,), stop=None) -> Iterator[Node]:
    """Each distinct node under ``n`` once, in preorder (``n`` first, then its operands in
    field order, left before right): through open operands and the closed fields named in
    ``into`` (by default through ``at``, not into aggregations' rows; ``(ROWS, DATE)``:
    everywhere). ``stop(node)``: yield that node but do not open it."""
    opened = (None, *into)
    seen: set[int] = set()
    stack = [n]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        if stop is None or not stop(x):
            stack.extend(reversed(_operands(x, opened)))  # popped in field order: left first


def contains(n: Node, kind: type, into: tuple[str, ...] = (DATE,)) -> bool:
    """Whether ``kind`` occurs anywhere in the tree under ``n`` (through ``at`` too)."""
    return any(isinstance(x, kind) for x in walk(n, into))


def patient_parts(n: Node) -> list[Node]:
    """The largest per-patient sub-expressions of a row expression: the values an engine
    computes before it reads the rows (constants, parameters and as_of need nothing)."""
    return [x for x in walk(n, stop=lambda x: x.domain.per_patient)
            if x.domain.per_patient and not isinstance(x, (Const, Param, AsOf))]


def tree(n: Node, indent: str = "  ", names: dict[Node, str] | None = None) -> str:
    """The IR under ``n`` as an indented tree, one node a line (what ``casefind explain``
    prints); a node met again is shown once more by its label only, marked ``(again)``, and
    a node below ``n`` that ``names`` holds (an earlier feature) by its name."""
    lines: list[str] = []
    seen: set[int] = set()
    names = names or {}

    def visit(x: Node, depth: int, role: str) -> None:
        pad = indent * depth + (f"{role}: " if role else "")
        if depth and x in names:
            lines.append(f"{pad}feature {names[x]}")
            return
        if id(x) in seen and node_fields(type(x)):
            lines.append(f"{pad}{_label(x)} (again)")
            return
        seen.add(id(x))
        lines.append(pad + _label(x))
        for name, closed in node_fields(type(x)):
            for sub in _nodes_in(getattr(x, name)):
                visit(sub, depth + 1, name if closed or len(node_fields(type(x))) > 1 else "")

    visit(n, 0, "")
    return "\n".join(lines)


def _label(x: Node) -> str:
    """A node's class and its fields that are not nodes (codelists by name and size)."""
    shown = []
    node_names = {name for name, _ in node_fields(type(x))}
    for f in dataclasses.fields(x):
        v = getattr(x, f.name)
        if f.name in node_names or v is None or v == () or not f.init:
            continue
        if isinstance(v, Codelist):
            v = f"{v.name} ({len(v.codes) + len(v.prefixes)} codes)"
        elif isinstance(v, tuple) and v and isinstance(v[0], Const):
            v = f"{len(v)} values" if len(v) > 5 else ", ".join(repr(o.value) for o in v)
        elif isinstance(v, Window):
            v = _window_text(v)
        elif isinstance(v, T):
            v = v.value
        elif not isinstance(v, str):
            v = repr(v)
        shown.append(f"{f.name}={v}")
    name = type(x).__name__
    return f"{name}({', '.join(shown)})" if shown else name


def _window_text(w: Window) -> str:
    if isinstance(w, Range):
        return f"({w.start[0]}m{w.start[1]}d, {w.end[0]}m{w.end[1]}d] back"
    return w.kind


# --- names to classes: what the compiler maps the rule's words with ------------------------

def _leaves(cls: type) -> list[type]:
    """The concrete subclasses of ``cls`` (those naming an operation), in definition order."""
    out = []
    for sub in cls.__subclasses__():
        out += _leaves(sub) if sub.__subclasses__() else [sub]
    return out


AGGREGATE_CLASSES: dict[str, type[Aggregate]] = {c.func: c for c in _leaves(Aggregate)}
AGGREGATES = tuple(AGGREGATE_CLASSES)
BINARY_CLASSES: dict[str, type[Binary]] = {c.op: c for c in _leaves(Binary)}
FUNC_CLASSES: dict[str, type[Func]] = {c.name: c for c in _leaves(Func)}
RANK_CLASSES: dict[str, type[PopulationRank]] = {c.kind: c for c in _leaves(PopulationRank)}
WINDOW_CLASSES: dict[str, type[Window]] = {c.kind: c for c in _leaves(Window)}


def _lookup(table: dict, name: str, what: str):
    cls = table.get(name)
    if cls is None:
        from casefind.rules.errors import did_you_mean  # rules.errors needs nothing of the IR

        raise IRTypeError(f"no {what} {name!r}", did_you_mean(str(name), table) or f"{what}s: {', '.join(table)}")
    return cls


def aggregate(func: str, table: str, where: Node | None = None, window: Window = Ever(),
              value: Node | None = None, codelist: Codelist | None = None,
              hierarchy: tuple[tuple[str, str], ...] = ()) -> Aggregate:
    """The aggregation named ``func`` (``exists``, ``count``, ..., ``weighted_categories``)."""
    cls = _lookup(AGGREGATE_CLASSES, func, "aggregation")
    if cls is WeightedScore:
        return WeightedScore(table, where, window, value, codelist, hierarchy)
    if hierarchy:
        raise IRTypeError("a hierarchy orders the categories of a weighted score",
                          "score(diagnoses, codelist=c, hierarchy=(severe > mild))")
    return cls(table, where, window, value)


def binary(op: str, left: Node, right: Node) -> Binary:
    """The operator ``op`` (``+``, ``==``, ``and``, ...) applied to ``left`` and ``right``."""
    return _lookup(BINARY_CLASSES, op, "operator")(left, right)


def func(name: str, args: tuple[Node, ...]) -> Func:
    """The scalar function ``name`` (``logistic``, ``min``, ``days_between``, ...)."""
    return _lookup(FUNC_CLASSES, name, "function")(tuple(args))


def rank(kind: str, operand: Node, fraction: float | None = None) -> PopulationRank:
    """``percentile(operand)`` or ``top(operand, fraction)``."""
    cls = _lookup(RANK_CLASSES, kind, "ranking")
    return Top(operand, fraction) if cls is Top else cls(operand)


def window(kind: str = "ever", start: tuple[int, int] | None = None, end: tuple[int, int] = (0, 0)) -> Window:
    """The window named ``kind``: ``ever``, ``active``, or ``range`` from ``start`` to ``end``."""
    cls = _lookup(WINDOW_CLASSES, kind, "window")
    return Range(start, end) if cls is Range else cls()


# --- hashing -----------------------------------------------------------------------------

def _cache_hash(cls: type) -> None:
    """Hash a node once: the dataclass hash walks the whole tree on every call, and nodes
    are dictionary keys all through planning and evaluation. The class is part of the hash
    (Sum and Mean of the same rows differ)."""
    plain = cls.__hash__

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = self.__dict__["_hash"] = hash((type(self).__name__, plain(self)))
        return cached

    def __getstate__(self) -> dict:  # pickled without it: string hashes differ between processes
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    cls.__hash__ = __hash__
    cls.__getstate__ = __getstate__


def _all_subclasses(cls: type) -> list[type]:
    return [cls] + [s for sub in cls.__subclasses__() for s in _all_subclasses(sub)]


for _cls in [*_all_subclasses(Node), Codelist]:
    if dataclasses.is_dataclass(_cls) and "__hash__" in _cls.__dict__:
        _cache_hash(_cls)
