"""Spec tests: small tables in, expected per-patient values out, on every engine.

A case (``run_case``, which the ``spec_test`` fixture of tests/spec/conftest.py calls on each
registered engine) gives the contract tables as text tables with named columns
(ascii_tables.py), a rule's features, and the expected value of some features for every
patient of the store. Patients not given in a ``patients`` table are made up with the
defaults of ``patient()``. ENGINES is the engine registry (casefind.engines.base.ENGINES).
``evaluate_case`` and ``patient`` (rows as tuples) are also used by tests outside tests/spec."""
from __future__ import annotations

import datetime as dt
import math
import textwrap
from pathlib import Path

import pyarrow as pa

from ascii_tables import parse_table, typed
from casefind.contract import TABLES
from casefind.engines.base import ENGINES
from casefind.ingest import run_ingest
from casefind.rules.compile import compile_rule
from casefind.store import Store, decisions
from casefind_testdata import write_source

PRACTICES = [("Z00001", "Elm", "LOC001", "North", "SYS01", "Demo")]
AS_OF = "2026-10-31"
PATIENT_DEFAULTS = {"birth_date": "1950-01-01", "sex": "F", "practice_code": "Z00001",
                    "registration_start": "2000-01-01", "imd_decile": "5"}


def patient(pid, birth="1950-01-01", sex="F", reg_start="2000-01-01", reg_end=None, death=None, imd="5"):
    return (pid, birth, sex, "Z00001", reg_start, reg_end, death, imd, None, None)


def evaluate_case(tmp_path: Path, engine: str, tables: dict, features: str, as_of: str,
                  codelists: str = "", population: str | None = None) -> dict[str, dict]:
    tables = {"practices": PRACTICES, **tables}
    reviews = tables.pop("reviews", None)
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    if reviews:  # the review log is recorded beside the store, not ingested
        decisions.append(tmp_path / "store", review_rows(reviews))
    body = f'rule: spec\nas_of: "{as_of}"\n'
    if population:
        body += f"population: {population}\n"
    if codelists:
        body += "codelists:\n" + codelists
    body += "features:\n" + features
    (tmp_path / "rule.yml").write_text(body)
    rule = compile_rule(tmp_path / "rule.yml")
    store = Store.open(tmp_path / "store")
    out = ENGINES[engine].evaluate(store, rule.features, rule.as_of, rule.population).to_pylist()
    ids = store.table("patients")["patient_id"].tolist()
    return {ids[row["patient"]]: {k: v for k, v in row.items() if k != "patient"} for row in out}


def review_rows(rows) -> pa.Table:
    """(patient_id, date, rule, decision[, run_id]) tuples as review-log rows."""
    return pa.Table.from_pylist([
        {"patient_id": r[0], "date": dt.date.fromisoformat(r[1]), "rule": r[2], "decision": r[3],
         "run_id": r[4] if len(r) > 4 else f"run{i}", "practice": "Z00001", "reviewer": None, "note": None}
        for i, r in enumerate(rows)], schema=decisions.INPUT_SCHEMA)


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(b, str) and isinstance(a, dt.date):
        return a.isoformat() == b
    return a == b



# --- cases written as tables ---------------------------------------------------------------

def run_case(tmp_path: Path, engine: str, *, tables: dict[str, str], features: str, expected: str,
             as_of: str = AS_OF, population: str | None = None, codelists: dict[str, str | Path] | None = None,
             exact: bool = False) -> None:
    """Evaluate ``features`` over ``tables`` on ``engine`` and check ``expected``: one row per
    patient of the store (every one of them), a column per feature checked. ``codelists``
    maps a name to a text table (written as its CSV), a path (copied) or an inline YAML
    mapping. ``exact``: a value must be the expected one to the bit, not within 1e-9."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    want = {r.pop("patient"): {k: typed(v) for k, v in r.items()} for r in parse_table(expected)}
    source = source_tables(tables, named=want)
    got = evaluate_case(tmp_path, engine, source, _indented(features), as_of,
                        codelists=_codelists(tmp_path, codelists or {}), population=population)
    assert set(got) == set(want), f"patients: got {sorted(got)}, expected {sorted(want)}"
    wrong = {(pid, k): (got[pid][k], v) for pid, values in want.items() for k, v in values.items()
             if not matches(got[pid][k], v, exact)}
    assert not wrong, f"on {engine}, (patient, feature): (got, expected): {wrong}"


def matches(got, want, exact: bool = False) -> bool:
    """``got`` is the value ``want`` says: missing, true/false (not 0/1), a number (within 1e-9,
    or to the bit with ``exact``), text, or a date written as YYYY-MM-DD."""
    if want is None or got is None:
        return want is None and got is None
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if exact and isinstance(want, (int, float)):
        return type(got) is type(want) and repr(got) == repr(want)
    return same(got, want)


def source_tables(tables: dict[str, str], named=()) -> dict[str, list[tuple]]:
    """Text tables as source rows (tuples in contract order), patients made up for every
    patient they or ``named`` mention unless a ``patients`` table is given, the one practice
    unless a ``practices`` table is; ``reviews`` rows as review-log tuples (patient, date,
    rule, decision[, run_id])."""
    rows = {name: parse_table(text) for name, text in tables.items()}
    source = {name: [_source_row(name, r) for r in table] for name, table in rows.items()
              if name not in ("patients", "reviews")}
    source["patients"] = _patients(rows, named)
    source.setdefault("practices", PRACTICES)
    if "reviews" in rows:
        source["reviews"] = [(r["patient"], r["date"], r["rule"], r["decision"], *filter(None, [r.get("run_id")]))
                             for r in rows["reviews"]]
    return source


def _source_row(table: str, row: dict) -> tuple:
    """A row in the contract's source-column order (``patient`` names patient_id)."""
    row = {("patient_id" if k == "patient" else k): v for k, v in row.items()}
    names = [c.name for c in TABLES[table].source_columns]
    unknown = set(row) - set(names)
    assert not unknown, f"{table} has no column {sorted(unknown)}; its columns are {names}"
    return tuple(row.get(n) for n in names)


def _patients(rows: dict[str, list[dict]], named) -> list[tuple]:
    """The ``patients`` table if given (defaults filling the columns it leaves out), else one
    patient of the defaults for each patient named anywhere in the case, in order of name."""
    given = rows.get("patients")
    if given is None:
        mentioned = {r["patient"] for table in rows.values() for r in table} | set(named)
        given = [{"patient": p} for p in sorted(mentioned)]
    return [_source_row("patients", {**PATIENT_DEFAULTS, **r}) for r in given]


def _codelists(tmp_path: Path, codelists: dict[str, str | Path]) -> str:
    lines = []
    for name, given in codelists.items():
        if isinstance(given, Path):
            (tmp_path / f"{name}.csv").write_bytes(given.read_bytes())
        elif given.lstrip().startswith("{"):
            lines.append(f"  {name}: {given.strip()}\n")
            continue
        else:
            table = parse_table(given)
            header = list(table[0]) if table else []
            (tmp_path / f"{name}.csv").write_text("\n".join([",".join(header)] + [
                ",".join(r[h] or "" for h in header) for r in table]) + "\n")
        lines.append(f"  {name}: {{file: {name}.csv}}\n")
    return "".join(lines)


def _indented(features: str) -> str:
    return "".join(f"  {line}\n" for line in textwrap.dedent(features).strip().splitlines())
