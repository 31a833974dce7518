"""Compile a loaded rule file into the typed IR, resolving every name and checking types.

Name resolution, in order: inside an aggregation over table X, bare names are X's columns
(and ``category``/``weight`` of the aggregation's codelist); everywhere, names are features,
parameters, ``as_of`` or patient attributes. Features may use each other in any order; a
cycle is an error that lists it. Every failure is a RuleError at the offending position;
a bad ``--as-of`` or ``--param`` value is a UsageError naming the option.

Whatever passes here runs on both engines in bounded time and memory: expressions nest at
most ``MAX_DEPTH`` levels and expand to at most ``MAX_SIZE`` nodes (features counted at each
use; ``MAX_RULE_SIZE`` for the whole rule), numbers fit 64 bits, dates lie between ``DATE_MIN``
and ``DATE_MAX``, durations are at most 200 years, and an expression looks at most
``MAX_REACH_DAYS`` away from its date.
"""
from __future__ import annotations

import csv
import datetime as dt
import difflib
import hashlib
import io
import math
import re
import string
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from casefind.contract import TABLES
from casefind.contract.schema import KNOWN_MEASURES, KNOWN_REGISTERS, SEX
from casefind.errors import UsageError
from casefind.plan import make_plan
from casefind.rules import expr as syn
from casefind.rules import ir
from casefind.rules.errors import RuleError, Span, did_you_mean
from casefind.rules.load import Located, RuleSource, confined, load_rule, read_text_file

if TYPE_CHECKING:
    from casefind.models.artefact import ModelUse

_KIND_TYPE = {"date": ir.T.DATE, "enum": ir.T.TEXT, "code": ir.T.CODE, "text": ir.T.TEXT,
              "float": ir.T.FLOAT, "int": ir.T.INT, "patient_id": ir.T.TEXT,
              "spell": ir.T.INT}
_DURATIONS = {"days": (0, 1), "months": (1, 0), "years": (12, 0)}
# the aggregations a rule names: the IR's (a weighted score is written score()), and trend
_EVENT_AGGS = (set(ir.AGGREGATES) - {"weighted_categories"}) | {"trend"}

MAX_DEPTH = 100                     # levels of an expression, counting through the features it uses
MAX_SIZE = 10_000                   # nodes of an expression, each use of a feature counted again
MAX_RULE_SIZE = 50_000              # nodes of all a rule's expressions together (SQL grows with it)
MAX_AGGREGATIONS = 100              # distinct aggregations, each at each date `at` needs it (kernel size)
MAX_DURATION = {"days": 73_050, "months": 2_400, "years": 200}   # 200 years
MAX_REACH_DAYS = 1_000 * 366        # windows, at and shifts added up along an expression
DATE_MIN, DATE_MAX = dt.date(1800, 1, 1), dt.date(2299, 12, 31)
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1
MAX_IN_VALUES = 100_000             # values of one in (...) list
MAX_REASON_CHARS = 1_000
MAX_EVIDENCE = 100                  # events shown per reason
MAX_TEXT_PARAM_CHARS = 1_000
MAX_ROUND_PLACES = 10               # decimal places output: round: shows
# columns every list file has: a feature of the same name cannot be an output column
LIST_COLUMNS = ("run_id", "rule", "as_of", "practice", "locality", "patient_id", "rank", "segment",
                "reasons", "decision", "decided_on", "reviewer", "note")
_TEMPLATE_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A plural field: {name|plural} or {name|singular|plural}, each form a few plain letters
# (a suffix such as s or es, or a word such as person|people; a form may be empty).
_PLURAL_FIELD = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\|(?P<forms>[A-Za-z' -]{0,40}(?:\|[A-Za-z' -]{0,40})?)")
_INT_TEXT = re.compile(r"[-+]?\d+")
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class CompiledRule:
    name: str
    title: str
    version: str
    path: Path
    file_sha256: str
    as_of: dt.date
    parameters: dict[str, ir.Param]
    codelists: dict[str, ir.Codelist]
    population: ir.Node
    features: dict[str, ir.Node]
    segments: tuple[tuple[str, ir.Node], ...] = ()
    cost: str | None = None  # the numeric feature each segment's cost share is of (cost:)
    include: tuple[tuple[str, ir.Node], ...] = ()
    reasons: dict[str, str] = field(default_factory=dict)  # criterion -> sentence template
    require: ir.Node | None = None
    exclude: tuple[tuple[str, ir.Node], ...] = ()
    rank_by: tuple[tuple[str, ir.Node, bool], ...] = ()  # (feature name, node, descending)
    limit: dict[str, int] = field(default_factory=dict)
    output_columns: tuple[str, ...] = ()
    evidence: int = 0
    # decimal places a feature is published to, in lists and datasets (output: round:); the
    # full value is what criteria and rank_by use
    output_round: dict[str, int] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)  # model("name") -> its artefact's record
    model_nodes: dict[str, ir.Node] = field(default_factory=dict)  # model("name") -> the expression it became


def rounded(value, places: int | None):
    """``value`` as a list or dataset shows it: to ``places`` decimal places (output:
    round:), half away from zero on its decimal value (2.675 to 2 places is 2.68); missing
    stays missing, and without ``places`` the value is unchanged."""
    if places is None or not isinstance(value, float) or not math.isfinite(value) or abs(value) >= 2.0 ** 53:
        return value  # missing, whole, not finite, or too large to have decimal places
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def attributes_used(rule: CompiledRule) -> set[str]:
    """The patient attributes a list shows by name, rather than through a feature: in
    output columns, reason templates and rank_by. Each must be evaluated with the rule's
    expressions so the list can show (or rank by) it."""
    named = set(rule.output_columns) | {name for name, _, _ in rule.rank_by}
    for template in rule.reasons.values():
        named |= set(template_fields(template))
    return {n for n in named if n in ir.PATIENT_ATTRIBUTES and n not in rule.features}


def _column_type(table: str, column: str) -> ir.T:
    return _KIND_TYPE[TABLES[table].column(column).kind]


def _code_column(table: str) -> ir.Column:
    """The column of ``table`` a codelist is matched against (the contract names it)."""
    return ir.Column(table, TABLES[table].code_column, ir.T.CODE)


# --- values: parameters, literals, dates ----------------------------------------------------

def _in_range(value: object) -> bool:
    """A value both engines hold exactly: a 64-bit whole number, a finite decimal, a date
    in the supported range, or text and true/false."""
    if isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return INT_MIN <= value <= INT_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dt.date):
        return DATE_MIN <= value <= DATE_MAX
    return False


def _out_of_range(value: object) -> str:
    """Why a value is refused (see _in_range)."""
    if isinstance(value, dt.date):
        return f"dates must lie between {DATE_MIN} and {DATE_MAX}"
    if isinstance(value, float):
        return "decimals must be finite (not inf or nan)"
    return f"whole numbers must lie between {INT_MIN:,} and {INT_MAX:,}"


def _parse_text(text: str) -> object:
    """A parameter written as text in the rule file: a number, a date, true/false, or text."""
    if _INT_TEXT.fullmatch(text):
        return _whole(text)
    if _FLOAT_TEXT.fullmatch(text):
        return float(text)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _whole(text: str) -> int:
    """A whole number written out; one too long to hold is INT_MAX + 1, so it is refused as
    out of range (Python refuses to convert over 4,300 digits)."""
    return int(text) if len(text) <= 25 else INT_MAX + 1


