"""Evidence lines (lists/evidence._event_texts) put each column's distinct values in words
once and join them with Arrow; they must read exactly as the definition, event by event:
the date, then each shown column in words, the missing and empty ones left out, and no
line for an event without a date."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from casefind.contract import TABLES
from casefind.lists.evidence import _SHOW, _event_texts, _shown
from casefind.lists.terms import Terms

TERMS = Terms()
for system, code, term in [("snomed", "8510008", "Fracture of hip"), ("icd10", "I50", "Heart failure"),
                           ("dmd", "3214", "Aspirin 75mg")]:
    TERMS.add(system, code, term)
TERMS.add("icd10", "J4*", "Chronic lower respiratory disease")

KINDS = {"date": st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31)),
         "float": st.floats(-1e7, 1e7, allow_nan=False) | st.sampled_from([0.0, 30.0, 1234.5]),
         "text": st.sampled_from(["", "mmol/L", "friends_and_family", "QOF_DM"]),
         "enum": st.sampled_from(["", "snomed", "icd10", "dmd", "emergency_admission", "gp_appointment"]),
         "code": st.sampled_from(["", "8510008", "I50", "J45", "J4", "3214", "999"])}


def _reference(table: str, events: pa.Table, terms: Terms | None) -> list[str | None]:
    """The definition, one event at a time."""
    shown = [c for c in _SHOW.get(table, []) if c in events.column_names and c in TABLES[table].names]
    rows = events.to_pylist()
    out = []
    for row in rows:
        cells = {c: row[c] for c in shown}
        parts = [row["date"].isoformat() if row["date"] else None]
        parts += [_shown(c, v, cells, terms) for c, v in cells.items() if c != "code_system"]
        out.append(" ".join(p for p in parts if p) if row["date"] is not None else None)
    return out


@st.composite
def events(draw):
    table = draw(st.sampled_from(sorted(_SHOW)))
    spec = TABLES[table]
    n = draw(st.integers(0, 25))
    columns = {"date": pa.array(draw(st.lists(st.none() | KINDS["date"], min_size=n, max_size=n)), pa.date32())}
    for c in _SHOW[table]:
        if c not in spec.names or not draw(st.booleans() | st.just(True)):
            continue
        kind = next(col.kind for col in spec.columns if col.name == c)
        values = draw(st.lists(st.none() | KINDS[kind], min_size=n, max_size=n))
        columns[c] = pa.array(values, {"date": pa.date32(), "float": pa.float64()}.get(kind, pa.string()))
    return table, pa.table(columns)


@settings(max_examples=150, deadline=None)
@given(events(), st.booleans())
def test_evidence_lines_read_as_the_definition(drawn, with_terms):
    table, t = drawn
    terms = TERMS if with_terms else None
    assert _event_texts(table, t, terms).to_pylist() == _reference(table, t, terms)


def test_a_code_reads_with_its_term_its_system_and_a_prefix_term():
    t = pa.table({"date": pa.array([dt.date(2026, 1, 2)] * 3, pa.date32()),
                  "code_system": ["snomed", "icd10", None], "code": ["8510008", "J45", "I50"]})
    assert _event_texts("diagnoses", t, TERMS).to_pylist() == [
        "2026-01-02 Fracture of hip (snomed 8510008)", "2026-01-02 Chronic lower respiratory disease (icd10 J45)",
        "2026-01-02 Heart failure (I50)"]  # no system: the code's term in any system
    a = pa.table({"date": pa.array([dt.date(2026, 1, 2)], pa.date32()), "setting": ["emergency_admission"],
                  "primary_diagnosis": ["I50"], "cost": [1234.5], "end_date": pa.array([dt.date(2026, 1, 9)])})
    assert _event_texts("activity", a, TERMS).to_pylist() == [
        "2026-01-02 emergency admission Heart failure (icd10 I50) £1,234 to 2026-01-09"]
