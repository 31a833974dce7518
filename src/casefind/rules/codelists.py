"""Codelists: a rule's ``codelists:`` entries read into ``ir.Codelist``, with where they came from.

An entry is inline (``{system: snomed, codes: [...], prefixes: [...]}``) or a CSV file
(``codelists/x.csv``, or ``{file: ..., system: ..., column: ..., category: ...}``):

- the file is OpenCodelists style: a ``code`` column (a trailing ``*`` makes a prefix), and
  optionally ``system``, ``category``, ``weight`` and ``term``. An OpenCodelists download
  is read as it is: ``code,term`` with ``system:`` given in the rule, or, where the code
  column has another name (``dmd_id``, ``snomedct_id``, ``ctv3_id``), ``column:`` naming it
  (the rule must then give ``system:``);
- ``category:`` keeps only the rows of one category (or a list of them), so one file can
  hold every condition and a rule can still ask about one (``exists(diagnoses,
  codelist=diabetes)``);
- a ``<name>.provenance.json`` sidecar beside ``<name>.csv``, when there is one, is read
  and attached (source, release, date retrieved, licence, counts), together with the
  sha256 of the CSV's bytes; a sidecar whose ``counts.total_rows`` is not the file's rows
  is an error (the file changed after its provenance was written).

``codelist_manifest(rule)`` is what a run records of each codelist.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from casefind.contract.schema import CODE_SYSTEMS
from casefind.rules import ir
from casefind.rules.errors import RuleError, Span, did_you_mean
from casefind.rules.load import Located, confined, read_text_file

MAX_CODELIST_BYTES = 16 * 1024 * 1024
MAX_PROVENANCE_BYTES = 1024 * 1024
KEYS = ("file", "system", "codes", "prefixes", "column", "category")
# what of a sidecar is attached to the codelist (the rest stays in the file, pinned by its digest)
PROVENANCE_KEYS = ("what", "source", "release", "date_retrieved", "licence", "counts")
SIDECAR_SUFFIX = ".provenance.json"
_DOTLESS = ("icd10", "opcs4")  # the store holds these codes without their dot (I50.9 is I509, K40.1 K401)


def _code_system(name: str, system: object, span: Span) -> str:
    system = str(system).strip()
    if system not in CODE_SYSTEMS:
        raise RuleError(span, f"codelist {name!r}: unknown code system {system[:40]!r}",
                        did_you_mean(system, CODE_SYSTEMS) or f"code systems: {', '.join(CODE_SYSTEMS)}")
    return system


def _code_entries(name: str, v: dict, key: str, span: Span) -> list[str]:
    """An inline codes: or prefixes: list, each entry one code."""
    entries = v.get(key) or []
    if not isinstance(entries, list) or any(isinstance(c, (list, dict)) for c in entries):
        raise RuleError(span, f"codelist {name!r}: {key} must be a list of codes", f'{key}: ["38341003", "44054006"]')
    return [str(c).strip() for c in entries]


@dataclass(frozen=True)
class _CsvFile:
    digest: str                 # sha256 of the bytes
    columns: tuple[str, ...]
    rows: tuple[dict, ...]      # each with its line number under '_line'; shared: never mutated


_CACHE: dict[str, _CsvFile] = {}  # parsed files by digest: a rule may name one file many times (category:)


def _read_csv(path: Path, given: str, span: Span) -> _CsvFile:
    """A codelist CSV's rows, each with its line number under '_line' (for located errors)."""
    if not path.is_file():
        raise RuleError(span, f"codelist file {given} not found (looked in {path.parent})")
    text = read_text_file(path, span, "codelist file", MAX_CODELIST_BYTES)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()  # the file's bytes: it is UTF-8
    if digest in _CACHE:
        return _CACHE[digest]
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    rows = []
    try:
        for r in reader:
            r["_line"] = reader.line_num
            rows.append(r)
    except csv.Error as e:
        raise RuleError(Span(str(path), reader.line_num or 1, 1),
                        f"codelist file {given} is not valid CSV: {e}") from None
    out = _CsvFile(digest, tuple(c for c in (reader.fieldnames or ()) if c is not None), tuple(rows))
    if len(_CACHE) >= 16:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[digest] = out
    return out


