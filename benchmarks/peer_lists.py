"""DuckDB SQL peers of the shipped rules other than frail.yml (peers.py has frail's), each ONE
query over the peers' DuckDB database (peers.load_duckdb, which also loads the codelists
below as tables), written by hand from the rule file as an analyst would, independent of
casefind. Each gives the rule's review list: practice, patient_id, rank and the rule's
output columns, in practice and rank order.

Shared by every list: the population (registered and alive at as_of, the rule's age floor),
the list policy (no type 1 opt-out dated on or before as_of), the rank (the rule's keys,
missing last, ties by pseudonymised id) and the cap per practice. Windows are the rules
language's: ``within=months(n)`` is (D - n months, D], the day clamped to the month's end.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from peers import months_back

CODELISTS_DIR = Path(__file__).parents[1] / "rules" / "codelists"
# table -> CSV loaded into the peers' database (code, system, category, weight, term[, cluster])
CODELIST_TABLES = {"charlson_cl": CODELISTS_DIR / "charlson_shmi_icd10.csv",
                   "hfrs_cl": CODELISTS_DIR / "hfrs_icd10.csv",
                   "qof_cl": CODELISTS_DIR / "published" / "qof_snomed.csv",
                   "qof_resolved_cl": CODELISTS_DIR / "published" / "qof_resolved_snomed.csv",
                   "ltc_starter_cl": CODELISTS_DIR / "ltc_qof_snomed.csv",
                   "bmi_value_cl": CODELISTS_DIR / "bmi_value_snomed.csv"}

# The 18 QOF registers of multimorbidity.yml and segments.yml: (name, resolved cluster?, age floor)
REGISTERS = [("hypertension", True, None), ("depression", True, 18), ("obesity", False, 18), ("diabetes", True, 17),
             ("asthma", True, 6), ("chronic_kidney_disease", True, 18), ("cancer", False, None),
             ("coronary_heart_disease", False, None), ("atrial_fibrillation", False, None), ("copd", True, None),
             ("stroke_tia", False, None), ("heart_failure", True, None), ("serious_mental_illness", False, None),
             ("epilepsy", True, 18), ("rheumatoid_arthritis", False, 16), ("dementia", False, None),
             ("peripheral_arterial_disease", False, None), ("learning_disability", False, None)]
SEGMENTS = [("end_of_life", "end_of_life"), ("frailty", "frail"), ("dementia", "dementia"),
            ("serious_mental_illness", "serious_mental_illness"), ("learning_disability", "learning_disability"),
            ("complex_multimorbidity", "ltc_count >= 4"), ("long_term_conditions", "ltc_count >= 2"),
            ("one_long_term_condition", "ltc_count = 1"), ("mostly_healthy", "TRUE")]


def load_codelists(con) -> None:
    """Each codelist CSV as a table, with ``is_prefix`` and the code without its ``*``."""
    for table, path in CODELIST_TABLES.items():
        con.execute(f"CREATE TABLE {table} AS SELECT *, ends_with(code, '*') AS is_prefix, "
                    f"rtrim(code, '*') AS stem FROM read_csv('{path}', header = true, all_varchar = true)")


def _age(d: dt.date, birth: str = "p.birth_date") -> str:
    md = d.month * 100 + d.day
    return (f"(year(DATE '{d}') - year({birth}) - "
            f"CAST(month({birth}) * 100 + day({birth}) > {md} AS INTEGER))")


def _pop(d: dt.date, min_age: int | None) -> str:
    floor = f" AND {_age(d)} >= {min_age}" if min_age is not None else ""
    return f"""pop AS (
    SELECT p.patient_id, p.practice_code, p.sex, p.birth_date, {_age(d)} AS age FROM patients p
    WHERE p.registration_start <= DATE '{d}' AND (p.registration_end IS NULL OR p.registration_end >= DATE '{d}')
      AND (p.death_date IS NULL OR p.death_date > DATE '{d}'){floor})"""


def _registers_active(d: dt.date) -> str:
    return f"""reg AS (
    SELECT patient_id, bool_or(register = 'palliative_care') AS palliative_care,
           bool_or(register = 'case_management') AS case_managed,
           bool_or(register = 'learning_disability') AS ld_register
    FROM registers SEMI JOIN pop USING (patient_id)
    WHERE start_date <= DATE '{d}' AND (end_date IS NULL OR end_date >= DATE '{d}')
    GROUP BY patient_id)"""


def _list_tail(d: dt.date, include: str, exclude: str, order: str, cap: int, columns: str) -> str:
    return f"""
