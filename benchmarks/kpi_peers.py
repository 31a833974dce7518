"""The KPIs' performance peer: rules/kpis/triple_aim.yml as a skilled analyst would write it
in DuckDB, ONE query per measure over all periods (GROUP BY period, practice).

Independent of casefind, like ``peers.py`` (whose DuckDB database of the source tables it
reads): the KPI file was read by a person and written out by hand. An analyst who knows
that every period ends on a month end aggregates events by month once and sums the 12
months of each period's window from those (rather than joining every row to every period
it falls in); ``last`` values and distinct counts keep their rows.

Each query returns, per period end ``d`` and practice, ``n`` (people in the population),
``k`` (people in it with a value) and ``s`` (the sum of their values): what casefind's
numerator and denominator are made of (rate and per head: s over n; proportion: s over n;
mean: s over k; total: s). Four of the file's 23 measures are not written here: the ACSC
admissions and the 30-day readmissions (both need continuous inpatient spells and
spell-level diagnosis rules), people at home 91 days after reablement, and the median
length of stay (a median is not made of sums). The benchmark says so beside its figures.
"""
from __future__ import annotations

import datetime as dt

import duckdb

from peers import months_back

# rules/kpis/triple_aim.yml's measures, by hand: (kind, SQL). {periods} is the periods
# table: d (period end), d12 (12 months back), m_last (the month of d), m_first (11 months
# before it), p_start (the reporting month's first day).
RESIDENT = """res AS (
    SELECT p.d, p.d12, p.p_start, pt.patient_id, pt.practice_code, pt.birth_date
    FROM periods p JOIN patients pt
      ON pt.registration_start <= p.d AND (pt.registration_end IS NULL OR pt.registration_end >= p.d)
     AND (pt.death_date IS NULL OR pt.death_date > p.d))"""
AGE = ("(year(r.d) - year(r.birth_date) - CASE WHEN month(r.d) < month(r.birth_date) OR "
       "(month(r.d) = month(r.birth_date) AND day(r.d) < day(r.birth_date)) THEN 1 ELSE 0 END)")


def _monthly_sum(value: str, where: str, table: str = "activity", date: str = "start_date") -> str:
    """Per period and patient, the sum of ``value`` over the rows of the 12 months to d."""
    return f"""monthly AS (
    SELECT patient_id, date_trunc('month', {date}) AS m, sum({value}) AS v
    FROM {table} WHERE {where} GROUP BY ALL),
w AS (SELECT p.d, x.patient_id, sum(x.v) AS v FROM periods p
      JOIN monthly x ON x.m BETWEEN p.m_first AND p.m_last GROUP BY ALL)"""


def _per_practice(pop: str = "res r", value: str = "coalesce(w.v, 0)", join: str = "LEFT JOIN w USING (d, patient_id)",
                  where: str = "TRUE") -> str:
    return f"""SELECT r.d, r.practice_code, count(*) AS n, count({value}) AS k, sum({value}) AS s
FROM {pop} {join} WHERE {where} GROUP BY ALL"""


def _sum_12m(value: str, where: str) -> str:
    return f"WITH {RESIDENT}, {_monthly_sum(value, where)}\n{_per_practice()}"


_EMERGENCY = "setting = 'emergency_admission'"
_STAY = "date_diff('day', start_date, end_date)"
_LAST_12M = """last12 AS (
    SELECT p.d, e.patient_id, arg_max(e.value, (e.date, e.rowid)) AS v FROM periods p
    JOIN experience e ON e.date > p.d12 AND e.date <= p.d WHERE e.measure = '{measure}' GROUP BY ALL)"""
_ALIVE_12M_AGO = """pop AS (
    SELECT p.d, pt.patient_id, pt.practice_code,
           pt.death_date > p.d12 AND pt.death_date <= p.d AS died_12m
    FROM periods p JOIN patients pt
      ON pt.registration_start <= p.d12 AND (pt.registration_end IS NULL OR pt.registration_end >= p.d12)
     AND (pt.death_date IS NULL OR pt.death_date > p.d12))"""
_EFI = """first_deficit AS (
    SELECT d.patient_id, e.category, min(d.date) AS first FROM diagnoses d
    JOIN efi e ON e.code = d.code AND e.system = d.code_system GROUP BY ALL),
deficits AS (SELECT p.d, f.patient_id, count(*) AS n FROM periods p
             JOIN first_deficit f ON f.first <= p.d GROUP BY ALL),
med_months AS (SELECT DISTINCT patient_id, code_system, code, date_trunc('month', date) AS m FROM medications),
meds AS (SELECT p.d, x.patient_id, count(DISTINCT (x.code_system, x.code)) AS n FROM periods p
         JOIN med_months x ON x.m BETWEEN p.m_first AND p.m_last GROUP BY ALL)"""
_REVIEWED_12M = """rv AS (
    SELECT p.d, v.patient_id, bool_or(v.decision = 'listed') AS listed,
           bool_or(v.decision != 'listed') AS decided, bool_or(v.decision = 'accepted') AS accepted
    FROM periods p JOIN reviews v ON v.date > p.d12 AND v.date <= p.d GROUP BY ALL)"""
_LISTED_IN_PERIOD = """lv AS (
    SELECT DISTINCT p.d, v.patient_id FROM periods p
    JOIN reviews v ON v.date >= p.p_start AND v.date <= p.d WHERE v.decision = 'listed')"""


