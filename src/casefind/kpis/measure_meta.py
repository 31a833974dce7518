"""What a KPI says about itself beyond its arithmetic: its basis (what one period's value
covers, and so which chart fits it), its source framework, its integrity assessment and the
cohorts it concerns, and the extra levels (provider, service) it is computed at.

The sources judged only 18% of the measures of five national outcomes frameworks "high
integrity": measurable (the data define it), reportable (it can be published at the level
used) and influenced by integrated care. Each KPI states the three tests, so the pack shows
which figures can carry a decision and which cannot.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from casefind.contract.schema import SETTINGS
from casefind.rules import ir
from casefind.rules.errors import RuleError, did_you_mean
from casefind.rules.load import key_span, span_at

BASES = ("month", "rolling_12m", "point")
TESTS = ("measurable", "reportable", "influenced")
EXTRA_LEVELS = ("provider", "service")
SPLIT_KINDS = ("rate", "per_head", "total")  # sums over the population: events split by provider
PER_YEAR_KINDS = ("rate", "per_head", "total")
ALL = "all"  # a cohort: the whole population
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Integrity:
    """The three tests of a high-integrity measure, as the KPI file states them."""

    measurable: bool
    reportable: bool
    influenced: bool
    note: str = ""

    @property
    def high_integrity(self) -> bool:
        return self.measurable and self.reportable and self.influenced

    def as_json(self) -> str:
        return json.dumps({"measurable": self.measurable, "reportable": self.reportable,
                           "influenced": self.influenced, "high_integrity": self.high_integrity,
                           "note": self.note}, sort_keys=True)


NOT_ASSESSED = json.dumps({"assessed": False, "note": "not assessed"}, sort_keys=True)


@dataclass(frozen=True)
class Split:
    """The levels a measure is also computed at, and how its events split: by the activity
    row's provider_code, and for services also by setting (``settings``: the settings its
    value can count, when it names them; one setting means a service is its provider)."""

    levels: tuple[str, ...] = ()
    settings: tuple[str, ...] | None = None


def basis(file: str, node, m: CommentedMap, name: str, exprs: list[ir.Node]) -> str:
    """The measure's ``basis:``, or the one its expressions imply when only one fits."""
    if "basis" in m:
        given = str(m["basis"])
        if given not in BASES:
            raise RuleError(span_at(file, m, "basis"), f"{name}: basis {given!r} is not one of {', '.join(BASES)}",
                            did_you_mean(given, BASES) or "month: the period itself; rolling_12m: the 12 "
                            "months to its end; point: a state at its end")
        return given
    derived = derived_basis(exprs)
    if derived is None:
        raise RuleError(key_span(file, node, name), f"measure {name!r} needs a basis: its windows do not say "
                        "whether it is the month, a rolling year or a state at the period end",
                        "basis: month | rolling_12m | point")
    return derived


def derived_basis(exprs: list[ir.Node]) -> str | None:
    """month when every window is the period, rolling_12m when every one is the 12 months
    to the period end (or the date moves a year back), point when there is none; else None."""
    seen: set[str] = set()
    for e in exprs:
        for x in ir.walk(e, into=(ir.ROWS, ir.DATE)):
            if isinstance(x, ir.Aggregate) and isinstance(x.window, ir.Range):
                seen.add(_window_basis(x.window.start, x.window.end))
            elif isinstance(x, ir.Shift) and _window_basis((abs(x.months), abs(x.days)), (0, 0)) != "other":
                seen.add(_window_basis((abs(x.months), abs(x.days)), (0, 0)))
    if not seen:
        return "point"
    return seen.pop() if len(seen) == 1 and "other" not in seen else None


def _window_basis(start: tuple[int, int], end: tuple[int, int]) -> str:
    if isinstance(start[1], ir.PeriodDays) or isinstance(start[0], ir.PeriodDays):
        return "month"
    if tuple(end) == (0, 0) and tuple(start) in ((12, 0), (0, 365)):
        return "rolling_12m"
    return "other"


def integrity(file: str, m: CommentedMap, name: str) -> Integrity | None:
    """The three tests (true/false each) and a note; None when the file does not assess it."""
    if "integrity" not in m:
        return None
    node = m["integrity"]
    hint = "integrity: {measurable: true, reportable: true, influenced: false, note: why}"
    if not isinstance(node, CommentedMap):
        raise RuleError(span_at(file, m, "integrity"), f"{name}: integrity must be a mapping", hint)
    for k in node:
        if k not in TESTS + ("note",):
            raise RuleError(key_span(file, node, k), f"{name}: unknown key '{k}' in integrity",
                            did_you_mean(str(k), TESTS + ("note",)) or hint)
    for test in TESTS:
        if not isinstance(node.get(test), bool):
            raise RuleError(span_at(file, node, test) if test in node else span_at(file, m, "integrity"),
                            f"{name}: integrity needs {test}: true or false", hint)
    return Integrity(node["measurable"], node["reportable"], node["influenced"], str(node.get("note") or ""))


