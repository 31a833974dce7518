"""The DuckDB SQL peer of model("emergency_12m"): rules/models/emergency_12m.model.json's
risk for every member of its population, as ONE query over the peers' database (peers.py,
which loads the QOF and eFI codelists as tables), written by hand from the spec's features
(rules/models/emergency_12m.yml) and the artefact's coefficients, independent of casefind's
engines. Windows are the rules language's: within=months(n) is (D - n months, D]."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from peer_lists import _age, _list_tail, _pop, _registers_active
from peers import months_back

ARTEFACT = Path(__file__).parents[1] / "rules" / "models" / "emergency_12m.model.json"
# each predictor as SQL over the f CTE below (missing numbers: the artefact's training mean)
_PREDICTORS = {"age_years": "CAST(age AS DOUBLE)", "age_squared": "CAST(age * age AS DOUBLE) / 100.0",
               "male": "CASE WHEN sex = 'M' THEN 1.0 ELSE 0.0 END", "deprivation": "imd_decile",
               "conditions": "conditions", "efi_deficits": "efi_deficits", "emergency_12m": "emergency_12m",
               "ae_12m": "ae_12m", "outpatient_12m": "outpatient_12m", "gp_12m": "gp_12m",
               "community_12m": "community_12m", "urgent_trend": "urgent_trend", "cost_12m": "cost_12m / 1000.0"}


def _linear(body: dict) -> str:
    """intercept + sum of coefficient * predictor, in doubles, in the artefact's order."""
    terms = [f"{body['intercept']!r}::DOUBLE"]
    for p in body["predictors"]:
        x = _PREDICTORS[p["name"]]
        terms.append(f"{p['coefficient']!r}::DOUBLE * coalesce(CAST({x} AS DOUBLE), {p['mean']!r}::DOUBLE)")
    return " + ".join(terms)


def features_ctes(d: dt.date, tag: str = "", artefact: Path = ARTEFACT) -> str:
    """CTEs (named with ``tag``) ending in ``risk{tag}`` (patient_id, risk): the model's
    features at ``d`` for every patient of the CTE ``pop``, whoever is a member at ``d``."""
    body = json.loads(artefact.read_text())
    m12 = months_back(d, 12)
    bucket = " ".join(f"WHEN start_date > DATE '{months_back(d, i + 1)}' THEN {11 - i}" for i in range(12))
    urgent = "setting IN ('ae', 'emergency_admission')"
    return f"""dx{tag} AS (
    SELECT d.patient_id, count(DISTINCT q.category) AS conditions FROM diagnoses d SEMI JOIN pop USING (patient_id)
    JOIN qof_cl q ON q.code = d.code AND q.system = d.code_system WHERE d.date <= DATE '{d}' GROUP BY ALL
), fx{tag} AS (
    SELECT d.patient_id, count(DISTINCT e.category) AS efi_deficits FROM diagnoses d SEMI JOIN pop USING (patient_id)
    JOIN efi e ON e.code = d.code AND e.system = d.code_system WHERE d.date <= DATE '{d}' GROUP BY ALL
), act{tag} AS (
    SELECT patient_id,
           count(*) FILTER (setting = 'emergency_admission') AS emergency_12m,
           count(*) FILTER (setting = 'ae') AS ae_12m, count(*) FILTER (setting = 'outpatient') AS outpatient_12m,
           count(*) FILTER (setting = 'gp') AS gp_12m, count(*) FILTER (setting = 'community') AS community_12m,
           sum(cost) AS cost_12m
    FROM activity SEMI JOIN pop USING (patient_id)
    WHERE start_date > DATE '{m12}' AND start_date <= DATE '{d}' GROUP BY patient_id
), monthly{tag} AS (
    SELECT patient_id, CASE {bucket} END AS x, count(*) AS y FROM activity SEMI JOIN pop USING (patient_id)
    WHERE {urgent} AND start_date > DATE '{m12}' AND start_date <= DATE '{d}' GROUP BY ALL
), trend{tag} AS (
    SELECT patient_id, CASE WHEN count(*) < 2 THEN 0.0 ELSE sum((x - 5.5) * y) / 143.0 END AS urgent_trend
    FROM monthly{tag} GROUP BY patient_id
), f{tag} AS (
    SELECT pop.patient_id, p.sex, {_age(d, 'p.birth_date')} AS age, p.imd_decile,
           coalesce(conditions, 0) AS conditions, coalesce(efi_deficits, 0) AS efi_deficits,
           coalesce(emergency_12m, 0) AS emergency_12m, coalesce(ae_12m, 0) AS ae_12m,
           coalesce(outpatient_12m, 0) AS outpatient_12m, coalesce(gp_12m, 0) AS gp_12m,
           coalesce(community_12m, 0) AS community_12m, coalesce(cost_12m, 0) AS cost_12m,
           coalesce(urgent_trend, 0.0) AS urgent_trend
    FROM pop JOIN patients p USING (patient_id) LEFT JOIN dx{tag} USING (patient_id)
         LEFT JOIN fx{tag} USING (patient_id) LEFT JOIN act{tag} USING (patient_id)
         LEFT JOIN trend{tag} USING (patient_id)
), risk{tag} AS (
    SELECT patient_id, urgent_trend, 1.0 / (1.0 + exp(-({_linear(body)}))) AS risk FROM f{tag}
)"""


