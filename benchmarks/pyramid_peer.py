"""The risk pyramid's performance peer: ``casefind pyramid`` of the benchmark's risk rule
(test_bench_pyramid.py's RULE) as a skilled analyst would write it in DuckDB, ONE query over
the database of the source tables that ``peers.load_duckdb`` builds.

Independent of casefind, like ``peers.py``: the rule and docs/pyramid.md's method were read by
a person and written out by hand; nothing here imports casefind. The query:

1. ``pop``: the rule's population at the score date S = as_of - 12 months (registered at S,
   alive at S, 18 or over at S), with age at S.
2. ``before``: each member's emergency admissions and A&E attendances in (S - 12 months, S];
   ``after``: emergency admissions and the cost of all activity in (S, as_of].
3. The score, logistic(b0 + b_age x age + b_emergency x emergency_12m + b_ae x ae_12m); the rank
   by score (highest first), ties by patient id; band FROM-TO% is ranks floor(N x FROM + 1/2)
   to floor(N x TO + 1/2) - 1.
4. Per practice, locality and system (GROUPING SETS over practice, its locality and system)
   and band: people, admissions and cost; then each unit's totals by a window, and the rates,
   shares and the share of the band's admissions to avoid for a 10% cut of all.
"""
from __future__ import annotations

import datetime as dt

import duckdb

from peers import months_back

# the benchmark rule, as written by hand from its text
B0, B_AGE, B_EMERGENCY, B_AE = -5.0, 0.03, 0.6, 0.25
MIN_AGE = 18
BANDS = ((0.0, 0.005), (0.005, 0.05), (0.05, 0.2), (0.2, 1.0))
LABELS = ("0-0.5%", "0.5-5%", "5-20%", "20-100%")
CUT = 0.10

PYRAMID_SQL = """
WITH pop AS (
    SELECT p.patient_id, p.practice_code,
           year(DATE '{s}') - year(p.birth_date)
             - CAST(month(p.birth_date) * 100 + day(p.birth_date) > {md} AS INTEGER) AS age
    FROM patients p
    WHERE p.registration_start <= DATE '{s}'
      AND (p.registration_end IS NULL OR p.registration_end >= DATE '{s}')
      AND (p.death_date IS NULL OR p.death_date > DATE '{s}')
      AND year(DATE '{s}') - year(p.birth_date)
            - CAST(month(p.birth_date) * 100 + day(p.birth_date) > {md} AS INTEGER) >= {min_age}
), before AS (
    SELECT patient_id, count(*) FILTER (setting = 'emergency_admission') AS emergency_12m,
           count(*) FILTER (setting = 'ae') AS ae_12m
    FROM activity SEMI JOIN pop USING (patient_id)
    WHERE start_date > DATE '{s12}' AND start_date <= DATE '{s}' AND setting IN ('emergency_admission', 'ae')
    GROUP BY patient_id
), after AS (
    SELECT patient_id, count(*) FILTER (setting = 'emergency_admission') AS admissions,
           coalesce(sum(cost), 0) AS cost
    FROM activity SEMI JOIN pop USING (patient_id)
    WHERE start_date > DATE '{s}' AND start_date <= DATE '{t}'
    GROUP BY patient_id
), ranked AS (
    SELECT pop.patient_id, pop.practice_code, coalesce(after.admissions, 0) AS admissions,
           coalesce(after.cost, 0) AS cost,
           row_number() OVER (
               ORDER BY 1 / (1 + exp(-({b0} + {b_age} * age + {b_em} * coalesce(emergency_12m, 0)
                                       + {b_ae} * coalesce(ae_12m, 0)))) DESC, pop.patient_id) - 1 AS r,
           count(*) OVER () AS n
    FROM pop LEFT JOIN before USING (patient_id) LEFT JOIN after USING (patient_id)
), banded AS (
    SELECT *, CASE {cases} END AS band FROM ranked
), cells AS (
    SELECT CASE WHEN grouping(b.practice_code) = 0 THEN 'practice'
                WHEN grouping(pr.locality_code) = 0 THEN 'locality' ELSE 'system' END AS level,
           coalesce(b.practice_code, pr.locality_code, pr.system_code) AS unit_code,
           band, count(*) AS people, sum(admissions) AS admissions, sum(cost) AS cost
    FROM banded b JOIN practices pr USING (practice_code)
    GROUP BY GROUPING SETS ((pr.system_code, pr.locality_code, b.practice_code, band),
                            (pr.system_code, pr.locality_code, band), (pr.system_code, band))
), units AS (
    SELECT *, sum(people) OVER u AS unit_people, sum(admissions) OVER u AS unit_admissions,
           sum(cost) OVER u AS unit_cost
    FROM cells WINDOW u AS (PARTITION BY level, unit_code)
)
SELECT level, unit_code, band, people, admissions,
       1000.0 * admissions / people AS admissions_per_1000,
       (1000.0 * admissions / people) / nullif(1000.0 * unit_admissions / unit_people, 0) AS relative_rate,
       admissions / nullif(unit_admissions, 0) AS admissions_share,
       people / unit_people AS people_share,
       cost AS peer_cost, cost / nullif(unit_cost, 0) AS cost_share,
       {cut} / nullif(admissions / nullif(unit_admissions, 0), 0) AS avoid_share
FROM units
ORDER BY level, unit_code, band
"""


def sql(as_of: dt.date) -> str:
    s = months_back(as_of, 12)
    cases = " ".join(f"WHEN r < floor(n * {high} + 0.5) THEN {i}" for i, (_, high) in enumerate(BANDS[:-1]))
    return PYRAMID_SQL.format(s=s.isoformat(), s12=months_back(s, 12).isoformat(), t=as_of.isoformat(),
                              md=s.month * 100 + s.day, min_age=MIN_AGE, b0=B0, b_age=B_AGE, b_em=B_EMERGENCY,
                              b_ae=B_AE, cases=cases + f" ELSE {len(BANDS) - 1}", cut=CUT)


def run(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> list[dict]:
    """The pyramid's band rows per unit (bands with no one in a unit are absent)."""
    cur = con.execute(sql(as_of))
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    for r in rows:
        r["band"] = LABELS[r["band"]]
    return rows
