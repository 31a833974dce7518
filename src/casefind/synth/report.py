"""Calibration report: reads a generated folder (not the casefind store) and compares each
measure with its England target, so drift in the generator shows up as a failed row."""
from __future__ import annotations

import datetime as dt
import pathlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind.synth._common import load_csv


@dataclass
class CalibrationRow:
    measure: str
    target: float
    low: float
    high: float
    actual: float
    ok: bool


def _read(out: pathlib.Path, name: str) -> pa.Table:
    p = out / f"{name}.parquet"
    return pq.read_table(p) if p.exists() else pacsv.read_csv(out / f"{name}.csv")


def _days(col) -> np.ndarray:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.cast(pc.strptime(col, format="%Y-%m-%d", unit="s", error_is_null=True), pa.date32())
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.date32())
    return col.cast(pa.int32()).fill_null(-(2 ** 31)).to_numpy(zero_copy_only=False)


def _num(col) -> np.ndarray:
    col = col.combine_chunks()
    if pa.types.is_string(col.type):
        col = pc.cast(col, pa.float64(), safe=False) if False else pa.array(
            [float(x) if x not in (None, "") and x.replace(".", "", 1).lstrip("-").isdigit() else np.nan for x in col.to_pylist()])
    return col.cast(pa.float64()).to_numpy(zero_copy_only=False)