def scores_sql(d: dt.date, artefact: Path = ARTEFACT) -> str:
    """Every adult's risk at ``d`` (the population of the spec: registered, alive, 18+)."""
    return (f"WITH {_pop(d, 18)}, {features_ctes(d, '', artefact)}\n"
            "SELECT patient_id, risk FROM risk ORDER BY patient_id")


def rising_risk_sql(d: dt.date, cap: int = 25) -> str:
    """rules/rising_risk.yml's list, its risk being model("emergency_12m") now and 6 months ago."""
    m6, m12 = months_back(d, 6), months_back(d, 12)
    urgent = "setting IN ('ae', 'emergency_admission')"
    return f"""WITH {_pop(d, 18)}, {_registers_active(d)}, {features_ctes(d, "_now")}, {features_ctes(m6, "_then")},
use AS (
    SELECT patient_id,
           count(*) FILTER ({urgent} AND start_date > DATE '{m6}') AS urgent_recent,
           count(*) FILTER ({urgent} AND start_date > DATE '{m12}' AND start_date <= DATE '{m6}') AS urgent_prior
    FROM activity SEMI JOIN pop USING (patient_id) WHERE start_date <= DATE '{d}' GROUP BY patient_id
), r AS (
    SELECT pop.*, coalesce(urgent_recent, 0) AS urgent_recent, coalesce(urgent_prior, 0) AS urgent_prior,
           n.urgent_trend, n.risk, t.risk AS risk_6m_ago,
           coalesce(palliative_care, false) AS palliative_care, coalesce(case_managed, false) AS case_managed
    FROM pop LEFT JOIN use USING (patient_id) JOIN risk_now n USING (patient_id) JOIN risk_then t USING (patient_id)
         LEFT JOIN reg USING (patient_id)
), v AS (
    SELECT *, (rank() OVER (ORDER BY risk DESC) - 1) < 0.02::DOUBLE * count(*) OVER () AS top_2pct FROM r
)""" + _list_tail(d, "(urgent_recent >= 2 AND urgent_recent > urgent_prior AND urgent_trend > 0) "
                     "OR (risk >= 1.2 * risk_6m_ago AND risk > 0.05)",
                  "top_2pct OR palliative_care OR case_managed", "urgent_trend DESC, risk DESC", cap,
                  "age, sex, urgent_recent, urgent_prior, urgent_trend, risk, risk_6m_ago")
