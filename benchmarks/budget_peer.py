"""The budget's performance peer: benchmarks/budgets/bench_ltc.yml for one financial year as a
skilled analyst would write it in DuckDB, a short script of queries over the database of the
source tables that ``peers.load_duckdb`` builds (with the published QOF clusters as ``qof_cl``).

Independent of casefind, like ``peers.py``: the budget file and docs/budgets.md's methods were
read by a person and written out by hand; nothing here imports casefind. The script:

1. ``evals``: the dates the cohort is judged at (the day before the year, each month's end;
   the baseline year's end is the last of them, as the baseline is the year itself).
2. ``member``: who is in the cohort at each date (registered, alive, 18 or over, 1+ distinct
   QOF cluster category coded on or before it) and their category by that count. An analyst
   who knows that the count only grows takes each category's first date once, and counts
   the categories new by each date (before the year, or in each of its months).
3. ``grid``: each month a person is in the cohort at its end, or was at the month before's
   and is not now (a leaver), with the category of their spell (a run of consecutive month
   ends in the cohort: the category at its first, found by an ASOF join to the spell starts),
   and the month's first and last day in the cohort: the month's first day, or the
   registration day for a joiner; a leaver who died or deregistered from the last day found
   in to the month's end is in to that day, else is out for the whole month.
4. Tariffs: the baseline people (in at the baseline year's end, registered throughout it),
   their in-scope cost in the year, the categories too small merged as the file says (a
   Python loop over four counts), each priced group's 99th percentile by ``quantile_cont``
   (linear interpolation between the order statistics at (n - 1) x p, which is numpy's
   default ``linear`` method that casefind states), costs capped at it, the mean, uplifted.
5. The baseline profile: the baseline people's in-scope cost by calendar month, as shares.
6. Per practice and month: people at the month's end, the budget (tariff x weight x days in
   the cohort / days in the month) and the actual (in-scope cost dated on a day in the
   cohort); and per month the joiners and leavers by reason.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

# bench_ltc.yml, as written by hand from the file
CATEGORIES = ["7plus", "4plus", "3", "2", "1"]
CATEGORY_CASE = "CASE WHEN n >= 7 THEN 0 WHEN n >= 4 THEN 1 WHEN n = 3 THEN 2 WHEN n = 2 THEN 3 ELSE 4 END"
MERGE_INTO = {"7plus": "4plus"}
MIN_CATEGORY_SIZE = 30
PERCENTILE = 0.99
UPLIFT = 0.025
MIN_AGE = 18
SETTINGS = ("gp", "ae", "emergency_admission", "elective_admission", "outpatient", "community", "mental_health",
            "ambulance", "out_of_hours")
EXCLUDED_FUNDING = ("block", "national", "out_of_area", "high_cost_low_volume")


@dataclass(frozen=True)
class PeerBudget:
    """What the peer takes away: tariffs by category, per (practice, month) people at the
    month's end, budget and actual, and per month the joiners and leavers by reason."""

    tariffs: dict[str, float]
    weights: list[float]
    practice_month: dict[tuple[str, int], tuple[int, float, float]]
    movement: dict[int, tuple[int, int, int, int]]


def month_bounds(first: int) -> list[tuple[dt.date, dt.date]]:
    """The financial year's 12 months: (first day, last day)."""
    out = []
    for m in range(12):
        y, mo = first + (m + 3) // 12, (m + 3) % 12 + 1
        nxt = dt.date(y + (mo == 12), mo % 12 + 1, 1)
        out.append((dt.date(y, mo, 1), nxt - dt.timedelta(days=1)))
    return out


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)  # the file's own names, not a user's text


def _evals(con, first: int) -> None:
    months = month_bounds(first)
    rows = [f"(0, DATE '{months[0][0] - dt.timedelta(days=1)}', NULL, NULL)"]
    rows += [f"({k + 1}, DATE '{e}', DATE '{s}', {(e - s).days + 1})" for k, (s, e) in enumerate(months)]
    con.execute("CREATE OR REPLACE TEMP TABLE evals AS SELECT * FROM (VALUES " + ", ".join(rows)
                + ") t(k, d, m_start, month_days)")


AGE = ("year(l.d) - year(p.birth_date) - CASE WHEN month(l.d) < month(p.birth_date) OR "
       "(month(l.d) = month(p.birth_date) AND day(l.d) < day(p.birth_date)) THEN 1 ELSE 0 END")