def _weight(text: str, path: Path, row: dict) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        w = float(text)
    except ValueError:
        w = math.nan
    if not math.isfinite(w):
        raise RuleError(Span(str(path), row["_line"], 1), f"weight {text[:40]!r} is not a number",
                        "weights are points such as 1, 2 or 0.5; leave it empty for none")
    return w


def _selection(name: str, v: dict, span: Span) -> tuple[str, ...]:
    """The categories ``category:`` keeps: one name or a list of names."""
    given = v.get("category")
    if given is None:
        return ()
    names = given if isinstance(given, list) else [given]
    if not names or any(isinstance(c, (list, dict)) or not str(c).strip() for c in names):
        raise RuleError(span, f"codelist {name!r}: category must name a category of the file, or a list of them",
                        "category: diabetes  or  category: [stroke, tia]")
    return tuple(dict.fromkeys(str(c).strip() for c in names))


def sidecar_path(csv_path: Path) -> Path:
    """``<name>.provenance.json`` beside ``<name>.csv``."""
    return csv_path.with_name(csv_path.stem + SIDECAR_SUFFIX)


def _provenance(rule_path: Path, given: str, path: Path, span: Span, rows: int) -> tuple[tuple[str, object], ...]:
    """The sidecar's source, release, date retrieved, licence and counts (and the sidecar's
    own name and sha256), or () when the file has none."""
    if not sidecar_path(path).is_file():
        return ()
    given_sidecar = str(PurePosixPath(given).with_name(PurePosixPath(given).stem + SIDECAR_SUFFIX))
    side = confined(rule_path, given_sidecar, span, "codelist provenance file")
    text = read_text_file(side, span, "codelist provenance file", MAX_PROVENANCE_BYTES)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RuleError(Span(str(side), e.lineno, e.colno), f"{side.name} is not valid JSON: {e.msg}",
                        "a provenance sidecar is one JSON object: source, release, date_retrieved, licence, "
                        "counts") from None
    if not isinstance(data, dict):
        raise RuleError(Span(str(side), 1, 1), f"{side.name} must be one JSON object",
                        '{"source": ..., "release": ..., "date_retrieved": "YYYY-MM-DD", "licence": ..., '
                        '"counts": {...}}')
    counts = data.get("counts")
    total = counts.get("total_rows") if isinstance(counts, dict) else None
    if isinstance(total, int) and not isinstance(total, bool) and total != rows:
        raise RuleError(Span(str(side), 1, 1), f"{side.name} records {total:,} rows but {given} has {rows:,}",
                        "the codelist changed after its provenance was written: update the sidecar's counts "
                        "(and source) or restore the file")
    kept = [(k, data[k]) for k in PROVENANCE_KEYS if k in data]
    return tuple(kept) + (("sidecar", side.name), ("sidecar_sha256", hashlib.sha256(text.encode("utf-8")).hexdigest()))


@dataclass
class _FileCodes:
    """The codes a CSV file contributes: codes then prefixes, with categories and weights
    parallel to codes + prefixes, and where they came from."""
    system: str | None
    codes: list[str]
    prefixes: list[str]
    categories: list[str | None]
    weights: list[float | None]
    file: str
    digest: str
    provenance: tuple
    selected: tuple


