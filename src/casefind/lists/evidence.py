"""Evidence: the events behind a reason, for the listed patients only (reference SQL)."""
from __future__ import annotations

import datetime as dt

import duckdb

from casefind.contract import TABLES
from casefind.engines.duckdb_sql import SqlCompiler, sql_literal
from casefind.rules import ir

_SHOW = {"activity": ["setting", "primary_diagnosis", "cost", "end_date"],
         "diagnoses": ["code_system", "code"], "medications": ["code"], "observations": ["code", "value", "unit"],
         "experience": ["measure", "value"], "registers": ["register", "end_date"], "opt_outs": ["kind"]}


def _event_text(table: str, row: dict) -> str:
    parts = [str(row["date"])]
    for c in _SHOW.get(table, []):
        v = row.get(c)
        if v is None:
            continue
        if c == "cost":
            parts.append(f"£{v:,.0f}")
        elif c == "end_date":
            parts.append(f"to {v}")
        else:
            parts.append(str(v))
    return " ".join(parts)


def collect(con: duckdb.DuckDBPyConnection, aggs: list[ir.Aggregate], patients: list[int],
            as_of: dt.date, limit: int) -> dict[int, list[str]]:
    """Up to ``limit`` events per patient matching ``aggs``, taken in turn from each
    aggregation (most recent first within each), so one busy table cannot hide another."""
    per_agg: list[dict[int, list[str]]] = []
    out: dict[int, list[str]] = {p: [] for p in patients}
    if not aggs or not patients or limit <= 0:
        return out
    d = sql_literal(as_of)
    comp = SqlCompiler(con=con)
    con.register("listed_patients", _ids_table(patients))
    for a in aggs:
        t = a.table
        date = TABLES[t].sort_date
        r = comp.row_compiler()  # a filter may read other aggregations: their subqueries first
        where = [r.window(a, t, d)]
        if a.where is not None:
            where.append(r.event(a.where, d))
        cols = ", ".join(f"e.{c}" for c in _SHOW.get(t, []) if c in TABLES[t].names)
        sql = (f"{comp.with_clause()} "
               f"SELECT e.patient, e.{date} AS date{', ' + cols if cols else ''} FROM {r.rows(a)} "
               f"WHERE e.patient IN (SELECT patient FROM listed_patients) AND {' AND '.join(where)} "
               f"QUALIFY row_number() OVER (PARTITION BY e.patient ORDER BY e.{date} DESC, e.row DESC) <= {limit}")
        found: dict[int, list[str]] = {}
        for row in sorted(con.sql(sql).fetchall(), key=lambda r: (r[0], str(r[1])), reverse=True):
            rec = dict(zip(["patient", "date"] + _SHOW.get(t, []), row))
            found.setdefault(rec["patient"], []).append(_event_text(t, rec))
        per_agg.append(found)
    for p in patients:
        queues = [list(found.get(p, [])) for found in per_agg]
        while len(out[p]) < limit and any(queues):
            for q in queues:
                if q and len(out[p]) < limit:
                    event = q.pop(0)
                    if event not in out[p]:
                        out[p].append(event)
    return out


def _ids_table(patients: list[int]):
    import pyarrow as pa

    return pa.table({"patient": pa.array(patients, pa.int32())})