, eligible AS (
    SELECT * FROM v WHERE ({include}) AND NOT ({exclude})
      AND patient_id NOT IN (SELECT patient_id FROM opt_outs WHERE kind = 'type1' AND date <= DATE '{d}')
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY practice_code ORDER BY {order}, patient_id) AS rank FROM eligible
)
SELECT practice_code AS practice, patient_id, rank, {columns} FROM ranked WHERE rank <= {cap} ORDER BY practice, rank
"""


def high_utilisers_sql(d: dt.date, min_admissions: int = 3, cap: int = 25) -> str:
    m12 = months_back(d, 12)
    return f"""WITH {_pop(d, None)}, {_registers_active(d)}, act AS (
    SELECT patient_id,
           count(*) FILTER (setting = 'emergency_admission' AND start_date > DATE '{m12}') AS emergency_12m,
           count(*) FILTER (setting = 'ae' AND start_date > DATE '{m12}') AS ae_12m,
           sum(cost) FILTER (start_date > DATE '{m12}') AS cost_12m,
           max(start_date) FILTER (setting = 'emergency_admission') AS last_admission
    FROM activity SEMI JOIN pop USING (patient_id) WHERE start_date <= DATE '{d}' GROUP BY patient_id
), f AS (
    SELECT pop.*, coalesce(emergency_12m, 0) AS emergency_12m, coalesce(ae_12m, 0) AS ae_12m,
           coalesce(cost_12m, 0) AS cost_12m, last_admission,
           coalesce(palliative_care, false) AS palliative_care, coalesce(case_managed, false) AS case_managed
    FROM pop LEFT JOIN act USING (patient_id) LEFT JOIN reg USING (patient_id)
), v AS (  -- percentile: the share of the population below; top 0.5%: fewer than 0.5% above
    SELECT *, 100.0 * (rank() OVER (ORDER BY cost_12m) - 1) / count(*) OVER () AS cost_percentile,
           (rank() OVER (ORDER BY cost_12m DESC) - 1) < 0.005::DOUBLE * count(*) OVER () AS top_cost
    FROM f
)""" + _list_tail(d, f"emergency_12m >= {min_admissions} OR top_cost", "palliative_care OR case_managed",
                  "emergency_12m DESC, cost_12m DESC", cap,
                  "age, sex, emergency_12m, ae_12m, cost_12m, cost_percentile, last_admission")


def _coded(table: str, codelist: str, where: str = "TRUE") -> str:
    """Rows of ``table`` (alias d) matching a codelist (alias c) by code or by ``*`` prefix:
    one equality join per prefix length, so every join is hashed."""
    return f"""(SELECT d.*, c.category, c.weight FROM {table} d JOIN {codelist} c
           ON NOT c.is_prefix AND d.code = c.code AND d.code_system = c.system WHERE {where}
       UNION ALL
       SELECT d.*, c.category, c.weight FROM {table} d JOIN {codelist} c
           ON c.is_prefix AND left(d.code, length(c.stem)) = c.stem AND d.code_system = c.system WHERE {where})"""


def _index_admission(d: dt.date, settings: str) -> str:
    m12 = months_back(d, 12)
    return f"""idx AS (  -- the latest admission in the last 12 months, and its spell
    SELECT patient_id, max(start_date) AS index_admission, arg_max(spell_id, start_date) AS index_spell
    FROM activity SEMI JOIN pop USING (patient_id)
    WHERE setting IN ({settings}) AND start_date > DATE '{m12}' AND start_date <= DATE '{d}' GROUP BY patient_id
), em AS (
    SELECT patient_id, count(*) AS emergency_12m FROM activity SEMI JOIN pop USING (patient_id)
    WHERE setting = 'emergency_admission' AND start_date > DATE '{m12}' AND start_date <= DATE '{d}'
    GROUP BY patient_id)"""


def charlson_sql(d: dt.date, threshold: int = 21, cap: int = 25) -> str:
    hier = ("('diabetes_complications', 'diabetes'), ('severe_liver_disease', 'liver_disease'), "
            "('metastatic_cancer', 'cancer')")
    coded = _coded("(SELECT dx.* FROM diagnoses dx JOIN idx i ON i.patient_id = dx.patient_id "
                   f"AND dx.spell_id = i.index_spell WHERE dx.date <= DATE '{d}' "
                   "AND (dx.position IS NULL OR dx.position <> 1))", "charlson_cl")
    admissions = _index_admission(d, "'emergency_admission', 'elective_admission'")
    return f"""WITH {_pop(d, 18)}, {_registers_active(d)}, {admissions},