def calibration_report(out_dir, as_of: dt.date = dt.date(2026, 10, 31)) -> list[CalibrationRow]:
    out = pathlib.Path(out_dir)
    A = (as_of - dt.date(1970, 1, 1)).days
    NUL = -(2 ** 31)
    pat = _read(out, "patients")
    pid = pat.column("patient_id").combine_chunks()
    birth = _days(pat.column("birth_date"))
    death = _days(pat.column("death_date")); rend = _days(pat.column("registration_end"))
    rstart = _days(pat.column("registration_start"))
    n = len(pid)
    age = (A - birth) / 365.25
    cur = (death == NUL) & (rend == NUL)
    exit_ = np.where(death != NUL, death, np.where(rend != NUL, rend, A))
    exit_ = np.where((rend != NUL) & (rend < exit_), rend, exit_)
    y0 = A - 365
    expo = np.clip(np.minimum(exit_, A) - np.maximum(rstart, y0), 0, 365) / 365.0
    py = expo.sum()
    rows: list[CalibrationRow] = []

    def add(m, target, lo, hi, actual):
        rows.append(CalibrationRow(m, round(target, 3), round(lo, 3), round(hi, 3), round(float(actual), 3),
                                   bool(lo <= actual <= hi)))

    def idx(col):
        i = pc.index_in(col, value_set=pid).to_numpy(zero_copy_only=False)
        return np.where(np.isnan(i.astype(float)), -1, i).astype(np.int64) if i.dtype == object else i

    for a in load_csv("age_structure.csv"):
        lo, hi = int(a["lower"]), int(a["upper"] or 200) + 1
        t = float(a["percent_of_population"])
        add(f"population % aged {a['age_band']}", t, t * 0.75, t * 1.25, 100 * (cur & (age >= lo) & (age < hi)).sum() / cur.sum())

    codes = {r["code"]: r["condition"] for r in load_csv("codes.csv") if r["code_system"] == "snomed"}
    dx = _read(out, "diagnoses")
    di = pc.index_in(dx.column("patient_id"), value_set=pid).fill_null(-1).to_numpy(zero_copy_only=False)
    dcode = dx.column("code").to_numpy(zero_copy_only=False)
    conds = sorted(set(codes.values()))
    cidx = {c: i for i, c in enumerate(conds)}
    code_to_c = np.array([cidx.get(codes.get(c, ""), -1) for c in dcode])
    keep = (code_to_c >= 0) & (di >= 0)
    has = np.zeros((n, len(conds)), bool)
    has[di[keep], code_to_c[keep]] = True
    regs = _read(out, "registers")
    ri = pc.index_in(regs.column("patient_id"), value_set=pid).fill_null(-1).to_numpy(zero_copy_only=False)
    rname = regs.column("register").to_numpy(zero_copy_only=False)
    rendd = _days(regs.column("end_date"))
    for row in load_csv("ltc_prevalence.csv"):
        c = row["condition"]
        t = float(row["percent_of_register_population"])
        min_age = 0 if row["register_age"] == "all" else int(row["register_age"].rstrip("+"))
        den = cur & (age >= min_age)
        if c == "palliative_care":
            on = np.zeros(n, bool)
            on[ri[(rname == "palliative_care") & (rendd == NUL) & (ri >= 0)]] = True
        else:
            on = has[:, cidx[c]]
        add(f"prevalence % {c} ({row['register_age']})", t, t * 0.75, t * 1.25, 100 * (on & den).sum() / den.sum())

    # eFI: 36 deficits from coded conditions plus polypharmacy
    defs = load_csv("efi_deficits.csv")
    count = np.zeros(n, np.int32)
    for d in defs:
        cs = [cidx[c] for c in d["conditions"].split(";") if c in cidx]
        if cs:
            count += has[:, cs].any(1)
    med = _read(out, "medications")
    mi = pc.index_in(med.column("patient_id"), value_set=pid).fill_null(-1).to_numpy(zero_copy_only=False)
    md = _days(med.column("date"))
    mc = pc.dictionary_encode(med.column("code").combine_chunks()).indices.to_numpy(zero_copy_only=False)
    ok = (md > A - 365) & (mi >= 0)
    pairs = np.unique(mi[ok].astype(np.int64) * 100_000 + mc[ok])
    distinct = np.bincount((pairs // 100_000).astype(np.int64), minlength=n)
    count += distinct >= 5
    efi = count / 36
    old = cur & (age >= 65)
    add("% of 65+ with eFI > 0.24 (moderate/severe)", 12.5, 10, 15, 100 * (old & (efi > 0.24)).sum() / old.sum())
    add("% of 65+ fit (eFI <= 0.12)", 50, 35, 65, 100 * (old & (efi <= 0.12)).sum() / old.sum())

    act = _read(out, "activity")
    ai = pc.index_in(act.column("patient_id"), value_set=pid).fill_null(-1).to_numpy(zero_copy_only=False)
    ad = _days(act.column("start_date"))
    setting = act.column("setting").to_numpy(zero_copy_only=False)
    last = (ad > y0) & (ad <= A) & (ai >= 0)

    def per_person(s):
        return ((setting == s) & last).sum() / py

    em = (setting == "emergency_admission") & last
    add("emergency admissions per 1,000 a year", 85, 60, 120, 1000 * em.sum() / py)
    o85 = age >= 85
    add("emergency admissions per 1,000 a year, 85+", 450, 250, 800, 1000 * np.isin(ai[em], np.flatnonzero(o85)).sum() / expo[o85].sum())
    truth = pq.read_table(out / "_truth" / "latent.parquet")
    ti = pc.index_in(truth.column("patient_id"), value_set=pid).to_numpy(zero_copy_only=False)
    risk = np.zeros(n); risk[ti] = truth.column("latent_risk").to_numpy()
    live = expo > 0
    k = max(1, int(0.005 * live.sum()))
    top = np.flatnonzero(live)[np.argsort(-risk[live], kind="stable")[:k]]
    cnt = np.bincount(ai[em], minlength=n)
    add("top 0.5% by latent risk: admission rate x average", 17.5, 15, 20,
        (cnt[top].sum() / expo[top].sum()) / (em.sum() / py))
    add("A&E attendances per 1,000 a year", 400, 300, 500, 1000 * per_person("ae"))
    add("outpatient attendances a person a year", 1.7, 1.3, 2.1, per_person("outpatient"))
    add("GP appointments a person a year", 5.0, 4.0, 6.0, per_person("gp"))
    add("deaths per 1,000 a year", 10, 7, 13, 1000 * ((death > y0) & (death <= A)).sum() / py)
    oo = _read(out, "opt_outs")
    oi = pc.index_in(oo.column("patient_id"), value_set=pid).fill_null(-1).to_numpy(zero_copy_only=False)
    opted = np.zeros(n, bool); opted[oi[oi >= 0]] = True
    add("% opted out (type1 or ndo)", 4, 2, 6, 100 * (opted & cur).sum() / cur.sum())
    pr = _read(out, "practices")
    add("mean practice list size", 8000, 5000, 11000, cur.sum() / pr.num_rows)
    add("practices per locality", 7.5, 5, 10, pr.num_rows / len(set(pr.column("locality_code").to_pylist())))
    cost = _num(act.column("cost"))
    add("mean cost per emergency spell (GBP)", 3200, 2600, 4200, np.nanmean(cost[setting == "emergency_admission"]))
    return rows


def format_markdown(rows: list[CalibrationRow]) -> str:
    lines = ["| measure | target | range | actual | ok |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.measure} | {r.target:g} | {r.low:g}–{r.high:g} | {r.actual:g} | {'yes' if r.ok else '**no**'} |")
    return "\n".join(lines)
