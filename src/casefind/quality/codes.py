"""Which codes casefind knows: a code is *known* when a shipped codelist (rules/codelists/,
also any of the project's own) or one of the synthetic generator's code dictionaries
(synth/data/) lists it, exactly or under a prefix (``I21*``); *malformed* when it cannot be a
code of its system at all (a SNOMED CT id with a wrong check digit, an ICD-10 code that is
not a letter and two digits, ...).

An unknown code is not necessarily wrong (SNOMED CT has several hundred thousand concepts);
it is a code no shipped rule can count, so a rising share of them is worth a question to the
provider. A malformed code is wrong.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from casefind.contract.schema import CODE_SYSTEMS

_DOTLESS = ("icd10", "opcs4")
# synth/data files with a code column but no system column, and the system they hold
_DICTIONARY_SYSTEMS = {
    "hospital_codes.csv": "icd10", "elective_diagnoses.csv": "icd10", "opcs4_codes.csv": "opcs4",
    "other_codes.csv": "snomed", "primary_codes.csv": "snomed",
}
_SUFFIX_SYSTEM = re.compile(r"_(" + "|".join(CODE_SYSTEMS) + r")\.csv$")
FORMATS = {  # what a code of each system looks like (the store holds ICD-10 and OPCS-4 without the dot)
    "icd10": re.compile(r"^[A-Z][0-9]{2}[0-9A-Z]{0,4}$"),
    "opcs4": re.compile(r"^[A-Z][0-9]{2}[0-9]?$"),
    "read2": re.compile(r"^[A-Za-z0-9.]{5}$"),
    "ctv3": re.compile(r"^[A-Za-z0-9.]{5}$"),
    "bnf": re.compile(r"^[0-9]{2}[0-9A-Z]{5,13}$"),
}
_SCTID = re.compile(r"^[1-9][0-9]{5,17}$")


@dataclass
class Vocabulary:
    """Known codes and prefixes per code system, and the files they came from."""

    codes: dict[str, set[str]] = field(default_factory=dict)
    prefixes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def add(self, system: str, code: str) -> None:
        code = code.strip()
        if system in _DOTLESS:
            code = code.replace(".", "")
        if not code:
            return
        if code.endswith("*"):
            self.prefixes[system] = (*self.prefixes.get(system, ()), code[:-1])
        else:
            self.codes.setdefault(system, set()).add(code)

    def knows(self, system: str, code: str) -> bool:
        return code in self.codes.get(system, ()) or any(code.startswith(p) for p in self.prefixes.get(system, ()))


def _read(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(line for line in f if not line.startswith("#"))
        return list(reader.fieldnames or []), list(reader)


def _add_file(vocab: Vocabulary, path: Path, fixed: str | None) -> None:
    columns, rows = _read(path)
    if "code" not in columns:
        return
    system_column = next((c for c in ("code_system", "system") if c in columns), None)
    if system_column is None and fixed is None:
        return
    for row in rows:
        system = (row.get(system_column) or "").strip() if system_column else fixed
        if system in CODE_SYSTEMS and row.get("code"):
            vocab.add(system, row["code"])
    vocab.sources.append(str(path))


def codelist_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.csv")) if folder.is_dir() else []


def vocabulary(codelist_folders: Iterable[Path] = ()) -> Vocabulary:
    """The shipped codelists, the generator's dictionaries, and any further codelist folders."""
    vocab = Vocabulary()
    synth_data = Path(str(files("casefind.synth") / "data"))
    shipped = Path(str(files("casefind") / "shipped" / "codelists"))
    for folder in dict.fromkeys([shipped, *map(Path, codelist_folders)]):
        for path in codelist_files(folder):
            m = _SUFFIX_SYSTEM.search(path.name)
            _add_file(vocab, path, m.group(1) if m else None)
    for path in sorted(synth_data.glob("*.csv")):
        _add_file(vocab, path, _DICTIONARY_SYSTEMS.get(path.name))
    return vocab


def verhoeff_ok(digits: str) -> bool:
    """The Verhoeff check digit of a SNOMED CT (and dm+d) identifier."""
    d = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
         (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
         (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
         (9, 8, 7, 6, 5, 4, 3, 2, 1, 0))
    p = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
         (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
         (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8))
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = d[c][p[i % 8][int(ch)]]
    return c == 0


def well_formed(system: str, code: str) -> bool:
    """Whether ``code`` can be a code of ``system`` at all."""
    if system in ("snomed", "dmd"):
        return bool(_SCTID.match(code)) and verhoeff_ok(code)
    pattern = FORMATS.get(system)
    return True if pattern is None else bool(pattern.match(code))
