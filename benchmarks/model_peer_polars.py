"""The Polars peer of model("emergency_12m") and of rules/rising_risk.yml's list that uses it:
the same features as model_peer.py's SQL, as lazy Polars over the source tables."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from model_peer import ARTEFACT
from peer_lists_polars import (
    EFI_CSV,
    EXCLUSIONS,
    _activity,
    _age,
    _codelist,
    _cost_sum,
    _flags,
    _list,
    _pop,
    _registers_active,
    _scan,
)
from peers import months_back

COUNTS = {"emergency_12m": "emergency_admission", "ae_12m": "ae", "outpatient_12m": "outpatient",
          "gp_12m": "gp", "community_12m": "community"}


def _distinct_categories(source: Path, d: dt.date, ids: pl.LazyFrame, codes: pl.LazyFrame, name: str):
    return (_scan(source, "diagnoses").filter(pl.col("date") <= d).join(ids, on="patient_id", how="semi")
            .join(codes.select("code", "system", "category"), left_on=["code", "code_system"],
                  right_on=["code", "system"])
            .group_by("patient_id").agg(pl.col("category").n_unique().alias(name)))


def _trend(acts: pl.LazyFrame, d: dt.date) -> pl.LazyFrame:
    st, m12 = pl.col("start_date"), months_back(d, 12)
    x = pl.when(st > months_back(d, 1)).then(11)
    for i in range(1, 12):
        x = x.when(st > months_back(d, i + 1)).then(11 - i)
    urgent = pl.col("setting").is_in(["ae", "emergency_admission"])
    return (acts.filter(urgent & (st > m12)).group_by("patient_id", x.alias("x")).agg(y=pl.len())
            .group_by("patient_id").agg(urgent_trend=pl.when(pl.len() < 2).then(0.0)
                                        .otherwise(((pl.col("x") - 5.5) * pl.col("y")).sum() / 143.0)))


def risk_polars(source: Path, d: dt.date, ids: pl.LazyFrame, artefact: Path = ARTEFACT) -> pl.LazyFrame:
    """patient_id, urgent_trend and risk at ``d`` for every patient of ``ids``."""
    body = json.loads(artefact.read_text())
    st, m12 = pl.col("start_date"), months_back(d, 12)
    acts = _activity(source, d, ids)
    act = acts.filter(st > m12).group_by("patient_id").agg(
        *[(pl.col("setting") == s).sum().alias(n) for n, s in COUNTS.items()], cost_12m=_cost_sum(pl.lit(True)))
    efi = pl.scan_csv(EFI_CSV, schema_overrides={"code": pl.String, "system": pl.String, "category": pl.String})
    f = (_scan(source, "patients").join(ids, on="patient_id", how="semi")
         .select("patient_id", "sex", "imd_decile", age=_age(d))
         .join(_distinct_categories(source, d, ids, _codelist("qof_cl"), "conditions"), on="patient_id", how="left")
         .join(_distinct_categories(source, d, ids, efi, "efi_deficits"), on="patient_id", how="left")
         .join(act, on="patient_id", how="left").join(_trend(acts, d), on="patient_id", how="left")
         .with_columns([pl.col(c).fill_null(0) for c in ("conditions", "efi_deficits", *COUNTS, "cost_12m")]
                       + [pl.col("urgent_trend").fill_null(0.0)]))
    x = {"age_years": pl.col("age").cast(pl.Float64), "age_squared": (pl.col("age") * pl.col("age")) / 100.0,
         "male": (pl.col("sex") == "M").cast(pl.Float64), "deprivation": pl.col("imd_decile").cast(pl.Float64),
         "cost_12m": pl.col("cost_12m") / 1000.0}
    z = pl.lit(float(body["intercept"]))
    for p in body["predictors"]:
        value = x.get(p["name"], pl.col(p["name"]).cast(pl.Float64))
        z = z + pl.lit(float(p["coefficient"])) * value.fill_null(float(p["mean"]))
    return f.select("patient_id", "urgent_trend", risk=1.0 / (1.0 + (-z).exp()))


def rising_risk_polars(source: Path, d: dt.date, cap: int = 25) -> pl.DataFrame:
    m6, m12 = months_back(d, 6), months_back(d, 12)
    pop = _pop(source, d, 18)
    ids = pop.select("patient_id")
    s, st = pl.col("setting"), pl.col("start_date")
    urgent = s.is_in(["ae", "emergency_admission"])
    use = _activity(source, d, ids).group_by("patient_id").agg(
        urgent_recent=(urgent & (st > m6)).sum(), urgent_prior=(urgent & (st > m12) & (st <= m6)).sum())
    then = risk_polars(source, m6, ids).select("patient_id", risk_6m_ago="risk")
    v = (_flags(pop.join(use, on="patient_id", how="left").join(risk_polars(source, d, ids), on="patient_id")
                .join(then, on="patient_id").join(_registers_active(source, d, ids), on="patient_id", how="left"),
                EXCLUSIONS)
         .with_columns([pl.col(c).fill_null(0).cast(pl.Int64) for c in ("urgent_recent", "urgent_prior")])
         .with_columns(top_2pct=(pl.col("risk").rank("min", descending=True) - 1) < 0.02 * pl.len()))
    recent = pl.col("urgent_recent")
    rising_use = (recent >= 2) & (recent > pl.col("urgent_prior")) & (pl.col("urgent_trend") > 0)
    rising_score = (pl.col("risk") >= 1.2 * pl.col("risk_6m_ago")) & (pl.col("risk") > 0.05)
    return _list(v, source, d, rising_use | rising_score,
                 pl.col("top_2pct") | pl.col("palliative_care") | pl.col("case_managed"),
                 [("urgent_trend", True), ("risk", True)], cap,
                 ["age", "sex", "urgent_recent", "urgent_prior", "urgent_trend", "risk", "risk_6m_ago"])
