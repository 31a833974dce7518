"""KPI files: YAML that names measures in the rules language, compiled to the same typed IR.

A KPI file has the rule file's ``parameters``, ``codelists`` and shared ``features``, plus
``measures``: for each, a per-patient ``population`` (the denominator) and ``value`` (the
numerator, or the per-patient amount), a ``kind``, a triple-aim ``domain``, a ``direction``
and optionally a ``target``; what it says about itself (``basis``, ``framework``,
``integrity``, ``cohorts``) and the extra ``levels`` it is computed at are read by
kpis/measure_meta.py. ``within=period`` in an expression is the reporting period, a
calendar month or quarter: it compiles to a placeholder for the period's length in days
(``ir.PeriodDays``), bound per period, so that (end − period, end] is exactly the month
(counting back one month from 30 April would include 31 March) and one compiled file serves
every period. Errors are RuleErrors at file:line:col,
exactly as for rules, because the same compiler reads the expressions.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from casefind.kpis import measure_meta as meta
from casefind.kpis.disclosure import DisclosurePolicy
from casefind.kpis.measure_meta import Integrity, Split
from casefind.rules import ir
from casefind.rules.compile import Compiler, compile_rule
from casefind.rules.errors import RuleError, Span, did_you_mean
from casefind.rules.load import (
    Located,
    RuleSource,
    check_keys,
    check_name,
    check_set_name,
    confined,
    key_span,
    mapping_at,
    read_shared_sections,
    read_yaml,
    span_at,
)

TOP_LEVEL = ("kpis", "title", "version", "description", "parameters", "codelists", "features",
             "breakdowns", "segments_from", "disclosure", "measures")
MEASURE_KEYS = ("title", "domain", "kind", "per", "population", "value", "denominator", "direction", "target",
                "standardise", "unit", "source", "breakdowns", "basis", "framework", "integrity", "cohorts",
                "levels", "per_year")
DOMAINS = ("population_health", "experience", "cost", "process")
KINDS = ("proportion", "rate", "mean", "per_head", "total", "median", "ratio")
DIRECTIONS = ("higher_is_better", "lower_is_better", "neutral")
BREAKDOWNS = ("age_band", "sex", "imd_quintile", "segment")
STANDARDS = ("esp2013",)


@dataclass(frozen=True)
class Measure:
    """One KPI. ``value`` is per patient: true/false for a proportion, a count for a rate,
    an amount for a mean, total or median. Missing values count as 0 for rates, totals and
    per-head amounts, and are left out of means and medians.

    A ``ratio`` counts events, not people: ``value`` and ``denominator`` are per-patient
    counts (readmissions and discharges), and the KPI is the sum of one over the sum of the
    other (× per, 100 by default), with a Wilson interval as for a proportion of events."""

    name: str
    title: str
    domain: str
    kind: str
    population: ir.Node
    value: ir.Node
    multiplier: float = 1.0
    direction: str = "neutral"
    target: float | None = None
    standardise: str | None = None
    unit_label: str = ""
    source: str = ""
    breakdowns: tuple[str, ...] = ()
    denominator: ir.Node | None = None  # ratio only: per-patient count of the events counted
    basis: str = "point"  # month | rolling_12m | point (measure_meta.BASES): which chart fits it
    framework: str = ""  # the source framework, e.g. "NHS Outcomes Framework 2.3.i"
    integrity: Integrity | None = None  # the three tests; None: not assessed
    cohorts: tuple[str, ...] = ()
    split: Split = field(default_factory=Split)  # provider / service levels
    per_year: bool = False  # annualised: x 365 / the period's days


@dataclass(frozen=True)
class KpiSet:
    name: str
    title: str
    version: str
    path: Path
    file_sha256: str
    period_days: int  # ir.PeriodDays: the placeholder bound per period
    measures: dict[str, Measure]
    segment: ir.Node | None = None      # the segment of each patient, when a breakdown needs it
    disclosure: DisclosurePolicy = field(default_factory=DisclosurePolicy)


def _default_unit(kind: str, multiplier: float) -> str:
    if kind == "proportion":
        return "%" if multiplier == 100 else "proportion"
    if kind == "rate":
        return f"per {multiplier:,.0f} people"
    if kind == "ratio":
        return "%" if multiplier == 100 else f"per {multiplier:,.0f}"
    return {"mean": "mean", "per_head": "per head", "total": "total", "median": "median"}[kind]


def _str(key, file, node, allowed=None) -> str:
    v = node.get(key)
    if v is None:
        return ""
    if allowed is not None and str(v) not in allowed:
        raise RuleError(span_at(file, node, key), f"{key} {v!r} is not one of {', '.join(allowed)}",
                        did_you_mean(str(v), allowed))
    return str(v)


def load_kpis(path: str | Path, *, period_days: int | None = None, params: dict[str, str] | None = None) -> KpiSet:
    """The KPI file compiled once for every period: ``period`` is a placeholder
    (``ir.PeriodDays``) that engines bind per period, unless ``period_days`` fixes it."""
    path = Path(path)
    file = str(path)
    data = read_yaml(path, "a KPI file is a YAML mapping (kpis:, measures:, ...)")
    check_keys(file, data, TOP_LEVEL, "the KPI file")
    if "kpis" not in data:
        raise RuleError(Span(file, 1, 1), "the KPI file has no name", "add a first line such as: kpis: triple_aim")
    if "measures" not in data or not data["measures"]:
        raise RuleError(Span(file, 1, 1), "the KPI file has no measures", "add measures: with at least one KPI")
    name = check_set_name(span_at(file, data, "kpis"), data["kpis"], "the KPI set")
    src = RuleSource(path, Located(name, span_at(file, data, "kpis")), span=Span(file, 1, 1))
    read_shared_sections(file, data, src)
    c = Compiler(src, dict(params or {}))
    if period_days is None:
        period_days = ir.PeriodDays()
    c.period_days = period_days
    for name in src.features:
        c.feature(name, src.features[name].span)

    default_breakdowns = _breakdowns(file, data, "breakdowns")
    measures: dict[str, Measure] = {}
    node = mapping_at(file, data, "measures", "name: {title, domain, kind, population, value, ...}")
    seg_rule = _segments_rule(file, path, data, node)
    names = tuple(n for n, _ in seg_rule.segments) if seg_rule is not None else None
    for name, m in node.items():
        name = check_name(key_span(file, node, name), name, "measure")
        measures[name] = _measure(file, c, node, name, m, default_breakdowns, names)
    segment = _segment(file, data, measures, seg_rule)
    policy = _disclosure(file, data)
    return KpiSet(name=src.name.value, title=str(data.get("title") or src.name.value),
                  version=str(data.get("version") or ""), path=path,
                  file_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), period_days=period_days,
                  measures=measures, segment=segment, disclosure=policy)


def _measure(file: str, c: Compiler, node, name: str, m, default_breakdowns: tuple[str, ...],
             segments: tuple[str, ...] | None) -> Measure:
    """One measure: its keys checked, its population, value (and denominator) compiled."""
    if not isinstance(m, CommentedMap):
        raise RuleError(span_at(file, node, name), f"measure {name!r} must be a mapping",
                        "give title:, domain:, kind:, population: and value:")
    check_keys(file, m, MEASURE_KEYS, f"measure {name!r}")
    for required in ("title", "domain", "kind", "population", "value"):
        if required not in m:
            raise RuleError(key_span(file, node, name), f"measure {name!r} has no {required}:")
    kind = _str("kind", file, m, KINDS)
    population = c.condition(Located(m["population"], span_at(file, m, "population")), f"{name}: population")
    value = _value(file, c, m, name, kind)
    denominator = _denominator(file, c, node, m, name, kind)
    per = m.get("per", 100 if kind in ("proportion", "ratio") else 1000 if kind == "rate" else 1)
    if not isinstance(per, (int, float)) or isinstance(per, bool) or per <= 0:
        raise RuleError(span_at(file, m, "per"), f"{name}: per must be a positive number (100, 1000, 100000)")
    target = m.get("target")
    if target is not None and (not isinstance(target, (int, float)) or isinstance(target, bool)):
        raise RuleError(span_at(file, m, "target"), f"{name}: target must be a number in the KPI's unit")
    standardise = _str("standardise", file, m, STANDARDS) or None
    if standardise and kind != "rate":
        raise RuleError(span_at(file, m, "standardise"), f"{name}: only rates are age-standardised")
    per_year = m.get("per_year", False)
    if not isinstance(per_year, bool) or (per_year and kind not in meta.PER_YEAR_KINDS):
        raise RuleError(span_at(file, m, "per_year"), f"{name}: per_year is true or false, for a "
                        f"{', '.join(meta.PER_YEAR_KINDS)}", "per_year: true annualises: x 365 / the period's days")
    return Measure(
        name=name, title=str(m["title"]), domain=_str("domain", file, m, DOMAINS), kind=kind,
        population=population, value=value, multiplier=float(per),
        direction=_str("direction", file, m, DIRECTIONS) or "neutral",
        target=float(target) if target is not None else None, standardise=standardise,
        unit_label=str(m.get("unit") or _default_unit(kind, float(per))), source=str(m.get("source") or ""),
        breakdowns=_breakdowns(file, m, "breakdowns") if "breakdowns" in m else default_breakdowns,
        denominator=denominator,
        basis=meta.basis(file, node, m, name, [value] + ([denominator] if denominator is not None else [])),
        framework=str(m.get("framework") or ""), integrity=meta.integrity(file, m, name),
        cohorts=meta.cohorts(file, m, name, segments), split=meta.split(file, m, name, kind, value),
        per_year=per_year)


def _value(file: str, c: Compiler, m, name: str, kind: str) -> ir.Node:
    """A measure's per-patient value, of the type its kind needs."""
    value = c.expression(Located(m["value"], span_at(file, m, "value")))
    vspan = span_at(file, m, "value")
    if not value.domain.per_patient:
        raise RuleError(vspan, f"{name}: value must be one per patient, not {value.domain}",
                        "aggregate it: count(...), sum(...), exists(...)")
    if kind == "proportion" and value.type is not ir.T.BOOL:
        raise RuleError(vspan, f"{name}: a proportion's value is true/false, not a {value.type.value}",
                        "e.g. exists(activity, setting == \"emergency_admission\", within=period)")
    if kind != "proportion" and value.type not in ir.NUMERIC + (ir.T.BOOL,):  # true counts 1
        raise RuleError(vspan, f"{name}: a {kind}'s value is a number, not a {value.type.value}",
                        "use kind: proportion for true/false values")
    return value


