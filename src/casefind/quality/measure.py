"""The counts the quality report is made of, as DuckDB SQL over the store's decoded views.

The views are the reference engine's (``engines.duckdb_sql.register_store``: dates as DATE,
codes and text decoded), plus one ``q_<table>`` view per table that adds the row's month and
its data provider (``unit_kind``, ``unit_code``; see ``quality.tables``). Every query groups
and counts in SQL; only small results (per unit and month, per distinct code, flagged rows)
come back. Values from outside (unit costs, limits) reach SQL as registered tables or
literals, never as pasted text.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa

from casefind.contract.schema import ADMISSION_SETTINGS
from casefind.engines.duckdb_sql import register_store, sql_literal
from casefind.quality.tables import CODED, MEASURED, Measured
from casefind.store import Store

ENUM_ETHNICITY = "ethnicity"


def connect(store: Store) -> duckdb.DuckDBPyConnection:
    """A connection with the store's views and one ``q_<table>`` view per measured table."""
    con = duckdb.connect()
    register_store(con, store)
    _patients_view(con, store)
    con.execute("CREATE VIEW base_practices AS SELECT practice_code, practice_name, locality_code, locality_name, "
                "system_code, system_name FROM raw_practices")
    con.execute("CREATE VIEW base_procedures AS SELECT p.*, a.provider_code AS spell_provider FROM procedures p "
                "LEFT JOIN (SELECT spell_id, provider_code FROM activity WHERE spell_id IS NOT NULL) a "
                "ON a.spell_id = p.spell_id")
    for m in MEASURED.values():
        base = f"base_{m.name}" if m.name in ("patients", "practices", "procedures") else m.name
        con.execute(f"CREATE VIEW q_{m.name} AS SELECT *, {_unit_sql(m)}, "
                    f"{_month_sql(m)} AS month FROM {base}")
    return con


def _patients_view(con, store: Store) -> None:
    """Patients with every contract column (the engine's view leaves out ethnicity and LSOA,
    which no rule reads)."""
    enc = store.table("patients").encodings
    cases = " ".join(f"WHEN {i} THEN {sql_literal(v)}" for i, v in enumerate(enc[ENUM_ETHNICITY]["values"]))
    lsoa_dict = enc["lsoa_code"]["dictionary"]
    has_dict = lsoa_dict in store.manifest["dictionaries"]
    lsoa = "d.value" if has_dict else "NULL::VARCHAR"
    join = f"LEFT JOIN dict_{lsoa_dict.replace('.', '_')} d ON d.idx = r.lsoa_code" if has_dict else ""
    con.execute(f"""CREATE VIEW base_patients AS
        SELECT p.patient_id, p.birth_date, p.sex, p.practice AS practice_code, p.registration_start,
               p.registration_end, p.death_date, p.imd_decile,
               CASE r.ethnicity {cases} END AS ethnicity, {lsoa} AS lsoa_code, p.patient
        FROM patients p
        JOIN (SELECT (row_number() OVER () - 1)::INTEGER AS patient, ethnicity, lsoa_code FROM raw_patients) r
          ON r.patient = p.patient {join}""")


def _unit_sql(m: Measured) -> str:
    if m.unit_sql is None:
        return "NULL::VARCHAR AS unit_kind, NULL::VARCHAR AS unit_code"
    if m.fallback_sql is None:
        return f"{sql_literal(m.unit_kind)} AS unit_kind, {m.unit_sql}::VARCHAR AS unit_code"
    return (f"CASE WHEN {m.unit_sql} IS NULL THEN {sql_literal(m.fallback_kind)} ELSE {sql_literal(m.unit_kind)} "
            f"END AS unit_kind, COALESCE({m.unit_sql}, {m.fallback_sql})::VARCHAR AS unit_code")


def _month_sql(m: Measured) -> str:
    return "NULL::VARCHAR" if m.month is None else f"strftime({m.month}, '%Y-%m')"


def _rows(con, sql: str, params: list | None = None) -> list[dict]:
    rel = con.execute(sql, params or [])
    names = [d[0] for d in rel.description]
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]


def counts(con, m: Measured) -> list[dict]:
    """Per unit and month: rows, and for each measured column the rows it applies to and the
    rows that fill it (keys ``a:<column>``, ``f:<column>``)."""
    parts = ["count(*) AS rows"]
    for col in m.measured_columns():
        where = m.applies.get(col, ("TRUE", ""))[0]
        parts.append(f'count(*) FILTER (WHERE {where}) AS "a:{col}"')
        parts.append(f'count("{col}") FILTER (WHERE {where}) AS "f:{col}"')
    return _rows(con, f"SELECT unit_kind, unit_code, month, {', '.join(parts)} FROM q_{m.name} GROUP BY ALL")


def codes(con, table: str) -> list[dict]:
    """Rows per unit, code system and code (distinct codes only come back)."""
    column, system = CODED[table]
    return _rows(con, f'SELECT unit_kind, unit_code, {system} AS system, "{column}" AS code, count(*) AS rows '
                      f'FROM q_{table} WHERE "{column}" IS NOT NULL GROUP BY ALL')


