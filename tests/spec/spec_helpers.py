"""Spec tests: small tables in, expected per-patient values out, on every engine.

A case gives rows for the contract tables (patients default to a few people), a rule body
and the expected value of each feature for each patient id. ENGINES is the engine registry
(casefind.engines.base.ENGINES): each case runs on every registered engine."""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pyarrow as pa

from casefind.engines.base import ENGINES
from casefind.ingest import run_ingest
from casefind.rules.compile import compile_rule
from casefind.store import Store, decisions
from casefind_testdata import write_source

PRACTICES = [("Z00001", "Elm", "LOC001", "North", "SYS01", "Demo")]


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

