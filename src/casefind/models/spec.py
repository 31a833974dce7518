"""Read a model spec (rules/models/NAME.yml) with located errors and compile its features,
population and outcome with the rules compiler, so a model's predictors mean exactly what
the same text means in a rule.

A spec's codelist paths are relative to the rules folder above ``models/`` (the same text a
rule beside it would write), because its artefact is compiled from that folder."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from casefind.rules import ir
from casefind.rules.compile import Compiler, check_as_of
from casefind.rules.errors import RuleError, Span
from casefind.rules.load import (
    Located,
    RuleSource,
    check_keys,
    check_name,
    check_set_name,
    read_shared_sections,
    read_yaml,
    rules_root,
    span_at,
)

TOP_LEVEL = ("model", "title", "version", "description", "as_of", "population", "outcome",
             "codelists", "features", "predictors", "regularisation", "baseline")
HORIZON_MONTHS = 12          # the outcome is counted over the 12 months after the feature date
DEFAULT_C = 1.0              # scikit-learn's inverse L2 strength on standardised features
DEFAULT_BASELINE = 'count(activity, setting == "emergency_admission", within=months(12))'
# attributes whose value on the feature date already tells the future
_FUTURE_ATTRIBUTES = ("death_date", "registration_end")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    version: str
    path: Path
    sha256: str
    as_of: dt.date                     # T: the validation outcome ends here
    population: Located
    outcome: Located
    baseline: Located                  # a count whose ranking is the simple baseline
    codelists: dict[str, Located]
    features: dict[str, Located]
    predictors: tuple[str, ...]
    c: float


@dataclass(frozen=True)
class CompiledSpec:
    spec: ModelSpec
    population: ir.Node
    outcome: ir.Node
    baseline: ir.Node
    predictors: dict[str, ir.Node]
    leaks: dict[str, str]              # predictor -> why it may look after the feature date


def compile_dir(path: Path) -> Path:
    """The folder a spec's (and its artefact's) codelists are relative to: the rules folder."""
    return rules_root(path)


def load_spec(path: str | Path) -> ModelSpec:
    path = Path(path)
    file = str(path)
    data = read_yaml(path, "a model spec is a mapping: model:, as_of:, population:, outcome:, features:")
    check_keys(file, data, TOP_LEVEL, "a model spec")
    for key in ("model", "as_of", "outcome", "features"):
        if key not in data:
            raise RuleError(Span(file, 1, 1), f"the model spec has no {key}:",
                            "see rules/models/emergency_12m.yml for a complete spec")
    name = check_set_name(span_at(file, data, "model"), data["model"], "model")
    src = RuleSource(path=path, name=Located(name, span_at(file, data, "model")))
    read_shared_sections(file, data, src)
    if not src.features:
        raise RuleError(span_at(file, data, "features"), "the model has no features")
    return ModelSpec(
        name=name, title=str(data.get("title", "")), version=str(data.get("version", "")), path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        as_of=check_as_of(data["as_of"], span_at(file, data, "as_of"), None),
        population=_scalar(file, data, "population", "registered and alive"),
        outcome=_scalar(file, data, "outcome", None), baseline=_scalar(file, data, "baseline", DEFAULT_BASELINE),
        codelists=src.codelists, features=src.features,
        predictors=_predictors(file, data, src.features), c=_regularisation(file, data))


def _scalar(file: str, data: CommentedMap, key: str, default: str | None) -> Located:
    if key not in data:
        return Located(default, Span(file, 1, 1))
    value = data[key]
    if isinstance(value, (CommentedMap, CommentedSeq)):
        raise RuleError(span_at(file, data, key), f"{key} must be one expression")
    return Located(value, span_at(file, data, key))


def _predictors(file: str, data: CommentedMap, features: dict[str, Located]) -> tuple[str, ...]:
    """The features the model uses (default: all of them; others may be steps of these)."""
    given = data.get("predictors")
    if given is None:
        return tuple(features)
    if not isinstance(given, CommentedSeq) or not given:
        raise RuleError(span_at(file, data, "predictors"), "predictors must be a list of feature names",
                        "predictors: [age, emergency_12m]")
    out = []
    for i, value in enumerate(given):
        span = span_at(file, given, index=i)
        name = check_name(span, value, "predictor")
        if name not in features:
            raise RuleError(span, f"predictor {name!r} is not a feature", "define it under features:")
        out.append(name)
    return tuple(dict.fromkeys(out))


def _regularisation(file: str, data: CommentedMap) -> float:
    if "regularisation" not in data:
        return DEFAULT_C
    value = data["regularisation"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e6:
        raise RuleError(span_at(file, data, "regularisation"),
                        "regularisation is C, the inverse L2 strength: a number above 0 (at most 1e6)",
                        "regularisation: 1.0 (smaller shrinks the coefficients more)")
    return float(value)


def compiler_for(path: Path, name: Located, as_of: dt.date, codelists: dict[str, Located],
                 features: dict[str, Located]) -> Compiler:
    """A rules compiler over a model's features, codelists read from the rules folder."""
    src = RuleSource(path=compile_dir(path) / path.name, name=name, codelists=codelists, features=features)
    c = Compiler(src, {})
    c.as_of = as_of
    return c


def compile_spec(spec: ModelSpec) -> CompiledSpec:
    c = compiler_for(spec.path, Located(spec.name, Span(str(spec.path), 1, 1)), spec.as_of,
                     spec.codelists, spec.features)
    predictors = {}
    for name in spec.predictors:
        node = c.feature(name, spec.features[name].span)
        if node.type not in (ir.T.INT, ir.T.FLOAT, ir.T.BOOL):
            raise RuleError(spec.features[name].span, f"predictor {name!r} is a {node.type.value}: "
                            "a model's predictors are numbers or true/false",
                            'compare it, e.g. sex == "F", or use it in case(...)')
        predictors[name] = node
    population = c.condition(spec.population, "the population") if spec.population.value else ir.Const(True, ir.T.BOOL)
    outcome = c.condition(spec.outcome, "the outcome")
    baseline = c.expression(spec.baseline)
    if baseline.type not in ir.NUMERIC or not baseline.domain.per_patient:
        raise RuleError(spec.baseline.span, "the baseline is a number per patient, e.g. a count")
    leaks = {n: why for n, node in predictors.items() if (why := looks_ahead(node)) is not None}
    return CompiledSpec(spec, population, outcome, baseline, predictors, leaks)


def looks_ahead(node: ir.Node) -> str | None:
    """Why ``node`` may read after its evaluation date (None: it cannot), checked on the IR:
    a date moved forward (``at as_of + months(12)``) or an attribute that is a future date."""
    for x in ir.walk(node, (ir.ROWS, ir.DATE)):
        if isinstance(x, ir.Shift) and (x.months > 0 or x.days > 0):
            return "moves a date forward, so it can read after the feature date"
        if isinstance(x, ir.Attr) and x.name in _FUTURE_ATTRIBUTES:
            return f"uses {x.name}, which may lie after the feature date"
    return None