def _rule_parameter(name: str, loc: Located) -> object:
    """A parameter's value as the rule file gives it; RuleErrors at its line otherwise."""
    v = loc.value
    if isinstance(v, dt.datetime):
        raise RuleError(loc.span, f"parameter {name!r} is a date and time: give a date (YYYY-MM-DD)")
    if isinstance(v, (list, dict, tuple, set)) or v is None:
        raise RuleError(loc.span, f"parameter {name!r} must be one value: a number, a date, true/false or text",
                        f"e.g. {name}: 65")
    value = v if isinstance(v, (bool, int, float, dt.date)) else _parse_text(str(v))
    if not _in_range(value):
        raise RuleError(loc.span, f"parameter {name!r} = {str(v)[:40]}: {_out_of_range(value)}")
    return value


def _override(name: str, rule_value: object, given: object) -> object:
    """``--param name=given``, with the type of the rule's own value: a number stays a
    number (a decimal may replace a whole number), a date a date, true/false true/false,
    text text. A value of another type is a UsageError naming --param."""
    text = given.isoformat() if isinstance(given, dt.date) else str(given)

    def refuse(kind: str, hint: str | None = None) -> UsageError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        return UsageError(f"{name} is {kind} ({_shown_value(rule_value)} in the rule); {shown!r} is not",
                          hint, option="--param")

    if isinstance(rule_value, bool):
        if text.lower() not in ("true", "false"):
            raise refuse("true/false", f"--param {name}=true or --param {name}=false")
        return text.lower() == "true"
    if isinstance(rule_value, (int, float)):
        value: object = None
        if _INT_TEXT.fullmatch(text.strip()) and isinstance(rule_value, int):
            value = _whole(text.strip())
        elif _FLOAT_TEXT.fullmatch(text.strip()) or _INT_TEXT.fullmatch(text.strip()):
            value = float(text)
        if value is None or not _in_range(value):
            raise refuse("a number", _out_of_range(value) if value is not None else f"e.g. --param {name}={rule_value}")
        return value
    if isinstance(rule_value, dt.date):
        try:
            value = dt.date.fromisoformat(text.strip())
        except ValueError:
            raise refuse("a date", "write it YYYY-MM-DD") from None
        if not _in_range(value):
            raise refuse("a date", _out_of_range(value))
        return value
    if len(text) > MAX_TEXT_PARAM_CHARS:
        raise UsageError(f"{name}: text is at most {MAX_TEXT_PARAM_CHARS:,} characters", option="--param")
    return text


def _shown_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def _const_of(v: object) -> ir.Const:
    if isinstance(v, bool):
        return ir.Const(v, ir.T.BOOL)
    if isinstance(v, int):
        return ir.Const(v, ir.T.INT)
    if isinstance(v, float):
        return ir.Const(v, ir.T.FLOAT)
    if isinstance(v, dt.date):
        return ir.Const(v, ir.T.DATE)
    return ir.Const(str(v), ir.T.TEXT)


def check_as_of(text: object, span: Span | None, option: str | None) -> dt.date:
    """The evaluation date: from the rule file (a RuleError at its line) or from an option
    such as --as-of (a UsageError naming it)."""
    def refuse(message: str, hint: str) -> Exception:
        if option:
            return UsageError(message, hint, option=option)
        return RuleError(span, message, hint)

    if isinstance(text, dt.date) and not isinstance(text, dt.datetime):
        value = text
    else:
        try:
            value = dt.date.fromisoformat(str(text).strip())
        except ValueError:
            raise refuse(f"the date must be YYYY-MM-DD: {str(text)[:40]!r} is not",
                         'e.g. 2026-10-31' if option else 'as_of: "2026-10-31"') from None
    if not _in_range(value):
        raise refuse(f"as_of {value}: {_out_of_range(value)}", "give a date in the data's years")
    return value


# --- codelists: read by casefind.rules.codelists (CSV files, their provenance sidecars) -------------

from casefind.rules.codelists import MAX_CODELIST_BYTES, load_codelist  # noqa: E402


