"""The matched-cohort evaluation's engine stage as a skilled analyst would write it in
DuckDB SQL over the source tables: for each index month end and each month end a window
later, every patient's eligibility and the shipped spec's features and outcomes
(rules/evaluations/case_management.yml), materialised as a table, then summed per date so
that casefind's values can be checked against it."""
from __future__ import annotations

import datetime as dt

import duckdb

MEMORY_LIMIT = "3GB"
AGE = ("(year(d.d) - year(p.birth_date) - CASE WHEN month(d.d) < month(p.birth_date) OR "
       "(month(d.d) = month(p.birth_date) AND day(d.d) < day(p.birth_date)) THEN 1 ELSE 0 END)")

VALUES_SQL = f"""
CREATE OR REPLACE TEMP TABLE eval_values AS
WITH act AS (
  SELECT d.k, a.patient_id,
         count(*) FILTER (WHERE a.setting = 'emergency_admission') AS emergency,
         coalesce(sum(a.cost), 0) AS cost,
         coalesce(sum(date_diff('day', a.start_date, a.end_date))
                  FILTER (WHERE a.setting = 'emergency_admission'), 0) AS bed_days
  FROM dates d JOIN activity a
    ON a.start_date > d.d - INTERVAL 12 MONTH AND a.start_date <= d.d
  GROUP BY d.k, a.patient_id),
dx AS (
  SELECT d.k, x.patient_id, count(DISTINCT x.code) AS ltcs
  FROM dates d JOIN diagnoses x ON x.date <= d.d
  GROUP BY d.k, x.patient_id)
SELECT d.k, p.patient_id,
       (p.registration_start <= d.d AND (p.registration_end IS NULL OR p.registration_end >= d.d))
         AND (p.death_date IS NULL OR p.death_date > d.d) AND {AGE} >= 18 AS eligible,
       {AGE} AS age,
       coalesce(act.emergency, 0) AS emergency, coalesce(act.cost, 0) AS cost,
       coalesce(act.bed_days, 0) AS bed_days, coalesce(dx.ltcs, 0) AS ltcs,
       NOT (p.death_date IS NULL OR p.death_date > d.d) AS dead
FROM dates d CROSS JOIN patients p
LEFT JOIN act ON act.k = d.k AND act.patient_id = p.patient_id
LEFT JOIN dx ON dx.k = d.k AND dx.patient_id = p.patient_id
"""

SUMS_SQL = """
SELECT k, count(*) FILTER (WHERE eligible) AS eligible, sum(age) FILTER (WHERE eligible) AS age_eligible,
       sum(emergency) AS emergency, sum(cost) AS cost, sum(bed_days) AS bed_days, sum(ltcs) AS ltcs,
       count(*) FILTER (WHERE dead) AS dead
FROM eval_values GROUP BY k ORDER BY k
"""


def run(con: duckdb.DuckDBPyConnection, dates: list[dt.date]) -> list[dict]:
    """Per date (in the order given): the sums of every patient's values. DuckDB is held to
    MEMORY_LIMIT (it spills to disk beyond it), as the machine is shared."""
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("CREATE OR REPLACE TEMP TABLE dates AS SELECT * FROM (SELECT unnest(?) AS d, "
                "generate_subscripts(?, 1) - 1 AS k)", [dates, dates])
    con.execute(VALUES_SQL)
    cols = ("k", "eligible", "age_eligible", "emergency", "cost", "bed_days", "ltcs", "dead")
    return [dict(zip(cols, r)) for r in con.execute(SUMS_SQL).fetchall()]
