"""The hand-written DuckDB SQL peer of ``casefind diagnose`` (benchmarks/test_bench_diagnose.py).

What a skilled analyst would write over the source tables (the peers' DuckDB database,
peers.py): monthly sums per patient once, each rule's 12-month windows as sums of 12 monthly
buckets at every month-end (the dates are month-ends, so a window is 12 whole months), then
cohort sizes per practice, turnover with its reasons, pairwise overlap and the crisis curve
with its matched comparison (exact strata, nearest prior cost by two ASOF joins, ties to
the lower cost then the lower patient id, with replacement) - the method of
src/casefind/diagnose/crisis.py, written again in SQL.
"""
from __future__ import annotations

import datetime as dt

import duckdb

# rule -> (the monthly column its 12-month window sums, threshold): the benchmark's rules
RULES = {"admitted": ("adm", 2), "ae_frequent": ("ae", 3), "costly": ("cost_all", 5000)}
SPAN = 12


def month_number(d: dt.date) -> int:
    return (d.year - 1970) * 12 + d.month - 1


def _month_end_sql(m: str) -> str:
    return f"(make_date(1970 + ({m} + 1) // 12, ({m} + 1) % 12 + 1, 1) - INTERVAL 1 DAY)::DATE"


SETUP = """
CREATE OR REPLACE TEMP TABLE monthly AS
SELECT patient_id, (year(start_date) - 1970) * 12 + month(start_date) - 1 AS m,
       count(*) FILTER (WHERE setting = 'emergency_admission') AS adm,
       count(*) FILTER (WHERE setting = 'ae') AS ae,
       coalesce(sum(cost), 0) AS cost_all,
       coalesce(sum(cost) FILTER (WHERE funding IS NULL OR funding = 'activity'), 0) AS cost_scope
FROM activity GROUP BY ALL;
CREATE OR REPLACE TEMP TABLE dates AS SELECT unnest({months}) AS md;
CREATE OR REPLACE TEMP TABLE people AS
SELECT patient_id, practice_code, sex, death_date, registration_start, registration_end,
       (year(birth_date) - 1970) * 12 + month(birth_date) - 1 AS birth_m FROM patients;
CREATE OR REPLACE TEMP TABLE alive_at AS
SELECT p.patient_id, d.md FROM people p, dates d
WHERE p.registration_start <= {end_md} AND (p.registration_end IS NULL OR p.registration_end >= {end_md})
  AND (p.death_date IS NULL OR p.death_date > {end_md});
CREATE OR REPLACE TEMP TABLE windows AS
SELECT patient_id, md, sum(adm) AS adm, sum(ae) AS ae, sum(cost_all) AS cost_all FROM (
  SELECT w.patient_id, d.md, w.adm, w.ae, w.cost_all FROM monthly w JOIN dates d ON w.m BETWEEN d.md - 11 AND d.md
  UNION ALL  -- (D - 12 months, D] for D = 28 February reaches back to 29 February of a leap year
  SELECT a.patient_id, d.md, (a.setting = 'emergency_admission')::INT, (a.setting = 'ae')::INT, coalesce(a.cost, 0)
  FROM activity a JOIN dates d ON (year(a.start_date) - 1970) * 12 + month(a.start_date) - 1 = d.md - 12
  WHERE a.start_date > ({end_md} - INTERVAL 12 MONTH)::DATE
) GROUP BY ALL;
CREATE OR REPLACE TEMP TABLE cohorts AS
{cohorts};
"""


def setup(con: duckdb.DuckDBPyConnection, months: list[int]) -> None:
    """Monthly sums, each rule's cohort at every month-end in ``months``."""
    cohorts = " UNION ALL ".join(
        f"SELECT '{rule}' AS rule, a.patient_id, a.md FROM alive_at a JOIN windows w USING (patient_id, md) "
        f"WHERE w.{column} >= {threshold}" for rule, (column, threshold) in RULES.items())
    con.execute(SETUP.format(months=sorted(set(months)), end_md=_month_end_sql("d.md"), cohorts=cohorts))


