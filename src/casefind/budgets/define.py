"""Budget files: YAML that states a Year of Care capitated budget, compiled to frozen specs.

A budget file names its cohort (a rule's selection, or an expression in the rules language,
optionally with a rule's features to use), the in-scope services (settings, providers and
the funding kinds left out), tariff categories (in precedence order, the last one taking
everyone left), how tariffs are set (baseline year, percentile trim, minimum category size,
uplift, or by hand), the payment profile, and optionally a risk share and outcome-linked
adjustments. Expressions are compiled by the rules compiler, so every error is a RuleError
at file:line:col with a hint (docs/budgets.md lists every key).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from casefind.budgets.years import FinancialYear, YearError, parse_year
from casefind.contract.schema import FUNDING, FUNDING_DEFAULT, SETTINGS
from casefind.rules import ir
from casefind.rules.compile import Compiler, compile_rule
from casefind.rules.errors import RuleError, did_you_mean
from casefind.rules.load import (
    Located,
    RuleSource,
    check_keys,
    confined,
    key_span,
    mapping_at,
    read_spec,
    span_at,
    spec_source,
)

TOP_LEVEL = ("budget", "title", "version", "description", "parameters", "codelists", "features", "cohort",
             "services", "categories", "tariffs", "profile", "risk_share", "outcomes")
COHORT_KEYS = ("rule", "when", "accepted_by_clinician", "list")
SERVICE_KEYS = ("settings", "include_providers", "exclude_providers", "exclude_funding")
CATEGORY_KEYS = ("label", "when", "merge_into", "tariff")
TARIFF_KEYS = ("baseline_year", "min_category_size", "trim", "uplift", "incentive")
TRIM_KEYS = ("above_percentile", "method")
TRIM_METHODS = ("cap", "remove")
INCENTIVE_KEYS = ("amount", "when", "label", "categories")
PROFILES = ("flat", "baseline")
RISK_KEYS = ("bands", "cap", "carry_forward")
BAND_KEYS = ("up_to", "provider")
OUTCOME_KEYS = ("kpi", "kpis", "title", "target", "direction", "period", "reward", "penalty")
DIRECTIONS = ("higher_is_better", "lower_is_better")
CATEGORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,31}")
OUT_OF_SCOPE = tuple(f for f in FUNDING if f != FUNDING_DEFAULT)  # the handbook's exclusions


@dataclass(frozen=True)
class Category:
    """A tariff category; ``when`` is None for the last, which takes everyone left."""

    name: str
    label: str
    when: ir.Node | None
    merge_into: str | None = None
    tariff: float | None = None  # set by hand: used as written, not uplifted


@dataclass(frozen=True)
class Services:
    """What spend is in scope: these settings, these providers, funding not excluded."""

    settings: tuple[str, ...]
    include_providers: tuple[str, ...] | None
    exclude_providers: tuple[str, ...]
    exclude_funding: tuple[str, ...]


@dataclass(frozen=True)
class Trim:
    """Outliers within each category: people above the percentile (numpy's linear
    interpolation) are capped at it, or removed from the mean."""

    above_percentile: float = 99.0
    method: str = "cap"


@dataclass(frozen=True)
class Incentive:
    amount: float
    when: ir.Node
    label: str
    categories: tuple[str, ...] | None  # None: every category


@dataclass(frozen=True)
class Band:
    up_to: float | None  # the variance as a fraction of the budget this band runs to; None: beyond
    provider: float      # the provider's share of the variance in the band


@dataclass(frozen=True)
class RiskShare:
    bands: tuple[Band, ...]
    cap: float | None = None      # the provider's share at most this fraction of the budget
    carry_forward: float = 0.0    # fraction of the provider's share carried into next year


@dataclass(frozen=True)
class Outcome:
    name: str
    kpi: str
    kpi_set: str
    title: str
    target: float | None
    direction: str | None
    period: str | None
    reward: float
    penalty: float


@dataclass(frozen=True)
class BudgetSpec:
    name: str
    title: str
    version: str
    path: Path
    file_sha256: str
    cohort: ir.Node
    rule_name: str | None
    accepted: ir.Node | None         # accepted by a clinician on the list (latest decision)
    accepted_on: ir.Node | None      # the date of that decision
    categories: tuple[Category, ...]
    services: Services
    baseline_year: FinancialYear | None
    min_category_size: int
    trim: Trim
    uplift: float
    incentive: Incentive | None
    profile: str
    risk_share: RiskShare | None
    outcomes: tuple[Outcome, ...]

    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    @property
    def computed(self) -> bool:
        """Whether any tariff is computed from the baseline (else all are set by hand)."""
        return any(c.tariff is None for c in self.categories)


def load_budget(path: str | Path) -> BudgetSpec:
    """The budget file compiled; RuleErrors at file:line:col for anything wrong in it."""
    path = Path(path)
    file = str(path)
    data = read_spec(path, "budget", TOP_LEVEL, ("cohort", "categories"),
                     "add a first line such as: budget: ltc_year_of_care",
                     shape="a budget file is a YAML mapping (budget:, cohort:, categories:, ...)",
                     required_hint="see docs/budgets.md for the keys of a budget file")
    src = spec_source(path, data, "budget")
    name = src.name.value
    c = Compiler(src, {})
    rule = _cohort_rule(file, path, data, src, c)
    for feature in [f for f in src.features if f not in c.features]:
        c.feature(feature, src.features[feature].span)
    cohort, accepted, accepted_on = _cohort(file, data, c, rule, name)
    categories = _categories(file, data, c)
    tariffs = data.get("tariffs") if data.get("tariffs") is not None else CommentedMap()
    if not isinstance(tariffs, CommentedMap):
        raise RuleError(span_at(file, data, "tariffs"), "'tariffs' must be a mapping",
                        "tariffs: {baseline_year: 2025-26}")
    check_keys(file, tariffs, TARIFF_KEYS, "tariffs")
    names = [cat.name for cat in categories]
    return BudgetSpec(
        name=name, title=str(data.get("title") or name), version=str(data.get("version") or ""), path=path,
        file_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), cohort=cohort,
        rule_name=rule.name if rule else None, accepted=accepted, accepted_on=accepted_on,
        categories=categories, services=_services(file, data), baseline_year=_baseline(file, tariffs),
        min_category_size=_whole(file, tariffs, "min_category_size", 0), trim=_trim(file, tariffs),
        uplift=_number(file, tariffs, "uplift", 0.0, -0.5, 1.0), incentive=_incentive(file, tariffs, c, names),
        profile=_choice(file, data, "profile", PROFILES, "flat"), risk_share=_risk_share(file, data),
        outcomes=_outcomes(file, data))


def _cohort_rule(file: str, path: Path, data, src: RuleSource, c: Compiler):
    """The rule named by ``cohort: {rule: ...}``, its features made usable by name."""
    cohort = data["cohort"]
    if not isinstance(cohort, CommentedMap):
        raise RuleError(span_at(file, data, "cohort"), "'cohort' must be a mapping",
                        "cohort: {rule: ../multimorbidity.yml} or cohort: {when: \"ltc_count >= 2\"}")
    check_keys(file, cohort, COHORT_KEYS, "cohort")
    if "rule" not in cohort and "when" not in cohort:
        raise RuleError(span_at(file, data, "cohort"), "the cohort needs a rule: or a when:",
                        "cohort: {rule: ../multimorbidity.yml}")
    if "rule" not in cohort:
        return None
    span = span_at(file, cohort, "rule")
    rule_path = confined(path, str(cohort["rule"]), span, "cohort rule")
    if not rule_path.is_file():
        raise RuleError(span, f"no rule file {cohort['rule']!r} (looked for {rule_path})",
                        "give the path from this file's folder, e.g. ../multimorbidity.yml")
    rule = compile_rule(rule_path)
    for fname, node in rule.features.items():
        if fname not in src.features:  # the budget file's own features win
            src.features[fname] = Located(None, span)
            c.features[fname] = node
    for pname, param in rule.parameters.items():
        c.params.setdefault(pname, param)
    return rule


def _cohort(file: str, data, c: Compiler, rule, name: str) -> tuple[ir.Node, ir.Node | None, ir.Node | None]:
    """Who is in (always registered and alive), and, when the file says so, who a clinician
    accepted from the list (their latest decision on it is ``accepted``) and when."""
    cohort = data["cohort"]
    if "when" in cohort:
        chosen = c.condition(Located(cohort["when"], span_at(file, cohort, "when")), "the cohort")
    else:
        chosen = _rule_selection(rule)
    living = ir.And(ir.Attr("registered"), ir.Attr("alive"))
    accepted = accepted_on = None
    flag = cohort.get("accepted_by_clinician", False)
    if not isinstance(flag, bool):
        raise RuleError(span_at(file, cohort, "accepted_by_clinician"), "accepted_by_clinician is true or false")
    if flag:
        listed = str(cohort.get("list") or (rule.name if rule else name))
        span = span_at(file, cohort, "accepted_by_clinician")
        decided = f'rule == "{listed}" and decision != "listed"'
        accepted = c.condition(Located(f'last(reviews.decision, {decided}) == "accepted"', span), "accepted")
        accepted_on = c.expression(Located(f"last(reviews.date, {decided})", span))
        accepted = ir.And(living, accepted)
    elif "list" in cohort:
        raise RuleError(span_at(file, cohort, "list"), "list: names the list clinicians accept from",
                        "add accepted_by_clinician: true, or leave list: out")
    return ir.And(living, chosen), accepted, accepted_on


def _rule_selection(rule) -> ir.Node:
    """A rule's population and criteria: who its list would hold, before ranking and limits."""
    node = rule.population
    if rule.require is not None:
        node = ir.And(node, rule.require)
    for _, excluded in rule.exclude:
        node = ir.And(node, ir.Not(excluded))
    return node