present AS (  -- each condition once, at its largest weight
    SELECT patient_id, category, max(CAST(weight AS INTEGER)) AS w FROM {coded} x GROUP BY ALL
), scored AS (  -- the milder form does not count when the severe form is present
    SELECT c.patient_id, sum(c.w) AS points FROM present c
    WHERE NOT EXISTS (SELECT 1 FROM (VALUES {hier}) h(higher, lower) JOIN present s ON s.category = h.higher
                      WHERE h.lower = c.category AND s.patient_id = c.patient_id)
    GROUP BY c.patient_id
), conditions AS (SELECT patient_id, count(*) AS charlson_conditions FROM present GROUP BY patient_id
), f AS (
    SELECT pop.*, i.index_admission,
           CASE WHEN i.index_spell IS NOT NULL THEN greatest(coalesce(s.points, 0), 0) END AS charlson,
           coalesce(c.charlson_conditions, 0) AS charlson_conditions, coalesce(em.emergency_12m, 0) AS emergency_12m,
           coalesce(palliative_care, false) AS palliative_care, coalesce(case_managed, false) AS case_managed
    FROM pop LEFT JOIN idx i USING (patient_id) LEFT JOIN scored s USING (patient_id)
         LEFT JOIN conditions c USING (patient_id) LEFT JOIN em USING (patient_id) LEFT JOIN reg USING (patient_id)
), v AS (
    SELECT *, CASE WHEN charlson >= 21 THEN '21+' WHEN charlson >= 11 THEN '11-20' WHEN charlson >= 6 THEN '6-10'
                   WHEN charlson >= 1 THEN '1-5' WHEN charlson >= 0 THEN '0' END AS charlson_group FROM f
)""" + _list_tail(
        d, f"charlson >= {threshold}", "palliative_care OR case_managed", "charlson DESC, emergency_12m DESC", cap,
        "age, sex, CAST(charlson AS DOUBLE) AS charlson, charlson_group, charlson_conditions, index_admission, "
        "emergency_12m")


def hfrs_sql(d: dt.date, cap: int = 25) -> str:
    coded = _coded("(SELECT dx.*, i.index_admission FROM diagnoses dx JOIN idx i ON i.patient_id = dx.patient_id "
                   f"WHERE dx.date <= DATE '{d}' AND dx.source = 'acute' AND (dx.spell_id = i.index_spell OR "
                   "(dx.date <= i.index_admission AND dx.date > CAST(i.index_admission - INTERVAL 24 MONTH AS DATE))))",
                   "hfrs_cl")
    return f"""WITH {_pop(d, 75)}, {_registers_active(d)}, {_index_admission(d, "'emergency_admission'")},