MEMBER = f"""CREATE OR REPLACE TEMP TABLE member AS
WITH qof AS (SELECT DISTINCT code, system, category FROM qof_cl),
first_cat AS (
    SELECT d.patient_id, q.category, min(d.date) AS first FROM diagnoses d
    JOIN qof q ON q.code = d.code AND q.system = d.code_system GROUP BY ALL),
new_at AS (
    SELECT patient_id, CASE WHEN first < $start THEN 0 ELSE date_diff('month', $start, first) + 1 END AS k0,
           count(*) AS c
    FROM first_cat WHERE first <= $end GROUP BY ALL),
ltcs AS (SELECT e.k, e.d, i.patient_id, sum(i.c) AS n FROM evals e JOIN new_at i ON i.k0 <= e.k GROUP BY ALL)
SELECT l.k, p.patient_id, {CATEGORY_CASE} AS cat, p.practice_code, p.registration_start, p.registration_end,
       p.death_date
FROM ltcs l JOIN patients p USING (patient_id)
WHERE p.registration_start <= l.d AND (p.registration_end IS NULL OR p.registration_end >= l.d)
  AND (p.death_date IS NULL OR p.death_date > l.d) AND {AGE} >= {MIN_AGE}"""

GRID = """CREATE OR REPLACE TEMP TABLE grid AS
WITH months AS (
    SELECT m.* EXCLUDE (k), m.k, true AS now, b.patient_id IS NOT NULL AS before
    FROM member m LEFT JOIN member b ON b.patient_id = m.patient_id AND b.k = m.k - 1 WHERE m.k >= 1
    UNION ALL BY NAME
    SELECT b.* EXCLUDE (k, cat), b.k + 1 AS k, false AS now, true AS before
    FROM member b ANTI JOIN member m ON m.patient_id = b.patient_id AND m.k = b.k + 1 WHERE b.k < 12),
starts AS (SELECT patient_id, k, cat FROM months WHERE now AND NOT before
           UNION ALL SELECT patient_id, k, cat FROM member WHERE k = 0),
s AS (SELECT x.*, st.cat AS spell_cat FROM months x
      ASOF JOIN starts st ON st.patient_id = x.patient_id AND x.k >= st.k),
x AS (
    SELECT s.*, e.d, e.m_start, e.month_days,
           coalesce(NOT now AND death_date BETWEEN e.m_start - 1 AND e.d
                    AND (registration_end IS NULL OR death_date <= registration_end), false) AS died,
           coalesce(NOT now AND registration_end BETWEEN e.m_start - 1 AND e.d, false) AS reg_ended
    FROM s JOIN evals e USING (k))
SELECT patient_id, practice_code, k, now, before, spell_cat, died, NOT died AND reg_ended AS deregistered,
       NOT now AND NOT died AND NOT reg_ended AS no_longer_qualifies,
       CASE WHEN now AND NOT before THEN least(greatest(m_start, registration_start), d) ELSE m_start END AS first_day,
       CASE WHEN now THEN d WHEN died THEN death_date WHEN reg_ended THEN registration_end END AS last_day,
       m_start, d AS m_end, month_days
FROM x"""

# the year's in-scope records (the baseline is the year itself), each with its month k
IN_SCOPE = f"""CREATE OR REPLACE TEMP TABLE in_scope AS
SELECT patient_id, start_date, date_diff('month', $start, start_date) + 1 AS k, coalesce(cost, 0) AS cost
FROM activity
WHERE start_date BETWEEN $start AND $end AND setting IN ({_sql_list(SETTINGS)})
  AND coalesce(funding, 'activity') NOT IN ({_sql_list(EXCLUDED_FUNDING)})"""

BASELINE = """CREATE OR REPLACE TEMP TABLE baseline AS
SELECT m.patient_id, m.cat, coalesce(c.cost, 0) AS cost
FROM member m LEFT JOIN (SELECT patient_id, sum(cost) AS cost FROM in_scope GROUP BY ALL) c USING (patient_id)
WHERE m.k = 12 AND m.registration_start <= $start AND (m.registration_end IS NULL OR m.registration_end >= $end)
  AND (m.death_date IS NULL OR m.death_date > $end)"""

PRICED = """WITH g AS (SELECT b.cost, t.grp FROM baseline b JOIN groups t ON t.cat = b.cat),
q AS (SELECT grp, quantile_cont(cost, $p) AS threshold FROM g GROUP BY grp)
SELECT g.grp, avg(least(g.cost, q.threshold)) FROM g JOIN q USING (grp) GROUP BY g.grp"""

