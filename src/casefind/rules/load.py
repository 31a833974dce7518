"""Read a rule file's YAML keeping every value's position (ruamel.yaml), and check its shape.

The result is plain data plus a Span for each value, so that later stages can point at the
exact line and column of whatever they reject.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from casefind.rules.errors import RuleError, Span, did_you_mean

TOP_LEVEL = ("rule", "title", "version", "description", "as_of", "parameters", "population",
             "codelists", "features", "segments", "criteria", "rank_by", "limit", "output")
CRITERIA_KEYS = ("include", "require", "exclude")
LIMIT_KEYS = ("per_practice", "per_locality", "total")
OUTPUT_KEYS = ("columns", "evidence")


@dataclass(frozen=True)
class Located:
    """A YAML scalar and where it starts in the file."""

    value: object
    span: Span


@dataclass
class RuleSource:
    path: Path
    name: Located
    title: str = ""
    version: str = ""
    description: str = ""
    as_of: Located | None = None
    parameters: dict[str, Located] = field(default_factory=dict)
    population: Located | None = None
    codelists: dict[str, Located] = field(default_factory=dict)   # value: str path or dict
    features: dict[str, Located] = field(default_factory=dict)
    segments: list[tuple[str, Located]] = field(default_factory=list)
    include: dict[str, Located] = field(default_factory=dict)
    require: Located | None = None
    exclude: dict[str, Located] = field(default_factory=dict)
    rank_by: list[Located] = field(default_factory=list)
    limit: dict[str, Located] = field(default_factory=dict)
    output_columns: list[Located] = field(default_factory=list)
    evidence: Located | None = None
    span: Span | None = None


def _span(file: str, node, key=None, index=None) -> Span:
    try:
        if key is not None:
            line, col = node.lc.value(key)
        elif index is not None:
            line, col = node.lc.item(index)
        else:
            line, col = node.lc.line, node.lc.col
        return Span(file, line + 1, col + 1)
    except (AttributeError, KeyError, TypeError):
        return Span(file, 1, 1)


def _key_span(file: str, node, key) -> Span:
    try:
        line, col = node.lc.key(key)
        return Span(file, line + 1, col + 1)
    except (AttributeError, KeyError, TypeError):
        return _span(file, node)


def _mapping(file: str, parent, key, what: str) -> CommentedMap:
    node = parent[key]
    if not isinstance(node, CommentedMap):
        raise RuleError(_span(file, parent, key), f"'{key}' must be a mapping of {what}",
                        f"write it as\n    {key}:\n      name: ...")
    return node


def _check_keys(file: str, node: CommentedMap, allowed, where: str) -> None:
    for k in node:
        if k not in allowed:
            raise RuleError(_key_span(file, node, k), f"unknown key '{k}' in {where}",
                            did_you_mean(str(k), allowed) or f"allowed: {', '.join(allowed)}")


def _scalars(file: str, node: CommentedMap) -> dict[str, Located]:
    out = {}
    for k, v in node.items():
        if isinstance(v, (CommentedMap, CommentedSeq)) and not isinstance(v, CommentedMap):
            raise RuleError(_span(file, node, k), f"'{k}' must be a single expression, not a list")
        out[str(k)] = Located(v, _span(file, node, k))
    return out


def read_yaml(path: Path, not_a_mapping: str) -> CommentedMap:
    """A YAML file as a mapping that keeps positions; RuleErrors at file:line:col otherwise."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RuleError(None, f"cannot read {path}: {e.strerror}") from None
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file, 1, 1)
        raise RuleError(span, f"not valid YAML: {e.problem or e.context}",
                        "check indentation, and quote values that contain ': ' or start with a symbol") from None
    except Exception as e:  # ruamel raises a few unmarked errors on odd bytes
        raise RuleError(Span(file, 1, 1), f"not valid YAML: {e}") from None
    if not isinstance(data, CommentedMap):
        raise RuleError(Span(file, 1, 1), not_a_mapping)
    return data


