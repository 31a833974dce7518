"""The performance peers: what a skilled analyst would write for the same work without casefind.

These are independent of casefind's engines. They read the source tables (the folder of
Parquet files that ``casefind synth`` writes and ``casefind ingest`` reads) and the published
eFI codelist CSV, never the store, the rule's IR, the native kernels or the reference
engine's SQL; this module imports nothing from casefind. The rule (rules/frail.yml) was read
by a person and written out by hand:

- ``load_duckdb``: the source tables loaded into a DuckDB database, each sorted by patient
  and date (the peer of ``casefind ingest``, with no validation or quarantine), plus the
  codelists as tables (eFI here, the other rules' in peer_lists.py) and an empty ``reviews``
  table (the clinicians' decisions, which ``casefind review`` records beside a store; a
  benchmark store has none).
- ``FRAIL_LIST_SQL`` / ``frail_list_polars``: frail.yml's review list as ONE DuckDB query over
  that database and as ONE Polars lazy query over the Parquet: population, the eFI (distinct
  deficit categories of the published codelist plus polypharmacy), the crisis criteria, the
  rule's exclusions, the list policy (nobody dead, deregistered or with a type 1 opt-out at
  as_of), the rank (efi desc, emergency_12m desc, ties by pseudonymised id) and the cap of 25
  per practice.
- ``FRAIL_DATASET_SQL`` / ``frail_dataset_polars``: ``casefind dataset rules/frail.yml``'s
  table, every feature and criterion for everyone in the population, with the dataset's
  default opt-out policy (type 1 and national data opt-outs left out, whatever their date).

The other shipped rules' list peers (one DuckDB query and one Polars lazy query each) are in
peer_lists.py and peer_lists_polars.py; ``list_query`` and ``list_polars`` find any rule's.
The benchmarks check that each gives the same patients, ranks and values as casefind before
timing it. Windows follow the rules language: ``within=months(n)`` is (D - n months, D], the
day clamped to the month's end; events after D are invisible.
"""
from __future__ import annotations

import calendar
import datetime as dt
from pathlib import Path

import duckdb
import polars as pl

# frail.yml, as written by hand from the rule file
AS_OF = dt.date(2026, 10, 31)
MIN_AGE = 65
PER_PRACTICE = 25
RULE = "frail"
EFI_CSV = Path(__file__).parents[1] / "rules" / "codelists" / "published" / "efi_snomed.csv"

# the data contract's tables, each with the date its rows are sorted by after the patient; a
# table the source has beyond these is loaded too, sorted by patient and its first date column
SORT_DATE = {"patients": None, "practices": None, "diagnoses": "date", "activity": "start_date",
             "procedures": "date", "medications": "date", "observations": "date", "experience": "date",
             "registers": "start_date", "opt_outs": "date"}
REVIEWS_SCHEMA = {"patient_id": pl.String, "date": pl.Date, "rule": pl.String, "decision": pl.String}


def months_back(d: dt.date, n: int) -> dt.date:
    """D - n calendar months, the day clamped to the month's end (31 Oct - 6 months = 30 Apr)."""
    y, m = divmod(d.year * 12 + d.month - 1 - n, 12)
    return dt.date(y, m + 1, min(d.day, calendar.monthrange(y, m + 1)[1]))


def parquet_of(source: Path, table: str) -> str | None:
    """The table's file (or folder of Parquet parts) in a source folder, as a glob DuckDB and
    Polars read; None when the source has no such table."""
    source = Path(source)
    for p in (source / f"{table}.parquet", source / "restricted" / f"{table}.parquet"):
        if p.exists():
            return str(p)
    if (source / table).is_dir():
        return str(source / table / "**" / "*.parquet")
    return None


# --- the DuckDB database: ingest's peer, and what the DuckDB queries run over -------------------