def _categories(file: str, data, c: Compiler) -> tuple[Category, ...]:
    node = mapping_at(file, data, "categories", "name: {label, when, merge_into, tariff}")
    out: list[Category] = []
    keys = list(node)
    for i, key in enumerate(keys):
        span = key_span(file, node, key)
        if not CATEGORY_NAME.fullmatch(str(key)):
            raise RuleError(span, f"category name {str(key)[:40]!r}: use letters, digits, _, + and -",
                            "e.g. 2_physical or 4plus_mental")
        body = node[key] if node[key] is not None else CommentedMap()
        if not isinstance(body, CommentedMap):
            raise RuleError(span, f"category {key!r} must be a mapping", "give label: and when:")
        check_keys(file, body, CATEGORY_KEYS, f"category {key!r}")
        last = i == len(keys) - 1
        when = None
        if "when" in body:
            when = c.condition(Located(body["when"], span_at(file, body, "when")), f"category {key!r}")
        elif not last:
            raise RuleError(span, f"category {key!r} has no when:",
                            "only the last category may leave when: out (it takes everyone left)")
        if last and when is not None:
            raise RuleError(span_at(file, body, "when"), f"the last category {key!r} takes everyone left",
                            "leave its when: out, so that every cohort member has a category")
        merge = body.get("merge_into")
        if merge is not None and str(merge) not in keys:
            raise RuleError(span_at(file, body, "merge_into"), f"merge_into {merge!r} is not a category",
                            did_you_mean(str(merge), keys) or f"categories: {', '.join(map(str, keys))}")
        out.append(Category(str(key), str(body.get("label") or key), when, str(merge) if merge is not None else None,
                            _number(file, body, "tariff", None, 0.0, 1e7)))
    return tuple(out)


