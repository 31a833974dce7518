"""The fitted model as a JSON artefact: its coefficients on the raw features (the training
means and scales folded in), every feature as rules-language text, the codelists they read,
the training store's snapshot, the dates, the validation summary and a SHA-256 of all that.

It lives beside its spec, ``rules/models/NAME.model.json``, so it travels with the rules that
use it (a rule's ``model("NAME")`` reads it from the rules folder's ``models/``) and is
versioned with them. Loading checks the hash: an artefact edited by hand is refused."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from casefind.outputs import write_atomic
from casefind.rules import ir
from casefind.rules.errors import RuleError, Span
from casefind.rules.load import RULE_NAME, Located, rules_root

FORMAT = "casefind-model/1"
SUFFIX = ".model.json"
MAX_ARTEFACT_BYTES = 1024 * 1024


def artefact_path(spec_path: Path, name: str) -> Path:
    return spec_path.resolve().parent / f"{name}{SUFFIX}"


def digest(body: dict) -> str:
    """The SHA-256 of the artefact's content, ``sha256`` itself left out (canonical JSON)."""
    content = {k: v for k, v in body.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write(path: Path, body: dict) -> Path:
    body = dict(body, format=FORMAT)
    body["sha256"] = digest(body)
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(body, indent=2) + "\n"))


def read(path: Path, span: Span | None = None) -> dict:
    """An artefact, checked: its format and its hash (RuleErrors at ``span``, the use)."""
    where = span or Span(str(path), 1, 1)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RuleError(where, f"cannot read the model artefact {path}: {e.strerror}") from None
    if len(raw) > MAX_ARTEFACT_BYTES:
        raise RuleError(where, f"{path} is {len(raw):,} bytes: a model artefact is at most {MAX_ARTEFACT_BYTES:,}")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise RuleError(where, f"{path} is not a model artefact (not JSON: {e})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise RuleError(where, f"{path} is not a {FORMAT} artefact", "fit it again: casefind model fit SPEC.yml")
    if body.get("sha256") != digest(body):
        raise RuleError(where, f"{path} does not match its own sha256: it was changed after fitting",
                        "fit it again (casefind model fit) rather than editing the artefact")
    return body


def spec_changed(path: Path, body: dict) -> str | None:
    """A warning when the spec beside the artefact is not the one it was fitted from (edited,
    or gone), so nobody ranks patients by a model whose spec says something else."""
    given = (body.get("spec") or {}).get("file")
    if not given:
        return None
    spec = rules_root(path) / given
    try:
        now = hashlib.sha256(spec.read_bytes()).hexdigest()
    except OSError:
        return f"{body.get('name')}: its spec {given} is not there any more; the artefact is what was fitted"
    if now != body["spec"].get("sha256"):
        return (f"{body.get('name')}: its spec {given} has changed since the model was fitted; the artefact is "
                f"what was fitted: fit it again (casefind model fit {body.get('name')}) to use the spec as it is now")
    return None


def find(rule_path: Path, name: str, span: Span) -> Path:
    """Where ``model("name")`` in the rule at ``rule_path`` reads its artefact."""
    if not RULE_NAME.fullmatch(name):
        raise RuleError(span, f"{name[:40]!r} is not a model name: lower-case letters, digits and _",
                        'e.g. model("emergency_12m")')
    folder = rules_root(rule_path) / "models"
    path = folder / f"{name}{SUFFIX}"
    if not path.is_file():
        known = sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []
        raise RuleError(span, f"no fitted model {name!r}: {path} does not exist",
                        (f"fitted models here: {', '.join(known)}; " if known else "")
                        + f"fit one with: casefind model fit {folder / (name + '.yml')}")
    return path


@dataclass(frozen=True)
class ModelUse:
    """A rule's ``model("name")``: the expression, what a run records of the artefact (so a
    refitted model is visible in the run's manifest although the rule file is unchanged),
    and the codelists its features read."""
    node: ir.Node
    record: dict
    codelists: dict[str, ir.Codelist]


def model_node(rule_path: Path, name: str, span: Span, as_of) -> ModelUse:
    """``model("name")``: logistic(intercept + sum of coefficient * feature), each feature
    compiled from the artefact's rules-language text (a missing number is the training mean)."""
    from casefind.models.spec import compiler_for

    path = find(rule_path, name, span)
    body = read(path, span)
    if body.get("name") != name:
        raise RuleError(span, f"{path.name} holds model {str(body.get('name'))[:40]!r}, not {name!r}",
                        "an artefact is read by its model's name: fit the model again rather than renaming its file")
    at = Span(str(path), 1, 1)
    features = {k: Located(v, at) for k, v in body["features"].items()}
    codelists = {k: Located(v, at) for k, v in body.get("codelists", {}).items()}
    c = compiler_for(path, Located(name, at), as_of, codelists, features)
    total: ir.Node = ir.Const(float(body["intercept"]), ir.T.FLOAT)
    for p in body["predictors"]:
        x = _filled(c.feature(p["name"], at), float(p["mean"]))
        total = ir.binary("+", total, ir.binary("*", ir.Const(float(p["coefficient"]), ir.T.FLOAT), x))
    training = body.get("training", {})
    record = {"file": str(path.relative_to(rules_root(rule_path))), "sha256": body["sha256"],
              "version": body.get("version"), "title": body.get("title"),
              "trained_on_snapshot": training.get("snapshot_id"), "feature_date": training.get("date"),
              "predictors": [p["name"] for p in body["predictors"]],
              "c_statistic": body.get("validation", {}).get("c_statistic", {}).get("c")}
    return ModelUse(ir.func("logistic", (total,)), record, dict(c.codelists))


def _filled(x: ir.Node, mean: float) -> ir.Node:
    """A predictor as a number: true/false as 1/0, a missing number as ``mean``."""
    one, zero = ir.Const(1, ir.T.INT), ir.Const(0, ir.T.INT)
    if x.type is ir.T.BOOL:
        return ir.Case(((x, one),), zero)
    return ir.Case(((ir.binary("==", x, x), x),), ir.Const(mean, ir.T.FLOAT))


def linear_text(body: dict) -> str:
    """The linear predictor as rules-language text, for people reading the artefact."""
    terms = [f"{body['intercept']:.6g}"]
    terms += [f"{p['coefficient']:+.6g} * {p['name']}" for p in body["predictors"]]
    return " ".join(terms)
