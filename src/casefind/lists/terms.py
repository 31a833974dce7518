"""The terms a rule's codelists give their codes, so evidence reads "Fracture of hip (snomed
8510008)" rather than a bare code.

A codelist CSV (OpenCodelists style) has a ``term`` (or ``description``) column beside its
``code`` column; inline codelists and files without one give no terms, and their codes are
shown bare. A code ending in ``*`` is a prefix (ICD-10, OPCS-4): it gives its term to every
code it covers, the longest prefix first. Codes are compared as the store holds them
(ICD-10 and OPCS-4 without their dot).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from casefind.rules.codelists import _DOTLESS

TERM_COLUMNS = ("term", "description")
MAX_TERM_CHARS = 120  # a term longer than this is cut, so one codelist row cannot flood a list


@dataclass
class Terms:
    """(system, code) → term, and per system the (prefix, term) pairs, longest first."""

    exact: dict[tuple[str, str], str] = field(default_factory=dict)
    prefixes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def term(self, system: str | None, code: str) -> str | None:
        """The code's term, or None; ``system`` None (a table without a code system column)
        matches the code in any system."""
        systems = [system] if system else sorted({s for s, _ in self.exact} | set(self.prefixes))
        for s in systems:
            found = self.exact.get((s, code))
            if found:
                return found
        for s in systems:
            for prefix, found in self.prefixes.get(s, []):
                if code.startswith(prefix):
                    return found
        return None

    def add(self, system: str, code: str, term: str) -> None:
        code = code.replace(".", "") if system in _DOTLESS else code
        term = " ".join(term.split())[:MAX_TERM_CHARS]
        if not code or not term:
            return
        if code.endswith("*"):
            pairs = self.prefixes.setdefault(system, [])
            pairs.append((code.rstrip("*"), term))
            pairs.sort(key=lambda p: -len(p[0]))
        else:
            self.exact.setdefault((system, code), term)


def rule_terms(rule) -> Terms:
    """The terms of every codelist file ``rule`` (a CompiledRule) reads; the first file
    that names a code gives its term."""
    terms = Terms()
    base = Path(rule.path).parent
    for codelist in rule.codelists.values():
        if codelist.file:
            _read_terms(base / codelist.file, codelist.system, terms)
    return terms


def _read_terms(path: Path, system: str, terms: Terms) -> None:
    """Add a codelist file's terms (the compiler has already read and checked the file)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            term_col = next((c for c in TERM_COLUMNS if c in (reader.fieldnames or [])), None)
            if term_col is None or "code" not in (reader.fieldnames or []):
                return
            for row in reader:
                terms.add(system, (row.get("code") or "").strip(), row.get(term_col) or "")
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # terms are a help to the reader; the codes are still shown