class Compiler:
    def __init__(self, src: RuleSource, overrides: dict[str, object]):
        self.src = src
        self.params: dict[str, ir.Param] = {}
        unknown = sorted(set(overrides) - set(src.parameters) - {"as_of"})
        if unknown:
            raise UsageError(f"{unknown[0]}: the rule has no such parameter",
                             did_you_mean(unknown[0], src.parameters) or
                             f"parameters: {', '.join(src.parameters) or 'none'}", option="--param")
        self.overridden = set(overrides)
        for name, loc in src.parameters.items():
            value = _rule_parameter(name, loc)
            if name in overrides:
                value = _override(name, value, overrides[name])
            c = _const_of(value)
            self.params[name] = ir.Param(name, c.value, c.type)
        self.codelists = {n: load_codelist(n, loc, src.path) for n, loc in src.codelists.items()}
        self.models: dict[str, ModelUse] = {}  # model("name") -> the fitted model it read
        self.features: dict[str, ir.Node] = {}
        self.in_progress: list[str] = []
        self.criteria_names: dict[str, ir.Node] = {}  # include names, inside require:
        self.period_days: int | None = None  # KPI files: within=period is the period's days
        self.nesting = 0  # how deep node() is: features used inside count too

    # --- entry points ---------------------------------------------------------------------
    def expression(self, loc: Located) -> ir.Node:
        value = loc.value
        if isinstance(value, bool):
            return ir.Const(value, ir.T.BOOL)
        if isinstance(value, (int, float)):
            if not _in_range(value):
                raise RuleError(loc.span, f"{str(value)[:30]} is out of range: {_out_of_range(value)}")
            return _const_of(value)
        return self.node(syn.parse_expression(str(value), loc.span), None)

    def condition(self, loc: Located, what: str) -> ir.Node:
        node = self.expression(loc)
        if node.type is not ir.T.BOOL:
            raise RuleError(loc.span, f"{what} must be true/false, but this is a {node.type.value}",
                            "compare it, e.g. count >= 1")
        if not node.domain.per_patient:
            raise RuleError(loc.span, f"{what} must be one value per patient, but this is {node.domain}",
                            "wrap it in an aggregation such as exists(table, ...)")
        return node

    def feature(self, name: str, span: Span) -> ir.Node:
        if name in self.features:
            return self.features[name]
        if name in self.in_progress:
            cycle = " → ".join(self.in_progress[self.in_progress.index(name):] + [name])
            raise RuleError(span, f"features refer to each other in a cycle: {cycle}",
                            "one of them must be defined without the others")
        self.in_progress.append(name)
        loc = self.src.features[name]
        node = self.expression(loc)
        if not node.domain.per_patient:
            raise RuleError(loc.span, f"feature {name!r} gives one value {node.domain}, not one per patient",
                            "aggregate it: count(...), exists(...), sum(...), ...")
        self.in_progress.pop()
        self.features[name] = node
        return node

    # --- expressions ------------------------------------------------------------------------
    def _wrap(self, span: Span, build):
        try:
            return build()
        except ir.IRTypeError as e:
            raise RuleError(span, str(e), e.hint) from None

    def node(self, n: syn.Node, table: str | None, codelist: ir.Codelist | None = None) -> ir.Node:
        """The IR of ``n``, refused when it nests, expands or reaches too far (each limit is
        checked where it is first exceeded, so the error points there)."""
        self.nesting += 1
        try:
            if self.nesting > MAX_DEPTH:
                raise RuleError(n.span, f"this nests more than {MAX_DEPTH} levels deep (counting the features it uses)",
                                "simplify it, or split it into fewer nested steps")
            out = self._node(n, table, codelist)
        finally:
            self.nesting -= 1
        _check_limits(out, n.span)
        return out

    def _node(self, n: syn.Node, table: str | None, codelist: ir.Codelist | None) -> ir.Node:
        if isinstance(n, syn.Num):
            return ir.Const(int(n.value), ir.T.INT) if n.is_int else ir.Const(n.value, ir.T.FLOAT)
        if isinstance(n, syn.Percent):
            return ir.Const(n.value, ir.T.FLOAT)
        if isinstance(n, syn.Str):
            return ir.Const(n.value, ir.T.TEXT)
        if isinstance(n, syn.Bool):
            return ir.Const(n.value, ir.T.BOOL)
        if isinstance(n, syn.Name):
            return self.name(n, table, codelist)
        if isinstance(n, syn.Not):
            return self._wrap(n.span, lambda: ir.Not(self.node(n.operand, table, codelist)))
        if isinstance(n, syn.Neg):
            inner = self.node(n.operand, table, codelist)
            if isinstance(inner, ir.Const) and inner.type in ir.NUMERIC:
                return ir.Const(-inner.value, inner.type)
            return self._wrap(n.span, lambda: ir.Neg(inner))
        if isinstance(n, syn.In):
            if len(n.options) > MAX_IN_VALUES:
                raise RuleError(n.span, f"'in' lists at most {MAX_IN_VALUES:,} values, not {len(n.options):,}",
                                "use a codelist for long lists of codes")
            operand = self.node(n.operand, table, codelist)
            opts = tuple(self.literal(o, table, codelist) for o in n.options)
            out = self._wrap(n.span, lambda: ir.IsIn(operand, opts))
            if _enum_domain(operand) is not None:
                for syn_opt, opt in zip(n.options, opts):
                    self.check_enum_value(operand, opt, syn_opt.span)
            return out
        if isinstance(n, syn.BinOp):
            return self.binop(n, table, codelist)
        if isinstance(n, syn.At):
            operand = self.node(n.operand, table, codelist)
            when = self.node(n.when, None)
            if when.type is ir.T.DATE and not _same_for_everyone(when):
                raise RuleError(n.when.span, "'at' needs a date that is the same for everyone",
                                'as_of - months(6), date("2026-04-30") or a date parameter')
            return self._wrap(n.span, lambda: ir.At(operand, when))
        if isinstance(n, syn.Call):
            return self.call(n, table, codelist)
        if isinstance(n, syn.Tuple):
            raise RuleError(n.span, "a bracketed list is only allowed as between=(start, end)")
        raise RuleError(n.span, f"cannot use {type(n).__name__} here")  # pragma: no cover

    def literal(self, n: syn.Node, table, codelist) -> ir.Const:
        """A value of an ``in`` list: a literal, compiled without the checks an expression
        needs (a list may hold 100,000 of them)."""
        if isinstance(n, syn.Str):
            return ir.Const(n.value, ir.T.TEXT)
        if isinstance(n, syn.Num) and n.is_int:
            return ir.Const(int(n.value), ir.T.INT)
        node = self._node(n, table, codelist)
        if not isinstance(node, ir.Const):
            raise RuleError(n.span, "the options of 'in' must be literal values")
        return node

    def duration(self, n: syn.Node) -> tuple[int, int] | None:
        if isinstance(n, syn.Name) and n.parts == ("period",):
            if self.period_days is None:
                raise RuleError(n.span, "'period' is the reporting period of a KPI file",
                                "in a rule, give a duration: within=months(12)")
            return (0, self.period_days)
        if isinstance(n, syn.Call) and n.func in _DURATIONS:
            if len(n.args) != 1 or not isinstance(n.args[0], syn.Num) or not n.args[0].is_int:
                raise RuleError(n.span, f"{n.func}() takes one whole number, e.g. {n.func}(6)")
            k = int(n.args[0].value)
            if k > MAX_DURATION[n.func]:
                raise RuleError(n.span, f"{n.func}({k:,}) is more than 200 years: durations are at most "
                                + ", ".join(f"{u}({m:,})" for u, m in MAX_DURATION.items()))
            m, d = _DURATIONS[n.func]
            return (m * k, d * k)
        return None

    def binop(self, n: syn.BinOp, table, codelist) -> ir.Node:
        if n.op in ("+", "-"):
            dur = self.duration(n.right)
            if dur is not None:
                left = self.node(n.left, table, codelist)
                sign = 1 if n.op == "+" else -1
                return self._wrap(n.span, lambda: ir.Shift(left, sign * dur[0], sign * dur[1]))
        if self.duration(n.left) is not None:
            raise RuleError(n.span, "a duration goes after the date: as_of - months(6)")
        left = self.node(n.left, table, codelist)
        right = self.node(n.right, table, codelist)
        if left.type is ir.T.DATE and right.type is ir.T.DATE and n.op == "-":
            raise RuleError(n.span, "dates cannot be subtracted directly",
                            "use days_between(earlier, later) for the number of days")
        out = self._wrap(n.span, lambda: ir.binary(n.op, left, right))
        if n.op in ("==", "!="):
            self.check_enum_value(left, right, n.right.span)
            self.check_enum_value(right, left, n.left.span)
        return out

    def check_enum_value(self, column: ir.Node, value: ir.Node, span: Span) -> None:
        """A fixed text compared with a column the contract enumerates (setting, source,
        code_system, decision, kind, discharge_destination, sex) must be one of its values;
        with an open column that has known values (register, measure) it may be any other
        text except a near-miss of a known value (a different case or spacing, or a letter
        or two away), which is refused as a misspelling. A RuleError at the text (a
        UsageError naming --param when the text is a parameter given on the command line)."""
        domain = _enum_domain(column)
        if domain is None or not isinstance(value, (ir.Const, ir.Param)) or value.type is not ir.T.TEXT:
            return
        label, values, closed = domain
        text = str(value.value)
        if text in values:
            return
        near = _near_miss(text, values)
        if closed and near is None:
            close = difflib.get_close_matches(_normalised(text), [_normalised(v) for v in values], n=1, cutoff=0.6)
            near = next((v for v in values if close and _normalised(v) == close[0]), None)
        if not closed and near is None:
            return  # another register or measure than the known ones: allowed
        shown = text if len(text) <= 40 else text[:37] + "..."
        if closed:
            message = f"{shown!r} is not {label}"
            hint = f"did you mean {near!r}?" if near else f"one of: {', '.join(values)}"
        else:
            message = f"{shown!r} looks like a misspelling of the {label} {near!r}"
            hint = (f"did you mean {near!r}? (text compares exactly, case and spaces included; "
                    f"other {label.split()[-1]}s than {', '.join(values)} are allowed)")
        if isinstance(value, ir.Param):
            message = f"parameter {value.name!r}: {message}"
            if value.name in self.overridden:
                raise UsageError(message, hint, option="--param")
        raise RuleError(span, message, hint)

    def name(self, n: syn.Name, table: str | None, codelist) -> ir.Node:
        parts = n.parts
        if len(parts) == 2:
            t, col = parts
            if t not in TABLES or TABLES[t].restricted:
                raise RuleError(n.span, f"unknown table {t!r}", did_you_mean(t, _event_tables()))
            if table is not None and t != table:
                raise RuleError(n.span, f"{t}.{col} is not a column of {table}, the table being aggregated")
            return self.column(t, col, n.span, codelist)
        if len(parts) > 2:
            raise RuleError(n.span, f"{n.dotted}: a name is 'feature' or 'table.column'")
        name = parts[0]
        if name in self.criteria_names:
            return self.criteria_names[name]
        if table is not None and (name in TABLES[table].names or name in ("category", "weight")):
            return self.column(table, name, n.span, codelist)
        if name in self.src.features:
            return self.feature(name, n.span)
        if name in self.params:
            return self.params[name]
        if name == "as_of":
            return ir.AsOf()
        if name in ir.PATIENT_ATTRIBUTES:
            return ir.Attr(name)
        if name in TABLES:
            raise RuleError(n.span, f"{name} is a table: use it inside an aggregation",
                            f"e.g. count({name}) or exists({name}, ...)")
        known = list(self.src.features) + list(self.params) + list(ir.PATIENT_ATTRIBUTES) + ["as_of"]
        if table is not None:
            known += list(TABLES[table].names)
        hint = did_you_mean(name, known)
        if name in self.codelists:
            hint = f"{name} is a codelist: pass it as codelist={name}"
        raise RuleError(n.span, f"unknown name {name!r}" + (f" (not a feature, parameter, attribute or "
                        f"{table} column)" if table else " (not a feature, parameter or patient attribute)"),
                        hint or "define it under features:")

    def column(self, table: str, col: str, span: Span, codelist, aggregated: bool = False) -> ir.Node:
        """A column of ``table``; ``aggregated``: it is what the aggregation aggregates (the
        only place a codelist's category or weight may appear)."""
        if col in ("category", "weight"):
            if codelist is None:
                raise RuleError(span, f"{table}.{col} comes from a codelist",
                                "add codelist=NAME to the aggregation")
            if not aggregated:
                raise RuleError(span, f"a codelist's {col} is only what an aggregation counts or adds up",
                                f"count_distinct({table}.category, codelist=...) or score({table}, codelist=...)")
            code = _code_column(table)
            return ir.CategoryOf(codelist, code) if col == "category" else ir.WeightOf(codelist, code)
        if col not in TABLES[table].names or col == "patient_id":
            raise RuleError(span, f"{table} has no column {col!r}",
                            did_you_mean(col, TABLES[table].names) or f"columns: {', '.join(TABLES[table].names[1:])}")
        return ir.Column(table, col, _column_type(table, col))

    # --- calls ------------------------------------------------------------------------------
    def call(self, n: syn.Call, table, codelist) -> ir.Node:
        f = n.func
        if f in _DURATIONS:
            raise RuleError(n.span, f"{f}(...) is a duration: use it in within=, between=, over= "
                            "or to move a date (as_of - months(6))")
        if f == "date":
            if len(n.args) != 1 or not isinstance(n.args[0], syn.Str):
                raise RuleError(n.span, 'date() takes an ISO date in quotes: date("2026-04-01")')
            try:
                value = dt.date.fromisoformat(n.args[0].value)
            except ValueError:
                raise RuleError(n.args[0].span, f"{n.args[0].value[:40]!r} is not a date (YYYY-MM-DD)") from None
            if not _in_range(value):
                raise RuleError(n.args[0].span, f"date {value}: {_out_of_range(value)}")
            return ir.Const(value, ir.T.DATE)
        if f == "case":
            return self.case(n, table, codelist)
        if f in ("percentile", "top"):
            return self.rank(n)
        if f in ("min", "max") and n.args and not _is_table_ref(n.args[0]):
            args = tuple(self.node(a, table, codelist) for a in n.args)
            return self._wrap(n.span, lambda: ir.func(f, args))
        if f in ir.FUNC_CLASSES and f not in ("min", "max"):
            if n.kwargs:
                raise RuleError(n.span, f"{f}() takes no named arguments")
            args = tuple(self.node(a, table, codelist) for a in n.args)
            return self._wrap(n.span, lambda: ir.func(f, args))
        if f in _EVENT_AGGS or f == "score":
            if table is not None:
                raise RuleError(n.span, f"{f}() cannot be nested inside another aggregation")
            return self.aggregate(n)
        if f == "spell_has":
            return self.spell_has(n, table)
        if f == "reviewed":
            if table is not None:
                raise RuleError(n.span, "reviewed() cannot be nested inside another aggregation")
            return self.reviewed(n)
        if f == "model":
            return self.model(n, table)
        allowed = sorted(_EVENT_AGGS | set(ir.FUNC_CLASSES) | set(ir.RANK_CLASSES) | set(_DURATIONS)
                         | {"score", "case", "date", "reviewed", "spell_has", "model"})
        raise RuleError(n.span, f"unknown function {f!r}",
                        did_you_mean(f, allowed) or f"functions: {', '.join(allowed)}")

    def model(self, n: syn.Call, table) -> ir.Node:
        """``model("name")``: the fitted model rules/models/name.model.json, as the logistic
        of its linear predictor over its own features (docs/models.md)."""
        if table is not None:
            raise RuleError(n.span, "model() cannot be used inside an aggregation")
        if len(n.args) != 1 or n.kwargs or not isinstance(n.args[0], syn.Str):
            raise RuleError(n.span, 'model() takes the name of a fitted model in quotes: model("emergency_12m")')
        from casefind.models.artefact import model_node

        use = model_node(self.src.path, n.args[0].value, n.args[0].span, getattr(self, "as_of", None))
        self.models[n.args[0].value] = use
        return use.node

    def case(self, n: syn.Call, table, codelist) -> ir.Node:
        args = [self.node(a, table, codelist) for a in n.args]
        if len(args) < 2:
            raise RuleError(n.span, "case(condition, value, ..., default) needs at least a condition and a value")
        whens = tuple((args[i], args[i + 1]) for i in range(0, len(args) - 1, 2))
        default = args[-1] if len(args) % 2 else None
        return self._wrap(n.span, lambda: ir.Case(whens, default))

    def rank(self, n: syn.Call) -> ir.Node:
        if not n.args:
            raise RuleError(n.span, f"{n.func}() needs a feature to rank")
        operand = self.node(n.args[0], None)
        if n.func == "top":
            if len(n.args) != 2 or not isinstance(n.args[1], syn.Percent):
                raise RuleError(n.span, "top(x, share) takes a share in percent: top(cost_12m, 0.5%)")
            frac = n.args[1].value
            return self._wrap(n.span, lambda: ir.Top(operand, frac))
        if len(n.args) != 1:
            raise RuleError(n.span, "percentile(x) takes one argument")
        return self._wrap(n.span, lambda: ir.Percentile(operand))

    def window(self, n: syn.Call, flags: list[str]) -> ir.Window:
        within, between = n.kw("within"), n.kw("between")
        given = [x for x in (within, between) if x is not None] + [syn.Name(n.span, (f,)) for f in flags]
        if len(given) > 1:
            raise RuleError(n.span, "give one window: within=..., between=(..., ...), ever or active")
        if within is not None:
            d = self.duration(within)
            if d is None:
                raise RuleError(within.span, "within= takes a duration: within=months(12)")
            return self._wrap(within.span, lambda: ir.Range(d))
        if between is not None:
            if not isinstance(between, syn.Tuple) or len(between.items) != 2:
                raise RuleError(between.span, "between= takes (start, end) counted back from as_of: "
                                "between=(months(12), months(6))")
            a, b = (self.duration(x) for x in between.items)
            if a is None or b is None:
                raise RuleError(between.span, "between= takes two durations: between=(months(12), months(6))")
            return self._wrap(between.span, lambda: ir.Range(a, b))
        if flags == ["active"]:
            return ir.Active()
        return ir.Ever()

    def aggregate(self, n: syn.Call) -> ir.Node:
        """An aggregation over an event table (or a trend): ``f(table[.column], filter...,
        ever | active, within= | between=, codelist=, value=, over=, hierarchy=)``."""
        table, first = self.aggregated_table(n)
        cl = n.kw("codelist")
        codelist = self.named_codelist(cl)
        if codelist is not None and TABLES[table].code_column is None:
            raise RuleError(cl.span, f"{table} has no codes to match a codelist against")
        value = self.aggregated_value(n, table, first, codelist)
        flags, where = self.row_filter(n, table, codelist)
        window = self.window(n, flags)
        if n.func == "trend":
            return self.trend(n, table, where, value)
        f, func, hierarchy = n.func, n.func, ()
        if f == "score" or (f == "sum" and isinstance(value, ir.WeightOf)):
            func, value = "weighted_categories", None
            if codelist is None:
                raise RuleError(n.span, f"{f}() of weights needs codelist=NAME (a codelist with a weight column)")
            self.check_weights(codelist, cl.span)
            if n.kw("hierarchy") is not None:
                hierarchy = self.hierarchy(n.kw("hierarchy"), codelist)
        elif n.kw("hierarchy") is not None:
            raise RuleError(n.kw("hierarchy").span, "hierarchy= orders the categories of a weighted score",
                            f"score({table}, codelist=..., hierarchy=(severe > mild))")
        if f in ("first", "last") and value is None:
            value = ir.Column(table, TABLES[table].sort_date, ir.T.DATE)
        if f in ("min", "max") and value is None:
            raise RuleError(n.span, f"{f}() needs a column: {f}({table}.{TABLES[table].sort_date})")
        if f == "count_distinct" and value is None:
            raise RuleError(n.span, f"count_distinct() needs what to count: {table}.code or {table}.category")
        return self._wrap(n.span, lambda: ir.aggregate(func, table, where, window, value, codelist, hierarchy))

    def aggregated_table(self, n: syn.Call) -> tuple[str, syn.Name]:
        """The event table an aggregation reads, and its first argument (table or
        table.column); its named arguments are checked here too."""
        f = n.func
        if not n.args:
            raise RuleError(n.span, f"{f}() needs a table first, e.g. {f}(activity, ...)")
        first = n.args[0]
        if not isinstance(first, syn.Name):
            raise RuleError(first.span, f"the first argument of {f}() is a table or table.column")
        table = first.parts[0]
        if table not in TABLES or not TABLES[table].per_patient_events:
            raise RuleError(first.span, f"unknown event table {table!r}",
                            did_you_mean(table, _event_tables()) or f"tables: {', '.join(_event_tables())}")
        allowed_kw = {"within", "between", "codelist", "over", "per", "value", "hierarchy"}
        for k, v in n.kwargs:
            if k not in allowed_kw:
                raise RuleError(v.span, f"{f}() has no argument {k}=", did_you_mean(k, allowed_kw))
        return table, first

    def aggregated_value(self, n: syn.Call, table: str, first: syn.Name, codelist) -> ir.Node | None:
        """What an aggregation aggregates: ``table.column`` (a codelist's category or weight
        included) or ``value=`` computed per row; None for neither."""
        f, value = n.func, None
        if len(first.parts) == 2:
            value = self.column(table, first.parts[1], first.span, codelist, aggregated=True)
            _check_aggregated_value(f, value, first.span)
        elif len(first.parts) > 2:
            raise RuleError(first.span, "write table.column")
        given = n.kw("value")
        if given is not None:  # a value computed per row, e.g. value=days_between(start_date, end_date)
            takes = [name for name, cls in ir.AGGREGATE_CLASSES.items() if cls.row_value]
            if value is not None or f not in takes:
                raise RuleError(given.span, f"value= is for {', '.join(takes[:-1])} and {takes[-1]} over a table: "
                                f"{f}({table}, value=...)")
            value = self.node(given, table, codelist)
            if value.domain.per_patient:
                raise RuleError(given.span, f"value= must be computed from {table}'s columns",
                                "e.g. value=days_between(start_date, end_date)")
            _check_row_expression(value, given.span, "value=")
        return value

    def row_filter(self, n: syn.Call, table: str, codelist) -> tuple[list[str], ir.Node | None]:
        """The window flags (``ever``, ``active``) among an aggregation's arguments, and its
        filters joined by ``and`` (the codelist's match first), or None when there are none."""
        flags, where = [], None
        for a in n.args[1:]:
            if isinstance(a, syn.Name) and a.parts in (("ever",), ("active",)):
                flags.append(a.parts[0])
                continue
            node = self.node(a, table, codelist)
            if node.type is not ir.T.BOOL:
                raise RuleError(a.span, f"a filter must be true/false, but this is a {node.type.value}",
                                'e.g. setting == "emergency_admission"')
            _check_row_expression(node, a.span, "a filter")
            where = node if where is None else ir.And(where, node)
        if codelist is not None:
            match = ir.InCodelist(_code_column(table), codelist)
            where = match if where is None else ir.And(match, where)
        return flags, where

    def trend(self, n: syn.Call, table: str, where: ir.Node | None, value: ir.Node | None) -> ir.Node:
        """``trend(table, ..., over=months(n), per=month)``: a monthly slope."""
        over = n.kw("over")
        months = self.duration(over) if over is not None else (12, 0)
        if months is None or months[1] or not months[0]:
            raise RuleError(over.span, "over= takes whole months: over=months(12)")
        per = n.kw("per")
        if per is not None and not (isinstance(per, syn.Name) and per.parts == ("month",)):
            raise RuleError(per.span, "trends are per month: per=month")
        return self._wrap(n.span, lambda: ir.Trend(table, where, months[0], value))

    def hierarchy(self, given: syn.Node, cl: ir.Codelist) -> tuple[tuple[str, str], ...]:
        """``hierarchy=(higher > lower, ...)``: pairs of the codelist's categories, each
        written as a name (or a quoted category); when a patient has both categories of a
        pair only the higher counts."""
        items = given.items if isinstance(given, syn.Tuple) else (given,)
        cats = sorted({c for c in cl.categories if c is not None})
        pairs = []
        for item in items:
            if not (isinstance(item, syn.BinOp) and item.op == ">"):
                raise RuleError(item.span, "hierarchy= lists pairs of categories, the higher first: higher > lower",
                                "hierarchy=(diabetes_complications > diabetes, severe_liver_disease > liver_disease)")
            pair = []
            for side in (item.left, item.right):
                if isinstance(side, syn.Name) and len(side.parts) == 1:
                    name = side.parts[0]
                elif isinstance(side, syn.Str):
                    name = side.value
                else:
                    raise RuleError(side.span, "name a category of the codelist (or write it in quotes)")
                if name not in cats:
                    raise RuleError(side.span, f"codelist {cl.name!r} has no category {name[:40]!r}",
                                    did_you_mean(name, cats) or f"its categories: {', '.join(cats[:20])}"
                                    + (", ..." if len(cats) > 20 else ""))
                pair.append(name)
            pairs.append(tuple(pair))
        try:
            ir.check_hierarchy(tuple(pairs), cl)
        except ir.IRTypeError as e:
            raise RuleError(given.span, str(e), e.hint) from None
        return tuple(pairs)

    def check_weights(self, cl: ir.Codelist, span: Span) -> None:
        """A score's weights, checked where they are used: refused at the CSV line of a
        weight with more than ir.MAX_WEIGHT_PLACES decimal places (elsewhere at ``span``)."""
        try:
            ir.check_score_weights(cl)
        except ir.IRTypeError as e:
            line = _weight_line(cl, self.src.path, span) if cl.weight_places > ir.MAX_WEIGHT_PLACES else None
            raise RuleError(line or span, str(e), e.hint) from None

    def named_codelist(self, cl: syn.Node | None) -> ir.Codelist | None:
        """The codelist a ``codelist=`` argument names (None when there is none)."""
        if cl is None:
            return None
        if not isinstance(cl, syn.Name) or cl.dotted not in self.codelists:
            name = cl.dotted if isinstance(cl, syn.Name) else "?"
            raise RuleError(cl.span, f"unknown codelist {name!r}",
                            did_you_mean(name, self.codelists) or "declare it under codelists:")
        return self.codelists[cl.dotted]

    def spell_has(self, n: syn.Call, outer: str | None) -> ir.Node:
        """spell_has(table, filter..., codelist=c) inside a filter of an aggregation over a
        table whose rows belong to hospital spells: whether the row's spell has a row of
        ``table`` that matches (its diagnoses, by position; its procedures)."""
        example = 'count(activity, spell_has(diagnoses, position == 1, codelist=asthma))'
        if outer is None:
            raise RuleError(n.span, "spell_has() tests the spell of each row of an aggregation",
                            f"use it in an aggregation's filter: {example}")
        with_spells = [t for t, x in TABLES.items() if "spell_id" in x.names]
        if outer not in with_spells:
            raise RuleError(n.span, f"{outer} rows do not belong to hospital spells",
                            f"spell_has() filters rows of {', '.join(with_spells)}")
        if not n.args or not isinstance(n.args[0], syn.Name) or len(n.args[0].parts) != 1:
            raise RuleError(n.span, "spell_has() needs the table to look in first", example)
        inner = n.args[0].parts[0]
        if inner not in with_spells:
            raise RuleError(n.args[0].span, f"{inner} rows do not belong to hospital spells",
                            did_you_mean(inner, with_spells) or f"tables with spells: {', '.join(with_spells)}")
        for k, v in n.kwargs:
            if k != "codelist":
                raise RuleError(v.span, f"spell_has() has no argument {k}=", "it takes filters and codelist=")
        cl = n.kw("codelist")
        codelist = self.named_codelist(cl)
        where = None
        for flt in n.args[1:]:
            node = self.node(flt, inner, codelist)
            if node.type is not ir.T.BOOL:
                raise RuleError(flt.span, f"a filter must be true/false, but this is a {node.type.value}",
                                "e.g. position == 1")
            _check_row_expression(node, flt.span, "a spell_has() filter")
            if any(x.domain.per_patient and not isinstance(x, (ir.Const, ir.Param)) for x in ir.walk(node)):
                raise RuleError(flt.span, f"a spell_has() filter uses {inner}'s columns and fixed values only",
                                "compare per-patient values outside spell_has()")
            where = node if where is None else ir.And(where, node)
        if codelist is not None:
            match = ir.InCodelist(_code_column(inner), codelist)
            where = match if where is None else ir.And(match, where)
        return self._wrap(n.span, lambda: ir.SpellHas(outer, inner, where))

    def reviewed(self, n: syn.Call) -> ir.Node:
        """reviewed(filter, window): whether a clinician recorded a decision (not a mere
        listing) on this rule's list for the patient, in the window. A filter that names
        ``rule`` chooses the rules itself; otherwise only this rule's decisions count."""
        for k, v in n.kwargs:
            if k not in ("within", "between"):
                raise RuleError(v.span, f"reviewed() has no argument {k}=",
                                did_you_mean(k, ["within", "between"]) or "give within= or between=")
        agg = self.aggregate(syn.Call(n.span, "exists", (syn.Name(n.span, ("reviews",)),) + n.args, n.kwargs))
        decided = ir.Ne(ir.Column("reviews", "decision", ir.T.TEXT), ir.Const("listed", ir.T.TEXT))
        names_rule = agg.where is not None and any(isinstance(x, ir.Column) and x.column == "rule"
                                                   for x in ir.walk(agg.where))
        if not names_rule:
            this_rule = ir.Eq(ir.Column("reviews", "rule", ir.T.TEXT), ir.Const(self.src.name.value, ir.T.TEXT))
            decided = ir.And(decided, this_rule)
        where = decided if agg.where is None else ir.And(decided, agg.where)
        return ir.Exists("reviews", where, agg.window)

    # --- the rule ----------------------------------------------------------------------------
    def rule(self) -> CompiledRule:
        src = self.src
        for name in src.features:
            self.feature(name, src.features[name].span)
        population = (self.condition(src.population, "the population") if src.population
                      else ir.Const(True, ir.T.BOOL))
        if ir.contains(population, ir.PopulationRank):
            raise RuleError(src.population.span,
                            "the population cannot use percentile or top (nor a feature that does)",
                            "they rank within the population: use them in features and criteria")
        segments = tuple((k, self.condition(v, f"segment {k!r}")) for k, v in src.segments)
        cost = self.cost_feature(src.cost, bool(segments))
        reasons: dict[str, str] = {}

        def criterion(kind: str, name: str, loc: Located) -> ir.Node:
            v = loc.value
            if isinstance(v, dict):  # {when: condition, reason: "sentence with {feature} values"}
                unknown = set(v) - {"when", "reason"}
                if unknown or "when" not in v:
                    raise RuleError(loc.span, f"{kind} {name!r}: write a condition, or when: and reason:",
                                    'e.g. {when: "emergency_12m >= 2", '
                                    'reason: "{emergency_12m} emergency admissions in 12 months"}')
                if "reason" in v:
                    reasons[name] = self.reason(name, v["reason"], loc.span)
                loc = Located(v["when"], loc.span)
            return self.condition(loc, f"{kind} {name!r}")

        include = tuple((k, criterion("include", k, v)) for k, v in src.include.items())
        exclude = tuple((k, criterion("exclude", k, v)) for k, v in src.exclude.items())
        require = None
        if include:
            mode = (src.require.value if src.require else "all").strip()
            names = [node for _, node in include]
            if mode in ("all", "any"):
                require = joined("and" if mode == "all" else "or", names)
            else:  # an expression over the include names
                self.criteria_names = dict(include)
                require = self.condition(src.require, "require")
                self.criteria_names = {}
        rank = [self.rank_entry(loc) for loc in src.rank_by]
        limit = {}
        for k, loc in src.limit.items():
            if not isinstance(loc.value, int) or isinstance(loc.value, bool) or loc.value < 1:
                raise RuleError(loc.span, f"limit {k} must be a whole number of patients, at least 1")
            limit[k] = loc.value
        for c in src.output_columns:
            if c.value not in self.features and c.value not in ir.PATIENT_ATTRIBUTES:
                raise RuleError(c.span, f"output column {c.value[:40]!r} is not a feature or attribute",
                                did_you_mean(c.value, list(self.features) + list(ir.PATIENT_ATTRIBUTES)))
            if c.value in LIST_COLUMNS and c.value in self.features:
                raise RuleError(c.span, f"output column {c.value!r}: every list already has a column {c.value!r}",
                                "rename the feature")
        self.check_totals(population, segments, include, exclude, require)
        output_round = self.output_round(getattr(src, "output_round", None) or {})
        evidence = 0
        if src.evidence is not None:
            value = src.evidence.value
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EVIDENCE:
                raise RuleError(src.evidence.span,
                                f"evidence is how many events to show per reason (0 to {MAX_EVIDENCE})")
            evidence = value
        return CompiledRule(
            name=src.name.value, title=src.title, version=src.version, path=src.path,
            file_sha256=hashlib.sha256(src.path.read_bytes()).hexdigest(),
            as_of=self.as_of, parameters=self.params, codelists=self.all_codelists(),
            models={k: u.record for k, u in self.models.items()},
            model_nodes={k: u.node for k, u in self.models.items()}, population=population,
            features=dict(self.features), segments=segments, cost=cost, include=include,
            reasons=reasons,
            require=require, exclude=exclude, rank_by=tuple(rank), limit=limit,
            output_columns=tuple(c.value for c in src.output_columns), evidence=evidence,
            output_round=output_round)

    def all_codelists(self) -> dict[str, ir.Codelist]:
        """The rule's codelists and those its fitted models read, so a run records, and a
        description lists, every codelist that decides who is in; a model's codelist keeps
        its own name unless the rule has a different one by that name."""
        out = dict(self.codelists)
        for model, use in self.models.items():
            for name, cl in use.codelists.items():
                if cl not in out.values():
                    out[name if name not in out else f"{model}.{name}"] = cl
        return out

    def cost_feature(self, loc: Located | None, segmented: bool) -> str | None:
        """``cost: NAME``: the numeric feature a segmented rule's run summary gives each
        segment's share of (e.g. cost_12m: sum(activity.cost, within=months(12)))."""
        if loc is None:
            return None
        name = loc.value
        if not segmented:
            raise RuleError(loc.span, "cost: is what each segment's share of cost is of; this rule has no segments",
                            "add segments:, or remove cost:")
        if name not in self.features:
            raise RuleError(loc.span, f"cost: {name[:40]!r} is not a feature",
                            did_you_mean(name, self.features) or "name a numeric feature, e.g. cost: cost_12m")
        if self.features[name].type not in ir.NUMERIC:
            raise RuleError(loc.span, f"cost: {name} is {self.features[name].type.value}, not a number",
                            "name a numeric feature, e.g. cost_12m: sum(activity.cost, within=months(12))")
        return name

    def output_round(self, given: dict[str, Located]) -> dict[str, int]:
        """``output: {round: {hfrs: 1, efi: 2}}``: numeric features and the decimal places
        (0 to MAX_ROUND_PLACES) lists and datasets show them to."""
        out = {}
        for name, loc in given.items():
            if name not in self.features:
                raise RuleError(loc.span, f"round: {str(name)[:40]!r} is not a feature",
                                did_you_mean(str(name), self.features) or "name a feature with a decimal value")
            if self.features[name].type not in ir.NUMERIC:
                raise RuleError(loc.span, f"round: {name} is {self.features[name].type.value}, not a number")
            places = loc.value
            if not isinstance(places, int) or isinstance(places, bool) or not 0 <= places <= MAX_ROUND_PLACES:
                raise RuleError(loc.span, f"round: {name} takes the decimal places to show, 0 to {MAX_ROUND_PLACES}",
                                f"round: {{{name}: 1}}")
            out[name] = places
        return out


    def check_totals(self, population, segments, include, exclude, require) -> None:
        """Every feature and condition is evaluated; together they are at most
        MAX_RULE_SIZE nodes (the reference engine's SQL is about 0.2 ms a node to plan) and
        MAX_AGGREGATIONS aggregations (a kernel's compile time grows faster than its size)."""
        src = self.src
        named = [(src.features[k].span, node) for k, node in self.features.items()]
        named += [(src.population.span if src.population else src.span, population)]
        named += [(loc.span, node) for (_, loc), (_, node) in zip(src.segments, segments)]
        named += [(src.include[k].span, node) for k, node in include]
        named += [(src.exclude[k].span, node) for k, node in exclude]
        if require is not None:
            named.append((src.require.span if src.require else src.span, require))
        total, slots = 0, set()
        for span, node in named:
            total += node.size
            if total > MAX_RULE_SIZE:
                raise RuleError(span, f"the rule's expressions add up to more than {MAX_RULE_SIZE:,} operations "
                                "(each use of a feature counts its whole expression again)",
                                "use fewer or smaller features")
            slots |= {s for table in make_plan({"x": node}, self.as_of).scans.values() for s in table}
            if len(slots) > MAX_AGGREGATIONS:
                raise RuleError(span, f"the rule needs more than {MAX_AGGREGATIONS} different aggregations "
                                "(each aggregation at each date that at moves it to counts once)",
                                "share windows and filters between features")

    def reason(self, criterion: str, template: object, span: Span) -> str:
        """A reason template: text with {name} fields, each a feature, parameter or patient
        attribute."""
        if not isinstance(template, str):
            raise RuleError(span, f"reason of {criterion!r} must be text", 'reason: "{n} admissions in 12 months"')
        if len(template) > MAX_REASON_CHARS:
            raise RuleError(span, f"reason of {criterion!r} is {len(template):,} characters: "
                                  f"at most {MAX_REASON_CHARS:,}")
        try:
            fields = template_fields(template)
        except ValueError as e:
            raise RuleError(span, f"reason of {criterion!r} is not a valid template: {e}",
                            "name values in braces: {emergency_12m}; write {{ for a literal brace") from None
        known = list(self.features) + list(self.params) + list(ir.PATIENT_ATTRIBUTES)
        for name in fields:
            if name not in known:
                raise RuleError(span, f"reason of {criterion!r} uses {{{name}}}, which is not a feature, "
                                "parameter or patient attribute", did_you_mean(name, known))
        for name, forms, _ in template_pieces(template):
            if forms is not None and self._template_type(name) not in ir.NUMERIC:
                raise RuleError(span, f"reason of {criterion!r}: {{{name}|...}} chooses a plural by a number, "
                                f"and {name} is {self._template_type(name).value}",
                                "put the plural field after a count: {emergency_12m} admission{emergency_12m|s}")
        return template

    def _template_type(self, name: str) -> ir.T:
        """The type of a name a reason template fills in (a feature, parameter or attribute)."""
        if name in self.features:
            return self.features[name].type
        if name in self.params:
            return self.params[name].type
        return ir.PATIENT_ATTRIBUTES[name]

    def rank_entry(self, loc: Located) -> tuple[str, ir.Node, bool]:
        """``name``, ``name desc`` or ``name asc``: a feature or patient attribute that
        orders (a number, date or true/false)."""
        words = str(loc.value).split()
        desc = len(words) == 2 and words[1] == "desc"
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise RuleError(loc.span, f"rank_by entry {str(loc.value)[:40]!r}: write a feature, then desc or asc",
                            "rank_by: [emergency_12m desc, age desc]")
        name = words[0]
        if name not in self.features and name not in ir.PATIENT_ATTRIBUTES:
            raise RuleError(loc.span, f"rank_by {name[:40]!r} is not a feature or patient attribute",
                            did_you_mean(name, list(self.features) + list(ir.PATIENT_ATTRIBUTES)))
        node = self.features.get(name) or ir.Attr(name)
        if node.type in (ir.T.TEXT, ir.T.CODE):
            raise RuleError(loc.span, f"rank_by {name}: {name} is text, which has no order to rank by",
                            "rank by a number, a date or true/false")
        return name, node, desc