def sizes(con, as_of_m: int) -> list[dict]:
    rows = con.execute(f"""
        SELECT r.rule, pr.practice_code AS practice, count(c.patient_id) AS people
        FROM (SELECT unnest({list(RULES)}) AS rule) r CROSS JOIN practices pr
        LEFT JOIN (SELECT c.rule, p.practice_code, c.patient_id FROM cohorts c JOIN people p USING (patient_id)
                   WHERE c.md = {as_of_m}) c ON c.rule = r.rule AND c.practice_code = pr.practice_code
        GROUP BY ALL""").fetchall()
    return [{"rule": r, "practice": p, "people": n} for r, p, n in rows]


def turnover(con, as_of: dt.date, earlier_m: int, as_of_m: int) -> list[dict]:
    rows = con.execute(f"""
        WITH e AS (SELECT rule, patient_id FROM cohorts WHERE md = {earlier_m}),
             n AS (SELECT rule, patient_id FROM cohorts WHERE md = {as_of_m}),
             left_ AS (SELECT e.rule, p.* FROM e ANTI JOIN n USING (rule, patient_id) JOIN people p USING (patient_id))
        SELECT r.rule,
          (SELECT count(*) FROM e WHERE e.rule = r.rule) AS earlier_size,
          (SELECT count(*) FROM n WHERE n.rule = r.rule) AS now_size,
          (SELECT count(*) FROM n ANTI JOIN e USING (rule, patient_id) WHERE n.rule = r.rule) AS joined,
          (SELECT count(*) FROM n SEMI JOIN e USING (rule, patient_id) WHERE n.rule = r.rule) AS stayed,
          (SELECT count(*) FROM left_ l WHERE l.rule = r.rule AND l.death_date <= DATE '{as_of}') AS left_died,
          (SELECT count(*) FROM left_ l WHERE l.rule = r.rule AND NOT coalesce(l.death_date <= DATE '{as_of}', false)
             AND (l.registration_end < DATE '{as_of}' OR l.registration_start > DATE '{as_of}')) AS left_moved
        FROM (SELECT unnest({list(RULES)}) AS rule) r""").fetchall()
    out = []
    for rule, before, now, joined, stayed, died, moved in rows:
        left = before - stayed
        out.append({"rule": rule, "earlier_size": before, "now_size": now, "joined": joined, "stayed": stayed,
                    "left": left, "left_died": died, "left_moved": moved,
                    "left_no_longer_qualifies": left - died - moved})
    return out


def overlap(con, as_of_m: int) -> list[dict]:
    rows = con.execute(f"""
        WITH n AS (SELECT rule, patient_id FROM cohorts WHERE md = {as_of_m}),
             r AS (SELECT unnest({list(RULES)}) AS rule)
        SELECT a.rule, b.rule, (SELECT count(*) FROM n x JOIN n y USING (patient_id)
                                WHERE x.rule = a.rule AND y.rule = b.rule)
        FROM r a, r b""").fetchall()
    return [{"rule_a": a, "rule_b": b, "both": n} for a, b, n in rows]