def load_codelist(name: str, loc: Located, rule_path: Path) -> ir.Codelist:
    """One ``codelists:`` entry of the rule at ``rule_path``; RuleErrors at the entry (or
    at the line of the CSV or sidecar at fault)."""
    span = loc.span
    v = _entry(name, loc)
    system = _code_system(name, v["system"], span) if v.get("system") not in (None, "") else None
    if "file" in v:
        f = _from_file(name, v, span, rule_path, system)
    else:
        f = _FileCodes(system, _code_entries(name, v, "codes", span),
                       [c.replace(".", "") for c in _code_entries(name, v, "prefixes", span)], [], [], "", "", (), ())
    if not f.system:
        raise RuleError(span, f"codelist {name!r} does not say its code system",
                        f"add system: snomed (or {', '.join(s for s in CODE_SYSTEMS if s != 'snomed')})")
    codes = [c.replace(".", "") for c in f.codes] if f.system in _DOTLESS else f.codes
    try:
        return ir.Codelist(name, f.system, tuple(codes), tuple(f.prefixes),
                           tuple(f.categories) if any(f.categories) else (),
                           tuple(f.weights) if any(w is not None for w in f.weights) else (),
                           file=f.file, digest=f.digest, provenance=f.provenance, selected=f.selected)
    except ir.IRTypeError as e:
        raise RuleError(span, str(e), e.hint) from None


def _entry(name: str, loc: Located) -> dict:
    """The entry as a mapping (a bare string is its file), refused when its keys do not fit
    together: unknown keys, a file and inline codes, or a file's options without a file."""
    v, span = loc.value, loc.span
    if isinstance(v, str):
        v = {"file": v}
    if not isinstance(v, dict):
        raise RuleError(span, f"codelist {name!r} must be a CSV path or a mapping",
                        '{system: snomed, codes: ["..."]} or codelists/name.csv')
    unknown = sorted(map(str, set(v) - set(KEYS)))
    if unknown:
        raise RuleError(span, f"codelist {name!r}: unknown key {unknown[0]!r}",
                        did_you_mean(unknown[0], KEYS) or f"keys are {', '.join(KEYS)}")
    if "file" in v and ("codes" in v or "prefixes" in v):
        raise RuleError(span, f"codelist {name!r}: give a file or codes/prefixes, not both",
                        "one codelist per entry: name the other under its own name")
    if "file" not in v:
        for k in ("column", "category"):
            if k in v:
                raise RuleError(span, f"codelist {name!r}: {k}: is for a CSV file",
                                f"{{file: codelists/x.csv, {k}: ...}}")
    return v


def _from_file(name: str, v: dict, span: Span, rule_path: Path, system: str | None) -> _FileCodes:
    """The codes of a ``file:`` entry: its code column, its code system (the entry's or the
    file's ``system`` column), the rows of the chosen categories, and its provenance."""
    file = str(v["file"])
    path = confined(rule_path, file, span, "codelist file")
    data = _read_csv(path, file, span)
    code_col = _code_column(name, v, file, data, span, system)
    if not data.rows:
        raise RuleError(span, f"codelist file {file} has no rows", "an empty codelist matches nothing")
    system = _file_system(name, file, path, data.rows, system, span)
    kept = [r for r in data.rows if (r.get(code_col) or "").strip()]
    provenance = _provenance(rule_path, file, path, span, len(data.rows))
    selected = _selection(name, v, span)
    if selected:
        kept = _in_categories(name, file, data, kept, selected, span)
    codes, prefixes, cats, weights = [], [], [], []
    for r in kept:
        code = r[code_col].strip()
        is_prefix = code.endswith("*")
        code = code.rstrip("*")
        (prefixes if is_prefix else codes).append(code.replace(".", "") if system in _DOTLESS else code)
        cats.append(str(r.get("category") or "").strip() or None)
        weights.append(_weight(str(r.get("weight") or ""), path, r))
    # keep categories/weights parallel to codes + prefixes (codes first, then prefixes)
    is_pref = [r[code_col].strip().endswith("*") for r in kept]
    cats = [c for c, p in zip(cats, is_pref) if not p] + [c for c, p in zip(cats, is_pref) if p]
    weights = [w for w, p in zip(weights, is_pref) if not p] + [w for w, p in zip(weights, is_pref) if p]
    return _FileCodes(system, codes, prefixes, cats, weights, file, data.digest, provenance, selected)


