"""Compile a loaded rule file into the typed IR, resolving every name and checking types.

Name resolution, in order: inside an aggregation over table X, bare names are X's columns
(and ``category``/``weight`` of the aggregation's codelist); everywhere, names are features,
parameters, ``as_of`` or patient attributes. Features may use each other in any order; a
cycle is an error that lists it. Every failure is a RuleError at the offending position.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from casefind.contract import TABLES
from casefind.rules import expr as syn
from casefind.rules import ir
from casefind.rules.errors import RuleError, Span, did_you_mean
from casefind.rules.load import Located, RuleSource, load_rule

_KIND_TYPE = {"date": ir.T.DATE, "enum": ir.T.TEXT, "code": ir.T.CODE, "text": ir.T.TEXT,
              "float": ir.T.FLOAT, "int": ir.T.INT, "patient_id": ir.T.TEXT}
_CODE_COLUMN = {"diagnoses": "code", "medications": "code", "observations": "code",
                "activity": "primary_diagnosis"}
_DURATIONS = {"days": (0, 1), "months": (1, 0), "years": (12, 0)}
_EVENT_AGGS = {"exists", "count", "count_distinct", "sum", "mean", "min", "max", "first", "last",
               "days_since", "trend"}


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
    include: tuple[tuple[str, ir.Node], ...] = ()
    reasons: dict[str, str] = field(default_factory=dict)  # criterion -> sentence template
    require: ir.Node | None = None
    exclude: tuple[tuple[str, ir.Node], ...] = ()
    rank_by: tuple[tuple[str, ir.Node, bool], ...] = ()  # (feature name, node, descending)
    limit: dict[str, int] = field(default_factory=dict)
    output_columns: tuple[str, ...] = ()
    evidence: int = 0


def _column_type(table: str, column: str) -> ir.T:
    return _KIND_TYPE[TABLES[table].column(column).kind]


def _parse_value(v: object) -> object:
    """A parameter's value: YAML gives numbers and booleans; command-line text may be a
    number, a date or plain text."""
    if isinstance(v, bool) or isinstance(v, (int, float)):
        return v
    text = str(v)
    for parse in (int, float, dt.date.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


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


def load_codelist(name: str, loc: Located, base: Path) -> ir.Codelist:
    v, span = loc.value, loc.span
    if isinstance(v, str):
        v = {"file": v}
    if not isinstance(v, dict):
        raise RuleError(span, f"codelist {name!r} must be a CSV path or a mapping",
                        '{system: snomed, codes: ["..."]} or codelists/name.csv')
    unknown = set(v) - {"file", "system", "codes", "prefixes"}
    if unknown:
        raise RuleError(span, f"codelist {name!r}: unknown key {sorted(unknown)[0]!r}",
                        "keys are file, system, codes, prefixes")
    system = str(v.get("system", "")) or None
    codes, prefixes, cats, weights = [], [], [], []
    if "file" in v:
        path = (base / str(v["file"])).resolve()
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except OSError:
            raise RuleError(span, f"codelist file {v['file']} not found (looked in {path.parent})") from None
        if not rows or "code" not in rows[0]:
            raise RuleError(span, f"codelist file {v['file']} needs a 'code' column (OpenCodelists style)")
        file_systems = {r.get("system") or None for r in rows}
        if file_systems - {None}:
            if len(file_systems) > 1 or (system and system not in file_systems):
                raise RuleError(span, f"codelist file {v['file']} mixes code systems; use one file per system")
            system = system or file_systems.pop()
        for r in rows:
            code = (r["code"] or "").strip()
            if not code:
                continue
            is_prefix = code.endswith("*")
            (prefixes if is_prefix else codes).append(code.rstrip("*").replace(".", "") if system == "icd10" else code.rstrip("*"))
            cats.append((r.get("category") or "").strip() or None)
            w = (r.get("weight") or "").strip()
            weights.append(float(w) if w else None)
        order = [i for i, r in enumerate(rows) if (r["code"] or "").strip()]
        # keep categories/weights parallel to codes + prefixes (codes first, then prefixes)
        is_pref = [(rows[i]["code"] or "").strip().endswith("*") for i in order]
        cats = [c for c, p in zip(cats, is_pref) if not p] + [c for c, p in zip(cats, is_pref) if p]
        weights = [w for w, p in zip(weights, is_pref) if not p] + [w for w, p in zip(weights, is_pref) if p]
    else:
        codes = [str(c).strip() for c in v.get("codes", []) or []]
        prefixes = [str(c).strip().replace(".", "") for c in v.get("prefixes", []) or []]
    if not system:
        raise RuleError(span, f"codelist {name!r} does not say its code system",
                        "add system: snomed (or icd10, dmd, bnf, read2, ctv3, opcs4)")
    if system == "icd10":
        codes = [c.replace(".", "") for c in codes]
    try:
        return ir.Codelist(name, system, tuple(codes), tuple(prefixes),
                           tuple(cats) if any(cats) else (), tuple(weights) if any(w is not None for w in weights) else ())
    except ir.IRTypeError as e:
        raise RuleError(span, str(e), e.hint) from None


class _Compiler:
    def __init__(self, src: RuleSource, overrides: dict[str, str]):
        self.src = src
        self.base = src.path.parent
        self.params: dict[str, ir.Param] = {}
        for name, loc in src.parameters.items():
            value = _parse_value(overrides.get(name, loc.value))
            c = _const_of(value)
            self.params[name] = ir.Param(name, c.value, c.type)
        unknown = set(overrides) - set(src.parameters) - {"as_of"}
        if unknown:
            raise RuleError(src.span, f"--param {sorted(unknown)[0]}: the rule has no such parameter",
                            did_you_mean(sorted(unknown)[0], src.parameters) or
                            f"parameters: {', '.join(src.parameters) or 'none'}")
        self.codelists = {n: load_codelist(n, loc, self.base) for n, loc in src.codelists.items()}
        self.features: dict[str, ir.Node] = {}
        self.in_progress: list[str] = []
        self.criteria_names: dict[str, ir.Node] = {}  # include names, inside require:
        self.period_days: int | None = None  # KPI files: within=period is the period's days

    # --- entry points ---------------------------------------------------------------------
    def expression(self, loc: Located) -> ir.Node:
        value = loc.value
        if isinstance(value, bool):
            return ir.Const(value, ir.T.BOOL)
        if isinstance(value, (int, float)):
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
            operand = self.node(n.operand, table, codelist)
            opts = tuple(self.node(o, table, codelist) for o in n.options)
            for o, so in zip(opts, n.options):
                if not isinstance(o, ir.Const):
                    raise RuleError(so.span, "the options of 'in' must be literal values")
            return self._wrap(n.span, lambda: ir.IsIn(operand, opts))
        if isinstance(n, syn.BinOp):
            return self.binop(n, table, codelist)
        if isinstance(n, syn.At):
            operand = self.node(n.operand, table, codelist)
            when = self.node(n.when, None)
            return self._wrap(n.span, lambda: ir.At(operand, when))
        if isinstance(n, syn.Call):
            return self.call(n, table, codelist)
        if isinstance(n, syn.Tuple):
            raise RuleError(n.span, "a bracketed list is only allowed as between=(start, end)")
        raise RuleError(n.span, f"cannot use {type(n).__name__} here")  # pragma: no cover

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
        return self._wrap(n.span, lambda: ir.Binary(n.op, left, right))

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

    def column(self, table: str, col: str, span: Span, codelist) -> ir.Node:
        if col in ("category", "weight"):
            if codelist is None:
                raise RuleError(span, f"{table}.{col} comes from a codelist",
                                f"add codelist=NAME to the aggregation")
            return ir.Column(table, f"{col}:{codelist.name}", ir.T.TEXT if col == "category" else ir.T.FLOAT)
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
                return ir.Const(dt.date.fromisoformat(n.args[0].value), ir.T.DATE)
            except ValueError:
                raise RuleError(n.args[0].span, f"{n.args[0].value!r} is not a date (YYYY-MM-DD)") from None
        if f == "case":
            return self.case(n, table, codelist)
        if f in ("percentile", "top"):
            return self.rank(n)
        if f in ("min", "max") and n.args and not _is_table_ref(n.args[0]):
            args = tuple(self.node(a, table, codelist) for a in n.args)
            return self._wrap(n.span, lambda: ir.Func(f, args))
        if f in ("logistic", "exp", "log", "abs", "round", "days_between"):
            if n.kwargs:
                raise RuleError(n.span, f"{f}() takes no named arguments")
            args = tuple(self.node(a, table, codelist) for a in n.args)
            return self._wrap(n.span, lambda: ir.Func(f, args))
        if f in _EVENT_AGGS or f == "score":
            if table is not None:
                raise RuleError(n.span, f"{f}() cannot be nested inside another aggregation")
            return self.aggregate(n)
        if f == "reviewed":
            if table is not None:
                raise RuleError(n.span, "reviewed() cannot be nested inside another aggregation")
            return self.reviewed(n)
        allowed = sorted(_EVENT_AGGS | {"score", "case", "percentile", "top", "logistic", "date", "reviewed",
                                        "days_between", "months", "days", "years", "exp", "log", "abs", "round"})
        raise RuleError(n.span, f"unknown function {f!r}", did_you_mean(f, allowed) or f"functions: {', '.join(allowed)}")

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
            return self._wrap(n.span, lambda: ir.PopulationRank("top", operand, frac))
        if len(n.args) != 1:
            raise RuleError(n.span, "percentile(x) takes one argument")
        return self._wrap(n.span, lambda: ir.PopulationRank("percentile", operand))

    def window(self, n: syn.Call, flags: list[str]) -> ir.Window:
        within, between = n.kw("within"), n.kw("between")
        given = [x for x in (within, between) if x is not None] + [syn.Name(n.span, (f,)) for f in flags]
        if len(given) > 1:
            raise RuleError(n.span, "give one window: within=..., between=(..., ...), ever or active")
        if within is not None:
            d = self.duration(within)
            if d is None:
                raise RuleError(within.span, "within= takes a duration: within=months(12)")
            return self._wrap(within.span, lambda: ir.Window("range", d, (0, 0)))
        if between is not None:
            if not isinstance(between, syn.Tuple) or len(between.items) != 2:
                raise RuleError(between.span, "between= takes (start, end) counted back from as_of: "
                                "between=(months(12), months(6))")
            a, b = (self.duration(x) for x in between.items)
            if a is None or b is None:
                raise RuleError(between.span, "between= takes two durations: between=(months(12), months(6))")
            return self._wrap(between.span, lambda: ir.Window("range", a, b))
        if flags == ["active"]:
            return ir.Window("active")
        return ir.Window("ever")

    def aggregate(self, n: syn.Call) -> ir.Node:
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
        allowed_kw = {"within", "between", "codelist", "over", "per", "value"}
        for k, v in n.kwargs:
            if k not in allowed_kw:
                raise RuleError(v.span, f"{f}() has no argument {k}=", did_you_mean(k, allowed_kw))
        codelist = None
        cl = n.kw("codelist")
        if cl is not None:
            if not isinstance(cl, syn.Name) or cl.dotted not in self.codelists:
                name = cl.dotted if isinstance(cl, syn.Name) else "?"
                raise RuleError(cl.span, f"unknown codelist {name!r}",
                                did_you_mean(name, self.codelists) or "declare it under codelists:")
            codelist = self.codelists[cl.dotted]
            if table not in _CODE_COLUMN:
                raise RuleError(cl.span, f"{table} has no codes to match a codelist against")
        value = None
        if len(first.parts) == 2:
            value = self.column(table, first.parts[1], first.span, codelist)
        elif len(first.parts) > 2:
            raise RuleError(first.span, "write table.column")
        given = n.kw("value")
        if given is not None:  # a value computed per row, e.g. value=days_between(start_date, end_date)
            if value is not None or f not in ("sum", "mean", "min", "max"):
                raise RuleError(given.span, f"value= is for sum, mean, min and max over a table: "
                                f"{f}({table}, value=...)")
            value = self.node(given, table, codelist)
            if value.domain.per_patient:
                raise RuleError(given.span, f"value= must be computed from {table}'s columns",
                                "e.g. value=days_between(start_date, end_date)")
        flags, filters = [], []
        for a in n.args[1:]:
            if isinstance(a, syn.Name) and a.parts in (("ever",), ("active",)):
                flags.append(a.parts[0])
            else:
                filters.append(a)
        where = None
        for flt in filters:
            node = self.node(flt, table, codelist)
            if node.type is not ir.T.BOOL:
                raise RuleError(flt.span, f"a filter must be true/false, but this is a {node.type.value}",
                                'e.g. setting == "emergency_admission"')
            where = node if where is None else ir.Binary("and", where, node)
        if codelist is not None:
            match = ir.InCodelist(ir.Column(table, _CODE_COLUMN[table], ir.T.CODE), codelist)
            where = match if where is None else ir.Binary("and", match, where)
        window = self.window(n, flags)
        if f == "trend":
            over = n.kw("over")
            months = self.duration(over) if over is not None else (12, 0)
            if months is None or months[1] or not months[0]:
                raise RuleError(over.span, "over= takes whole months: over=months(12)")
            per = n.kw("per")
            if per is not None and not (isinstance(per, syn.Name) and per.parts == ("month",)):
                raise RuleError(per.span, "trends are per month: per=month")
            return self._wrap(n.span, lambda: ir.Trend(table, where, months[0], value))
        func = f
        if f == "score" or (f == "sum" and isinstance(value, ir.Column) and value.column.startswith("weight:")):
            func, value = "weighted_categories", None
            if codelist is None:
                raise RuleError(n.span, f"{f}() of weights needs codelist=NAME (a codelist with a weight column)")
        if f in ("first", "last") and value is None:
            value = ir.Column(table, TABLES[table].sort_date, ir.T.DATE)
        if f in ("min", "max") and value is None:
            raise RuleError(n.span, f"{f}() needs a column: {f}({table}.{TABLES[table].sort_date})")
        if f == "count_distinct" and value is None:
            raise RuleError(n.span, f"count_distinct() needs what to count: {table}.code or {table}.category")
        return self._wrap(n.span, lambda: ir.Aggregate(func, table, where, window, value, codelist))

    def reviewed(self, n: syn.Call) -> ir.Node:
        """reviewed(filter, window): whether a clinician recorded a decision (not a mere
        listing) on this rule's list for the patient, in the window. A filter that names
        ``rule`` chooses the rules itself; otherwise only this rule's decisions count."""
        for k, v in n.kwargs:
            if k not in ("within", "between"):
                raise RuleError(v.span, f"reviewed() has no argument {k}=",
                                did_you_mean(k, ["within", "between"]) or "give within= or between=")
        agg = self.aggregate(syn.Call(n.span, "exists", (syn.Name(n.span, ("reviews",)),) + n.args, n.kwargs))
        decided = ir.Binary("!=", ir.Column("reviews", "decision", ir.T.TEXT), ir.Const("listed", ir.T.TEXT))
        names_rule = agg.where is not None and any(isinstance(x, ir.Column) and x.column == "rule"
                                                   for x in ir.walk(agg.where))
        if not names_rule:
            this_rule = ir.Binary("==", ir.Column("reviews", "rule", ir.T.TEXT), ir.Const(self.src.name.value, ir.T.TEXT))
            decided = ir.Binary("and", decided, this_rule)
        where = decided if agg.where is None else ir.Binary("and", decided, agg.where)
        return ir.Aggregate("exists", "reviews", where, agg.window)

    # --- the rule ----------------------------------------------------------------------------
    def rule(self) -> CompiledRule:
        src = self.src
        for name in src.features:
            self.feature(name, src.features[name].span)
        population = self.condition(src.population, "the population") if src.population else ir.Const(True, ir.T.BOOL)
        segments = tuple((k, self.condition(v, f"segment {k!r}")) for k, v in src.segments)
        reasons: dict[str, str] = {}

        def criterion(kind: str, name: str, loc: Located) -> ir.Node:
            v = loc.value
            if isinstance(v, dict):  # {when: condition, reason: "sentence with {feature} values"}
                unknown = set(v) - {"when", "reason"}
                if unknown or "when" not in v:
                    raise RuleError(loc.span, f"{kind} {name!r}: write a condition, or when: and reason:",
                                    'e.g. {when: "emergency_12m >= 2", reason: "{emergency_12m} emergency admissions in 12 months"}')
                if "reason" in v:
                    reasons[name] = str(v["reason"])
                    try:
                        fields = _template_fields(reasons[name])
                    except ValueError as e:
                        raise RuleError(loc.span, f"reason of {name!r} is not a valid template: {e}",
                                        "name values in braces: {emergency_12m}; write {{ for a literal brace") from None
                    for field_name in fields:
                        if field_name not in self.features and field_name not in ir.PATIENT_ATTRIBUTES \
                                and field_name not in self.params:
                            raise RuleError(loc.span, f"reason of {name!r} uses {{{field_name}}}, which is not a feature",
                                            did_you_mean(field_name, self.features))
                loc = Located(v["when"], loc.span)
            return self.condition(loc, f"{kind} {name!r}")

        include = tuple((k, criterion("include", k, v)) for k, v in src.include.items())
        exclude = tuple((k, criterion("exclude", k, v)) for k, v in src.exclude.items())
        require = None
        if include:
            mode = (src.require.value if src.require else "all").strip()
            names = [node for _, node in include]
            if mode in ("all", "any"):
                op = "and" if mode == "all" else "or"
                require = names[0]
                for node in names[1:]:
                    require = ir.Binary(op, require, node)
            else:  # an expression over the include names
                self.criteria_names = dict(include)
                require = self.condition(src.require, "require")
                self.criteria_names = {}
        rank = []
        for loc in src.rank_by:
            text = loc.value.strip()
            desc = text.endswith(" desc")
            name = text.rsplit(" ", 1)[0] if text.endswith((" desc", " asc")) else text
            rank.append((name, self.expression(Located(name, loc.span)), desc))
        limit = {}
        for k, loc in src.limit.items():
            if not isinstance(loc.value, int) or isinstance(loc.value, bool) or loc.value < 1:
                raise RuleError(loc.span, f"limit {k} must be a whole number of patients, at least 1")
            limit[k] = loc.value
        for c in src.output_columns:
            if c.value not in self.features and c.value not in ir.PATIENT_ATTRIBUTES:
                raise RuleError(c.span, f"output column {c.value!r} is not a feature or attribute",
                                did_you_mean(c.value, list(self.features) + list(ir.PATIENT_ATTRIBUTES)))
        evidence = 0
        if src.evidence is not None:
            if not isinstance(src.evidence.value, int) or src.evidence.value < 0:
                raise RuleError(src.evidence.span, "evidence is how many events to show per reason (0 or more)")
            evidence = src.evidence.value
        return CompiledRule(
            name=src.name.value, title=src.title, version=src.version, path=src.path,
            file_sha256=hashlib.sha256(src.path.read_bytes()).hexdigest(),
            as_of=self.as_of, parameters=self.params, codelists=self.codelists,
            population=population, features=dict(self.features), segments=segments, include=include,
            reasons=reasons,
            require=require, exclude=exclude, rank_by=tuple(rank), limit=limit,
            output_columns=tuple(c.value for c in src.output_columns), evidence=evidence)


def _template_fields(template: str) -> list[str]:
    import string

    return [f.split(":")[0].split("!")[0] for _, f, _, _ in string.Formatter().parse(template) if f]


def _is_table_ref(n: syn.Node) -> bool:
    return isinstance(n, syn.Name) and n.parts[0] in TABLES


def _event_tables() -> list[str]:
    return [n for n, t in TABLES.items() if t.per_patient_events]


def compile_rule(path: str | Path, *, as_of: str | dt.date | None = None,
                 params: dict[str, str] | None = None) -> CompiledRule:
    """Load and compile a rule file. ``as_of`` and ``params`` override the file's values."""
    src = load_rule(path)
    c = _Compiler(src, dict(params or {}))
    text = as_of if as_of is not None else (params or {}).get("as_of") or (src.as_of.value if src.as_of else None)
    if text is None:
        raise RuleError(src.span, "the rule has no as_of date", 'add as_of: "2026-10-31" or pass --as-of')
    try:
        c.as_of = text if isinstance(text, dt.date) else dt.date.fromisoformat(str(text))
    except ValueError:
        raise RuleError(src.as_of.span if src.as_of else src.span, f"as_of {text!r} is not a date (YYYY-MM-DD)") from None
    return c.rule()