def _denominator(file: str, c: Compiler, node, m, name: str, kind: str) -> ir.Node | None:
    """A ratio's per-patient count of the events counted; no other kind has one."""
    if kind != "ratio":
        if "denominator" in m:
            raise RuleError(span_at(file, m, "denominator"), f"{name}: only a ratio has a denominator:",
                            "kind: ratio (events over events); other kinds count people in the population")
        return None
    if "denominator" not in m:
        raise RuleError(key_span(file, node, name), f"measure {name!r}: a ratio needs a denominator:",
                        "the per-patient count the value is a share of, e.g. count(activity, ...)")
    dspan = span_at(file, m, "denominator")
    denominator = c.expression(Located(m["denominator"], dspan))
    if not denominator.domain.per_patient or denominator.type not in ir.NUMERIC:
        raise RuleError(dspan, f"{name}: a ratio's denominator is a count per patient",
                        "e.g. count(activity, setting == \"emergency_admission\", within=period)")
    return denominator


def _segments_rule(file: str, path: Path, data, measures):
    """The compiled rule of segments_from:, when a measure breaks down by segment or names
    cohorts (which are checked against its segments); None otherwise."""
    raw = [m for m in measures.values() if isinstance(m, CommentedMap)]
    wanted = any("cohorts" in m for m in raw) or "segment" in _raw_breakdowns(data) or any(
        "segment" in _raw_breakdowns(m) for m in raw)
    if "segments_from" not in data or not wanted:
        return None
    seg_path = confined(path, str(data["segments_from"]), span_at(file, data, "segments_from"), "segments_from file")
    seg_rule = compile_rule(seg_path)
    if not seg_rule.segments:
        raise RuleError(span_at(file, data, "segments_from"), f"{seg_path} has no segments:")
    return seg_rule