def data_end(con) -> dt.date | None:
    """The last day of the data: the 99.9th percentile of every event date, so that a few rows
    dated years ahead (a typo the contract accepts, up to 2099) do not move the window."""
    return con.execute(f"SELECT quantile_disc(d, 0.999) FROM ({dates_sql()})").fetchone()[0]


def dates_sql() -> str:
    """Every event date of every dated table, one row each, as column ``d``."""
    return " UNION ALL ".join(f"SELECT {m.month} AS d FROM {m.name}" for m in MEASURED.values() if m.month)


def costs(con, reference: pa.Table, factor: float, top: int) -> tuple[list[dict], list[dict]]:
    """Activity costs more than ``factor`` times or less than 1/``factor`` of the unit cost of
    their setting: counts per unit, month, setting and direction, and the ``top`` furthest
    rows of each unit."""
    con.register("q_unit_costs", reference)
    flagged = """WITH c AS (
        SELECT a.unit_kind, a.unit_code, a.month, a.setting, a.start_date, a.spell_id, a.cost,
               u.cost_gbp + COALESCE(u.excess_bed_day_gbp, 0)
                 * greatest(0, COALESCE(a.end_date - a.start_date, 0) - COALESCE(u.trim_days, 0)) AS expected
        FROM q_activity a JOIN q_unit_costs u ON u.setting = a.setting
        WHERE a.cost IS NOT NULL AND u.cost_gbp > 0),
      f AS (SELECT *, cost / expected AS ratio FROM c WHERE cost > ? * expected OR cost < expected / ?)"""
    grouped = _rows(con, f"{flagged} SELECT unit_kind, unit_code, month, setting, "
                         "CASE WHEN ratio > 1 THEN 'high' ELSE 'low' END AS direction, count(*) AS rows "
                         "FROM f GROUP BY ALL", [factor, factor])
    examples = _rows(con, f"""{flagged}, r AS (SELECT *, row_number() OVER (PARTITION BY unit_kind, unit_code
            ORDER BY CASE WHEN ratio = 0 THEN 1e300 ELSE greatest(ratio, 1 / ratio) END DESC, start_date) AS k FROM f)
        SELECT unit_kind, unit_code, month, setting, start_date, spell_id, cost, expected, ratio FROM r
        WHERE k <= ? ORDER BY unit_kind, unit_code, k""", [factor, factor, top])
    return grouped, examples


def stays(con, reference: pa.Table, end: dt.date | None, top: int) -> tuple[list[dict], list[dict]]:
    """Stays (end_date - start_date) below zero or beyond the setting's plausible maximum, and
    admissions with no end date that started more than that maximum before the end of the
    patient's data: the end of the data, or their death or deregistration if earlier (a provider
    that never sends discharge dates looks like one whose patients never leave)."""
    con.register("q_unit_costs", reference)
    admission = ", ".join(sql_literal(s) for s in ADMISSION_SETTINGS)
    flagged = f"""WITH s AS (
        SELECT a.unit_kind, a.unit_code, a.month, a.setting, a.start_date, a.spell_id, a.end_date IS NULL AS open,
               COALESCE(a.end_date, least(?::DATE, p.registration_end, p.death_date)) - a.start_date AS days,
               u.max_days
        FROM q_activity a LEFT JOIN q_unit_costs u ON u.setting = a.setting
        JOIN patients p ON p.patient = a.patient
        WHERE a.end_date IS NOT NULL OR (a.setting IN ({admission}) AND ?::DATE IS NOT NULL)),
      f AS (SELECT * FROM s WHERE (NOT open AND days < 0) OR (max_days IS NOT NULL AND days > max_days))"""
    grouped = _rows(con, f"{flagged} SELECT unit_kind, unit_code, month, setting, "
                         "CASE WHEN days < 0 THEN 'negative' WHEN open THEN 'open too long' ELSE 'too long' END "
                         "AS direction, count(*) AS rows FROM f GROUP BY ALL", [end, end])
    examples = _rows(con, f"""{flagged}, r AS (SELECT *, row_number() OVER (PARTITION BY unit_kind, unit_code
            ORDER BY abs(days) DESC, start_date) AS k FROM f)
        SELECT unit_kind, unit_code, month, setting, start_date, spell_id, days, max_days, open FROM r
        WHERE k <= ? ORDER BY unit_kind, unit_code, k""", [end, end, top])
    return grouped, examples


def busy_patients(con, m: Measured) -> list[dict]:
    """Per unit and month: patients with more than the table's plausible rows in the month,
    and the most any of them had."""
    return _rows(con, f"""SELECT unit_kind, unit_code, month, count(*) AS patients, max(n) AS most
        FROM (SELECT unit_kind, unit_code, month, patient, count(*) AS n FROM q_{m.name}
              GROUP BY ALL HAVING count(*) > ?) GROUP BY ALL""", [m.max_per_month])
