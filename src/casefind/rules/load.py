"""Read a rule file's YAML keeping every value's position (ruamel.yaml), and check its shape.

The result is plain data plus a Span for each value, so that later stages can point at the
exact line and column of whatever they reject.

A rule file may come from anyone, so reading it is bounded: the file is at most
``MAX_DOCUMENT_BYTES``, UTF-8, its mappings and lists nest at most ``MAX_YAML_DEPTH`` deep, and YAML
aliases may not expand it beyond ``MAX_EXPANDED`` (a "billion laughs" file is refused before
anything walks it). Names are identifiers, because they become folder names, column names
and names in generated code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError

from casefind.rules.errors import RuleError, Span, did_you_mean

MAX_DOCUMENT_BYTES = 512 * 1024   # a rule or KPI file; the shipped ones are under 12 KB
MAX_YAML_DEPTH = 50               # nested mappings and lists
MAX_EXPANDED = 1_000_000          # characters (each value at least 1) once aliases are expanded
RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")        # the name of a rule or KPI set: a folder name
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")       # features, parameters, codelists, criteria
KEYWORDS = ("and", "or", "not", "in", "at", "true", "false")
RESERVED = ("patient", "population", "require", "segment")  # columns every evaluation already has
SUBFOLDERS = ("kpis", "budgets", "models", "evaluations")  # files here belong to the rules folder above them

TOP_LEVEL = ("rule", "title", "version", "description", "as_of", "parameters", "population",
             "codelists", "features", "segments", "cost", "criteria", "rank_by", "limit", "output")
CRITERIA_KEYS = ("include", "require", "exclude")
LIMIT_KEYS = ("per_practice", "per_locality", "total")
OUTPUT_KEYS = ("columns", "evidence", "round")


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
    cost: Located | None = None   # the numeric feature segment cost shares are of (cost: cost_12m)
    include: dict[str, Located] = field(default_factory=dict)
    require: Located | None = None
    exclude: dict[str, Located] = field(default_factory=dict)
    rank_by: list[Located] = field(default_factory=list)
    limit: dict[str, Located] = field(default_factory=dict)
    output_columns: list[Located] = field(default_factory=list)
    output_round: dict[str, Located] = field(default_factory=dict)
    evidence: Located | None = None
    span: Span | None = None


def span_at(file: str, node, key=None, index=None) -> Span:
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


def key_span(file: str, node, key) -> Span:
    try:
        line, col = node.lc.key(key)
        return Span(file, line + 1, col + 1)
    except (AttributeError, KeyError, TypeError):
        return span_at(file, node)


def mapping_at(file: str, parent, key, what: str) -> CommentedMap:
    node = parent[key]
    if not isinstance(node, CommentedMap):
        raise RuleError(span_at(file, parent, key), f"'{key}' must be a mapping of {what}",
                        f"write it as\n    {key}:\n      name: ...")
    return node


def check_keys(file: str, node: CommentedMap, allowed, where: str) -> None:
    for k in node:
        if k not in allowed:
            raise RuleError(key_span(file, node, k), f"unknown key '{k}' in {where}",
                            did_you_mean(str(k), allowed) or f"allowed: {', '.join(allowed)}")


def _scalars(file: str, node: CommentedMap) -> dict[str, Located]:
    out = {}
    for k, v in node.items():
        if isinstance(v, (CommentedMap, CommentedSeq)) and not isinstance(v, CommentedMap):
            raise RuleError(span_at(file, node, k), f"'{k}' must be a single expression, not a list")
        out[str(k)] = Located(v, span_at(file, node, k))
    return out


def read_yaml(path: Path, not_a_mapping: str) -> CommentedMap:
    """A YAML file as a mapping that keeps positions; RuleErrors at file:line:col otherwise."""
    file = str(path)
    text = read_text_file(path, None, "rule file", MAX_DOCUMENT_BYTES)
    yaml = YAML(typ="rt")
    yaml.max_depth = MAX_YAML_DEPTH  # checked as it parses: deep nesting costs nothing first
    try:
        data = yaml.load(text)
    except MaxDepthExceededError as e:
        mark = e.problem_mark
        raise RuleError(Span(file, mark.line + 1, mark.column + 1), f"the YAML nests more than {MAX_YAML_DEPTH} "
                        "levels deep", "a rule file is a few levels of mappings and lists") from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file, 1, 1)
        raise RuleError(span, f"not valid YAML: {e.problem or e.context}",
                        "check indentation, and quote values that contain ': ' or start with a symbol") from None
    except RecursionError:
        raise RuleError(Span(file, 1, 1), f"the YAML nests too deeply (more than {MAX_YAML_DEPTH} levels)",
                        "a rule file is a few levels of mappings and lists") from None
    except Exception as e:  # ruamel raises a few unmarked errors on odd bytes
        raise RuleError(Span(file, 1, 1), f"not valid YAML: {e}") from None
    if not isinstance(data, CommentedMap):
        raise RuleError(Span(file, 1, 1), not_a_mapping)
    _check_expansion(file, data)
    return data


def read_text_file(path: Path, span: Span | None, what: str, max_bytes: int) -> str:
    """A file's text, refused when too large or not UTF-8 (located at the first bad byte).
    ``span`` is where the file is named (a codelist entry), or None for the file itself."""
    try:
        size = path.stat().st_size
        raw = path.read_bytes() if size <= max_bytes else b""
    except OSError as e:
        raise RuleError(span, f"cannot read {path}: {e.strerror}") from None
    if size > max_bytes:
        raise RuleError(span or Span(str(path), 1, 1), f"{path} is {size:,} bytes: a {what} may be at most "
                        f"{max_bytes:,}", "split it, or check that this is the file you meant")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise RuleError(Span(str(path), line, col), f"{path} is not UTF-8 text: byte 0x{raw[e.start]:02x} "
                        f"cannot be decoded", "save the file as UTF-8") from None


def _check_expansion(file: str, data) -> None:
    """Refuse a document whose aliases expand it beyond MAX_EXPANDED characters. Aliased
    collections are shared objects, so each is sized once (memoised by id), without expanding."""
    size: dict[int, int] = {}
    in_progress: set[int] = set()  # an alias to one of these from inside it is a cycle
    stack = [(data, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in size or (not children_done and id(node) in in_progress):
            continue
        items = _yaml_children(node)
        if not children_done:
            in_progress.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in items if isinstance(c, (dict, list)) and id(c) not in size)
            continue
        total = 1
        for c in items:
            if isinstance(c, (dict, list)):
                if id(c) not in size:
                    raise RuleError(span_at(file, node), "a YAML alias refers to a collection that contains it")
                total += size[id(c)]
            else:
                total += max(1, len(str(c)) if isinstance(c, str) else 1)
        if total > MAX_EXPANDED:
            raise RuleError(span_at(file, node), f"YAML aliases expand this to more than {MAX_EXPANDED:,} characters",
                            "write the values out, or use fewer aliases (&name / *name)")
        in_progress.discard(id(node))
        size[id(node)] = total


def _yaml_children(node) -> list:
    if isinstance(node, dict):
        return [x for kv in node.items() for x in kv]
    if isinstance(node, list):
        return list(node)
    return []


def check_name(span: Span, name: object, what: str) -> str:
    """A feature, parameter, codelist, criterion or segment name: an identifier expressions
    can refer to (and that generated code and list columns can carry)."""
    text = str(name)
    if not NAME.fullmatch(text) or text in KEYWORDS:
        raise RuleError(span, f"{what} name {_shown(text)} is not a name: use letters, digits and _, "
                        "starting with a letter or _, at most 64 characters", "e.g. emergency_12m")
    return text


def check_set_name(span: Span, name: object, what: str) -> str:
    """The name of a rule (or KPI set): it names the output folder, so it is a plain
    lower-case identifier, never a path."""
    text = str(name)
    if not RULE_NAME.fullmatch(text):
        raise RuleError(span, f"{what} name {_shown(text)} must be lower-case letters, digits and _, "
                        "starting with a letter, at most 64 characters",
                        "it names the output folder, e.g. frail_crisis")
    return text


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def rules_root(path: Path) -> Path:
    """The folder tree a rule file's codelists (and other files) must lie in: the rule's own
    folder, or the rules folder above it for a file in one of its SUBFOLDERS."""
    folder = path.resolve().parent
    return folder.parent if folder.name in SUBFOLDERS else folder


def confined(path: Path, given: str, span: Span, what: str) -> Path:
    """``given`` (relative to the rule file's folder) resolved, refused when it leaves the
    rules folder tree: a rule file must not read arbitrary files on the machine."""
    root = rules_root(path)
    target = (path.resolve().parent / given).resolve()
    if not target.is_relative_to(root):
        raise RuleError(span, f"{what} {given!r} is outside the rules folder {root}",
                        "keep codelists beside the rules, e.g. codelists/name.csv")
    return target


def read_shared_sections(file: str, data: CommentedMap, src: RuleSource) -> None:
    """parameters, codelists and features: the sections rule files and KPI files share."""
    for key, what in (("parameters", "name: value"), ("codelists", "codelists"), ("features", "name: expression")):
        if data.get(key) is not None:
            node = mapping_at(file, data, key, what)
            setattr(src, key, _named(file, node, key.rstrip("s")))


def read_spec(path: Path, kind: str, top_level, required, hint: str, *, shape: str,
              unnamed: str | None = None, required_hint: str | None = None) -> CommentedMap:
    """A YAML file of one kind (a rule, a budget, a scenario, an evaluation) as a mapping,
    after the checks every kind makes first, so each says them in the same words: it is a
    mapping (else ``shape``), it has only ``top_level`` keys, it is named by its ``kind:``
    key (else ``unnamed``, with ``hint``) and each key of ``required`` is given, not empty."""
    file = str(path)
    data = read_yaml(path, shape)
    check_keys(file, data, top_level, f"the {kind} file")
    if kind not in data:
        raise RuleError(Span(file, 1, 1), unnamed or f"the {kind} file has no name", hint)
    for key in required:
        if data.get(key) is None:
            raise RuleError(Span(file, 1, 1), f"the {kind} file has no {key}:", required_hint)
    return data


def spec_source(path: Path, data: CommentedMap, kind: str) -> RuleSource:
    """What a file's expressions compile against: its name from the ``kind:`` key (checked),
    its parameters, codelists and features."""
    file = str(path)
    span = span_at(file, data, kind)
    name = check_set_name(span, data[kind], f"the {kind}")
    src = RuleSource(path, Located(name, span), span=Span(file, 1, 1))
    read_shared_sections(file, data, src)
    return src


def _named(file: str, node: CommentedMap, what: str) -> dict[str, Located]:
    """name: value entries of a section, each name checked."""
    out = {}
    for k, v in node.items():
        name = check_name(key_span(file, node, k), k, what)
        if what == "feature" and name in RESERVED:
            raise RuleError(key_span(file, node, k),
                            f"{name!r} is used by casefind itself: choose another feature name")
        out[name] = Located(v, span_at(file, node, k))
    return out


def load_rule(path: str | Path) -> RuleSource:
    path = Path(path)
    file = str(path)
    data = read_spec(path, "rule", TOP_LEVEL, (), "add a first line such as: rule: frail",
                     shape="a rule file is a YAML mapping (rule:, population:, features:, ...)",
                     unnamed="the rule has no name")
    src = spec_source(path, data, "rule")
    src.title = str(data.get("title", "") or "")
    src.version = str(data.get("version", "") or "")
    src.description = str(data.get("description", "") or "")
    if "as_of" in data:
        src.as_of = Located(str(data["as_of"]), span_at(file, data, "as_of"))
    if "population" in data:
        src.population = Located(data["population"], span_at(file, data, "population"))
    if "segments" in data and data["segments"] is not None:
        seq = data["segments"]
        if not isinstance(seq, CommentedSeq):
            raise RuleError(span_at(file, data, "segments"), "'segments' must be a list, in order of precedence",
                            "segments:\n  - end_of_life: exists(registers, register == \"palliative_care\", active)\n"
                            "  - mostly_healthy: true")
        for i, item in enumerate(seq):
            if not isinstance(item, CommentedMap) or len(item) != 1:
                raise RuleError(span_at(file, seq, index=i), "each segment is one 'name: condition'")
            (k, v), = item.items()
            src.segments.append((check_name(key_span(file, item, k), k, "segment"), Located(v, span_at(file, item, k))))
    if data.get("cost") is not None:
        src.cost = Located(str(data["cost"]), span_at(file, data, "cost"))
    if "criteria" in data and data["criteria"] is not None:
        crit = mapping_at(file, data, "criteria", "include / require / exclude")
        check_keys(file, crit, CRITERIA_KEYS, "criteria")
        for key in ("include", "exclude"):
            if key in crit and crit[key] is not None:
                node = mapping_at(file, crit, key, "name: condition")
                setattr(src, key, _named(file, node, "criterion"))
        if "require" in crit:
            src.require = Located(str(crit["require"]), span_at(file, crit, "require"))
    if "rank_by" in data and data["rank_by"] is not None:
        seq = data["rank_by"]
        items = seq if isinstance(seq, CommentedSeq) else [seq]
        src.rank_by = [Located(str(v), span_at(file, seq, index=i) if isinstance(seq, CommentedSeq)
                               else span_at(file, data, "rank_by")) for i, v in enumerate(items)]
    if "limit" in data and data["limit"] is not None:
        node = mapping_at(file, data, "limit", "per_practice / per_locality / total")
        check_keys(file, node, LIMIT_KEYS, "limit")
        src.limit = {str(k): Located(v, span_at(file, node, k)) for k, v in node.items()}
    if "output" in data and data["output"] is not None:
        node = mapping_at(file, data, "output", "columns / evidence / round")
        check_keys(file, node, OUTPUT_KEYS, "output")
        if "columns" in node:
            cols = node["columns"]
            if not isinstance(cols, CommentedSeq):
                raise RuleError(span_at(file, node, "columns"), "'columns' must be a list of feature names")
            src.output_columns = [Located(str(v), span_at(file, cols, index=i)) for i, v in enumerate(cols)]
        if "evidence" in node:
            src.evidence = Located(node["evidence"], span_at(file, node, "evidence"))
        if node.get("round") is not None:
            rnd = mapping_at(file, node, "round", "feature: decimal places")
            src.output_round = {str(k): Located(v, span_at(file, rnd, k)) for k, v in rnd.items()}
    return src