_ENUM_LABELS = {"setting": "a setting", "source": "a source", "discharge_destination": "a discharge destination",
                "kind": "an opt-out kind", "decision": "a review decision", "funding": "a funding kind"}
_OPEN_COLUMNS = {("registers", "register"): ("known register", KNOWN_REGISTERS),
                 ("experience", "measure"): ("known measure", KNOWN_MEASURES)}


def _enum_domain(n: ir.Node) -> tuple[str, tuple[str, ...], bool] | None:
    """(what its values are called, the values, closed or not) for a value the contract
    enumerates: an enum column (or its first/last/min/max), sex, or an open column with
    known values (register, measure)."""
    if isinstance(n, ir.At):
        n = n.operand
    if isinstance(n, ir.Attr):
        return ("a sex (F, M or U)", SEX, True) if n.name == "sex" else None
    if isinstance(n, (ir.First, ir.Last, ir.Min, ir.Max)):
        n = n.value
    if not isinstance(n, ir.Column):
        return None
    if (n.table, n.column) in _OPEN_COLUMNS:
        label, values = _OPEN_COLUMNS[(n.table, n.column)]
        return label, values, False
    col = TABLES[n.table].column(n.column)
    if col.kind != "enum":
        return None
    label = f"a code system of {n.table}" if n.column == "code_system" else \
        _ENUM_LABELS.get(n.column, f"a {n.column.replace('_', ' ')}")
    return label, tuple(col.values), True


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _edits(a: str, b: str, limit: int) -> int:
    """Letters inserted, deleted, replaced or swapped to turn ``a`` into ``b`` (optimal
    string alignment distance), or ``limit + 1`` as soon as it must be more than ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    far = limit + 1
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [far] * len(b)
        for j in range(max(1, i - limit), min(len(b), i + limit) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if prev2 is not None and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return far
        prev2, prev = prev, cur
    return min(prev[len(b)], far)


def _near_miss(text: str, values) -> str | None:
    """The known value ``text`` is most probably a misspelling of: the same but for case,
    spaces or punctuation, or one edit away (none for values of one or two letters, two for
    values of 10 or more); else None."""
    t = _normalised(text)
    best = None
    for v in values:
        nv = _normalised(v)
        if t == nv:
            return v
        limit = 2 if len(nv) >= 10 else 1 if len(nv) >= 3 else 0
        d = _edits(t, nv, limit)
        if d <= limit and (best is None or d < best[0]):
            best = (d, v)
    return best[1] if best else None


def _weight_line(cl: ir.Codelist, rule_path: Path, span: Span) -> Span | None:
    """The line of ``cl``'s CSV file holding its first weight with too many decimal places."""
    if not cl.file:
        return None
    try:
        path = confined(rule_path, cl.file, span, "codelist file")
        text = read_text_file(path, span, "codelist file", MAX_CODELIST_BYTES)
        reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
        for row in reader:
            w = (row.get("weight") or "").strip()
            try:
                if w and ir.decimal_places(float(w)) > ir.MAX_WEIGHT_PLACES:
                    return Span(str(path), reader.line_num, 1)
            except ValueError:
                continue
    except (RuleError, csv.Error):
        return None
    return None


