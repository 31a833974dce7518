"""Polars lazy peers of the shipped rules other than frail.yml (peers.py has frail's): each ONE
lazy query over the Parquet source and the codelist CSVs, collected once, written by hand
from the rule file and giving the same list as peer_lists.py's SQL (practice, patient_id,
rank, the output columns, in practice and rank order). Independent of casefind."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from peer_lists import CODELIST_TABLES, REGISTERS, SEGMENTS
from peers import months_back, parquet_of

EFI_CSV = Path(__file__).parents[1] / "rules" / "codelists" / "published" / "efi_snomed.csv"


def _scan(source: Path, table: str) -> pl.LazyFrame:
    return pl.scan_parquet(parquet_of(source, table))


def _codelist(table: str) -> pl.LazyFrame:
    cl = pl.scan_csv(CODELIST_TABLES[table], infer_schema=False)
    return cl.with_columns(is_prefix=pl.col("code").str.ends_with("*"), stem=pl.col("code").str.strip_chars_end("*"))


def _age(d: dt.date, birth: str = "birth_date") -> pl.Expr:
    b = pl.col(birth)
    md = d.month * 100 + d.day
    return (pl.lit(d.year) - b.dt.year().cast(pl.Int64)
            - (b.dt.month().cast(pl.Int64) * 100 + b.dt.day().cast(pl.Int64) > md).cast(pl.Int64))


def _pop(source: Path, d: dt.date, min_age: int | None) -> pl.LazyFrame:
    p = (_scan(source, "patients")
         .filter((pl.col("registration_start") <= d)
                 & (pl.col("registration_end").is_null() | (pl.col("registration_end") >= d))
                 & (pl.col("death_date").is_null() | (pl.col("death_date") > d)))
         .with_columns(age=_age(d)))
    if min_age is not None:
        p = p.filter(pl.col("age") >= min_age)
    return p.select("patient_id", "practice_code", "sex", "birth_date", "age")


def _registers_active(source: Path, d: dt.date, ids: pl.LazyFrame) -> pl.LazyFrame:
    r = pl.col("register")
    return (_scan(source, "registers")
            .filter((pl.col("start_date") <= d) & (pl.col("end_date").is_null() | (pl.col("end_date") >= d)))
            .join(ids, on="patient_id", how="semi")
            .group_by("patient_id").agg(palliative_care=(r == "palliative_care").any(),
                                        case_managed=(r == "case_management").any(),
                                        ld_register=(r == "learning_disability").any()))


def _activity(source: Path, d: dt.date, ids: pl.LazyFrame) -> pl.LazyFrame:
    return _scan(source, "activity").filter(pl.col("start_date") <= d).join(ids, on="patient_id", how="semi")


def _cost_sum(where: pl.Expr) -> pl.Expr:
    """A patient's costs added one by one in date order (a running sum's last value), as
    casefind adds them: Polars' sum adds pairwise, which can differ in the last bit, and
    a percentile or top then counts two such patients differently."""
    cost = pl.when(where).then(pl.col("cost")).otherwise(0.0).fill_null(0.0)  # + 0.0 changes no sum
    return cost.sort_by("start_date", maintain_order=True).cum_sum().last()


def _list(v: pl.LazyFrame, source: Path, d: dt.date, include: pl.Expr, exclude: pl.Expr,
          order: list[tuple[str, bool]], cap: int, columns: list) -> pl.DataFrame:
    """The rule's criteria, the type 1 opt-out policy, the rank and the cap per practice."""
    type1 = _scan(source, "opt_outs").filter((pl.col("kind") == "type1") & (pl.col("date") <= d))
    keys = ["practice_code"] + [k for k, _ in order] + ["patient_id"]
    return (v.filter(include & ~exclude).join(type1, on="patient_id", how="anti")
            .sort(keys, descending=[False] + [desc for _, desc in order] + [False], nulls_last=True)
            .with_columns(rank=pl.int_range(1, pl.len() + 1).over("practice_code"))
            .filter(pl.col("rank") <= cap)
            .select(pl.col("practice_code").alias("practice"), "patient_id", "rank", *columns)
            .collect())


EXCLUSIONS = ["palliative_care", "case_managed"]


def _flags(frame: pl.LazyFrame, names: list[str]) -> pl.LazyFrame:
    return frame.with_columns([pl.col(c).fill_null(False) for c in names])