WEIGHTS = "SELECT k, sum(cost) FROM in_scope SEMI JOIN baseline USING (patient_id) GROUP BY ALL"

PRACTICE_MONTH = """WITH rows AS (
    SELECT g.*, greatest(date_diff('day', g.first_day, g.last_day) + 1, 0) AS days, t.tariff, w.weight
    FROM grid g JOIN tariffs t ON t.cat = g.spell_cat JOIN weights w ON w.k = g.k
    WHERE g.now OR g.died OR g.deregistered),
budget AS (SELECT practice_code, k, count(*) FILTER (now) AS people,
                  sum(tariff * weight * days / month_days) AS budget FROM rows GROUP BY ALL),
actual AS (SELECT r.practice_code, r.k, sum(i.cost) AS actual FROM rows r
           JOIN in_scope i ON i.patient_id = r.patient_id AND i.k = r.k
            AND i.start_date BETWEEN r.first_day AND r.last_day
           GROUP BY ALL)
SELECT practice_code, k, people, budget, coalesce(actual, 0) FROM budget LEFT JOIN actual USING (practice_code, k)"""

# a leaver who died or deregistered leaves in the month of that day (the last day found in,
# a month's end, falls in the month before; the day before the year, in its first month); one
# no longer qualifying, in the month found out
MOVEMENT = """SELECT CASE WHEN died OR deregistered THEN month_of ELSE k END AS month_k,
       count(*) FILTER (now AND NOT before) AS joined, count(*) FILTER (died) AS died,
       count(*) FILTER (deregistered) AS deregistered, count(*) FILTER (no_longer_qualifies) AS no_longer
FROM (SELECT *, CASE WHEN last_day < m_start THEN greatest(k - 1, 1) ELSE k END AS month_of FROM grid)
WHERE (now AND NOT before) OR NOT now AND before GROUP BY ALL"""


def priced_groups(people: dict[str, int]) -> dict[str, str]:
    """The category each is priced with: a category smaller than the minimum that names a
    ``merge_into`` is priced with it (followed on while that one is also too small)."""
    out = {}
    for c in CATEGORIES:
        seen, target = {c}, c
        while people.get(target, 0) < MIN_CATEGORY_SIZE and target in MERGE_INTO and MERGE_INTO[target] not in seen:
            target = MERGE_INTO[target]
            seen.add(target)
        out[c] = target
    return out


def run(con: duckdb.DuckDBPyConnection, first: int = 2025) -> PeerBudget:
    """The budget for the financial year starting 1 April ``first``, tariffs from that year."""
    months = month_bounds(first)
    span = {"start": months[0][0], "end": months[-1][1]}
    _evals(con, first)
    con.execute(MEMBER, span)
    con.execute(GRID)
    con.execute(IN_SCOPE, span)
    con.execute(BASELINE, span)
    people = {CATEGORIES[c]: n for c, n in con.execute("SELECT cat, count(*) FROM baseline GROUP BY cat").fetchall()}
    groups = priced_groups(people)
    con.execute("CREATE OR REPLACE TEMP TABLE groups AS SELECT * FROM (VALUES "
                + ", ".join(f"({i}, {CATEGORIES.index(groups[c])})" for i, c in enumerate(CATEGORIES))
                + ") t(cat, grp)")
    mean = dict(con.execute(PRICED, {"p": PERCENTILE}).fetchall())
    tariffs = {c: mean[CATEGORIES.index(groups[c])] * (1 + UPLIFT) for c in CATEGORIES}
    con.execute("CREATE OR REPLACE TEMP TABLE tariffs AS SELECT * FROM (VALUES "
                + ", ".join(f"({i}, {tariffs[c]!r})" for i, c in enumerate(CATEGORIES)) + ") t(cat, tariff)")
    by_month = dict(con.execute(WEIGHTS).fetchall())
    cost = [float(by_month.get(k, 0.0)) for k in range(1, 13)]
    weights = [c / sum(cost) for c in cost]
    con.execute("CREATE OR REPLACE TEMP TABLE weights AS SELECT * FROM (VALUES "
                + ", ".join(f"({k + 1}, {w!r})" for k, w in enumerate(weights)) + ") t(k, weight)")
    practice_month = {(p, k): (int(n), float(b), float(a)) for p, k, n, b, a in con.execute(PRACTICE_MONTH).fetchall()}
    movement = {k: tuple(int(v) for v in rest) for k, *rest in con.execute(MOVEMENT).fetchall()}
    return PeerBudget(tariffs, weights, practice_month, movement)