def _same_for_everyone(n: ir.Node) -> bool:
    """A date an ``at`` can move the evaluation to: as_of, a fixed date or date parameter,
    or one of those moved by months or days."""
    if isinstance(n, ir.Shift):
        return _same_for_everyone(n.date)
    return isinstance(n, (ir.AsOf, ir.Const, ir.Param))


def joined(op: str, nodes: list[ir.Node]) -> ir.Node:
    """``op`` (and / or) over many conditions as a balanced tree: shallow however many."""
    if len(nodes) == 1:
        return nodes[0]
    mid = len(nodes) // 2
    return ir.binary(op, joined(op, nodes[:mid]), joined(op, nodes[mid:]))


def _check_limits(node: ir.Node, span: Span) -> None:
    """Refuse an expression that every stage after this one (planning, SQL text, kernels,
    evaluation) would find too deep, too large, or reaching dates no calendar holds."""
    if node.depth > MAX_DEPTH:
        raise RuleError(span, f"this nests more than {MAX_DEPTH} levels deep (counting the features it uses)",
                        "simplify it, or split it into fewer nested steps")
    if node.size > MAX_SIZE:
        raise RuleError(span, f"this expands to {node.size:,} operations, more than {MAX_SIZE:,} "
                        "(each use of a feature counts its whole expression again)",
                        "use fewer features that repeat others")
    if node.reach > MAX_REACH_DAYS:
        raise RuleError(span, f"this looks about {node.reach // 365:,} years away from as_of: at most "
                        f"{MAX_REACH_DAYS // 366:,} (windows, at and date shifts added up)")