present AS (  -- each 3-character category once; points as whole tenths, added exactly
    SELECT patient_id, category, max(CAST(round(CAST(weight AS DOUBLE) * 10) AS INTEGER)) AS tenths
    FROM {coded} x GROUP BY ALL
), scored AS (SELECT patient_id, sum(tenths) / 10.0 AS points FROM present GROUP BY patient_id
), f AS (
    SELECT pop.*, i.index_admission,
           CASE WHEN i.index_admission IS NOT NULL THEN coalesce(s.points, 0.0) END AS hfrs,
           coalesce(em.emergency_12m, 0) AS emergency_12m,
           coalesce(palliative_care, false) AS palliative_care, coalesce(case_managed, false) AS case_managed
    FROM pop LEFT JOIN idx i USING (patient_id) LEFT JOIN scored s USING (patient_id)
         LEFT JOIN em USING (patient_id) LEFT JOIN reg USING (patient_id)
), v AS (
    SELECT *, CASE WHEN hfrs > 15 THEN 'high' WHEN hfrs >= 5 THEN 'intermediate' WHEN hfrs >= 0 THEN 'low' END
              AS hfrs_band FROM f
)""" + _list_tail(d, "hfrs >= 5", "palliative_care OR case_managed", "hfrs DESC, emergency_12m DESC", cap,
                  "age, sex, hfrs, hfrs_band, index_admission, emergency_12m")


def _qof_registers(d: dt.date) -> str:
    """Per patient: each register's latest diagnosis and latest resolved code, obesity's code
    in the last 12 months and the latest BMI value in them."""
    m12 = months_back(d, 12)
    cols = []
    for name, resolves, _ in REGISTERS:
        cols.append(f"max(date) FILTER (register = '{name}' AND NOT resolved) AS {name}_latest")
        if resolves:
            cols.append(f"max(date) FILTER (register = '{name}' AND resolved) AS {name}_resolved")
    return f"""qof AS (
    SELECT category AS register, code, system, false AS resolved FROM qof_cl
    UNION ALL SELECT category, code, system, true FROM qof_resolved_cl
    UNION ALL SELECT category, code, system, false FROM ltc_starter_cl WHERE category = 'cancer'
), dxq AS (
    SELECT d.patient_id, {', '.join(cols)},
           bool_or(register = 'obesity' AND NOT resolved AND date > DATE '{m12}') AS obesity_recent
    FROM diagnoses d SEMI JOIN pop USING (patient_id) JOIN qof q ON q.code = d.code AND q.system = d.code_system
    WHERE d.date <= DATE '{d}' GROUP BY d.patient_id
), bmi AS (
    SELECT patient_id, arg_max(value, date) AS bmi FROM observations o SEMI JOIN pop USING (patient_id)
    WHERE code IN (SELECT code FROM bmi_value_cl) AND code_system = 'snomed'
      AND date > DATE '{m12}' AND date <= DATE '{d}' GROUP BY patient_id)"""


def _register_flags() -> str:
    """Each register as its QOF rule counts it: a code, not followed by a resolved code, at its age."""
    out = []
    for name, resolves, floor in REGISTERS:
        cond = f"{name}_latest IS NOT NULL"
        if resolves:
            cond += f" AND NOT coalesce({name}_resolved >= {name}_latest, false)"
        if name == "depression":
            cond += f" AND {name}_latest >= DATE '2006-04-01'"
        if name == "obesity":
            cond = "(coalesce(obesity_recent, false) OR coalesce(bmi >= 30, false))"
        if name == "learning_disability":
            cond = f"({cond} OR coalesce(ld_register, false))"
        if floor is not None:
            cond = f"age >= {floor} AND {cond}"
        out.append(f"coalesce({cond}, false) AS {name}")
    return ",\n           ".join(out)


def _ltc_features(d: dt.date, min_age: int | None, extra: str = "") -> str:
    m12 = months_back(d, 12)
    efi_cols = (", coalesce(efi_dx.coded_deficits, 0) AS coded_deficits, "
                "coalesce(efi_rx.medicines_12m, 0) AS medicines_12m")
    return f"""WITH {_pop(d, min_age)}, {_registers_active(d)}, {_qof_registers(d)}, act AS (
    SELECT patient_id, count(*) FILTER (setting = 'emergency_admission') AS emergency_12m, sum(cost) AS cost_12m
    FROM activity SEMI JOIN pop USING (patient_id)
    WHERE start_date > DATE '{m12}' AND start_date <= DATE '{d}' GROUP BY patient_id
){extra}, r AS (
    SELECT pop.*, {_register_flags()},
           coalesce(emergency_12m, 0) AS emergency_12m, coalesce(cost_12m, 0) AS cost_12m,
           coalesce(palliative_care, false) AS palliative_care
           {efi_cols if extra else ''}
    FROM pop LEFT JOIN dxq USING (patient_id) LEFT JOIN bmi USING (patient_id) LEFT JOIN act USING (patient_id)
         LEFT JOIN reg USING (patient_id)
         {'LEFT JOIN efi_dx USING (patient_id) LEFT JOIN efi_rx USING (patient_id)' if extra else ''}
), v0 AS (
    SELECT *, {' + '.join(f'CAST({n} AS INTEGER)' for n, _, _ in REGISTERS)} AS ltc_count FROM r
)"""


def multimorbidity_sql(d: dt.date, min_conditions: int = 4, cap: int = 25) -> str:
    return _ltc_features(d, 18) + ", v AS (SELECT * FROM v0)" + _list_tail(
        d, f"ltc_count >= {min_conditions} OR (ltc_count >= 2 AND (serious_mental_illness OR learning_disability))",
        "palliative_care", "ltc_count DESC, emergency_12m DESC", cap,
        "age, sex, ltc_count, serious_mental_illness, learning_disability, emergency_12m, cost_12m")


def segments_sql(d: dt.date, cap: int = 50) -> str:
    m12 = months_back(d, 12)
    efi = f""", efi_dx AS (
    SELECT d.patient_id, count(DISTINCT e.category) AS coded_deficits
    FROM diagnoses d SEMI JOIN pop USING (patient_id) JOIN efi e ON e.code = d.code AND e.system = d.code_system
    WHERE d.date <= DATE '{d}' GROUP BY d.patient_id
), efi_rx AS (
    SELECT patient_id, count(DISTINCT code) AS medicines_12m FROM medications SEMI JOIN pop USING (patient_id)
    WHERE date > DATE '{m12}' AND date <= DATE '{d}' GROUP BY patient_id)"""
    segment = " ".join(f"WHEN {cond} THEN '{name}'" for name, cond in SEGMENTS)
    return _ltc_features(d, None, efi) + f""", v1 AS (
    SELECT *, (coded_deficits + CAST(medicines_12m >= 5 AS INTEGER)) / 36 AS efi, palliative_care AS end_of_life FROM v0
), v2 AS (
    SELECT *, age >= 65 AND efi > 0.24 AS frail FROM v1
), v AS (SELECT *, CASE {segment} END AS segment FROM v2)""" + _list_tail(
        d, "end_of_life OR frail OR ltc_count >= 4", "FALSE", "cost_12m DESC", cap,
        "segment, age, sex, efi, ltc_count, cost_12m, emergency_12m")


LIST_SQL = {"high_utilisers": high_utilisers_sql, "rising_risk": None, "charlson": charlson_sql,
            "hfrs": hfrs_sql, "multimorbidity": multimorbidity_sql, "segments": segments_sql}


def _rising_risk_model_sql(d: dt.date, cap: int = 25) -> str:
    """rules/rising_risk.yml scores with the fitted model: its peer is model_peer's, which
    writes the artefact's coefficients out as SQL (model_peer imports this module)."""
    from model_peer import rising_risk_sql
    return rising_risk_sql(d, cap)


LIST_SQL["rising_risk"] = _rising_risk_model_sql
