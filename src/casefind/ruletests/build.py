"""Declared test patients → contract tables → a temporary store, through the real ingest.

The patients go through ``casefind.ingest.run_ingest`` exactly as an extract would, so what
a rule sees in a test is what it would see in production (codes without dots, derived CIP
spell columns, dictionaries). There are no identities: the store is identity-free. A row
that ingest quarantines (an event before birth, a diagnosis naming an unknown spell) is an
error in the test file at that row's line, not a silently missing event.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind.contract import TABLES
from casefind.ingest import run_ingest
from casefind.rules.errors import RuleError, Span
from casefind.ruletests.load import EventRow, RuleTestFile
from casefind.store import decisions

SPELL_TABLES = ("activity", "diagnoses", "procedures")  # tables whose spell_id names a spell
TEST_PRACTICE = ("Test practice", "LOC001", "Test locality", "SYS01", "Test system")


def build_store(tests: RuleTestFile, folder: Path) -> Path:
    """Ingest the test file's patients into a new store under ``folder``; its path."""
    rows, spans = source_rows(tests)
    source = folder / "source"
    source.mkdir(parents=True)
    for table, table_rows in rows.items():
        if table_rows:
            pacsv.write_csv(_as_table(table, table_rows), source / f"{table}.csv")
    store = folder / "store"
    summary = run_ingest(source, store)
    if summary.quarantined_total:
        _refuse_quarantined(store, spans)
    reviews = _reviews(tests)
    if reviews.num_rows:
        decisions.append(store, reviews)
    return store


def source_rows(tests: RuleTestFile) -> tuple[dict[str, list[dict]], dict[str, list[Span]]]:
    """Per contract table, the source rows (column -> text or None) and each row's span in the
    test file, in order; reviews are left out (they are recorded, not ingested)."""
    rows: dict[str, list[dict]] = {"practices": []}
    spans: dict[str, list[Span]] = {"practices": []}
    practices: dict[str, Span] = {}
    for p in tests.patients:
        row = {"patient_id": p.id, **{k: c.text for k, c in p.attributes.items()}}
        rows.setdefault("patients", []).append(row)
        spans.setdefault("patients", []).append(p.span)
        practices.setdefault(row["practice_code"], p.attributes["practice_code"].span)
        for event in p.events:
            if event.table == "reviews":
                continue
            rows.setdefault(event.table, []).append(_event_row(p.id, event))
            spans.setdefault(event.table, []).append(event.span)
    for code, span in practices.items():
        rows["practices"].append(dict(zip(TABLES["practices"].names, (code, *TEST_PRACTICE))))
        spans["practices"].append(span)
    return rows, spans


def _event_row(pid: str, event: EventRow) -> dict:
    row = {"patient_id": pid, **{k: c.text for k, c in event.cells.items()}}
    if event.table in SPELL_TABLES and row.get("spell_id") is not None:
        row["spell_id"] = f"{pid}/{row['spell_id']}"  # spell ids are the patient's own: never shared
    return row


def _as_table(table: str, rows: list[dict]) -> pa.Table:
    names = [c.name for c in TABLES[table].source_columns]
    return pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})


def _refuse_quarantined(store: Path, spans: dict[str, list[Span]]) -> None:
    """The first quarantined row as a RuleError at its line in the test file."""
    folder = store / "current" / "quarantine"
    for table, table_spans in spans.items():
        path = folder / f"{table}.parquet"
        if not path.exists():
            continue
        bad = pq.read_table(path, columns=["_source_row", "_reason", "_column"]).to_pylist()
        if bad:
            first = bad[0]
            span = table_spans[first["_source_row"] - 1]
            column = f" ({first['_column']})" if first["_column"] else ""
            raise RuleError(span, f"ingest would quarantine this {table} row: {first['_reason']}{column}",
                            "see docs/data-contract.md, 'What bad data gets': the row breaks the data contract")


def _reviews(tests: RuleTestFile) -> pa.Table:
    """Review decisions as the review log records them (one run id per row)."""
    out = []
    for p in tests.patients:
        for i, event in enumerate(e for e in p.events if e.table == "reviews"):
            cells = event.cells
            rule = cells["rule"].text if "rule" in cells and cells["rule"].text else tests.rule.name
            out.append({"patient_id": p.id, "date": dt.date.fromisoformat(cells["date"].text), "rule": rule,
                        "decision": cells["decision"].text, "run_id": f"test-{p.id}-{i}",
                        "practice": p.attributes["practice_code"].text, "reviewer": None, "note": None})
    return pa.Table.from_pylist(out, schema=decisions.INPUT_SCHEMA)