def _raw_breakdowns(node) -> list[str]:
    v = node.get("breakdowns")
    return [str(b) for b in v] if isinstance(v, CommentedSeq) else []


def _segment(file: str, data, measures: dict[str, Measure], seg_rule) -> ir.Node | None:
    """Each patient's segment (from segments_from:), when a measure breaks down by segment."""
    if not any("segment" in m.breakdowns for m in measures.values()):
        return None
    if seg_rule is None:
        raise RuleError(span_at(file, data, "breakdowns"), "a segment breakdown needs segments_from:",
                        "segments_from: ../segments.yml (a rule file with segments:)")
    return ir.Case(tuple((cond, ir.Const(n, ir.T.TEXT)) for n, cond in seg_rule.segments), None)


def _disclosure(file: str, data) -> DisclosurePolicy:
    if data.get("disclosure") is None:
        return DisclosurePolicy()
    settings = dict(mapping_at(file, data, "disclosure", "suppress_below / round_to / ..."))
    try:
        return DisclosurePolicy.from_mapping(settings)
    except ValueError as e:
        raise RuleError(span_at(file, data, "disclosure"), f"disclosure: {e}",
                        "e.g. disclosure: {suppress_below: 8, round_to: 5}") from None


def _breakdowns(file: str, node, key: str) -> tuple[str, ...]:
    v = node.get(key)
    if v is None:
        return ()
    if not isinstance(v, CommentedSeq):
        raise RuleError(span_at(file, node, key), f"{key} must be a list, e.g. [age_band, sex]")
    for i, b in enumerate(v):
        if str(b) not in BREAKDOWNS:
            raise RuleError(span_at(file, v, index=i), f"unknown breakdown {b!r}",
                            did_you_mean(str(b), BREAKDOWNS) or f"breakdowns: {', '.join(BREAKDOWNS)}")
    return tuple(str(b) for b in v)