def _reviewed(value: str, population: str) -> str:
    """A proportion over everyone in the store (registered or not) with a review row in 12 months."""
    return f"""WITH {_REVIEWED_12M}
SELECT rv.d, pt.practice_code, count(*) AS n, count(*) AS k, sum(CASE WHEN rv.{value} THEN 1 ELSE 0 END) AS s
FROM rv JOIN patients pt USING (patient_id) WHERE rv.{population} GROUP BY ALL"""


MEASURES: dict[str, tuple[str, str]] = {
    "emergency_admissions": ("rate", _sum_12m("1", _EMERGENCY)),
    "ae_attendances": ("rate", _sum_12m("1", "setting = 'ae'")),
    "emergency_bed_days": ("rate", _sum_12m(_STAY, _EMERGENCY)),
    "cost_per_head": ("per_head", _sum_12m("cost", "TRUE")),
    "non_elective_cost_per_head": ("per_head", _sum_12m("cost", "setting IN ('emergency_admission', 'ae')")),
    "cost_acute": ("per_head", _sum_12m(
        "cost", "setting IN ('emergency_admission', 'elective_admission', 'ae', 'outpatient')")),
    "cost_community": ("per_head", _sum_12m("cost", "setting IN ('community', 'mental_health')")),
    "cost_primary_care": ("per_head", _sum_12m("cost", "setting IN ('gp', 'out_of_hours')")),
    "cost_social_care": ("per_head", _sum_12m("cost", "setting IN ('social_care', 'care_home')")),
    "care_home_admissions_65": ("rate", f"WITH {RESIDENT}, "
                                + _monthly_sum("1", "register = 'care_home'", table="registers")
                                + f"\n{_per_practice(where=f'{AGE} >= 65')}"),
    "deaths": ("rate", f"WITH {_ALIVE_12M_AGO}\n"
               "SELECT d, practice_code, count(*) AS n, count(*) AS k, sum(CASE WHEN died_12m THEN 1 ELSE 0 END) AS s "
               "FROM pop GROUP BY ALL"),
    "deaths_in_hospital": ("proportion", f"WITH {_ALIVE_12M_AGO}, "
                           + _monthly_sum("1", "discharge_destination = 'died'")
                           + "\nSELECT pop.d, pop.practice_code, count(*) AS n, count(*) AS k, "
                             "sum(CASE WHEN w.v > 0 THEN 1 ELSE 0 END) AS s "
                             "FROM pop LEFT JOIN w USING (d, patient_id) WHERE pop.died_12m GROUP BY ALL"),
    "average_length_of_stay": ("mean", f"""WITH {RESIDENT}, stays AS (
    SELECT p.d, a.patient_id, avg({_STAY}) AS v FROM periods p
    JOIN activity a ON a.start_date >= p.p_start AND a.start_date <= p.d WHERE a.{_EMERGENCY} GROUP BY ALL)
{_per_practice(value="s.v", join="JOIN stays s USING (d, patient_id)")}"""),
    "activation": ("mean", f"WITH {RESIDENT}, {_LAST_12M.format(measure='pam')}\n"
                   + _per_practice(value="l.v", join="LEFT JOIN last12 l USING (d, patient_id)")),
    "supported_to_manage": ("proportion", f"WITH {RESIDENT}, {_LAST_12M.format(measure='supported_to_manage')}\n"
                            + _per_practice(value="CASE WHEN l.v >= 1 THEN 1 ELSE 0 END",
                                            join="JOIN last12 l USING (d, patient_id)")),
    "frailty_65": ("proportion", f"WITH {RESIDENT}, {_EFI}\n" + _per_practice(
        value="CASE WHEN (coalesce(x.n, 0) + CASE WHEN coalesce(m.n, 0) >= 5 THEN 1 ELSE 0 END) / 36.0 > 0.24 "
              "THEN 1 ELSE 0 END",
        join="LEFT JOIN deficits x USING (d, patient_id) LEFT JOIN meds m USING (d, patient_id)",
        where=f"{AGE} >= 65")),
    "listed": ("total", f"WITH {RESIDENT}, {_LISTED_IN_PERIOD}\n" + _per_practice(
        value="CASE WHEN lv.patient_id IS NULL THEN 0 ELSE 1 END", join="LEFT JOIN lv USING (d, patient_id)")),
    "reviewed": ("proportion", _reviewed("decided", population="listed")),
    "accepted": ("proportion", _reviewed("accepted", population="decided")),
}


def periods_table(ends: list[dt.date]) -> str:
    """The periods as a VALUES list (the dates are the benchmark's, not a user's)."""
    rows = []
    for d in ends:
        m_last = d.replace(day=1)
        rows.append(f"(DATE '{d}', DATE '{months_back(d, 12)}', DATE '{m_last}', "
                    f"DATE '{months_back(m_last, 11)}', DATE '{m_last}')")
    return ("CREATE OR REPLACE TEMP TABLE periods AS SELECT * FROM (VALUES " + ", ".join(rows)
            + ") t(d, d12, m_last, m_first, p_start)")


def run_all(con: duckdb.DuckDBPyConnection, ends: list[dt.date]) -> dict[str, list[tuple]]:
    """Every measure: (d, practice, n, k, s) rows, one query per measure over all periods."""
    con.execute(periods_table(ends))
    return {name: con.execute(sql).fetchall() for name, (_, sql) in MEASURES.items()}