CRISIS = """
WITH met AS (SELECT patient_id, min(md) AS first_md FROM cohorts WHERE rule = '{rule}' AND md BETWEEN {w0} AND {w1}
             GROUP BY ALL),
cases AS (SELECT patient_id, first_md AS im FROM met WHERE first_md >= {i0}),
idents AS (SELECT unnest(range({i0}, {i1} + 1)) AS im),
strata AS (
  SELECT p.patient_id, i.im,
         least(((i.im - p.birth_m) // 12) // 10, 9) AS age_band, p.sex,
         least(coalesce(sum(w.adm), 0), 3) AS adm_band,
         least(coalesce(sum(w.adm) FILTER (WHERE w.m = i.im), 0), 2) AS recent_band,
         round(coalesce(sum(w.cost_scope), 0), 2) AS cost
  FROM people p CROSS JOIN idents i
  LEFT JOIN monthly w ON w.patient_id = p.patient_id AND w.m BETWEEN i.im - 11 AND i.im
  GROUP BY ALL),
keyed AS (SELECT *, (cost >= 0.005)::INT + (cost >= 1000)::INT + (cost >= 3000)::INT + (cost >= 10000)::INT AS cost_band
          FROM strata),
pool AS (SELECT k.im, k.age_band, k.sex, k.adm_band, k.recent_band, k.cost_band, k.cost, min(k.patient_id) AS control
         FROM keyed k JOIN alive_at a ON a.patient_id = k.patient_id AND a.md = k.im
         ANTI JOIN met m ON m.patient_id = k.patient_id
         GROUP BY ALL),
c AS (SELECT k.* FROM keyed k JOIN cases USING (patient_id, im)),
below AS (SELECT c.patient_id, c.im, c.cost, p.cost AS b_cost, p.control AS b_control
          FROM c ASOF LEFT JOIN pool p ON c.im = p.im AND c.age_band = p.age_band AND c.sex = p.sex
            AND c.adm_band = p.adm_band AND c.recent_band = p.recent_band AND c.cost_band = p.cost_band
            AND c.cost >= p.cost),
above AS (SELECT c.patient_id, c.im, p.cost AS a_cost, p.control AS a_control
          FROM c ASOF LEFT JOIN (SELECT *, -cost AS neg FROM pool) p ON c.im = p.im AND c.age_band = p.age_band
            AND c.sex = p.sex AND c.adm_band = p.adm_band AND c.recent_band = p.recent_band
            AND c.cost_band = p.cost_band AND -c.cost >= p.neg),
pairs AS (SELECT b.patient_id, b.im,
            CASE WHEN a_control IS NOT NULL AND (b_control IS NULL OR a_cost - b.cost < b.cost - b_cost)
                 THEN a_control ELSE b_control END AS control
          FROM below b JOIN above a USING (patient_id, im)),
groups AS (SELECT 'cohort' AS grp, patient_id AS who, im FROM pairs
           UNION ALL SELECT 'matched_cohort', patient_id, im FROM pairs WHERE control IS NOT NULL
           UNION ALL SELECT 'comparison', control, im FROM pairs WHERE control IS NOT NULL),
sized AS (SELECT grp, count(*) AS people FROM groups GROUP BY ALL),
offsets AS (SELECT unnest(range(-12, 13)) AS k)
SELECT g.grp, o.k, s.people, sum(coalesce(w.cost_scope, 0)) / s.people, sum(coalesce(w.adm, 0)) / s.people
FROM groups g CROSS JOIN offsets o JOIN sized s USING (grp)
LEFT JOIN monthly w ON w.patient_id = g.who AND w.m = g.im + o.k
GROUP BY g.grp, o.k, s.people
"""


def crisis(con, identification: list[int], washout: int) -> list[dict]:
    """Per rule, group and month -12..12: people and mean monthly cost and admissions."""
    i0, i1 = identification[0], identification[-1]
    out = []
    for rule in RULES:
        rows = con.execute(CRISIS.format(rule=rule, w0=i0 - washout, w1=i1, i0=i0, i1=i1)).fetchall()
        got = {(g, k): (n, c, a) for g, k, n, c, a in rows}
        for g in ("cohort", "matched_cohort", "comparison"):  # a group of nobody: no means
            for k in range(-SPAN, SPAN + 1):
                n, c, a = got.get((g, k), (0, None, None))
                out.append({"rule": rule, "group": g, "month": k, "people": n, "mean_cost": c, "mean_admissions": a})
    return out


def run_all(con, as_of: dt.date, identification: list[int], washout: int) -> dict[str, list[dict]]:
    """Everything, for ``as_of`` (a month-end) and the crisis curve's identification months."""
    as_of_m = month_number(as_of)
    months = [as_of_m, as_of_m - 12, *range(identification[0] - washout, identification[-1] + 1)]
    setup(con, months)
    return {"sizes": sizes(con, as_of_m), "turnover": turnover(con, as_of, as_of_m - 12, as_of_m),
            "overlap": overlap(con, as_of_m), "crisis": crisis(con, identification, washout)}