def _services(file: str, data) -> Services:
    node = data.get("services")
    if node is None:
        return Services(SETTINGS, None, (), OUT_OF_SCOPE)
    if not isinstance(node, CommentedMap):
        raise RuleError(span_at(file, data, "services"), "'services' must be a mapping",
                        "services: {settings: [emergency_admission, community]}")
    check_keys(file, node, SERVICE_KEYS, "services")
    settings = _names(file, node, "settings", SETTINGS)
    funding = _names(file, node, "exclude_funding", FUNDING)
    if funding is not None and FUNDING_DEFAULT in funding:
        raise RuleError(span_at(file, node, "exclude_funding"), "activity-funded services are what a budget covers",
                        f"exclude some of {', '.join(OUT_OF_SCOPE)}")
    return Services(settings if settings is not None else SETTINGS, _names(file, node, "include_providers"),
                    _names(file, node, "exclude_providers") or (), funding if funding is not None else OUT_OF_SCOPE)


def _names(file: str, node, key: str, allowed=None) -> tuple[str, ...] | None:
    if key not in node:
        return None
    seq = node[key]
    if not isinstance(seq, CommentedSeq):
        raise RuleError(span_at(file, node, key), f"{key} must be a list", f"{key}: [a, b]")
    for i, v in enumerate(seq):
        if allowed is not None and str(v) not in allowed:
            raise RuleError(span_at(file, seq, index=i), f"{key}: {v!r} is not one of {', '.join(allowed)}",
                            did_you_mean(str(v), allowed))
    return tuple(str(v) for v in seq)


def _baseline(file: str, tariffs) -> FinancialYear | None:
    if tariffs.get("baseline_year") is None:
        return None
    try:
        return parse_year(str(tariffs["baseline_year"]), option=None)
    except YearError as e:
        raise RuleError(span_at(file, tariffs, "baseline_year"), f"baseline_year: {e.message}", e.hint) from None