def _check_aggregated_value(func: str, value: ir.Node, span: Span) -> None:
    """What an aggregation may aggregate: numbers for sums and means, numbers and dates for
    min and max, and a codelist's category or weight only where they mean something."""
    if isinstance(value, ir.CategoryOf) and func != "count_distinct":
        raise RuleError(span, f"{func}() of a codelist's category: only count_distinct counts categories")
    if isinstance(value, ir.WeightOf) and func not in ("sum", "score"):
        raise RuleError(span, f"{func}() of a codelist's weight: weights are added up by score() or sum()")
    if func in ("min", "max") and value.type not in (ir.T.INT, ir.T.FLOAT, ir.T.DATE):
        raise RuleError(span, f"{func}() needs numbers or dates, not {value.type.value}",
                        "for the earliest or latest text, use first() or last()")


def _check_row_expression(node: ir.Node, span: Span, what: str) -> None:
    """What an expression evaluated per event row may use, so that both engines can:
    per-patient values, other aggregations included (the engines compute those first: "the
    diagnoses of the latest admission"), but no percentile, top or trend; per row,
    comparisons, and/or/not, in, arithmetic, date shifts and days_between; and text
    compared with a fixed value (a literal or a parameter)."""
    for x in ir.walk(node):
        if isinstance(x, ir.PopulationRank) or (isinstance(x, ir.Trend) and x is not node):
            raise RuleError(span, f"{what} cannot use percentile, top or trend (nor a feature that does)",
                            "compare with a per-row value, a fixed one, or another aggregation")
        if x.domain.per_patient:
            continue  # one value per patient: computed before the rows are read
        if isinstance(x, ir.Case):
            raise RuleError(span, f"{what} cannot use case() on each row", "write the conditions with and / or")
        if isinstance(x, ir.Func) and not x.per_row:
            raise RuleError(span, f"{what} cannot use {x.name}() on each row",
                            "per row: comparisons, and, or, not, in, + - * /, days_between, weekday and date shifts")
        if (isinstance(x, (ir.Eq, ir.Ne)) and {x.left.type, x.right.type} & {ir.T.TEXT, ir.T.CODE}
                and not any(isinstance(side, (ir.Const, ir.Param)) for side in (x.left, x.right))):
            raise RuleError(span, f"{what} compares text with text that is not a fixed value",
                            'compare a column with a literal or a parameter: setting == "ae"')


