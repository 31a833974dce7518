"""Scenario files for ``casefind budget simulate``: YAML naming a baseline and the changes a
scenario makes to it, per cohort of the population by percentile of a risk or cost measure.

The expressions (``rank_by``, ``cost``, ``population``, features) are the rules language,
compiled by the rules compiler, so a mistake is a RuleError at file:line:col with a hint,
exactly as in a rule. The file format and the arithmetic are in docs/budgets.md, "Simulation".
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from casefind.contract.schema import SETTINGS
from casefind.errors import UsageError
from casefind.rules import ir
from casefind.rules.compile import Compiler
from casefind.rules.errors import RuleError, Span, did_you_mean
from casefind.rules.load import (
    Located,
    RuleSource,
    check_keys,
    key_span,
    mapping_at,
    read_spec,
    span_at,
    spec_source,
)

TOP_LEVEL = ("scenario", "title", "description", "as_of", "parameters", "codelists", "features",
             "population", "rank_by", "cost", "cohorts", "years", "growth", "phasing",
             "excess_bed_day_cost", "changes")
# a change key -> the activity setting whose baseline cost it scales
SETTING_CHANGES = {
    "emergency_admissions": "emergency_admission", "elective_admissions": "elective_admission",
    "ae_attendances": "ae", "outpatient_attendances": "outpatient", "gp_appointments": "gp",
    "community_contacts": "community", "mental_health_contacts": "mental_health",
    "social_care": "social_care", "care_home": "care_home", "ambulance": "ambulance",
    "out_of_hours": "out_of_hours",
}
assert set(SETTING_CHANGES.values()) <= set(SETTINGS)
CHANGE_KEYS = (*SETTING_CHANGES, "bed_days", "new_service")
NEW_SERVICE_KEYS = ("cost_per_person",)
ALL = "all"  # a changes: entry for every cohort (a cohort's own entry overrides it key by key)
DEFAULT_COHORTS = ("0-0.5%", "0.5-2%", "2-5%", "5-10%")  # the handbook's simulation table
DEFAULT_POPULATION = "registered and alive"
DEFAULT_COST = "sum(activity.cost, within=months(12))"
# the domain's calibration figure for an excess bed day (docs: "excess bed day about £350")
EXCESS_BED_DAY_COST = 350.0
MAX_YEARS = 3
_BAND = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%?\s*[-\u2013]\s*(\d+(?:\.\d+)?)\s*%\s*")
_PERCENT = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*%\s*")


@dataclass(frozen=True)
class Band:
    """A cohort: the people ranked from ``low`` to ``high`` (fractions of the population)."""

    label: str
    low: float
    high: float


@dataclass(frozen=True)
class Changes:
    """What the scenario does to one cohort's baseline: fractions by setting (-0.1 is 10%
    fewer), a fraction of bed days, and a new service's cost a person a year."""

    settings: tuple[tuple[str, float], ...] = ()
    bed_days: float = 0.0
    new_service: float = 0.0

    def of(self, setting: str) -> float:
        return dict(self.settings).get(setting, 0.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    path: Path
    file_sha256: str
    as_of: str | None
    population: ir.Node
    rank_by: ir.Node
    cost: ir.Node
    texts: dict[str, str]  # population, rank_by, cost as written
    bands: tuple[Band, ...]
    changes: tuple[Changes, ...]  # one per band
    years: int
    growth: float
    phasing: tuple[float, ...]  # one per year
    excess_bed_day_cost: float

    @property
    def settings_changed(self) -> tuple[str, ...]:
        """Settings whose baseline cost any cohort's changes scale (bed days need the admissions')."""
        used = {s for c in self.changes for s, _ in c.settings}
        if any(c.bed_days for c in self.changes):
            used |= {"emergency_admission", "elective_admission"}
        return tuple(s for s in SETTINGS if s in used)

    def expressions(self) -> dict[str, ir.Node]:
        """What the engine evaluates per patient: the population, the ranking measure, the
        baseline cost, and each changed setting's cost (and the admissions' bed days)."""
        return components(self)


def load_scenario(path: str | Path, years: int | None = None) -> Scenario:
    """The scenario file compiled; ``years`` (the --years flag) overrides its years:."""
    path = Path(path)
    file = str(path)
    data = read_spec(path, "scenario", TOP_LEVEL, ("rank_by", "changes"),
                     "add a first line such as: scenario: fewer_emergency_admissions",
                     shape="a scenario file is a YAML mapping (scenario:, rank_by:, changes:, ...)",
                     required_hint="rank_by: the risk or cost measure cohorts are ranked by; changes: what the "
                                   "scenario does per cohort")
    src = spec_source(path, data, "scenario")
    name = src.name.value
    c = Compiler(src, {})
    for feature in src.features:
        c.feature(feature, src.features[feature].span)
    texts = {k: str(data.get(k, default)) for k, default in
             (("population", DEFAULT_POPULATION), ("rank_by", ""), ("cost", DEFAULT_COST))}
    population = c.condition(_located(file, data, "population", DEFAULT_POPULATION), "population")
    rank_by = _number(c, file, data, "rank_by", None)
    cost = _number(c, file, data, "cost", DEFAULT_COST)
    bands = _bands(file, data)
    n_years = _years(file, data, years)
    return Scenario(
        name=name, title=str(data.get("title") or name), path=path,
        file_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        as_of=_as_of(file, data),
        population=population, rank_by=rank_by, cost=cost, texts=texts, bands=bands,
        changes=_changes(file, data, bands), years=n_years,
        growth=_percent(file, data, "growth", -0.5, 1.0) if "growth" in data else 0.0,
        phasing=_phasing(file, data, n_years),
        excess_bed_day_cost=_amount(file, data, "excess_bed_day_cost", EXCESS_BED_DAY_COST),
    )


def _as_of(file: str, data: CommentedMap) -> str | None:
    """The end of the baseline year: a date, or latest (the end of the store's data)."""
    value = data.get("as_of")
    if value is None:
        return None
    text = str(value)
    try:
        return text if text == "latest" else dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise RuleError(span_at(file, data, "as_of"), f"as_of {text[:30]!r} is not a date",
                        'write YYYY-MM-DD (quoted: "2026-03-31"), or latest') from None


def _located(file: str, data: CommentedMap, key: str, default: str) -> Located:
    if key in data:
        return Located(data[key], span_at(file, data, key))
    return Located(default, Span(file, 1, 1))


def _number(c: Compiler, file: str, data: CommentedMap, key: str, default: str | None) -> ir.Node:
    """A per-patient number (a risk score, a cost) from ``key``."""
    loc = _located(file, data, key, default or "")
    node = c.expression(loc)
    if not node.domain.per_patient:
        raise RuleError(loc.span, f"{key} must be one value per patient, not {node.domain}",
                        "aggregate it, e.g. sum(activity.cost, within=months(12))")
    if node.type not in ir.NUMERIC:
        raise RuleError(loc.span, f"{key} must be a number per patient, not a {node.type.value}",
                        "e.g. sum(activity.cost, within=months(12)), or a risk score feature")
    return node


def _bands(file: str, data: CommentedMap) -> tuple[Band, ...]:
    """cohorts: percentile bands such as "0-0.5%", from the top of the ranking, in order and
    not overlapping; the handbook's four when not given."""
    if data.get("cohorts") is None:
        return tuple(_band(text, Span(file, 1, 1)) for text in DEFAULT_COHORTS)
    node = data["cohorts"]
    if not isinstance(node, CommentedSeq) or not node:
        raise RuleError(span_at(file, data, "cohorts"), "cohorts must be a list of percentile bands",
                        'e.g. cohorts: ["0-0.5%", "0.5-2%", "2-5%", "5-10%"]')
    bands = tuple(_band(text, span_at(file, node, index=i)) for i, text in enumerate(node))
    for i in range(1, len(bands)):
        if bands[i].low < bands[i - 1].high:
            raise RuleError(span_at(file, node, index=i),
                            f"cohort {bands[i].label} overlaps or comes before {bands[i - 1].label}",
                            "list the bands from the top of the ranking down, each starting where "
                            "the one before ends or later")
    return bands


def _band(text: object, span: Span) -> Band:
    m = _BAND.fullmatch(str(text))
    low, high = (float(m.group(1)), float(m.group(2))) if m else (0.0, 0.0)
    if not m or not low < high <= 100:
        raise RuleError(span, f"{str(text)[:40]!r} is not a percentile band",
                        'write it as "FROM-TO%" with FROM below TO and TO at most 100, e.g. "0.5-2%"')
    return Band(f"{_number_text(low)}-{_number_text(high)}%", low / 100, high / 100)


def _number_text(x: float) -> str:
    return f"{x:g}"


def _years(file: str, data: CommentedMap, flag: int | None) -> int:
    if flag is not None:
        if not 1 <= flag <= MAX_YEARS:
            raise UsageError(f"--years {flag}: simulate 1 to {MAX_YEARS} years", option="--years")
        return flag
    value = data.get("years", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_YEARS:
        raise RuleError(span_at(file, data, "years"), f"years must be a whole number from 1 to {MAX_YEARS}",
                        "the handbook simulates up to three years")
    return value


def _fraction(span: Span, value: object, what: str, low: float, high: float | None) -> float:
    """A percentage written "-10%" as a fraction (-0.1), within [low, high]."""
    m = _PERCENT.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise RuleError(span, f"{what} must be a percentage, such as -10%",
                        "write the % sign: 10 alone could mean 10% or 1,000%")
    fraction = float(m.group(1)) / 100
    if fraction < low or (high is not None and fraction > high):
        top = f" and {high:.0%}" if high is not None else ""
        raise RuleError(span, f"{what} {value} is out of range: it must be between {low:.0%}{top}")
    return fraction


def _percent(file: str, node: CommentedMap, key: str, low: float, high: float | None) -> float:
    return _fraction(span_at(file, node, key), node[key], key, low, high)


def _amount(file: str, node: CommentedMap, key: str, default: float) -> float:
    """A sum of money in pounds, zero or more."""
    if key not in node:
        return default
    value = node[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
        raise RuleError(span_at(file, node, key), f"{key} must be an amount in pounds, zero or more",
                        f"e.g. {key}: 350")
    return float(value)


def _phasing(file: str, data: CommentedMap, years: int) -> tuple[float, ...]:
    """The share of the changes in effect each year (default all of them from year 1)."""
    if data.get("phasing") is None:
        return (1.0,) * years
    node = data["phasing"]
    if not isinstance(node, CommentedSeq) or len(node) < years:
        raise RuleError(span_at(file, data, "phasing"), f"phasing must list a share for each of the {years} year(s)",
                        "e.g. phasing: [50%, 100%, 100%]")
    return tuple(_fraction(span_at(file, node, index=i), node[i], "a year's phasing", 0.0, 1.0)
                 for i in range(years))


def _changes(file: str, data: CommentedMap, bands: tuple[Band, ...]) -> tuple[Changes, ...]:
    """Each band's changes: the ``all:`` entry, overridden key by key by the band's own."""
    node = mapping_at(file, data, "changes", 'cohorts: {"0-0.5%": {emergency_admissions: -10%}}')
    labels = {b.label: b for b in bands}
    entries: dict[str, dict] = {}
    for key in node:
        label = ALL if str(key) == ALL else _label_of(file, node, key, labels)
        entries[label] = _entry(file, node, key)
    return tuple(Changes(**_merged(entries.get(ALL, {}), entries.get(b.label, {}))) for b in bands)


def _label_of(file: str, node: CommentedMap, key, labels: dict[str, Band]) -> str:
    span = key_span(file, node, key)
    try:
        label = _band(key, span).label
    except RuleError:
        label = str(key)
    if label not in labels:
        raise RuleError(span, f"changes for {str(key)[:40]!r}, which is not one of the cohorts",
                        did_you_mean(str(key), [*labels, ALL]) or f"cohorts: {', '.join(labels)}, or all")
    return label


def _entry(file: str, node: CommentedMap, key) -> dict:
    entry = node[key]
    if not isinstance(entry, CommentedMap):
        raise RuleError(span_at(file, node, key), f"the changes for {key} must be a mapping",
                        "e.g. {emergency_admissions: -10%, new_service: {cost_per_person: 120}}")
    check_keys(file, entry, CHANGE_KEYS, f"the changes for {key}")
    out: dict = {}
    for k in entry:
        if k == "new_service":
            out["new_service"] = _new_service(file, entry)
        elif k == "bed_days":
            out["bed_days"] = _percent(file, entry, k, -1.0, None)
        else:
            out[SETTING_CHANGES[k]] = _percent(file, entry, k, -1.0, None)
    return out


def _new_service(file: str, entry: CommentedMap) -> float:
    service = entry["new_service"]
    if not isinstance(service, CommentedMap) or "cost_per_person" not in service:
        raise RuleError(span_at(file, entry, "new_service"), "new_service needs its cost_per_person",
                        "e.g. new_service: {cost_per_person: 120}   # pounds a person a year")
    check_keys(file, service, NEW_SERVICE_KEYS, "new_service")
    return _amount(file, service, "cost_per_person", 0.0)


def _merged(common: dict, own: dict) -> dict:
    both = {**common, **own}
    settings = tuple((s, both[s]) for s in SETTINGS if s in both)
    return {"settings": settings, "bed_days": both.get("bed_days", 0.0), "new_service": both.get("new_service", 0.0)}


def components(s: Scenario) -> dict[str, ir.Node]:
    """The engine's expressions: ``population``, ``rank``, ``cost``, then ``cost_<setting>``
    for each changed setting and ``bed_days_<setting>`` for the admissions when bed days change."""
    c = Compiler(RuleSource(s.path, Located(s.name, Span(str(s.path), 1, 1))), {})
    exprs = {"in_population": s.population, "rank": s.rank_by, "cost": s.cost}
    span = Span(str(s.path), 1, 1)
    for setting in s.settings_changed:
        exprs[f"cost_{setting}"] = c.expression(Located(
            f'sum(activity.cost, setting == "{setting}", within=months(12))', span))
    if any(ch.bed_days for ch in s.changes):
        for setting in ("emergency_admission", "elective_admission"):
            exprs[f"bed_days_{setting}"] = c.expression(Located(
                f'sum(activity, setting == "{setting}", value=days_between(start_date, end_date), '
                'within=months(12))', span))
    return exprs