def high_utilisers_polars(source: Path, d: dt.date, min_admissions: int = 3, cap: int = 25) -> pl.DataFrame:
    m12 = months_back(d, 12)
    pop = _pop(source, d, None)
    ids = pop.select("patient_id")
    s, st = pl.col("setting"), pl.col("start_date")
    act = _activity(source, d, ids).group_by("patient_id").agg(
        emergency_12m=((s == "emergency_admission") & (st > m12)).sum(), ae_12m=((s == "ae") & (st > m12)).sum(),
        cost_12m=_cost_sum(st > m12), last_admission=st.filter(s == "emergency_admission").max())
    cost = pl.col("cost_12m")
    v = (_flags(pop.join(act, on="patient_id", how="left")
                .join(_registers_active(source, d, ids), on="patient_id", how="left"), EXCLUSIONS)
         .with_columns(pl.col("emergency_12m", "ae_12m").fill_null(0).cast(pl.Int64), cost.fill_null(0.0))
         .with_columns(cost_percentile=100.0 * (cost.rank("min") - 1) / pl.len(),
                       top_cost=(cost.rank("min", descending=True) - 1) < 0.005 * pl.len()))
    return _list(v, source, d, (pl.col("emergency_12m") >= min_admissions) | pl.col("top_cost"),
                 pl.col("palliative_care") | pl.col("case_managed"), [("emergency_12m", True), ("cost_12m", True)],
                 cap, ["age", "sex", "emergency_12m", "ae_12m", "cost_12m", "cost_percentile", "last_admission"])


def _coded(rows: pl.LazyFrame, table: str) -> pl.LazyFrame:
    """``rows`` matching a codelist by code or by ``*`` prefix, with the entry's category and
    weight: one equality join per prefix length."""
    cl = _codelist(table)
    exact = rows.join(cl.filter(~pl.col("is_prefix")).select("code", "system", "category", "weight"),
                      left_on=["code", "code_system"], right_on=["code", "system"])
    parts = [exact]
    lengths = sorted(set(cl.filter(pl.col("is_prefix")).select(pl.col("stem").str.len_chars()).collect().to_series()))
    for n in lengths:
        pre = (cl.filter(pl.col("is_prefix") & (pl.col("stem").str.len_chars() == n))
               .select("stem", "system", "category", "weight"))
        parts.append(rows.with_columns(stem=pl.col("code").str.slice(0, n))
                     .join(pre, left_on=["stem", "code_system"], right_on=["stem", "system"]).drop("stem"))
    return pl.concat(parts, how="diagonal")


