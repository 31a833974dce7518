"""Evidence: the events behind a reason, for the listed patients only (reference SQL)."""
from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from casefind.contract import TABLES
from casefind.engines import duckdb_sql
from casefind.engines.duckdb_sql import SqlCompiler, sql_literal
from casefind.lists.terms import Terms
from casefind.rules import ir

_SHOW = {"activity": ["setting", "primary_diagnosis", "cost", "end_date"],
         "diagnoses": ["code_system", "code"], "medications": ["code_system", "code"],
         "observations": ["code_system", "code", "value", "unit"],
         "experience": ["measure", "value"], "registers": ["register", "end_date"], "opt_outs": ["kind"]}


def columns_read(aggs) -> dict[str, set[str]]:
    """The tables and columns evidence for ``aggs`` reads (for ``register_store``): what
    the reference SQL of their rows reads, and the columns each event is shown with."""
    out = duckdb_sql.columns_read(aggs)
    for table, cols in out.items():
        cols.update(c for c in _SHOW.get(table, []) if c in TABLES[table].names)
    return out


_CODE_COLUMNS = ("code", "primary_diagnosis")  # shown with their term where a codelist gives one
_IMPLIED_SYSTEM = {"primary_diagnosis": "icd10"}


def _event_texts(table: str, events: pa.Table, terms: Terms | None = None) -> pa.Array:
    """Each event as one line of text: its date, then the columns _SHOW names (missing ones
    left out): a code as "term (system code)" where the rule's codelists give it a term
    (else "system code"), cost as £1,234, a setting in words, an end date as "to 2026-01-31".
    Each column's distinct values are put in words once (_shown), so a list's tens of
    thousands of events cost their distinct values, then one join per event."""
    shown = [c for c in _SHOW.get(table, []) if c in events.column_names and c in TABLES[table].names]
    dates = pc.strftime(events.column("date").combine_chunks(), "%Y-%m-%d")
    parts = [dates] + [_column_texts(c, events, terms) for c in shown if c != "code_system"]
    # joined in Python: Arrow 26's binary_join_element_wise with null_handling="skip" drops
    # the rows whose arguments are all null (a shorter result)
    return pa.array([" ".join(w for w in words if w) if words[0] is not None else None
                     for words in zip(*(p.to_pylist() for p in parts))], pa.string())


def _column_texts(column: str, events: pa.Table, terms: Terms | None) -> pa.Array:
    """One column of every event in words (null where missing or empty), each distinct
    value (with its code system, for a code) put in words once."""
    values = events.column(column).combine_chunks()
    with_system = column in _CODE_COLUMNS and "code_system" in events.column_names
    if with_system:
        system = events.column("code_system").combine_chunks().cast(pa.string())
        key = pc.binary_join_element_wise(pc.fill_null(system, ""), values.cast(pa.string()), _SEP)
    else:
        key = values
    encoded = pc.dictionary_encode(key)
    words = []
    for v in encoded.dictionary.to_pylist():
        if with_system:
            system, _, code = v.partition(_SEP)
            text = _shown(column, code, {"code_system": system or None}, terms)
        else:
            text = _shown(column, v, {}, terms)
        words.append(text or None)  # an empty value is left out, as a missing one
    return pa.array(words, pa.string()).take(encoded.indices)


_SEP = "\x1f"  # between a code's system and the code in a distinct-value key (never in either)


def _shown(column: str, value, row: dict, terms: Terms | None) -> str | None:
    """One column of an event as text (None when missing)."""
    if value is None:
        return None
    if column in _CODE_COLUMNS:
        system = row.get("code_system") or _IMPLIED_SYSTEM.get(column)
        code = f"{system} {value}" if system else str(value)
        term = terms.term(system, str(value)) if terms else None
        return f"{term} ({code})" if term else code
    if column == "cost":
        return f"£{value:,.0f}"
    if column == "end_date":
        return f"to {value:%Y-%m-%d}"
    if column == "setting":
        return str(value).replace("_", " ")
    return str(value)  # numbers as Python writes them (30.0, not 30)


