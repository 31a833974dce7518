"""A compiled rule as a governance description: plain data that Markdown, HTML and JSON show.

Everything here is read from what ``casefind run`` runs: the compiled rule's IR (worded by
words.py), its codelists and their provenance sidecars, the tables and columns the IR reads
(catalogue/reads.py), the list's columns as lists/table.py builds them (from an empty list,
so the order and names are the code's own), the list policy's exclusions (lists/select.py)
and the dataset's opt-out default (lists/dataset.py). Only the rationale and sources come
from the rule file's header comment, as its author wrote them.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from casefind.describe.words import ATTRIBUTE_WORDS, Words
from casefind.rules import ir
from casefind.rules.compile import CompiledRule

_TYPE_WORDS = {ir.T.BOOL: "yes/no", ir.T.INT: "whole number", ir.T.FLOAT: "number", ir.T.DATE: "date",
               ir.T.TEXT: "text", ir.T.CODE: "code"}
_LIMITS = {"per_practice": "per practice", "per_locality": "per locality", "total": "in total"}
OPT_OUT_WORDS = {"type1": "a type 1 opt-out (an objection recorded at the GP practice)",
                 "ndo": "a national data opt-out"}
_FIXED_COLUMNS = {
    "run_id": "the run's id (which run made the list)", "rule": "the rule's name", "as_of": "the list date",
    "practice": "the patient's GP practice (ODS code)", "locality": "the practice's locality",
    "patient_id": "the patient's pseudonymised id: no NHS number, name, address or date of birth",
    "rank": "the patient's rank within the practice", "segment": "the segment the patient falls in",
    "reasons": "why the patient is listed, one sentence per criterion met",
    "decision": "filled in by the reviewing clinician", "decided_on": "filled in by the reviewing clinician",
    "reviewer": "filled in by the reviewing clinician", "note": "filled in by the reviewing clinician",
}


@dataclass
class Named:
    """A named part of the rule (a feature, criterion, segment or column) and its words."""

    name: str
    words: str
    note: str | None = None


@dataclass
class Description:
    rule: str
    title: str
    version: str
    file: str
    sha256: str
    as_of: str
    summary: str
    header: list[Named]                      # the header comment's labelled paragraphs
    population: str
    include: list[Named]
    require: str
    exclude: list[Named]
    list_policy: list[str]                   # who is never listed, whatever the rule says
    segments: list[Named]
    ranking: str
    features: list[Named]
    parameters: list[Named]
    codelists: list[dict]
    reads: dict[str, list[str]]
    attributes: list[Named]
    columns: list[Named]
    outputs: list[str]                       # what leaves the system, in sentences
    opt_out: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def describe(rule: CompiledRule) -> Description:
    """The description of a compiled rule (``compile_rule(path)``)."""
    from casefind.catalogue import header

    text = _header_text(rule.path)
    sections = header.header_sections(text)
    names: dict[ir.Node, str] = {}
    for name, node in rule.features.items():
        names.setdefault(node, name)
    words = Words(names)
    include = [Named(k, _criterion(words, n), rule.reasons.get(k)) for k, n in rule.include]
    return Description(
        rule=rule.name, title=rule.title, version=rule.version, file=Path(rule.path).name,
        sha256=rule.file_sha256, as_of=rule.as_of.isoformat(), summary=sections.get("summary", ""),
        header=[Named(k, v[:1].upper() + v[1:]) for k, v in sections.items() if k != "summary"],
        population=_sentence(words.of(rule.population, top=True)),
        include=include, require=_require(rule, words),
        exclude=[Named(k, _criterion(words, n)) for k, n in rule.exclude],
        list_policy=list_policy(), segments=[Named(k, _segment(words, n)) for k, n in rule.segments],
        ranking=_ranking(rule),
        features=[Named(k, _model_sentence(rule, n) or _sentence(words.of(n, top=True)), _TYPE_WORDS[n.type])
                  for k, n in rule.features.items()],
        parameters=_parameters(rule),
        codelists=[_codelist(k, cl) for k, cl in _codelists(rule).items()],
        **_reads(rule), columns=list_columns(rule), outputs=_outputs(rule), opt_out=opt_out_policy(),
        notes=_notes(rule))


def _model_sentence(rule: CompiledRule, node: ir.Node) -> str | None:
    """A fitted model's probability in words a board can read (its formula is in the artefact
    and ``casefind model show``), or None when ``node`` is not a model."""
    name = next((k for k, n in rule.model_nodes.items() if n == node), None)
    if name is None:
        return None
    m = rule.models[name]
    c = f", c-statistic {m['c_statistic']:.3f} on validation" if m.get("c_statistic") is not None else ""
    return (f"The probability from the fitted model `{name}` ({m.get('title') or name}): a logistic regression on "
            f"{len(m['predictors'])} predictors ({', '.join(m['predictors'])}), fitted on features at "
            f"{m['feature_date']}{c}; artefact {m['file']}, sha256 `{m['sha256']}`. "
            f"`casefind model show {name}` gives its coefficients.")


def _header_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _criterion(words: Words, node: ir.Node) -> str:
    """A criterion in words; one that is a feature says what the feature is too."""
    text = words.of(node)
    if node in words.names:
        text += f" ({words.of(node, top=True)})"
    return _sentence(text)


def _segment(words: Words, node: ir.Node) -> str:
    if isinstance(node, ir.Const) and node.value is True:
        return "Everyone not in an earlier segment."
    return _criterion(words, node)


def _require(rule: CompiledRule, words: Words) -> str:
    if not rule.include:
        return "Everyone in the population is a candidate (the rule has no include criteria)."
    if len(rule.include) == 1:
        return "A patient must meet the include criterion."
    by_name = {node: name for name, node in rule.include}
    inner = Words({**words.names, **by_name})
    from casefind.rules.compile import joined  # how the compiler joins them for require: all / any

    criteria = [n for _, n in rule.include]
    if rule.require == joined("and", criteria):
        return "A patient must meet every include criterion (all)."
    if rule.require == joined("or", criteria):
        return "A patient must meet at least one include criterion (any)."
    return f"A patient must meet this combination of the include criteria: {inner.of(rule.require, top=True)}."


def list_policy() -> list[str]:
    """Who never appears on a review list, whatever the rule says (lists/select.py)."""
    from casefind.lists.select import ListPolicy

    policy, out = ListPolicy(), []
    if policy.exclude_dead:
        out.append("anyone who had died by the list date")
    if policy.exclude_deregistered:
        out.append("anyone not registered with a GP practice on the list date")
    for kind in policy.opt_out_kinds:
        out.append(f"anyone with {OPT_OUT_WORDS.get(kind, kind)} recorded by the list date")
    return out


def opt_out_policy() -> list[str]:
    """The opt-out policy of a review list and of a dataset, from the code that applies them."""
    from casefind.contract.schema import OPT_OUT_KINDS
    from casefind.lists.dataset import DEFAULT_OPT_OUT, OPT_OUT_POLICIES, OPT_OUT_STATEMENTS
    from casefind.lists.select import ListPolicy

    kept = [k for k in OPT_OUT_KINDS if k not in ListPolicy().opt_out_kinds]
    applied = " and ".join(OPT_OUT_WORDS.get(k, k) for k in ListPolicy().opt_out_kinds) or "no opt-out"
    lines = [f"A review list is for direct care: patients with {applied} are never listed, and `casefind run` "
             "checks the list again for them before it is written."]
    if kept:
        lines.append(f"{_sentence(' and '.join(OPT_OUT_WORDS.get(k, k) for k in kept))[:-1]} does not apply to "
                     "direct care, so it does not keep a patient off a review list.")
    kinds = " or ".join(OPT_OUT_WORDS.get(k, k) for k in OPT_OUT_POLICIES[DEFAULT_OPT_OUT]) or "no opt-out"
    lines.append(f"A dataset of this rule (`casefind dataset`) applies the opt-out policy `{DEFAULT_OPT_OUT}` "
                 f"unless told otherwise, leaving out anyone with {kinds}: "
                 f"{OPT_OUT_STATEMENTS[DEFAULT_OPT_OUT]}.")
    return lines


def _ranking(rule: CompiledRule) -> str:
    order = [f"`{name}` ({'highest' if desc else 'lowest'} first)" for name, _, desc in rule.rank_by]
    text = ("Within each practice, patients are ranked by " + ", then ".join(order) + ".") if order else \
        "Patients are listed in the store's order (the rule ranks by nothing)."
    caps = [f"{n:,} {_LIMITS.get(k, k)}" for k, n in rule.limit.items()]
    return text + (f" The list keeps at most {' and '.join(caps)}." if caps else " The list is not capped.")


def _parameters(rule: CompiledRule) -> list[Named]:
    from casefind.catalogue import header
    from casefind.errors import CasefindError
    from casefind.rules.load import read_yaml

    try:
        data = read_yaml(Path(rule.path), "")
        notes = header.trailing_comments(data.get("parameters")) if data.get("parameters") else {}
    except CasefindError:
        notes = {}
    return [Named(k, _value(p.value), notes.get(k)) for k, p in rule.parameters.items()]


def _value(v: object) -> str:
    return v.isoformat() if isinstance(v, dt.date) else str(v)


def _codelists(rule: CompiledRule) -> dict[str, ir.Codelist]:
    """The rule's codelists, a fitted model's (``model()``) among them (the compiler adds them)."""
    return dict(rule.codelists)


def _nodes(rule: CompiledRule) -> list[ir.Node]:
    nodes = [rule.population, *rule.features.values(), *(n for _, n in rule.include),
             *(n for _, n in rule.exclude), *(n for _, n in rule.segments), *(n for _, n, _ in rule.rank_by)]
    return nodes + ([rule.require] if rule.require is not None else [])


def _codelist(name: str, cl: ir.Codelist) -> dict:
    """A codelist by name, source and size (catalogue.describe.codelist_info's fields)."""
    from casefind.catalogue.describe import codelist_info

    info = dataclasses.asdict(codelist_info(name, cl))
    keep = ("name", "system", "file", "sha256", "codes", "prefixes", "categories", "selected_categories",
            "file_rows", "what", "source", "release", "licence", "date_retrieved", "sidecar")
    return {k: info[k] for k in keep}


def _reads(rule: CompiledRule) -> dict:
    from casefind.catalogue.reads import reads

    tables, attributes = reads(_nodes(rule))
    shown = set(attributes) | {c for c in rule.output_columns if c in ir.PATIENT_ATTRIBUTES}
    return {"reads": tables, "attributes": [Named(a, ATTRIBUTE_WORDS[a]) for a in sorted(shown)]}


def list_columns(rule: CompiledRule) -> list[Named]:
    """The review list's columns, in order, as lists/table.py builds them (from an empty list)."""
    import numpy as np
    import pyarrow as pa

    from casefind.lists.table import list_table

    empty = {"patient": pa.array([], pa.int64()), "segment": pa.array([], pa.string())}
    for c in rule.output_columns:
        empty[c] = pa.array([], pa.null())
    for kind, criteria in (("include", rule.include), ("exclude", rule.exclude)):
        for name, _ in criteria:
            empty[f"{kind}:{name}"] = pa.array([], pa.bool_())
    who = {k: pa.array([], pa.string()) for k in ("practice", "locality", "patient_id")}
    table = list_table(rule, pa.table(empty), np.array([], np.int64), who, "",
                       {name: {} for name, _ in rule.include})
    from casefind.lists.practice_file import columns, title_of

    practice = set(columns(table))
    return [Named(c, _column_meaning(rule, c), title_of(c) if c in practice else None) for c in table.column_names]


def _column_meaning(rule: CompiledRule, column: str) -> str:
    kind, _, name = column.partition(":")
    if name and kind == "include":
        return f"whether the patient meets the include criterion `{name}` (yes/no)"
    if name and kind == "evidence":
        return f"up to {rule.evidence} dated events behind `{name}` (codes with their terms)"
    if name and kind == "exclude":
        return f"whether the exclusion `{name}` applies (always no for a listed patient)"
    if column in rule.output_columns:
        what = f"the feature `{column}`" if column in rule.features else ATTRIBUTE_WORDS.get(column, column)
        places = rule.output_round.get(column)
        return what + (f", to {places} decimal place{'s' if places != 1 else ''}" if places is not None else "")
    return _FIXED_COLUMNS.get(column, column)


def _outputs(rule: CompiledRule) -> list[str]:
    from casefind.lists.practice_file import FILL_IN

    return [
        "`casefind run` writes the whole list (list.parquet and list.csv) and a manifest (the rule's sha256, "
        "the store snapshot, the parameters, the engine, and the counts at each step) to its output folder.",
        "Each practice gets its own file (practices/<code>.csv and .xlsx) holding only its own patients, with "
        "the columns that have a practice-file title above, under that title; the clinician fills in "
        + ", ".join(f"`{c}`" for c in FILL_IN) + ".",
        "Patients are identified only by their pseudonymised id. Re-identifying them (NHS number, name, date "
        "of birth) is a separate, audited step for the patient's own practice (`casefind reidentify`).",
    ]


def _notes(rule: CompiledRule) -> list[str]:
    notes = ["A comparison with a missing value is false (no record is not a match), and a count or total "
             "over no records is 0.",
             "Only records dated up to the list date are read: nothing after it counts."]
    if rule.evidence:
        notes.append(f"Each include criterion shows up to {rule.evidence} of the events it rests on.")
    if rule.segments and rule.cost:
        notes.append(f"The run summary gives each segment's size and share of `{rule.cost}`.")
    return notes