def source_tables(source: Path) -> list[str]:
    """The tables of a source folder: the contract's, then any other ``NAME.parquet`` (or
    folder of Parquet parts) at its top level; identities (restricted) are not among them."""
    source = Path(source)
    found = [p.name[:-len(".parquet")] if p.is_file() else p.name for p in sorted(source.iterdir())
             if not p.name.startswith((".", "_")) and p.name != "restricted"
             and ((p.is_file() and p.name.endswith(".parquet")) or (p.is_dir() and any(p.rglob("*.parquet"))))]
    return [t for t in SORT_DATE if t in found] + [t for t in found if t not in SORT_DATE and t != "identities"]


def load_duckdb(source: Path, db_path: Path, *, identities_path: Path | None = None) -> dict[str, int]:
    """Load every source table into a new DuckDB database at ``db_path``, sorted by patient and
    date (identities, when the source has them and ``identities_path`` is given, into their own
    database, as casefind keeps them apart), the eFI codelist as ``efi`` and an empty
    ``reviews``. Returns rows loaded per table."""
    rows = {}
    con = duckdb.connect(str(db_path))
    try:
        for table in source_tables(source):
            path = parquet_of(source, table)
            cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
            date = SORT_DATE.get(table) or next((c for c in ("date", "start_date") if c in cols), None)
            keys = [c for c in ("patient_id", date) if c in cols]
            # ties keep the source's order (as casefind's store does: first/last break ties by it)
            order = f" ORDER BY {', '.join([*keys, 'filename', 'file_row_number'])}"
            con.execute(f"CREATE TABLE {table} AS SELECT * EXCLUDE (filename, file_row_number) "
                        f"FROM read_parquet('{path}', filename = true, file_row_number = true){order}")
            rows[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        load_reference_tables(con)
    finally:
        con.close()
    ident = parquet_of(source, "identities")
    if identities_path is not None and ident is not None:
        with duckdb.connect(str(identities_path)) as icon:
            icon.execute(f"CREATE TABLE identities AS SELECT * FROM read_parquet('{ident}') ORDER BY patient_id")
            rows["identities"] = icon.execute("SELECT count(*) FROM identities").fetchone()[0]
    return rows


def load_reference_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The eFI codelist as ``efi``, the other rules' codelists and an empty ``reviews``."""
    con.execute(f"CREATE TABLE efi AS SELECT * FROM read_csv('{EFI_CSV}', header = true, "
                "columns = {'code': 'VARCHAR', 'system': 'VARCHAR', 'category': 'VARCHAR', 'term': 'VARCHAR'})")
    con.execute("CREATE TABLE reviews (patient_id VARCHAR, date DATE, rule VARCHAR, decision VARCHAR)")
    from peer_lists import load_codelists  # the other rules' codelists (peer_lists imports this module)

    load_codelists(con)


def parquet_views(source: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose source tables are views over the Parquet (no load: what an
    analyst runs when a database of 500M rows is not worth building), with the reference
    tables. ``rowid`` is the row's place in its file: the sorted load keeps that order for
    ties within a patient and date, which is what the KPI peer's ``rowid`` breaks them by."""
    con = duckdb.connect()
    for table in source_tables(source):
        con.execute(f"CREATE VIEW {table} AS SELECT * EXCLUDE (file_row_number), file_row_number AS rowid "
                    f"FROM read_parquet('{parquet_of(source, table)}', file_row_number = true)")
    load_reference_tables(con)
    return con


def _dates(as_of: dt.date) -> dict[str, str]:
    return {"as_of": as_of.isoformat(), "m6": months_back(as_of, 6).isoformat(),
            "m12": months_back(as_of, 12).isoformat()}


# The features, once per patient of the population: one grouped pass per event table.
_FRAIL_FEATURES_SQL = """
WITH pop AS (
    SELECT p.patient_id, p.practice_code, p.sex, p.death_date, p.registration_start, p.registration_end,
           year(DATE '{as_of}') - year(p.birth_date)
             - CAST(month(p.birth_date) * 100 + day(p.birth_date) > {md} AS INTEGER) AS age
    FROM patients p
    WHERE p.registration_start <= DATE '{as_of}'
      AND (p.registration_end IS NULL OR p.registration_end >= DATE '{as_of}')
      AND (p.death_date IS NULL OR p.death_date > DATE '{as_of}')
      AND year(DATE '{as_of}') - year(p.birth_date)
            - CAST(month(p.birth_date) * 100 + day(p.birth_date) > {md} AS INTEGER) >= {min_age}
), dx AS (
    SELECT d.patient_id, count(DISTINCT e.category) AS coded_deficits
    FROM diagnoses d SEMI JOIN pop USING (patient_id)
    JOIN efi e ON e.code = d.code AND e.system = d.code_system
    WHERE d.date <= DATE '{as_of}'
    GROUP BY d.patient_id
), rx AS (
    SELECT patient_id, count(DISTINCT code) AS medicines_12m
    FROM medications SEMI JOIN pop USING (patient_id)
    WHERE date > DATE '{m12}' AND date <= DATE '{as_of}'
    GROUP BY patient_id
), act AS (
    SELECT patient_id,
           count(*) FILTER (setting = 'emergency_admission' AND start_date > DATE '{m12}') AS emergency_12m,
           count(*) FILTER (setting = 'ae' AND start_date > DATE '{m6}') AS ae_recent,
           count(*) FILTER (setting = 'ae' AND start_date > DATE '{m12}' AND start_date <= DATE '{m6}') AS ae_prior,
           sum(cost) FILTER (start_date > DATE '{m12}') AS cost_12m,
           max(start_date) FILTER (setting = 'emergency_admission') AS last_admission
    FROM activity SEMI JOIN pop USING (patient_id)
    WHERE start_date <= DATE '{as_of}'
    GROUP BY patient_id
), reg AS (
    SELECT patient_id, bool_or(register = 'palliative_care') AS palliative_care,
           bool_or(register = 'case_management') AS case_managed
    FROM registers SEMI JOIN pop USING (patient_id)
    WHERE register IN ('palliative_care', 'case_management')
      AND start_date <= DATE '{as_of}' AND (end_date IS NULL OR end_date >= DATE '{as_of}')
    GROUP BY patient_id
), rev AS (
    SELECT patient_id,
           bool_or(decision = 'declined' AND date > DATE '{m6}') AS declined_recently,
           bool_or(decision IN ('already_known', 'accepted') AND date > DATE '{m12}') AS already_known
    FROM reviews
    WHERE rule = '{rule}' AND date <= DATE '{as_of}'
    GROUP BY patient_id
), f AS (
    SELECT pop.*, coalesce(dx.coded_deficits, 0) AS coded_deficits,
           coalesce(rx.medicines_12m, 0) AS medicines_12m,
           coalesce(rx.medicines_12m, 0) >= 5 AS polypharmacy,
           coalesce(dx.coded_deficits, 0) + CAST(coalesce(rx.medicines_12m, 0) >= 5 AS INTEGER) AS deficits,
           coalesce(act.emergency_12m, 0) AS emergency_12m, coalesce(act.ae_recent, 0) AS ae_recent,
           coalesce(act.ae_prior, 0) AS ae_prior, coalesce(act.cost_12m, 0) AS cost_12m, act.last_admission,
           coalesce(reg.palliative_care, false) AS palliative_care, coalesce(reg.case_managed, false) AS case_managed,
           coalesce(rev.declined_recently, false) AS declined_recently,
           coalesce(rev.already_known, false) AS already_known
    FROM pop LEFT JOIN dx USING (patient_id) LEFT JOIN rx USING (patient_id) LEFT JOIN act USING (patient_id)
         LEFT JOIN reg USING (patient_id) LEFT JOIN rev USING (patient_id)
), v AS (
    SELECT *, deficits / 36 AS efi,
           CASE WHEN deficits / 36 > 0.36 THEN 'severe' WHEN deficits / 36 > 0.24 THEN 'moderate'
                WHEN deficits / 36 > 0.12 THEN 'mild' ELSE 'fit' END AS frailty,
           deficits / 36 > 0.24 AS moderate_or_severe_frailty,
           emergency_12m >= 1 OR ae_recent > ae_prior AS recent_crisis
    FROM f
)"""

FRAIL_LIST_SQL = _FRAIL_FEATURES_SQL + """
, eligible AS (
    SELECT * FROM v
    WHERE moderate_or_severe_frailty AND recent_crisis
      AND NOT (palliative_care OR case_managed OR declined_recently OR already_known)
      AND patient_id NOT IN (SELECT patient_id FROM opt_outs WHERE kind = 'type1' AND date <= DATE '{as_of}')
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY practice_code
                                 ORDER BY efi DESC, emergency_12m DESC, patient_id) AS rank
    FROM eligible
)
SELECT practice_code AS practice, patient_id, rank, age, sex, frailty, efi, deficits, polypharmacy,
       emergency_12m, ae_recent, ae_prior, last_admission
FROM ranked WHERE rank <= {per_practice}
ORDER BY practice, rank
"""

FRAIL_DATASET_SQL = _FRAIL_FEATURES_SQL + """
SELECT v.patient_id, v.practice_code AS practice, pr.locality_code AS locality, age, sex, coded_deficits,
       medicines_12m, polypharmacy, deficits, efi, frailty, emergency_12m, ae_recent, ae_prior, cost_12m,
       last_admission,
       moderate_or_severe_frailty AS "include:moderate_or_severe_frailty", recent_crisis AS "include:recent_crisis",
       palliative_care AS "exclude:palliative_care", case_managed AS "exclude:case_managed",
       declined_recently AS "exclude:declined_recently", already_known AS "exclude:already_known",
       moderate_or_severe_frailty AND recent_crisis
         AND NOT (palliative_care OR case_managed OR declined_recently OR already_known)
         AND NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.patient_id = v.patient_id AND o.kind = 'type1'
                         AND o.date <= DATE '{as_of}') AS eligible
FROM v JOIN practices pr USING (practice_code)
WHERE v.patient_id NOT IN (SELECT patient_id FROM opt_outs WHERE kind IN ('type1', 'ndo'))
ORDER BY v.patient_id
"""


def frail_sql(template: str, as_of: dt.date = AS_OF, min_age: int = MIN_AGE, per_practice: int = PER_PRACTICE) -> str:
    return template.format(**_dates(as_of), md=as_of.month * 100 + as_of.day, min_age=min_age,
                           per_practice=per_practice, rule=RULE)


def duckdb_query(con: duckdb.DuckDBPyConnection, sql: str):
    """Run the query to an Arrow table (the result an analyst takes away)."""
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


# --- Polars: one lazy query over the Parquet ------------------------------------------------------

def _scan(source: Path, table: str) -> pl.LazyFrame:
    return pl.scan_parquet(parquet_of(source, table))


def _frail_features_polars(source: Path, as_of: dt.date, min_age: int, reviews: pl.LazyFrame | None):
    D, m6, m12 = as_of, months_back(as_of, 6), months_back(as_of, 12)
    md = as_of.month * 100 + as_of.day
    birth = pl.col("birth_date")
    age = pl.lit(D.year) - birth.dt.year().cast(pl.Int64) - (birth.dt.month().cast(pl.Int64) * 100
                                                             + birth.dt.day().cast(pl.Int64) > md).cast(pl.Int64)
    pop = (_scan(source, "patients")
           .filter((pl.col("registration_start") <= D)
                   & (pl.col("registration_end").is_null() | (pl.col("registration_end") >= D))
                   & (pl.col("death_date").is_null() | (pl.col("death_date") > D)))
           .with_columns(age=age)
           .filter(pl.col("age") >= min_age)
           .select("patient_id", "practice_code", "sex", "age"))
    ids = pop.select("patient_id")
    efi = pl.scan_csv(EFI_CSV, schema_overrides={"code": pl.String, "system": pl.String, "category": pl.String})
    dx = (_scan(source, "diagnoses").filter(pl.col("date") <= D).join(ids, on="patient_id", how="semi")
          .join(efi, left_on=["code", "code_system"], right_on=["code", "system"])
          .group_by("patient_id").agg(coded_deficits=pl.col("category").n_unique()))
    rx = (_scan(source, "medications").filter((pl.col("date") > m12) & (pl.col("date") <= D))
          .join(ids, on="patient_id", how="semi")
          .group_by("patient_id").agg(medicines_12m=pl.col("code").n_unique()))
    s, st = pl.col("setting"), pl.col("start_date")
    act = (_scan(source, "activity").filter(st <= D).join(ids, on="patient_id", how="semi")
           .group_by("patient_id").agg(
               emergency_12m=((s == "emergency_admission") & (st > m12)).sum(),
               ae_recent=((s == "ae") & (st > m6)).sum(),
               ae_prior=((s == "ae") & (st > m12) & (st <= m6)).sum(),
               cost_12m=pl.col("cost").filter(st > m12).sum(),
               last_admission=st.filter(s == "emergency_admission").max()))
    reg = (_scan(source, "registers")
           .filter(pl.col("register").is_in(["palliative_care", "case_management"]) & (st <= D)
                   & (pl.col("end_date").is_null() | (pl.col("end_date") >= D)))
           .join(ids, on="patient_id", how="semi")
           .group_by("patient_id").agg(palliative_care=(pl.col("register") == "palliative_care").any(),
                                       case_managed=(pl.col("register") == "case_management").any()))
    reviews = reviews if reviews is not None else pl.LazyFrame(schema=REVIEWS_SCHEMA)
    dec, dd = pl.col("decision"), pl.col("date")
    rev = (reviews.filter((pl.col("rule") == RULE) & (dd <= D))
           .group_by("patient_id").agg(declined_recently=((dec == "declined") & (dd > m6)).any(),
                                       already_known=(dec.is_in(["already_known", "accepted"]) & (dd > m12)).any()))
    counts = ["coded_deficits", "medicines_12m", "emergency_12m", "ae_recent", "ae_prior"]
    flags = ["palliative_care", "case_managed", "declined_recently", "already_known"]
    efi_v = pl.col("deficits") / 36
    return (pop.join(dx, on="patient_id", how="left").join(rx, on="patient_id", how="left")
            .join(act, on="patient_id", how="left").join(reg, on="patient_id", how="left")
            .join(rev, on="patient_id", how="left")
            .with_columns([pl.col(c).fill_null(0).cast(pl.Int64) for c in counts]
                          + [pl.col(c).fill_null(False) for c in flags]
                          + [pl.col("cost_12m").fill_null(0.0)])
            .with_columns(polypharmacy=pl.col("medicines_12m") >= 5)
            .with_columns(deficits=pl.col("coded_deficits") + pl.col("polypharmacy").cast(pl.Int64))
            .with_columns(efi=efi_v,
                          frailty=pl.when(efi_v > 0.36).then(pl.lit("severe")).when(efi_v > 0.24)
                          .then(pl.lit("moderate")).when(efi_v > 0.12).then(pl.lit("mild")).otherwise(pl.lit("fit")),
                          moderate_or_severe_frailty=efi_v > 0.24,
                          recent_crisis=(pl.col("emergency_12m") >= 1) | (pl.col("ae_recent") > pl.col("ae_prior"))))


def frail_list_polars(source: Path, as_of: dt.date = AS_OF, min_age: int = MIN_AGE,
                      per_practice: int = PER_PRACTICE, reviews: pl.LazyFrame | None = None) -> pl.DataFrame:
    """frail.yml's review list: one Polars lazy query over the Parquet source, collected once."""
    type1 = _scan(source, "opt_outs").filter((pl.col("kind") == "type1") & (pl.col("date") <= as_of))
    v = _frail_features_polars(source, as_of, min_age, reviews)
    return (v.filter(pl.col("moderate_or_severe_frailty") & pl.col("recent_crisis")
                     & ~(pl.col("palliative_care") | pl.col("case_managed") | pl.col("declined_recently")
                         | pl.col("already_known")))
            .join(type1, on="patient_id", how="anti")
            .sort(["practice_code", "efi", "emergency_12m", "patient_id"], descending=[False, True, True, False])
            .with_columns(rank=pl.int_range(1, pl.len() + 1).over("practice_code"))
            .filter(pl.col("rank") <= per_practice)
            .select(pl.col("practice_code").alias("practice"), "patient_id", "rank", "age", "sex", "frailty", "efi",
                    "deficits", "polypharmacy", "emergency_12m", "ae_recent", "ae_prior", "last_admission")
            .collect())


def frail_dataset_polars(source: Path, as_of: dt.date = AS_OF, min_age: int = MIN_AGE,
                         reviews: pl.LazyFrame | None = None) -> pl.DataFrame:
    """``casefind dataset rules/frail.yml``: one Polars lazy query over the Parquet source."""
    oo = _scan(source, "opt_outs")
    type1 = oo.filter((pl.col("kind") == "type1") & (pl.col("date") <= as_of)).select("patient_id").unique()
    any_opt_out = oo.filter(pl.col("kind").is_in(["type1", "ndo"])).select("patient_id")
    practices = _scan(source, "practices").select("practice_code", pl.col("locality_code").alias("locality"))
    v = _frail_features_polars(source, as_of, min_age, reviews)
    return (v.join(any_opt_out, on="patient_id", how="anti")
            .join(type1.with_columns(type1=pl.lit(True)), on="patient_id", how="left")
            .join(practices, on="practice_code", how="left")
            .with_columns(eligible=pl.col("moderate_or_severe_frailty") & pl.col("recent_crisis")
                          & ~(pl.col("palliative_care") | pl.col("case_managed") | pl.col("declined_recently")
                              | pl.col("already_known")) & pl.col("type1").is_null())
            .select("patient_id", pl.col("practice_code").alias("practice"), "locality", "age", "sex",
                    "coded_deficits", "medicines_12m", "polypharmacy", "deficits", "efi", "frailty",
                    "emergency_12m", "ae_recent", "ae_prior", "cost_12m", "last_admission",
                    pl.col("moderate_or_severe_frailty").alias("include:moderate_or_severe_frailty"),
                    pl.col("recent_crisis").alias("include:recent_crisis"),
                    pl.col("palliative_care").alias("exclude:palliative_care"),
                    pl.col("case_managed").alias("exclude:case_managed"),
                    pl.col("declined_recently").alias("exclude:declined_recently"),
                    pl.col("already_known").alias("exclude:already_known"), "eligible")
            .sort("patient_id")
            .collect())


# --- the peers as their own processes: python benchmarks/peers.py list|dataset duckdb|polars IN OUT [RULE] ---

def list_query(rule: str, as_of: dt.date = AS_OF) -> str:
    """The DuckDB SQL peer of a shipped rule's list (frail here, the others in peer_lists.py)."""
    if rule == RULE:
        return frail_sql(FRAIL_LIST_SQL, as_of)
    from peer_lists import LIST_SQL

    return LIST_SQL[rule](as_of)


def list_polars(rule: str, source: Path, as_of: dt.date = AS_OF) -> pl.DataFrame:
    """The Polars lazy peer of a shipped rule's list, collected."""
    if rule == RULE:
        return frail_list_polars(Path(source), as_of)
    from peer_lists_polars import LIST_POLARS

    return LIST_POLARS[rule](Path(source), as_of)


def main(argv: list[str]) -> None:
    """A peer end to end in a fresh process, as an analyst runs a script: import, open the
    database (or scan the Parquet), run the one query, write the result (.csv or .parquet).
    RULE (a shipped rule's name, for ``list``) defaults to frail."""
    what, engine, source, out, *rest = argv
    rule = rest[0] if rest else RULE
    if engine == "duckdb":  # DuckDB writes the query's result itself (CSV or Parquet, by the name)
        with duckdb.connect(source, read_only=True) as con:
            con.execute(f"COPY ({list_query(rule) if what == 'list' else frail_sql(FRAIL_DATASET_SQL)}) TO '{out}'")
        return
    df = list_polars(rule, Path(source)) if what == "list" else frail_dataset_polars(Path(source))
    if out.endswith(".parquet"):
        df.write_parquet(out)
    else:
        df.write_csv(out)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
