"""One catalogue entry per file: a rule, a KPI file or a budget file, compiled and described.

A rule or KPI file is compiled by the same compiler ``casefind run`` and ``casefind kpi``
use, so what the catalogue lists is what a run would read. A file that does not compile is
an entry with its error (file:line:col and the hint), never a failed catalogue.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from pathlib import Path

from casefind.catalogue import header
from casefind.catalogue.model import BUDGET, KPIS, RULE, CodelistInfo, Entry, ParameterInfo
from casefind.catalogue.reads import reads
from casefind.errors import CasefindError
from casefind.project import TEST_SUFFIX
from casefind.rules import ir
from casefind.rules.errors import Span
from casefind.rules.load import MAX_DOCUMENT_BYTES


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _text(path: Path) -> str:
    """The file's text for its comments ("" when unreadable: the compiler says why)."""
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _failed(entry: Entry, e: Exception) -> Entry:
    if isinstance(e, CasefindError):
        entry.error, entry.hint = e.describe(), e.hint
    else:  # OSError: the file cannot be read at all
        entry.error = f"{entry.path}: cannot read the file: {getattr(e, 'strerror', None) or e}"
    return entry


def _new(kind: str, path: Path) -> Entry:
    text = _text(path)
    return Entry(kind=kind, path=str(path), name=path.stem, sha256=_sha256(path),
                 description=header.summary(text), sources=header.sources(text))


def _value(v: object) -> object:
    return v.isoformat() if isinstance(v, dt.date) else v


def _parameters(params: dict[str, ir.Param], path: Path) -> list[ParameterInfo]:
    notes = _parameter_notes(path)
    return [ParameterInfo(name, _value(p.value), p.type.value, notes.get(name)) for name, p in params.items()]


def _parameter_notes(path: Path) -> dict[str, str]:
    from casefind.rules.load import read_yaml

    try:
        data = read_yaml(path, "")
    except CasefindError:
        return {}
    return header.trailing_comments(data.get("parameters")) if data.get("parameters") else {}


def codelist_info(name: str, cl: ir.Codelist) -> CodelistInfo:
    """What the catalogue shows of one codelist: the run manifest's record of it
    (codelist_manifest) and the sidecar's provenance, each field as text."""
    from casefind.codelists_report import provenance_text

    prov = dict(cl.provenance)
    counts = prov.get("counts") if isinstance(prov.get("counts"), dict) else {}
    recorded = {k: v for k, v in prov.items() if k not in ("sidecar", "sidecar_sha256")}
    if counts:
        recorded["counts"] = {k: v for k, v in counts.items() if not isinstance(v, (dict, list))}

    def field_text(key: str) -> str | None:
        return provenance_text(prov[key]) if key in prov else None

    return CodelistInfo(
        name=name, system=cl.system, file=cl.file or None, sha256=cl.digest or None,
        rows=len(cl.codes) + len(cl.prefixes), codes=len(set(cl.codes)), prefixes=len(set(cl.prefixes)),
        categories=len({c for c in cl.categories if c}), selected_categories=list(cl.selected),
        file_rows=counts.get("total_rows") if cl.selected and isinstance(counts.get("total_rows"), int) else None,
        what=field_text("what"), source=field_text("source"), release=field_text("release"),
        licence=field_text("licence"), date_retrieved=field_text("date_retrieved"),
        sidecar=prov.get("sidecar"), sidecar_sha256=prov.get("sidecar_sha256"), provenance=recorded or None)


def describe_rule(path: Path) -> Entry:
    from casefind.rules.compile import compile_rule

    entry = _new(RULE, path)
    test = path.with_name(path.stem + TEST_SUFFIX)
    entry.test_file = str(test) if test.is_file() else None
    try:
        rule = compile_rule(path)
    except (CasefindError, OSError) as e:
        return _failed(entry, e)
    entry.name, entry.title, entry.version = rule.name, rule.title, rule.version
    entry.as_of = rule.as_of.isoformat()
    entry.parameters = _parameters(rule.parameters, path)
    entry.codelists = [codelist_info(n, cl) for n, cl in rule.codelists.items()]
    nodes = [rule.population, *rule.features.values(), *(n for _, n in rule.include),
             *(n for _, n in rule.exclude), *(n for _, n in rule.segments), *(n for _, n, _ in rule.rank_by)]
    if rule.require is not None:
        nodes.append(rule.require)
    entry.reads, entry.attributes = reads(nodes)
    entry.features = list(rule.features)
    entry.criteria = {"include": [n for n, _ in rule.include], "exclude": [n for n, _ in rule.exclude]}
    if rule.segments:
        entry.criteria["segments"] = [n for n, _ in rule.segments]
    return entry