def read_shared_sections(file: str, data: CommentedMap, src: RuleSource) -> None:
    """parameters, codelists and features: the sections rule files and KPI files share."""
    for key, what in (("parameters", "name: value"), ("codelists", "codelists"), ("features", "name: expression")):
        if data.get(key) is not None:
            node = _mapping(file, data, key, what)
            setattr(src, key, {str(k): Located(v, _span(file, node, k)) for k, v in node.items()})


def load_rule(path: str | Path) -> RuleSource:
    path = Path(path)
    file = str(path)
    data = read_yaml(path, "a rule file is a YAML mapping (rule:, population:, features:, ...)")
    _check_keys(file, data, TOP_LEVEL, "the rule file")
    if "rule" not in data:
        raise RuleError(Span(file, 1, 1), "the rule has no name", "add a first line such as: rule: frail")
    src = RuleSource(path, Located(str(data["rule"]), _span(file, data, "rule")), span=Span(file, 1, 1))
    src.title = str(data.get("title", "") or "")
    src.version = str(data.get("version", "") or "")
    src.description = str(data.get("description", "") or "")
    if "as_of" in data:
        src.as_of = Located(str(data["as_of"]), _span(file, data, "as_of"))
    if "population" in data:
        src.population = Located(data["population"], _span(file, data, "population"))
    read_shared_sections(file, data, src)
    if "segments" in data and data["segments"] is not None:
        seq = data["segments"]
        if not isinstance(seq, CommentedSeq):
            raise RuleError(_span(file, data, "segments"), "'segments' must be a list, in order of precedence",
                            "segments:\n  - end_of_life: exists(registers, register == \"palliative_care\", active)\n"
                            "  - mostly_healthy: true")
        for i, item in enumerate(seq):
            if not isinstance(item, CommentedMap) or len(item) != 1:
                raise RuleError(_span(file, seq, index=i), "each segment is one 'name: condition'")
            (k, v), = item.items()
            src.segments.append((str(k), Located(v, _span(file, item, k))))
    if "criteria" in data and data["criteria"] is not None:
        crit = _mapping(file, data, "criteria", "include / require / exclude")
        _check_keys(file, crit, CRITERIA_KEYS, "criteria")
        for key in ("include", "exclude"):
            if key in crit and crit[key] is not None:
                node = _mapping(file, crit, key, "name: condition")
                setattr(src, key, {str(k): Located(v, _span(file, node, k)) for k, v in node.items()})
        if "require" in crit:
            src.require = Located(str(crit["require"]), _span(file, crit, "require"))
    if "rank_by" in data and data["rank_by"] is not None:
        seq = data["rank_by"]
        items = seq if isinstance(seq, CommentedSeq) else [seq]
        src.rank_by = [Located(str(v), _span(file, seq, index=i) if isinstance(seq, CommentedSeq)
                               else _span(file, data, "rank_by")) for i, v in enumerate(items)]
    if "limit" in data and data["limit"] is not None:
        node = _mapping(file, data, "limit", "per_practice / per_locality / total")
        _check_keys(file, node, LIMIT_KEYS, "limit")
        src.limit = {str(k): Located(v, _span(file, node, k)) for k, v in node.items()}
    if "output" in data and data["output"] is not None:
        node = _mapping(file, data, "output", "columns / evidence")
        _check_keys(file, node, OUTPUT_KEYS, "output")
        if "columns" in node:
            cols = node["columns"]
            if not isinstance(cols, CommentedSeq):
                raise RuleError(_span(file, node, "columns"), "'columns' must be a list of feature names")
            src.output_columns = [Located(str(v), _span(file, cols, index=i)) for i, v in enumerate(cols)]
        if "evidence" in node:
            src.evidence = Located(node["evidence"], _span(file, node, "evidence"))
    return src
