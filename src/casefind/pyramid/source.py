"""What the pyramid ranks: a population and a score per patient, from a rule (its population
and one named feature) or from a fitted model (``model("NAME")`` over the population it was
fitted on; docs/models.md)."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from casefind.errors import UsageError
from casefind.rules import ir
from casefind.rules.compile import CompiledRule, Compiler
from casefind.rules.errors import Span, did_you_mean
from casefind.rules.load import Located, RuleSource


@dataclass(frozen=True)
class Scored:
    """The population ranked, the score it is ranked by, and where both came from."""

    name: str         # the rule's or the model's
    title: str
    path: Path        # the file the score is defined in
    file_sha256: str
    as_of: dt.date    # the end of the outcome year
    population: ir.Node
    score: ir.Node
    score_name: str   # the feature, or model("NAME")
    notes: tuple[str, ...] = ()  # warnings about the source (a model's spec changed since fitting)

    def compiler(self) -> Compiler:
        """A compiler for expressions beside the score (the outcomes), in its file's folder."""
        return Compiler(RuleSource(self.path, Located(self.name, Span(str(self.path), 1, 1))), {})


def from_rule(rule: CompiledRule, feature: str) -> Scored:
    """The rule's population, ranked by its feature ``feature`` (a number per patient)."""
    if feature not in rule.features:
        raise UsageError(f"the rule {rule.name} has no feature {feature!r}",
                         did_you_mean(feature, rule.features) or f"features: {', '.join(rule.features)}",
                         option="--score")
    node = rule.features[feature]
    if node.type not in ir.NUMERIC or not node.domain.per_patient:
        raise UsageError(f"{feature} is a {node.type.value}, not a number per patient: the pyramid ranks by a score",
                         "name a numeric feature, e.g. a risk score", option="--score")
    return Scored(rule.name, rule.title, rule.path, rule.file_sha256, rule.as_of, rule.population, node, feature)


def from_model(artefact: Path, as_of: dt.date) -> Scored:
    """A fitted model's artefact (rules/models/NAME.model.json): its population as fitted,
    ranked by its probability, ``model("NAME")``."""
    from casefind.models.artefact import SUFFIX, read, spec_changed

    name = artefact.name[: -len(SUFFIX)]
    body = read(artefact)
    changed = spec_changed(artefact, body)
    rule_path = artefact.resolve().parent.parent / f"{name}.pyramid"  # model("NAME") looks in its models/
    c = Compiler(RuleSource(rule_path, Located(name, Span(str(artefact), 1, 1))), {})
    c.as_of = as_of
    at = Span(str(artefact), 1, 1)
    population = c.condition(Located(str(body.get("population") or "registered and alive"), at), "population")
    score = c.expression(Located(f'model("{name}")', at))
    return Scored(name, str(body.get("title") or name), artefact, hashlib.sha256(artefact.read_bytes()).hexdigest(),
                  as_of, population, score, f'model("{name}")', (changed,) if changed else ())
