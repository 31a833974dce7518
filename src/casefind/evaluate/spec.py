"""An evaluation spec: YAML naming the intervention group, how controls are matched, the
outcomes and the window, compiled with the rules compiler (errors are RuleErrors at
file:line:col, as for rules and KPI files).

``within=window`` in an expression is the spec's ``window:`` in calendar months (so one
outcome expression counts both the months before the index date and, evaluated ``window``
months later, the months after it). The group's index date is one date expression per
patient: the start of a register, the first acceptance from a rule's list in the review
log, or an expression the file gives.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from casefind.rules import expr as syn
from casefind.rules import ir
from casefind.rules.compile import Compiler
from casefind.rules.errors import RuleError
from casefind.rules.load import (
    Located,
    check_keys,
    check_name,
    key_span,
    mapping_at,
    read_spec,
    span_at,
    spec_source,
)

TOP_LEVEL = ("evaluation", "title", "version", "description", "parameters", "codelists", "features",
             "group", "eligible", "window", "match", "outcomes", "confidence")
GROUP_KEYS = ("register", "accepted", "date", "from", "to")
GROUP_KINDS = ("register", "accepted", "date")
MATCH_KEYS = ("exact", "method", "features", "caliper", "ratio", "replacement", "seed")
METHODS = ("propensity", "nearest")
MAX_WINDOW = 60   # months
MAX_RATIO = 10


@dataclass(frozen=True)
class Matching:
    """How controls are chosen: equal on every ``exact`` value, then nearest on the
    propensity score (logit) or on the standardised ``features``, within ``caliper``
    standard deviations, ``ratio`` controls per treated person."""

    exact: tuple[tuple[str, ir.Node], ...]
    method: str
    features: tuple[tuple[str, ir.Node], ...]
    caliper: float | None
    ratio: int
    replacement: bool
    seed: int


@dataclass(frozen=True)
class EvalSpec:
    name: str
    title: str
    version: str
    path: Path
    file_sha256: str
    group_kind: str            # register | accepted | date
    group_label: str           # the register, rule or expression the index date comes from
    index_date: ir.Node        # per patient: the date they joined the programme (missing: never)
    first: dt.date             # index dates from ...
    last: dt.date              # ... to (inclusive)
    eligible: ir.Node          # who may be treated or a control, at the index date
    window_months: int
    matching: Matching
    outcomes: tuple[tuple[str, ir.Node], ...]
    confidence: float


class EvalCompiler(Compiler):
    """The rules compiler, with ``within=window`` meaning the spec's window in months."""

    window_months: int = 12

    def duration(self, n: syn.Node) -> tuple[int, int] | None:
        if isinstance(n, syn.Name) and n.parts == ("window",):
            return (self.window_months, 0)
        return super().duration(n)


def load_spec(path: str | Path, params: dict[str, str] | None = None) -> EvalSpec:
    path = Path(path)
    file = str(path)
    data = read_spec(path, "evaluation", TOP_LEVEL, ("group", "match", "outcomes"),
                     "add a first line such as: evaluation: case_management",
                     shape="an evaluation file is a YAML mapping (evaluation:, group:, match:, outcomes:, ...)",
                     unnamed="the evaluation has no name")
    src = spec_source(path, data, "evaluation")
    name = src.name.value
    c = EvalCompiler(src, dict(params or {}))
    c.window_months = _window(file, data)
    for fname in src.features:
        c.feature(fname, src.features[fname].span)
    kind, label, index_date, first, last = _group(file, data, c)
    eligible = (c.condition(Located(data["eligible"], span_at(file, data, "eligible")), "eligible")
                if data.get("eligible") is not None else ir.And(ir.Attr("registered"), ir.Attr("alive")))
    return EvalSpec(
        name=name, title=str(data.get("title") or name), version=str(data.get("version") or ""), path=path,
        file_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), group_kind=kind, group_label=label,
        index_date=index_date, first=first, last=last, eligible=eligible, window_months=c.window_months,
        matching=_matching(file, data, c), outcomes=_outcomes(file, data, c), confidence=_confidence(file, data))


def _window(file: str, data) -> int:
    w = data.get("window", 12)
    if not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= MAX_WINDOW:
        raise RuleError(span_at(file, data, "window"), f"window is a whole number of months, 1 to {MAX_WINDOW}",
                        "e.g. window: 12 (a year before and a year after the index date)")
    return w


def _date(file: str, node, key: str) -> dt.date:
    v = node.get(key)
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    try:
        return dt.date.fromisoformat(str(v))
    except ValueError:
        raise RuleError(span_at(file, node, key), f"{key}: {str(v)[:30]!r} is not a date",
                        f'write {key}: "2025-04-01" (YYYY-MM-DD)') from None