def _kpi_sections(path: Path) -> tuple[dict[str, ir.Param], dict[str, ir.Codelist], list[str]]:
    """A KPI file's parameters, codelists and shared feature names (load_kpis keeps only the
    measures), read the way load_kpis reads them."""
    from casefind.rules.compile import Compiler
    from casefind.rules.load import Located, RuleSource, read_shared_sections, read_yaml

    data = read_yaml(path, "a KPI file is a YAML mapping (kpis:, measures:, ...)")
    start = Span(str(path), 1, 1)
    src = RuleSource(path, Located(str(data.get("kpis")), start), span=start)
    read_shared_sections(str(path), data, src)
    c = Compiler(src, {})
    return c.params, c.codelists, list(src.features)


def describe_kpis(path: Path) -> Entry:
    from casefind.kpis.define import load_kpis

    entry = _new(KPIS, path)
    try:
        kset = load_kpis(path)
        params, codelists, features = _kpi_sections(path)
    except (CasefindError, OSError) as e:
        return _failed(entry, e)
    entry.name, entry.title, entry.version = kset.name, kset.title, kset.version
    entry.parameters = _parameters(params, path)
    entry.codelists = [codelist_info(n, cl) for n, cl in codelists.items()]
    nodes = [n for m in kset.measures.values() for n in (m.population, m.value, m.denominator) if n is not None]
    if kset.segment is not None:
        nodes.append(kset.segment)
    entry.reads, entry.attributes = reads(nodes)
    entry.features = features
    entry.measures = {name: m.title for name, m in kset.measures.items()}
    return entry


def describe_budget(path: Path) -> Entry:
    """A budget file, compiled by the budget loader (so a broken one shows its located error),
    with its top-level single values, cohort, categories and the tables it reads."""
    from casefind.budgets.define import load_budget
    from casefind.rules.load import read_yaml

    entry = _new(BUDGET, path)
    try:
        data = read_yaml(path, "a budget file is a YAML mapping")
        spec = load_budget(path)
    except (CasefindError, OSError) as e:
        return _failed(entry, e)
    entry.header = {str(k): _value(v) for k, v in data.items()
                    if isinstance(v, (str, int, float, bool, dt.date)) or v is None}
    entry.name, entry.title, entry.version = spec.name, spec.title, spec.version
    entry.criteria = {"categories": [c.name for c in spec.categories]}
    if spec.rule_name:
        entry.header["cohort rule"] = spec.rule_name
    nodes = [spec.cohort] + [c.when for c in spec.categories if c.when is not None]
    entry.reads, entry.attributes = reads(nodes)
    rule = data.get("cohort", {}).get("rule") if isinstance(data.get("cohort"), dict) else None
    folders = [path.parent] + ([(path.parent / str(rule)).parent] if rule else [])
    entry.codelists = [codelist_info(cl.name, _from_budget(cl, path.parent, folders)) for cl in _codelists(nodes)]
    return entry


def _from_budget(cl: ir.Codelist, budget_dir: Path, folders: list[Path]) -> ir.Codelist:
    """A codelist as the budget file would name it: a rule's codelists are named from the
    rule's folder, so their path is given again from the budget file's."""
    for folder in folders:
        if cl.file and (folder / cl.file).is_file():
            return dataclasses.replace(cl, file=os.path.relpath(folder / cl.file, budget_dir))
    return cl


def _codelists(nodes: list[ir.Node]) -> list[ir.Codelist]:
    """The codelists the expressions use, each once, by name."""
    found: dict[str, ir.Codelist] = {}
    for n in nodes:
        for x in ir.walk(n, (ir.ROWS, ir.DATE)):
            cl = getattr(x, "codelist", None)
            if isinstance(cl, ir.Codelist):
                found.setdefault(cl.name, cl)
    return [found[k] for k in sorted(found)]