def _code_column(name: str, v: dict, file: str, data, span: Span, system: str | None) -> str:
    """The file's column of codes: ``column:`` (which then needs ``system:``), else ``code``."""
    column = str(v["column"]).strip() if v.get("column") not in (None, "") else None
    if column is not None:
        if column not in data.columns:
            raise RuleError(span, f"codelist file {file} has no column {column[:40]!r}",
                            did_you_mean(column, data.columns) or f"its columns: {', '.join(data.columns)}")
        if system is None:
            raise RuleError(span, f"codelist {name!r}: a file read by column: {column} must say its code system",
                            f"add it: {{file: {file}, system: snomed, column: {column}}} "
                            f"(or {', '.join(s for s in CODE_SYSTEMS if s != 'snomed')})")
        return column
    if "code" not in data.columns:
        hint = None
        if data.columns:
            guess = next((c for c in data.columns if c.endswith("_id") or c.endswith("code")), data.columns[0])
            hint = f"name the code column: {{file: {file}, system: ..., column: {guess}}}"
        raise RuleError(span, f"codelist file {file} needs a 'code' column (OpenCodelists style)", hint)
    return "code"


def _file_system(name: str, file: str, path: Path, rows: list[dict], system: str | None, span: Span) -> str | None:
    """The code system: the entry's, or the one the file's ``system`` column names (each
    value checked at its line); a file naming two systems, or not the entry's, is refused."""
    file_systems = {(r.get("system") or "").strip() or None for r in rows}
    for r in rows:
        if (r.get("system") or "").strip():
            _code_system(name, r["system"], Span(str(path), r["_line"], 1))
    if file_systems - {None}:
        if len(file_systems) > 1 or (system and system not in file_systems):
            raise RuleError(span, f"codelist file {file} mixes code systems; use one file per system")
        system = system or file_systems.pop()
    return system


def _in_categories(name: str, file: str, data, kept: list[dict], selected: tuple, span: Span) -> list[dict]:
    """The rows of the categories ``category:`` chose; each must be in the file."""
    if "category" not in data.columns:
        raise RuleError(span, f"codelist {name!r}: category: needs a category column, and {file} has none")
    present = {(r.get("category") or "").strip() for r in kept}
    for c in selected:
        if c not in present:
            raise RuleError(span, f"codelist {name!r}: {file} has no category {c[:40]!r}",
                            did_you_mean(c, sorted(present - {""})) or f"{len(present - {''})} categories in the file")
    return [r for r in kept if (r.get("category") or "").strip() in selected]


def codelist_manifest(rule) -> dict:
    """What a run records of each of ``rule``'s codelists (a CompiledRule, or anything with
    ``codelists``): name -> file (as the rule names it; null inline), digest (sha256 of its
    bytes), system, rows (code or prefix, category pairs), distinct codes, prefixes and
    categories, the categories chosen with category: (if any), and the provenance
    sidecar's source, release, date retrieved, licence, total counts and the sidecar's own
    sha256 (null without one). Per codelist, so codelists taken from one file repeat that
    file's digest and provenance."""
    out = {}
    for name, cl in rule.codelists.items():
        out[name] = {
            "file": cl.file or None, "digest": cl.digest or None, "system": cl.system,
            "rows": len(cl.codes) + len(cl.prefixes),
            "codes": len(set(cl.codes)), "prefixes": len(set(cl.prefixes)),
            "categories": len({c for c in cl.categories if c}),
            "selected_categories": list(cl.selected) or None,
            "provenance": _recorded(dict(cl.provenance)) or None,
        }
    return out


def _recorded(provenance: dict) -> dict:
    """Provenance as a run records it: the counts cut to the totals (the per-category and
    per-cluster counts stay in the sidecar, which ``sidecar_sha256`` pins)."""
    counts = provenance.get("counts")
    if isinstance(counts, dict):
        provenance["counts"] = {k: v for k, v in counts.items() if not isinstance(v, (dict, list))}
    return provenance