def collect(con: duckdb.DuckDBPyConnection, criteria: dict[str, list[ir.Aggregate]], patients: list[int],
            as_of: dt.date, limit: int, terms: Terms | None = None) -> dict[str, dict[int, list[str]]]:
    """Per criterion, up to ``limit`` events per patient matching its aggregations, taken in
    turn from each (most recent first within each; the same event once), so one busy table
    cannot hide another. One query for every aggregation of every criterion, each once."""
    out = {name: {p: [] for p in patients} for name in criteria}
    aggs = list(dict.fromkeys(a for found in criteria.values() for a in found))
    if not aggs or not patients or limit <= 0:
        return out
    events = _events(con, aggs, patients, sql_literal(as_of), limit, terms)
    for name, found in criteria.items():
        position = {a: i for i, a in enumerate(found)}  # the criterion's own order of turns
        mine = events.filter(pc.is_in(events.column("agg"), pa.array([aggs.index(a) for a in found], pa.int64())))
        order = pa.array([position[aggs[i]] for i in mine.column("agg").to_pylist()], pa.int64())
        mine = mine.append_column("order", order).sort_by(
            [("patient", "ascending"), ("turn", "ascending"), ("order", "ascending")])
        seen: set[tuple[int, str]] = set()
        listed = out[name]
        for p, text in zip(mine.column("patient").to_pylist(), mine.column("text").to_pylist()):
            if len(listed[p]) < limit and (p, text) not in seen:  # in turns; an event shared, once
                seen.add((p, text))
                listed[p].append(text)
    return out


def _events(con: duckdb.DuckDBPyConnection, aggs: list[ir.Aggregate], patients: list[int], d: str,
            limit: int, terms: Terms | None = None) -> pa.Table:
    """(agg, patient, turn, text): each aggregation's events for the listed patients, at most
    ``limit`` per patient, turn 1 the most recent; one UNION ALL query."""
    comp = SqlCompiler(con=con)
    con.register("listed_patients", pa.table({"patient": pa.array(patients, pa.int32())}))
    shown = list(dict.fromkeys(c for a in aggs for c in _SHOW.get(a.table, []) if c in TABLES[a.table].names))
    selects = [_select(comp, a, i, d, limit, shown) for i, a in enumerate(aggs)]
    rows = con.sql(f"{comp.with_clause()} " + " UNION ALL ".join(f"({q})" for q in selects)).to_arrow_table()
    parts = []
    for i, a in enumerate(aggs):
        mine = rows.filter(pc.equal(rows.column("agg"), i))
        parts.append(pa.table({c: mine.column(c).cast(pa.int64()) for c in ("agg", "patient", "turn")}
                              | {"text": _event_texts(a.table, mine, terms)}))
    return pa.concat_tables(parts)


def _select(comp: SqlCompiler, a: ir.Aggregate, i: int, d: str, limit: int, shown: list[str]) -> str:
    """One aggregation's events (its window and filter), with every shown column (null where
    its table has none), for the UNION ALL in _events."""
    t = a.table
    date = TABLES[t].sort_date
    r = comp.row_compiler()  # a filter may read other aggregations: their subqueries go in the WITH
    where = [r.window(a, t, d)]
    if a.where is not None:
        where.append(r.event(a.where, d))
    cols = ", ".join(f"e.{c} AS {c}" if c in _SHOW.get(t, []) and c in TABLES[t].names else f"NULL AS {c}"
                     for c in shown)
    return (f"SELECT {i} AS agg, e.patient, e.{date} AS date{', ' + cols if cols else ''}, "
            f"row_number() OVER (PARTITION BY e.patient ORDER BY e.{date} DESC, e.row DESC) AS turn "
            f"FROM {r.rows(a)} WHERE e.patient IN (SELECT patient FROM listed_patients) AND {' AND '.join(where)} "
            f"QUALIFY turn <= {limit}")