def _index_admission(source: Path, d: dt.date, ids: pl.LazyFrame,
                     settings: list[str]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    m12 = months_back(d, 12)
    st = pl.col("start_date")
    recent = _activity(source, d, ids).filter(st > m12)
    idx = (recent.filter(pl.col("setting").is_in(settings)).group_by("patient_id")
           .agg(index_admission=st.max(), index_spell=pl.col("spell_id").sort_by(st).last()))
    em = recent.filter(pl.col("setting") == "emergency_admission").group_by("patient_id").agg(
        emergency_12m=pl.len().cast(pl.Int64))
    return idx, em


def charlson_polars(source: Path, d: dt.date, threshold: int = 21, cap: int = 25) -> pl.DataFrame:
    pop = _pop(source, d, 18)
    ids = pop.select("patient_id")
    idx, em = _index_admission(source, d, ids, ["emergency_admission", "elective_admission"])
    secondary = pl.col("position").is_null() | (pl.col("position") != 1)
    dx = (_scan(source, "diagnoses").filter((pl.col("date") <= d) & secondary)
          .join(idx.select("patient_id", pl.col("index_spell").alias("spell_id")), on=["patient_id", "spell_id"]))
    present = (_coded(dx, "charlson_cl").group_by("patient_id", "category")
               .agg(w=pl.col("weight").cast(pl.Int64).max()))
    higher = pl.DataFrame({"higher": ["diabetes_complications", "severe_liver_disease", "metastatic_cancer"],
                           "lower": ["diabetes", "liver_disease", "cancer"]}).lazy()
    masked = (present.join(higher, left_on="category", right_on="lower")
              .join(present.select("patient_id", pl.col("category").alias("higher")), on=["patient_id", "higher"])
              .select("patient_id", "category"))
    scored = (present.join(masked, on=["patient_id", "category"], how="anti").group_by("patient_id")
              .agg(points=pl.col("w").sum()))
    conditions = present.group_by("patient_id").agg(charlson_conditions=pl.len().cast(pl.Int64))
    c = pl.col("charlson")
    v = (_flags(pop.join(idx, on="patient_id", how="left").join(scored, on="patient_id", how="left")
                .join(conditions, on="patient_id", how="left").join(em, on="patient_id", how="left")
                .join(_registers_active(source, d, ids), on="patient_id", how="left"), EXCLUSIONS)
         .with_columns(charlson=pl.when(pl.col("index_spell").is_not_null())
                       .then(pl.max_horizontal(pl.col("points").fill_null(0), 0).cast(pl.Float64)),
                       charlson_conditions=pl.col("charlson_conditions").fill_null(0),
                       emergency_12m=pl.col("emergency_12m").fill_null(0))
         .with_columns(charlson_group=pl.when(c >= 21).then(pl.lit("21+")).when(c >= 11).then(pl.lit("11-20"))
                       .when(c >= 6).then(pl.lit("6-10")).when(c >= 1).then(pl.lit("1-5"))
                       .when(c >= 0).then(pl.lit("0"))))
    return _list(v, source, d, c >= threshold, pl.col("palliative_care") | pl.col("case_managed"),
                 [("charlson", True), ("emergency_12m", True)], cap,
                 ["age", "sex", "charlson", "charlson_group", "charlson_conditions", "index_admission",
                  "emergency_12m"])


def hfrs_polars(source: Path, d: dt.date, cap: int = 25) -> pl.DataFrame:
    pop = _pop(source, d, 75)
    ids = pop.select("patient_id")
    idx, em = _index_admission(source, d, ids, ["emergency_admission"])
    date, adm = pl.col("date"), pl.col("index_admission")
    dx = (_scan(source, "diagnoses").filter((date <= d) & (pl.col("source") == "acute")).join(idx, on="patient_id")
          .filter((pl.col("spell_id") == pl.col("index_spell"))
                  | ((date <= adm) & (date > adm.dt.offset_by("-24mo")))))
    present = (_coded(dx.select("patient_id", "code", "code_system"), "hfrs_cl").group_by("patient_id", "category")
               .agg(tenths=(pl.col("weight").cast(pl.Float64) * 10).round().cast(pl.Int64).max()))
    scored = present.group_by("patient_id").agg(points=pl.col("tenths").sum() / 10.0)
    h = pl.col("hfrs")
    v = (_flags(pop.join(idx, on="patient_id", how="left").join(scored, on="patient_id", how="left")
                .join(em, on="patient_id", how="left")
                .join(_registers_active(source, d, ids), on="patient_id", how="left"), EXCLUSIONS)
         .with_columns(hfrs=pl.when(adm.is_not_null()).then(pl.col("points").fill_null(0.0)),
                       emergency_12m=pl.col("emergency_12m").fill_null(0))
         .with_columns(hfrs_band=pl.when(h > 15).then(pl.lit("high")).when(h >= 5).then(pl.lit("intermediate"))
                       .when(h >= 0).then(pl.lit("low"))))
    return _list(v, source, d, h >= 5, pl.col("palliative_care") | pl.col("case_managed"),
                 [("hfrs", True), ("emergency_12m", True)], cap,
                 ["age", "sex", "hfrs", "hfrs_band", "index_admission", "emergency_12m"])


def _ltc(source: Path, d: dt.date, pop: pl.LazyFrame) -> pl.LazyFrame:
    """The 18 QOF register flags, ltc_count, emergency_12m, cost_12m and palliative_care."""
    m12 = months_back(d, 12)
    ids = pop.select("patient_id")
    def entries(cl: pl.LazyFrame, resolved: bool) -> pl.LazyFrame:
        return cl.select(register="category", code="code", system="system", resolved=pl.lit(resolved))

    qof = pl.concat([entries(_codelist("qof_cl"), False), entries(_codelist("qof_resolved_cl"), True),
                     entries(_codelist("ltc_starter_cl").filter(pl.col("category") == "cancer"), False)])
    reg, res, date = pl.col("register"), pl.col("resolved"), pl.col("date")
    aggs = {"obesity_recent": ((reg == "obesity") & ~res & (date > m12)).any()}
    for name, resolves, _ in REGISTERS:
        aggs[f"{name}_latest"] = date.filter((reg == name) & ~res).max()
        if resolves:
            aggs[f"{name}_resolved"] = date.filter((reg == name) & res).max()
    dxq = (_scan(source, "diagnoses").filter(date <= d).join(ids, on="patient_id", how="semi")
           .join(qof, left_on=["code", "code_system"], right_on=["code", "system"]).group_by("patient_id").agg(**aggs))
    bmi_codes = _codelist("bmi_value_cl").select("code")
    bmi = (_scan(source, "observations").filter((date > m12) & (date <= d) & (pl.col("code_system") == "snomed"))
           .join(ids, on="patient_id", how="semi").join(bmi_codes, on="code", how="semi")
           .group_by("patient_id").agg(bmi=pl.col("value").sort_by("date").last()))
    st = pl.col("start_date")
    act = (_activity(source, d, ids).filter(st > m12).group_by("patient_id")
           .agg(emergency_12m=(pl.col("setting") == "emergency_admission").sum().cast(pl.Int64),
                cost_12m=_cost_sum(pl.lit(True))))
    f = (pop.join(dxq, on="patient_id", how="left").join(bmi, on="patient_id", how="left")
         .join(act, on="patient_id", how="left").join(_registers_active(source, d, ids), on="patient_id", how="left"))
    flags = []
    for name, resolves, floor in REGISTERS:
        latest = pl.col(f"{name}_latest")
        cond = latest.is_not_null()
        if resolves:
            cond = cond & ~(pl.col(f"{name}_resolved") >= latest).fill_null(False)
        if name == "depression":
            cond = cond & (latest >= dt.date(2006, 4, 1))
        if name == "obesity":
            cond = pl.col("obesity_recent").fill_null(False) | (pl.col("bmi") >= 30).fill_null(False)
        if name == "learning_disability":
            cond = cond | pl.col("ld_register").fill_null(False)
        if floor is not None:
            cond = (pl.col("age") >= floor) & cond
        flags.append(cond.fill_null(False).alias(name))
    return (f.with_columns(flags + [pl.col("emergency_12m").fill_null(0), pl.col("cost_12m").fill_null(0.0),
                                    pl.col("palliative_care").fill_null(False)])
            .with_columns(ltc_count=pl.sum_horizontal([pl.col(n).cast(pl.Int64) for n, _, _ in REGISTERS])))


def multimorbidity_polars(source: Path, d: dt.date, min_conditions: int = 4, cap: int = 25) -> pl.DataFrame:
    v = _ltc(source, d, _pop(source, d, 18))
    ltc = pl.col("ltc_count")
    smi_or_ld = pl.col("serious_mental_illness") | pl.col("learning_disability")
    return _list(v, source, d, (ltc >= min_conditions) | ((ltc >= 2) & smi_or_ld),
                 pl.col("palliative_care"), [("ltc_count", True), ("emergency_12m", True)], cap,
                 ["age", "sex", "ltc_count", "serious_mental_illness", "learning_disability", "emergency_12m",
                  "cost_12m"])


def segments_polars(source: Path, d: dt.date, cap: int = 50) -> pl.DataFrame:
    m12 = months_back(d, 12)
    pop = _pop(source, d, None)
    ids = pop.select("patient_id")
    efi = pl.scan_csv(EFI_CSV, schema_overrides={"code": pl.String, "system": pl.String, "category": pl.String})
    dx = (_scan(source, "diagnoses").filter(pl.col("date") <= d).join(ids, on="patient_id", how="semi")
          .join(efi, left_on=["code", "code_system"], right_on=["code", "system"])
          .group_by("patient_id").agg(coded_deficits=pl.col("category").n_unique()))
    rx = (_scan(source, "medications").filter((pl.col("date") > m12) & (pl.col("date") <= d))
          .join(ids, on="patient_id", how="semi").group_by("patient_id").agg(medicines_12m=pl.col("code").n_unique()))
    v = (_ltc(source, d, pop).join(dx, on="patient_id", how="left").join(rx, on="patient_id", how="left")
         .with_columns(pl.col("coded_deficits", "medicines_12m").fill_null(0).cast(pl.Int64))
         .with_columns(efi=(pl.col("coded_deficits") + (pl.col("medicines_12m") >= 5).cast(pl.Int64)) / 36,
                       end_of_life=pl.col("palliative_care"))
         .with_columns(frail=(pl.col("age") >= 65) & (pl.col("efi") > 0.24)))
    seg = pl.when(pl.col(SEGMENTS[0][1])).then(pl.lit(SEGMENTS[0][0]))
    for name, cond in SEGMENTS[1:]:
        seg = seg.when(_segment_condition(cond)).then(pl.lit(name))
    v = v.with_columns(segment=seg)
    return _list(v, source, d, pl.col("end_of_life") | pl.col("frail") | (pl.col("ltc_count") >= 4), pl.lit(False),
                 [("cost_12m", True)], cap, ["segment", "age", "sex", "efi", "ltc_count", "cost_12m", "emergency_12m"])


def _segment_condition(cond: str) -> pl.Expr:
    """segments.yml's conditions (as peer_lists.SEGMENTS writes them in SQL) as Polars."""
    if cond == "TRUE":
        return pl.lit(True)
    if cond.startswith("ltc_count"):
        _, op, n = cond.split()
        return {">=": pl.col("ltc_count") >= int(n), "=": pl.col("ltc_count") == int(n)}[op]
    return pl.col(cond)


LIST_POLARS = {"high_utilisers": high_utilisers_polars, "rising_risk": None, "charlson": charlson_polars,
               "hfrs": hfrs_polars, "multimorbidity": multimorbidity_polars, "segments": segments_polars}


def _rising_risk_model_polars(source: Path, d: dt.date, cap: int = 25) -> pl.DataFrame:
    """rules/rising_risk.yml scores with the fitted model: model_peer_polars writes it out."""
    from model_peer_polars import rising_risk_polars
    return rising_risk_polars(source, d, cap)


LIST_POLARS["rising_risk"] = _rising_risk_model_polars
