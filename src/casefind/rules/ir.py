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
from decimal import Decimal
from enum import Enum
from functools import cached_property


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
class SpellHas(Node):
    """True for rows of ``outer`` whose hospital spell (``spell_id``) has a row of ``table``
    that passes ``where``, dated on or before the evaluation date: "the admission's primary
    diagnosis is asthma", "a cardiac procedure was done in this spell". Spell numbers are
    store-wide, so the spell's rows are found by number. ``where`` reads only ``table``'s
    columns and fixed values (one answer per spell, the same for every patient)."""

    outer: str
    table: str
    where: Node | None = None
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

    @cached_property
    def type(self) -> T:
        if self.op in _COMPARE or self.op in _LOGIC:
            return T.BOOL
        if self.op == "/":
            return T.FLOAT
        return T.INT if (self.left.type is T.INT and self.right.type is T.INT) else T.FLOAT

    @cached_property
    def domain(self) -> Domain:
        return _join_domains(self.left.domain, self.right.domain)


@dataclass(frozen=True)
class Not(Node):
    operand: Node
    type: T = field(default=T.BOOL, init=False)

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
    operand: Node
    options: tuple[Const, ...]
    type: T = field(default=T.BOOL, init=False)

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

    @cached_property
    def type(self) -> T:
        if self.name in ("days_between", "round"):
            return T.INT
        if self.name in ("min", "max", "abs"):
            return T.INT if all(a.type is T.INT for a in self.args) else T.FLOAT
        return T.FLOAT

    @cached_property
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


def _offset_days(offset: tuple[int, int]) -> int:
    """At least the days in (months, days): a month counts 31."""
    return offset[0] * 31 + offset[1]


AGGREGATES = ("exists", "count", "count_distinct", "sum", "mean", "min", "max", "first", "last",
              "days_since", "weighted_categories")


@dataclass(frozen=True)
class Aggregate(Node):
    """One value per patient from the rows of ``table`` that pass ``where`` within ``window``.

    ``value`` is the per-row value aggregated (a column, or the codelist category for
    count_distinct of categories); ``first``/``last`` order rows by the table's date.
    ``weighted_categories`` sums the codelist weight of each distinct category present once,
    exactly: weights are whole numbers of 10^-k units (k = the codelist's ``weight_places``),
    added in 64 bits and divided once by 10^k, so the score is the double nearest to the exact
    decimal sum (and compares exactly with a threshold such as 5 or 15). ``hierarchy`` pairs
    (higher, lower) of its categories: when a patient has both, only the higher counts.
    """

    func: str
    table: str
    where: Node | None = None
    window: Window = Window()
    value: Node | None = None
    codelist: Codelist | None = None
    hierarchy: tuple[tuple[str, str], ...] = ()
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
        if self.func == "weighted_categories":
            if self.codelist is None or not self.codelist.weights:
                raise IRTypeError("a weighted score needs a codelist with a weight column")
            if not any(c is not None for c in self.codelist.categories):
                raise IRTypeError(f"a score adds the weight of each category, and codelist {self.codelist.name!r} "
                                  "has no categories", "give the codelist a category column (a code may be its own)")
            check_score_weights(self.codelist)
        if self.hierarchy:
            if self.func != "weighted_categories":
                raise IRTypeError("a hierarchy orders the categories of a weighted score",
                                  "score(diagnoses, codelist=c, hierarchy=(severe > mild))")
            check_hierarchy(self.hierarchy, self.codelist)
        if self.window.kind == "active" and self.table != "registers":
            raise IRTypeError("'active' applies to registers (start and end dates)",
                              "for other tables use within=months(n)")

    @cached_property
    def reach(self) -> int:
        w = self.window
        back = max(_offset_days(w.start), _offset_days(w.end)) if w.kind == "range" else 0
        return back + max((p.reach for p in parts(self)), default=0)

    @cached_property
    def type(self) -> T:
        f = self.func
        if f == "exists":
            return T.BOOL
        if f in ("count", "count_distinct", "days_since"):
            return T.INT
        if f in ("sum", "mean", "weighted_categories"):
            return T.FLOAT
        return self.value.type if self.value is not None else T.DATE  # first/last/min/max


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
    where: Node | None
    months: int
    value: Node | None = None
    type: T = field(default=T.FLOAT, init=False)
    domain: Domain = field(default=PATIENT, init=False)

    def __post_init__(self):
        if self.months < 2:
            raise IRTypeError("a trend needs at least 2 months", "over=months(6) or more")

    @cached_property
    def reach(self) -> int:
        return _offset_days((self.months, 0)) + max((p.reach for p in parts(self)), default=0)


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

    @cached_property
    def reach(self) -> int:
        return self.when.reach + self.operand.reach

    @cached_property
    def type(self) -> T:
        return self.operand.type

    @cached_property
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

    @cached_property
    def type(self) -> T:
        return T.BOOL if self.kind == "top" else T.FLOAT


# --- walking the tree ----------------------------------------------------------------------

def children(n: Node) -> list[Node]:
    """The operands of an operator node. Aggregate, Trend, SpellHas and At are not opened: their parts
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


def parts(n: Node) -> list[Node]:
    """Every node ``n`` is computed from: its operands, and also the parts of ``at`` and
    the filter and value of an aggregation (which ``children`` leaves closed)."""
    if isinstance(n, At):
        return [n.operand, n.when]
    if isinstance(n, (Aggregate, Trend)):
        return [x for x in (n.where, n.value) if x is not None]
    if isinstance(n, SpellHas):
        return [n.where] if n.where is not None else []
    return children(n)


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


def _cache_hash(cls: type) -> None:
    """Hash a node once: the dataclass hash walks the whole tree on every call, and nodes
    are dictionary keys all through planning and evaluation."""
    plain = cls.__hash__

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = self.__dict__["_hash"] = plain(self)
        return cached

    def __getstate__(self) -> dict:  # pickled without it: string hashes differ between processes
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    cls.__hash__ = __hash__
    cls.__getstate__ = __getstate__


for _cls in (Const, Param, AsOf, Attr, Shift, Column, Codelist, InCodelist, SpellHas, Binary, Not, Neg, IsIn,
             Case, Func, Aggregate, Trend, At, PopulationRank):
    _cache_hash(_cls)