def cohorts(file: str, m: CommentedMap, name: str, segments: tuple[str, ...] | None) -> tuple[str, ...]:
    """The cohorts a measure concerns: segment names of segments_from (checked), ``all``, or
    a description in words ("people aged 65+ discharged into reablement")."""
    v = m.get("cohorts")
    if v is None:
        return ()
    if not isinstance(v, CommentedSeq):
        raise RuleError(span_at(file, m, "cohorts"), f"{name}: cohorts must be a list",
                        "cohorts: [frailty, people aged 65+]")
    out = []
    for i, c in enumerate(v):
        text = str(c).strip()
        if _IDENTIFIER.match(text) and text != ALL:
            if segments is None:
                raise RuleError(span_at(file, v, index=i), f"{name}: cohort {text!r} names a segment, "
                                "but the KPI file has no segments_from:",
                                "segments_from: ../segments.yml, or describe the cohort in words")
            if text not in segments:
                raise RuleError(span_at(file, v, index=i), f"{name}: {text!r} is not a segment of segments_from",
                                did_you_mean(text, segments) or f"segments: {', '.join(segments)}")
        if not text or "," in text:
            raise RuleError(span_at(file, v, index=i), f"{name}: a cohort is a non-empty name without commas")
        out.append(text)
    return tuple(out)


def split(file: str, m: CommentedMap, name: str, kind: str, value: ir.Node) -> Split:
    """``levels: [provider, service]``: checked against the kind and the value, which must
    add up events of activity rows (count and sum over activity, and sums of those)."""
    v = m.get("levels")
    if v is None:
        return Split()
    if not isinstance(v, CommentedSeq):
        raise RuleError(span_at(file, m, "levels"), f"{name}: levels must be a list, e.g. [provider, service]")
    for i, lv in enumerate(v):
        if str(lv) not in EXTRA_LEVELS:
            raise RuleError(span_at(file, v, index=i), f"{name}: unknown level {lv!r}",
                            did_you_mean(str(lv), EXTRA_LEVELS) or "levels: [provider, service] (practice, "
                            "locality and system are always computed)")
    levels = tuple(dict.fromkeys(str(lv) for lv in v))
    if kind not in SPLIT_KINDS:
        raise RuleError(span_at(file, m, "levels"), f"{name}: only a {', '.join(SPLIT_KINDS)} is split by provider",
                        "a provider's share of a proportion or mean of people is not defined")
    parts = activity_parts(value)
    if parts is None:
        raise RuleError(span_at(file, m, "levels"), f"{name}: a value split by provider must add up activity rows",
                        "count(activity, ...) or sum(activity..., ...), or a sum of such")
    settings = _settings(parts)
    if "service" in levels and settings is None:
        raise RuleError(span_at(file, m, "levels"), f"{name}: a service is a provider's setting, but the value "
                        "does not say which settings it counts", 'filter each part by setting: setting == "ae"')
    return Split(levels, settings)


def activity_parts(value: ir.Node) -> list[ir.Aggregate] | None:
    """The count and sum aggregations over activity that ``value`` adds up, or None when it
    is anything else (then events cannot be split by provider exactly)."""
    if isinstance(value, (ir.Count, ir.Sum)) and value.table == "activity":
        return [value]
    if isinstance(value, ir.Add):
        left, right = activity_parts(value.left), activity_parts(value.right)
        return None if left is None or right is None else left + right
    return None


def _settings(parts: list[ir.Aggregate]) -> tuple[str, ...] | None:
    """Every setting the parts can count, in contract order, or None if one is not limited."""
    found: set[str] = set()
    for a in parts:
        allowed = _setting_filter(a.where)
        if allowed is None:
            return None
        found |= allowed
    return tuple(s for s in SETTINGS if s in found)


def _setting_filter(where: ir.Node | None) -> set[str] | None:
    """The settings a filter lets through, from its top-level ``and`` terms."""
    if where is None:
        return None
    if isinstance(where, ir.And):
        left, right = _setting_filter(where.left), _setting_filter(where.right)
        return right if left is None else left if right is None else left & right
    if isinstance(where, ir.Eq) and isinstance(where.left, ir.Column) and where.left.column == "setting" \
            and isinstance(where.right, ir.Const):
        return {str(where.right.value)}
    if isinstance(where, ir.IsIn) and isinstance(where.operand, ir.Column) and where.operand.column == "setting":
        return {str(o.value) for o in where.options}
    return None