def _group(file: str, data, c: Compiler) -> tuple[str, str, ir.Node, dt.date, dt.date]:
    """Where each patient's index date comes from, and the dates the group's index dates lie in."""
    g = mapping_at(file, data, "group", "register: NAME | accepted: RULE | date: EXPRESSION, from:, to:")
    check_keys(file, g, GROUP_KEYS, "group")
    kinds = [k for k in GROUP_KINDS if k in g]
    if len(kinds) != 1:
        raise RuleError(span_at(file, data, "group"), "the group needs exactly one of register:, accepted:, date:",
                        "register: case_management (its start date), accepted: frail (the date a "
                        "clinician accepted them from the list), or date: an expression")
    kind = kinds[0]
    span, label = span_at(file, g, kind), str(g[kind])
    if kind == "date":
        node = c.expression(Located(g[kind], span))
        if node.type is not ir.T.DATE or not node.domain.per_patient:
            raise RuleError(span, "group date: must be one date per patient",
                            'e.g. first(registers.start_date, register == "virtual_ward")')
    else:
        check_name(span, label, "register" if kind == "register" else "rule")
        text = (f'first(registers.start_date, register == "{label}")' if kind == "register"
                else f'first(reviews.date, rule == "{label}" and decision == "accepted")')
        node = c.expression(Located(text, span))
    for key in ("from", "to"):
        if key not in g:
            raise RuleError(key_span(file, data, "group"), f"the group has no {key}: date",
                            "from: and to: bound the index dates evaluated, e.g. from: \"2024-11-01\"")
    first, last = _date(file, g, "from"), _date(file, g, "to")
    if last < first:
        raise RuleError(span_at(file, g, "to"), f"to: {last} is before from: {first}")
    return kind, label, node, first, last


def _named_list(file: str, node, key: str, c: Compiler, numeric: bool) -> tuple[tuple[str, ir.Node], ...]:
    """A list of expressions (usually feature names), each named by its text."""
    seq = node.get(key)
    if seq is None:
        return ()
    if not isinstance(seq, CommentedSeq):
        raise RuleError(span_at(file, node, key), f"{key} must be a list of features or expressions",
                        f"{key}: [age, emergency_before]")
    out = []
    for i, v in enumerate(seq):
        span = span_at(file, seq, index=i)
        e = c.expression(Located(v, span))
        if not e.domain.per_patient:
            raise RuleError(span, f"{key}: {v} must be one value per patient", "aggregate it: count(...), sum(...)")
        if numeric and e.type not in ir.NUMERIC + (ir.T.BOOL,):
            raise RuleError(span, f"{key}: {v} is a {e.type.value}; matching features are numbers or true/false",
                            "put text values (sex, a band) in exact:")
        out.append((str(v), e))
    if len({n for n, _ in out}) != len(out):
        raise RuleError(span_at(file, node, key), f"{key} names the same expression twice")
    return tuple(out)


def _matching(file: str, data, c: Compiler) -> Matching:
    m = mapping_at(file, data, "match", "exact:, method:, features:, caliper:, ratio:, replacement:")
    check_keys(file, m, MATCH_KEYS, "match")
    method = str(m.get("method", "propensity"))
    if method not in METHODS:
        raise RuleError(span_at(file, m, "method"), f"method {method!r} is not one of {', '.join(METHODS)}")
    features = _named_list(file, m, "features", c, numeric=True)
    if not features:
        raise RuleError(key_span(file, data, "match"), "match: needs features: (what the score or distance uses)",
                        "features: [age, emergency_before, cost_before]")
    caliper = m.get("caliper", 0.2)
    if caliper is not None and (not isinstance(caliper, (int, float)) or isinstance(caliper, bool) or caliper <= 0):
        raise RuleError(span_at(file, m, "caliper"), "caliper is a positive number of standard deviations, or null",
                        "0.2 of the logit's SD (Austin 2011) is the usual choice")
    ratio = m.get("ratio", 1)
    if not isinstance(ratio, int) or isinstance(ratio, bool) or not 1 <= ratio <= MAX_RATIO:
        raise RuleError(span_at(file, m, "ratio"), f"ratio is the controls per treated person, 1 to {MAX_RATIO}")
    replacement = m.get("replacement", False)
    if not isinstance(replacement, bool):
        raise RuleError(span_at(file, m, "replacement"), "replacement is true or false")
    seed = m.get("seed", 1)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise RuleError(span_at(file, m, "seed"), "seed is a whole number, 0 or more")
    return Matching(exact=_named_list(file, m, "exact", c, numeric=False), method=method, features=features,
                    caliper=None if caliper is None else float(caliper), ratio=ratio, replacement=replacement,
                    seed=seed)


def _outcomes(file: str, data, c: Compiler) -> tuple[tuple[str, ir.Node], ...]:
    node = data["outcomes"]
    if not isinstance(node, CommentedMap) or not node:
        raise RuleError(span_at(file, data, "outcomes"), "outcomes: is a mapping of name: expression",
                        'emergency_admissions: count(activity, setting == "emergency_admission", within=window)')
    out = []
    for k, v in node.items():
        name = check_name(key_span(file, node, k), k, "outcome")
        span = span_at(file, node, k)
        e = c.expression(Located(v, span))
        if not e.domain.per_patient or e.type not in ir.NUMERIC + (ir.T.BOOL,):
            raise RuleError(span, f"outcome {name!r} must be a number or true/false per patient",
                            "count(...), sum(...) within=window, or a condition such as: not alive")
        out.append((name, e))
    return tuple(out)


def _confidence(file: str, data) -> float:
    v = data.get("confidence", 0.95)
    if not isinstance(v, float) or not 0.5 <= v < 1:
        raise RuleError(span_at(file, data, "confidence"), "confidence is a level between 0.5 and 1, e.g. 0.95")
    return v