def template_fields(template: str) -> list[str]:
    """The names a reason template fills in; ValueError unless every field is a plain
    {name} or a plural field (parse_field) (no format, conversion, index or attribute: a
    format such as {x:>50000000} would write gigabytes, {x:d} fails on text)."""
    return list(dict.fromkeys(field[0] for field in template_pieces(template) if field[0] is not None))


def template_pieces(template: str) -> list[tuple[str | None, tuple[str, str] | None, str]]:
    """A template as (name, plural forms or None, literal text before it) pieces, in order;
    name None for the text after the last field. ValueError for a field that is neither."""
    pieces = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            pieces.append((None, None, literal))
            continue
        if spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"{shown[:40]} is not a plain {{name}}: values are formatted by their type")
        pieces.append(parse_field(name) + (literal,))
    return pieces


def parse_field(field: str) -> tuple[str, tuple[str, str] | None]:
    """``name`` → (name, None); ``name|s`` → (name, ("", "s")); ``name|person|people`` →
    (name, ("person", "people")): the singular when the value is 1, else the plural."""
    if _TEMPLATE_FIELD.fullmatch(field):
        return field, None
    m = _PLURAL_FIELD.fullmatch(field)
    if not m:
        raise ValueError(f"{{{field[:40]}}} is not a plain {{name}} nor a plural {{name|s}} or "
                         "{name|singular|plural} (forms are letters, spaces, ' and -)")
    forms = m["forms"].split("|")
    return m["name"], (("", forms[0]) if len(forms) == 1 else (forms[0], forms[1]))


def _is_table_ref(n: syn.Node) -> bool:
    return isinstance(n, syn.Name) and n.parts[0] in TABLES


def _event_tables() -> list[str]:
    return [n for n, t in TABLES.items() if t.per_patient_events]


def compile_rule(path: str | Path, *, as_of: str | dt.date | None = None,
                 params: dict[str, object] | None = None) -> CompiledRule:
    """Load and compile a rule file. ``as_of`` and ``params`` override the file's values
    (--as-of and --param: a bad value is a UsageError naming the option)."""
    src = load_rule(path)
    params = dict(params or {})
    c = Compiler(src, params)
    if as_of is not None:
        c.as_of = check_as_of(as_of, None, "--as-of")
    elif params.get("as_of") is not None:
        c.as_of = check_as_of(params["as_of"], None, "--param")
    elif src.as_of is not None:
        c.as_of = check_as_of(src.as_of.value, src.as_of.span, None)
    else:
        raise RuleError(src.span, "the rule has no as_of date", 'add as_of: "2026-10-31" or pass --as-of')
    return c.rule()