def _trim(file: str, tariffs) -> Trim:
    node = tariffs.get("trim")
    if node is None:
        return Trim()
    if not isinstance(node, CommentedMap):
        raise RuleError(span_at(file, tariffs, "trim"), "'trim' must be a mapping",
                        "trim: {above_percentile: 99, method: cap}")
    check_keys(file, node, TRIM_KEYS, "trim")
    return Trim(_number(file, node, "above_percentile", 99.0, 50.0, 100.0),
                _choice(file, node, "method", TRIM_METHODS, "cap"))


def _incentive(file: str, tariffs, c: Compiler, categories: list[str]) -> Incentive | None:
    node = tariffs.get("incentive")
    if node is None:
        return None
    if not isinstance(node, CommentedMap) or "amount" not in node or "when" not in node:
        raise RuleError(span_at(file, tariffs, "incentive"), "an incentive has amount: and when:",
                        'incentive: {amount: 24, when: "sessions_12m >= 6"}')
    check_keys(file, node, INCENTIVE_KEYS, "incentive")
    when = c.condition(Located(node["when"], span_at(file, node, "when")), "the incentive")
    chosen = _names(file, node, "categories", categories)
    return Incentive(_number(file, node, "amount", 0.0, 0.0, 1e6), when, str(node.get("label") or "incentive"), chosen)


def _risk_share(file: str, data) -> RiskShare | None:
    node = data.get("risk_share")
    if node is None:
        return None
    if not isinstance(node, CommentedMap) or not isinstance(node.get("bands"), CommentedSeq) or not node["bands"]:
        raise RuleError(span_at(file, data, "risk_share"), "a risk share has bands: (a list)",
                        "bands: [{up_to: 0.02, provider: 1.0}, {provider: 0.5}]")
    check_keys(file, node, RISK_KEYS, "risk_share")
    bands, seq, previous = [], node["bands"], 0.0
    for i, band in enumerate(seq):
        if not isinstance(band, CommentedMap):
            raise RuleError(span_at(file, seq, index=i), "a band is {up_to: fraction, provider: share}")
        check_keys(file, band, BAND_KEYS, "a risk-share band")
        up_to = _number(file, band, "up_to", None, 0.0, 10.0)
        last = i == len(seq) - 1
        if (up_to is None) != last or (up_to is not None and up_to <= previous):
            raise RuleError(span_at(file, seq, index=i), "bands run upwards: each but the last has up_to:, larger "
                            "than the one before; the last (beyond) has none",
                            "bands: [{up_to: 0.02, provider: 1.0}, {provider: 0.5}]")
        previous = up_to or previous
        bands.append(Band(up_to, _number(file, band, "provider", 0.5, 0.0, 1.0)))
    return RiskShare(tuple(bands), _number(file, node, "cap", None, 0.0, 10.0),
                     _number(file, node, "carry_forward", 0.0, 0.0, 1.0))


def _outcomes(file: str, data) -> tuple[Outcome, ...]:
    node = data.get("outcomes")
    if node is None:
        return ()
    node = mapping_at(file, data, "outcomes", "name: {kpi, kpis, target, reward, penalty}")
    out = []
    for key, body in node.items():
        span = key_span(file, node, key)
        if not isinstance(body, CommentedMap) or "kpi" not in body:
            raise RuleError(span, f"outcome {key!r} names its kpi:",
                            "e.g. {kpi: emergency_admissions, kpis: triple_aim}")
        check_keys(file, body, OUTCOME_KEYS, f"outcome {key!r}")
        period = body.get("period")
        out.append(Outcome(str(key), str(body["kpi"]), str(body.get("kpis") or "triple_aim"),
                           str(body.get("title") or body["kpi"]), _number(file, body, "target", None, -1e12, 1e12),
                           _choice(file, body, "direction", DIRECTIONS, None),
                           str(period) if period is not None else None,
                           _number(file, body, "reward", 0.0, 0.0, 1.0), _number(file, body, "penalty", 0.0, 0.0, 1.0)))
    return tuple(out)


def _number(file: str, node, key: str, default, lo: float, hi: float):
    v = node.get(key)
    if v is None:
        return default
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        raise RuleError(span_at(file, node, key), f"{key} must be a number from {lo:g} to {hi:g}, not {str(v)[:30]!r}")
    return float(v)


def _whole(file: str, node, key: str, default: int) -> int:
    v = node.get(key)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise RuleError(span_at(file, node, key), f"{key} must be a whole number of people, 0 or more")
    return v


def _choice(file: str, node, key: str, allowed, default):
    v = node.get(key)
    if v is None:
        return default
    if str(v) not in allowed:
        raise RuleError(span_at(file, node, key), f"{key} {str(v)[:30]!r} is not one of {', '.join(allowed)}",
                        did_you_mean(str(v), allowed))
    return str(v)
