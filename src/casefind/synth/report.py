"""Calibration and truth reports: read a generated folder (not the casefind store). The
calibration report compares each measure with its England target, so drift in the generator
shows up as a failed row; the truth report scores the shipped rules' logic against the
population's truth (_truth/), so a codelist gap or a missing rule step shows up as a low
sensitivity or positive predictive value."""
from __future__ import annotations

import datetime as dt
import math
import pathlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind.contract.dates import shift_date
from casefind.contract.schema import ADMISSION_SETTINGS, TRANSFER_DAYS
from casefind.synth._common import load_csv

NUL = -(2 ** 31)
QOF_CONDITIONS = [r["condition"] for r in load_csv("ltc_prevalence.csv") if r["condition"] != "palliative_care"]
# the HFRS high band (> 15) among people 75+ with an emergency admission: Gilbert et al.,
# Lancet 2018;391:1775-82, national validation cohort (202,718 of 1,013,590, 20.0%); see
# docs/synthetic-data.md
HFRS_HIGH_TARGET = (20.0, 14.0, 26.0)
# 30-day emergency readmissions, % of emergency admissions (CIP spells, cancer and obstetrics
# excluded): NHS Digital, 12.5% (2013/14) to 13.8% (2017/18), "Emergency readmissions published
# for first time in five years" (2019), about 14-15% since (compendium I02040)
READMISSION_TARGET = (14.0, 11.0, 17.0)
# emergency spells ending in a discharge to another hospital (HES discharge destinations 49-53)
TRANSFER_TARGET = (2.5, 1.5, 3.5)


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
        # a number or NaN: injected errors ("abc", "two") read as missing, not as a failure
        col = pa.array([float(x) if x not in (None, "") and x.replace(".", "", 1).lstrip("-").isdigit() else np.nan
                        for x in col.to_pylist()])
    return col.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _strings(col) -> pa.Array:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _codelist(name: str) -> list[dict]:
    """A packaged codelist (code, system, category[, weight]); `*` ends a prefix."""
    return load_csv(name)


class _Folder:
    """A generated folder read once: patients, and diagnoses with codes dictionary-encoded,
    so that mapping codes to a codelist's categories touches each distinct code once."""

    def __init__(self, out, as_of: dt.date):
        self.out = pathlib.Path(out)
        self.as_of = as_of
        self.A = (as_of - dt.date(1970, 1, 1)).days
        pat = _read(self.out, "patients")
        self.pid = _strings(pat.column("patient_id"))
        self.birth = _days(pat.column("birth_date"))
        self.death = _days(pat.column("death_date"))
        self.rend = _days(pat.column("registration_end"))
        self.rstart = _days(pat.column("registration_start"))
        self.n = len(self.pid)
        self.age = (self.A - self.birth) / 365.25
        self.cur = (self.death == NUL) & (self.rend == NUL)
        ex = np.where(self.death != NUL, self.death, np.where(self.rend != NUL, self.rend, self.A))
        self.exit = np.where((self.rend != NUL) & (self.rend < ex), self.rend, ex)

    def index(self, col) -> np.ndarray:
        found = pc.index_in(_strings(col), value_set=self.pid).fill_null(-1)
        return found.to_numpy(zero_copy_only=False).astype(np.int64)

    def day(self, months: int) -> int:
        return (shift_date(self.as_of, months=-months) - dt.date(1970, 1, 1)).days

    @cached_property
    def dx(self) -> dict:
        t = _read(self.out, "diagnoses")
        enc = pc.dictionary_encode(_strings(t.column("code")))
        return {"pid": self.index(t.column("patient_id")), "date": _days(t.column("date")),
                "codes": enc.dictionary.to_pylist(),
                "code": enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64),
                "system": _strings(t.column("code_system")).to_numpy(zero_copy_only=False),
                "source": _strings(t.column("source")).to_numpy(zero_copy_only=False)}

    @cached_property
    def medicines_12m(self) -> np.ndarray:
        med = _read(self.out, "medications")
        mi = self.index(med.column("patient_id"))
        md = _days(med.column("date"))
        mc = pc.dictionary_encode(_strings(med.column("code"))).indices.to_numpy(zero_copy_only=False)
        ok = (md > self.day(12)) & (md <= self.A) & (mi >= 0)
        pairs = np.unique(mi[ok] * 100_000 + mc[ok])
        return np.bincount(pairs // 100_000, minlength=self.n)

    def categories(self, rows: list[dict], system: str = "snomed"):
        """(category names, per distinct code the list of category indexes) for a codelist."""
        cats = sorted({r["category"] for r in rows if r["system"] == system})
        ci = {c: i for i, c in enumerate(cats)}
        exact: dict[str, list[int]] = {}
        prefix: list[tuple[str, int]] = []
        for r in rows:
            if r["system"] != system:
                continue
            if r["code"].endswith("*"):
                prefix.append((r["code"][:-1], ci[r["category"]]))
            else:
                exact.setdefault(r["code"], []).append(ci[r["category"]])
        per_code = []
        for c in self.dx["codes"]:
            hit = set(exact.get(c, ()))
            hit.update(k for p, k in prefix if c.startswith(p))
            per_code.append(sorted(hit))
        return cats, per_code

    def pairs(self, rows, system="snomed", source=None, since=None):
        """(person, category, date) of every diagnosis row whose code the list holds."""
        cats, per_code = self.categories(rows, system)
        d = self.dx
        ok = (d["pid"] >= 0) & (d["code"] >= 0) & (d["system"] == system) & (d["date"] <= self.A)
        if source:
            ok &= d["source"] == source
        if since is not None:
            ok &= d["date"] > since
        lens = np.array([len(x) for x in per_code] + [0])
        flat = np.array([k for x in per_code for k in x] + [0], np.int64)
        starts = np.concatenate([[0], np.cumsum(lens[:-1])])
        code = np.where(ok, d["code"], len(per_code))
        cnt = lens[code]
        row = np.repeat(np.arange(len(code)), cnt)
        off = np.arange(len(row)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        cat = flat[starts[code[row]] + off]
        return cats, d["pid"][row], cat, d["date"][row]

    def has(self, rows, **kw):
        cats, who, cat, _ = self.pairs(rows, **kw)
        m = np.zeros((self.n, len(cats)), bool)
        m[who, cat] = True
        return cats, m

    def latest(self, rows, **kw):
        cats, who, cat, day = self.pairs(rows, **kw)
        m = np.full((self.n, len(cats)), NUL, np.int64)
        np.maximum.at(m, (who, cat), day)
        return cats, m

    def register(self) -> dict[str, np.ndarray]:
        """QOF-style registers: latest diagnosis code (the published cluster; cancer: the
        generator's codes) later than the latest resolved code."""
        dx_rows = [{"code": r["code"], "system": "snomed", "category": r["state"]}
                   for r in load_csv("primary_codes.csv") if r["role"] == "dx" and r["state"] in QOF_CONDITIONS]
        cats, last_dx = self.latest(dx_rows)
        rcats, last_res = self.latest(load_csv("resolved_codes.csv"))
        out = {}
        for i, c in enumerate(cats):
            on = last_dx[:, i] != NUL
            if c in rcats:
                on &= last_dx[:, i] > last_res[:, rcats.index(c)]
            out[c] = on
        return out

    def efi_deficits(self, rows) -> np.ndarray:
        """Deficits counted as the frail rule counts them: distinct coded categories of the
        list, plus polypharmacy (5+ distinct medicines issued in the last 12 months)."""
        _, m = self.has(rows)
        return m.sum(1) + (self.medicines_12m >= 5)

    def hfrs(self, months: int = 24) -> np.ndarray:
        """The HFRS of hfrs.yml (Gilbert 2018): at each person's index admission (their latest
        emergency admission in the last 12 months), the points of the hospital diagnoses
        dated in the `months` before it up to its first day (its own are dated then); NaN
        for people with no index admission."""
        rows = _codelist("rule_hfrs_icd10.csv")
        a = self.activity
        ok = self._emergency_last_year()
        index = np.full(self.n, NUL, np.int64)
        np.maximum.at(index, a["pid"][ok], a["start"][ok])
        epoch = dt.date(1970, 1, 1)
        back = {d: (shift_date(epoch + dt.timedelta(days=int(d)), months=-months) - epoch).days
                for d in np.unique(index[index != NUL])}
        since = np.array([back.get(int(d), NUL) for d in index], np.int64)
        cats, who, cat, day = self.pairs(rows, system="icd10", source="acute")
        keep = (index[who] != NUL) & (day <= index[who]) & (day > since[who])
        m = np.zeros((self.n, len(cats)), bool)
        m[who[keep], cat[keep]] = True
        w = {r["category"]: float(r["weight"]) for r in rows}
        score = m @ np.array([w[c] for c in cats])
        return np.where(index != NUL, score, np.nan)

    @cached_property
    def activity(self) -> dict:
        act = _read(self.out, "activity")
        return {"pid": self.index(act.column("patient_id")), "start": _days(act.column("start_date")),
                "setting": _strings(act.column("setting")).to_numpy(zero_copy_only=False), "table": act}

    @cached_property
    def admissions(self) -> dict:
        """The admission spells of activity, sorted by (patient, start), linked into continuous
        inpatient (CIP) spells as the HES method links them: a spell continues the previous one
        when that one ended with a discharge to another hospital at most TRANSFER_DAYS days before.
        `previous`: for a spell that starts a CIP spell, the discharge of the one before (NUL
        when none); `excluded`: a primary diagnosis of cancer (C00-C97) or obstetrics (O)."""
        a, t = self.activity, self.activity["table"]
        ok = np.isin(a["setting"], ADMISSION_SETTINGS) & (a["pid"] >= 0) & (a["start"] != NUL)
        idx = np.flatnonzero(ok)
        pid, start = a["pid"][idx], a["start"][idx]
        o = np.lexsort((start, pid))
        idx, pid, start = idx[o], pid[o], start[o]
        end = _days(t.column("end_date"))[idx]
        dest = _strings(t.column("discharge_destination")).to_numpy(zero_copy_only=False)[idx]
        diag = _strings(t.column("primary_diagnosis")).to_numpy(zero_copy_only=False)[idx]
        same = np.r_[False, pid[1:] == pid[:-1]]
        prev_end = np.r_[NUL, end[:-1]].astype(np.int64)
        gap = start - prev_end
        cont = (same & (np.r_[None, dest[:-1]] == "other_hospital") & (prev_end != NUL)
                & (gap >= 0) & (gap <= TRANSFER_DAYS))
        previous = np.where(~cont & same & (prev_end != NUL), prev_end, NUL)
        code = np.array([x if isinstance(x, str) else "" for x in diag], dtype=object)
        cancer = np.array([len(x) >= 3 and x[0] == "C" and x[1:3].isdigit() and int(x[1:3]) <= 97 for x in code], bool)
        obstetric = np.array([x[:1] == "O" for x in code], bool)
        return {"pid": pid, "start": start, "end": end, "dest": dest, "setting": a["setting"][idx],
                "continues": cont, "previous": previous, "excluded": cancer | obstetric}

    def latest_value(self, code: str, months: int) -> np.ndarray:
        """last(observations.value, codelist=[code], within=months(months)): the value of each
        person's latest such observation in the window (by date, then file order); NaN if none."""
        t = _read(self.out, "observations")
        pid, day = self.index(t.column("patient_id")), _days(t.column("date"))
        ok = ((_strings(t.column("code")).to_numpy(zero_copy_only=False) == code) & (pid >= 0)
              & (day > self.day(months)) & (day <= self.A))
        rows = np.flatnonzero(ok)
        rows = rows[np.lexsort((rows, day[rows], pid[rows]))]  # by person, date, then file order
        out = np.full(self.n, np.nan)
        out[pid[rows]] = _num(t.column("value"))[rows]  # the last write per person is the latest
        return out

    def _emergency_last_year(self) -> np.ndarray:
        """Which activity rows are emergency admissions of a known patient in the last 12 months."""
        a = self.activity
        recent = (a["start"] > self.day(12)) & (a["start"] <= self.A)
        return (a["setting"] == "emergency_admission") & recent & (a["pid"] >= 0)

    def emergency_12m(self) -> np.ndarray:
        return np.bincount(self.activity["pid"][self._emergency_last_year()], minlength=self.n)

    def truth(self, name: str, column: str) -> tuple[list[str], np.ndarray]:
        t = pq.read_table(self.out / "_truth" / f"{name}.parquet")
        i = self.index(t.column("patient_id"))
        vals = _strings(t.column(column)).to_numpy(zero_copy_only=False)
        names = sorted(set(vals))
        m = np.zeros((self.n, len(names)), bool)
        pos = {v: k for k, v in enumerate(names)}
        ok = i >= 0
        m[i[ok], np.array([pos[v] for v in vals[ok]], np.int64)] = True
        return names, m


def hfrs_high_share(folder: _Folder) -> tuple[float, int]:
    """% with HFRS > 15 at their index admission (the latest emergency admission in the last
    12 months; that admission and 24 months of hospital diagnoses before it) among people
    aged 75+ with such an admission (alive or not), and how many such people."""
    age_at = (np.minimum(folder.exit, folder.A) - folder.birth) / 365.25
    cohort = (age_at >= 75) & (folder.emergency_12m() > 0)
    score = folder.hfrs()
    k = int(cohort.sum())
    return (100 * float((score[cohort] > 15).sum()) / k if k else float("nan")), k


def readmission_share(folder: _Folder, months: int = 12) -> tuple[float, int]:
    """% of emergency admissions in the last `months` that start a CIP spell 0-29 days after the
    discharge of the previous one (NHS Digital's 30-day emergency readmission; admissions for
    cancer and obstetrics excluded), and how many admissions that counts."""
    s = folder.admissions
    em = ((s["setting"] == "emergency_admission") & ~s["continues"] & ~s["excluded"]
          & (s["start"] > folder.day(months)) & (s["start"] <= folder.A))
    gap = s["start"] - s["previous"]
    readmit = em & (s["previous"] != NUL) & (gap >= 0) & (gap <= 29)
    k = int(em.sum())
    return (100 * float(readmit.sum()) / k if k else float("nan")), k


def transfer_share(folder: _Folder, months: int = 12) -> float:
    """% of emergency spells starting in the last `months` discharged to another hospital."""
    s = folder.admissions
    em = (s["setting"] == "emergency_admission") & (s["start"] > folder.day(months)) & (s["start"] <= folder.A)
    return 100 * float((em & (s["dest"] == "other_hospital")).sum()) / max(1, int(em.sum()))


class _Rows(list):
    """Calibration rows as they are measured, each with its target and accepted range."""

    def add(self, measure: str, target: float, lo: float, hi: float, actual) -> None:
        self.append(CalibrationRow(measure, round(target, 3), round(lo, 3), round(hi, 3), round(float(actual), 3),
                                   bool(lo <= actual <= hi)))


def calibration_report(out_dir, as_of: dt.date = dt.date(2026, 10, 31)) -> list[CalibrationRow]:
    """A generated folder measured against the published figures it is calibrated to
    (age structure, QOF prevalence, frailty, hospital use, deaths, practices, costs)."""
    f = _Folder(out_dir, as_of)
    rows = _Rows()
    _population_rows(rows, f)
    _prevalence_rows(rows, f)
    _frailty_and_hospital_rows(rows, f)
    _activity_rows(rows, f)
    _organisation_rows(rows, f)
    return list(rows)


def _exposure(f: _Folder) -> np.ndarray:
    """Each patient's years registered and alive in the last year (0 to 1)."""
    y0 = f.A - 365
    return np.clip(np.minimum(f.exit, f.A) - np.maximum(f.rstart, y0), 0, 365) / 365.0


def _population_rows(rows: _Rows, f: _Folder) -> None:
    """The share of the registered population in each ONS age band."""
    cur, age = f.cur, f.age
    for a in load_csv("age_structure.csv"):
        lo, hi = int(a["lower"]), int(a["upper"] or 200) + 1
        t = float(a["percent_of_population"])
        rows.add(f"population % aged {a['age_band']}", t, t * 0.75, t * 1.25,
                 100 * (cur & (age >= lo) & (age < hi)).sum() / cur.sum())


def _prevalence_rows(rows: _Rows, f: _Folder) -> None:
    """QOF register prevalence, each among the register's age group (palliative care from
    the registers table, the others from the conditions' codes)."""
    register = f.register()
    regs = _read(f.out, "registers")
    ri = f.index(regs.column("patient_id"))
    rname = _strings(regs.column("register")).to_numpy(zero_copy_only=False)
    rendd = _days(regs.column("end_date"))
    for row in load_csv("ltc_prevalence.csv"):
        c = row["condition"]
        t = float(row["percent_of_register_population"])
        min_age = 0 if row["register_age"] == "all" else int(row["register_age"].rstrip("+"))
        den = f.cur & (f.age >= min_age)
        if c == "palliative_care":
            on = np.zeros(f.n, bool)
            on[ri[(rname == "palliative_care") & (rendd == NUL) & (ri >= 0)]] = True
        else:
            on = register[c]
        rows.add(f"prevalence % {c} ({row['register_age']})", t, t * 0.75, t * 1.25,
                 100 * (on & den).sum() / den.sum())


def _frailty_and_hospital_rows(rows: _Rows, f: _Folder) -> None:
    """eFI bands among the 65+, HFRS among the 75+ admitted, readmissions and transfers."""
    # eFI: the 35 coded deficits of the published eFI code set, plus polypharmacy
    efi = f.efi_deficits(_codelist("published_efi_snomed.csv")) / 36
    old = f.cur & (f.age >= 65)
    rows.add("% of 65+ with eFI > 0.24 (moderate/severe)", 12.5, 10, 15, 100 * (old & (efi > 0.24)).sum() / old.sum())
    rows.add("% of 65+ fit (eFI <= 0.12)", 50, 35, 65, 100 * (old & (efi <= 0.12)).sum() / old.sum())
    share, _ = hfrs_high_share(f)
    rows.add("% HFRS > 15 among 75+ with an emergency admission", *HFRS_HIGH_TARGET, share)
    share, _ = readmission_share(f)
    rows.add("% of emergency admissions within 30 days of a discharge (readmissions)", *READMISSION_TARGET, share)
    rows.add("% of emergency spells ending in a transfer to another hospital", *TRANSFER_TARGET, transfer_share(f))


def _activity_rows(rows: _Rows, f: _Folder) -> None:
    """Last year's activity per person-year: emergency admissions (overall, 85+, and how
    concentrated in the riskiest), A&E, outpatients, GP appointments, and deaths."""
    A, n, y0 = f.A, f.n, f.A - 365
    expo = _exposure(f)
    py = expo.sum()
    act = f.activity
    ai, ad, setting = act["pid"], act["start"], act["setting"]
    last = (ad > y0) & (ad <= A) & (ai >= 0)

    def per_person(s):
        return ((setting == s) & last).sum() / py

    em = (setting == "emergency_admission") & last
    rows.add("emergency admissions per 1,000 a year", 85, 60, 120, 1000 * em.sum() / py)
    o85 = f.age >= 85
    rows.add("emergency admissions per 1,000 a year, 85+", 450, 250, 800,
             1000 * np.isin(ai[em], np.flatnonzero(o85)).sum() / expo[o85].sum())
    truth = pq.read_table(f.out / "_truth" / "latent.parquet")
    risk = np.zeros(n)
    risk[f.index(truth.column("patient_id"))] = truth.column("latent_risk").to_numpy()
    live = expo > 0
    k = max(1, int(0.005 * live.sum()))
    top = np.flatnonzero(live)[np.argsort(-risk[live], kind="stable")[:k]]
    cnt = np.bincount(ai[em], minlength=n)
    rows.add("top 0.5% by latent risk: admission rate x average", 17.5, 15, 20,
             (cnt[top].sum() / expo[top].sum()) / (em.sum() / py))
    rows.add("A&E attendances per 1,000 a year", 400, 300, 500, 1000 * per_person("ae"))
    rows.add("outpatient attendances a person a year", 1.7, 1.3, 2.1, per_person("outpatient"))
    rows.add("GP appointments a person a year", 5.0, 4.0, 6.0, per_person("gp"))
    rows.add("deaths per 1,000 a year", 10, 7, 13, 1000 * ((f.death > y0) & (f.death <= A)).sum() / py)


def _organisation_rows(rows: _Rows, f: _Folder) -> None:
    """Opt-outs, practice list sizes, practices per locality and the cost of a spell."""
    oi = f.index(_read(f.out, "opt_outs").column("patient_id"))
    opted = np.zeros(f.n, bool)
    opted[oi[oi >= 0]] = True
    rows.add("% opted out (type1 or ndo)", 4, 2, 6, 100 * (opted & f.cur).sum() / f.cur.sum())
    pr = _read(f.out, "practices")
    rows.add("mean practice list size", 8000, 5000, 11000, f.cur.sum() / pr.num_rows)
    k_pr = pr.num_rows
    # 5-10 a locality; a population of under 10 practices still has 2 localities, so there
    # the floor is half the practices
    rows.add("practices per locality", 7.5, min(5, k_pr / 2), 10,
             k_pr / len(set(_strings(pr.column("locality_code")).to_pylist())))
    cost = _num(f.activity["table"].column("cost"))
    setting = f.activity["setting"]
    rows.add("mean cost per emergency spell (GBP)", 3200, 2600, 4200,
             np.nanmean(cost[setting == "emergency_admission"]))


def format_markdown(rows: list[CalibrationRow]) -> str:
    lines = ["| measure | target | range | actual | ok |", "|---|---|---|---|---|"]
    for r in rows:
        ok = "yes" if r.ok else "**no**"
        lines.append(f"| {r.measure} | {r.target:g} | {r.low:g}–{r.high:g} | {r.actual:g} | {ok} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- truth report
SHIPPED = "shipped"
STARTER = "starter lists (old rule)"
# the eFI list frail.yml and segments.yml use (packaged copy); _refresh_data refuses rules that
# use another
EFI_LIST = "published_efi_snomed.csv"


@dataclass
class TruthRow:
    """One shipped rule (or register) scored against the truth: among `people` (the rule's
    population), `true` truly positive, `flagged` positive by the rule's logic, `both` both."""
    rule: str
    measure: str
    # SHIPPED: the codelists and logic the rule ships with; STARTER: the starter lists and
    # any-code-ever counting the rule used before (for comparison; no shipped rule uses them)
    codelist: str
    people: int
    true: int
    flagged: int
    both: int
    sensitivity: float  # both / true (nan when nobody is truly positive)
    ppv: float  # both / flagged (nan when nobody is flagged)
    expected: float | None = None  # the sensitivity the generator's coding completeness implies


def _row(rule, measure, codelist, pop, truth, flag, expected=None) -> TruthRow:
    t, f_, b = int((pop & truth).sum()), int((pop & flag).sum()), int((pop & truth & flag).sum())
    return TruthRow(rule, measure, codelist, int(pop.sum()), t, f_, b,
                    round(b / t, 3) if t else math.nan, round(b / f_, 3) if f_ else math.nan,
                    None if expected is None else round(expected, 3))


def rule_registers() -> list[dict]:
    """The QOF registers the multimorbidity and segments rules count, as they count them:
    synth/data/rule_registers.csv, which `python -m casefind.synth._refresh_data` generates from
    rules/multimorbidity.yml (checking segments.yml counts them the same way)."""
    return load_csv("rule_registers.csv")


def _years(f: _Folder) -> np.ndarray:
    """Age in whole years at as_of, as the engines count it (birthday not yet reached: one less)."""
    b = np.where(f.birth == NUL, 0, f.birth).astype("datetime64[D]")
    month = b.astype("datetime64[M]")
    y = month.astype("datetime64[Y]").astype(np.int64) + 1970
    m = month.astype(np.int64) % 12 + 1
    d = (b - month.astype("datetime64[D]")).astype(np.int64) + 1
    before = (f.as_of.month < m) | ((f.as_of.month == m) & (f.as_of.day < d))
    return f.as_of.year - y - before


def _population(f: _Folder) -> np.ndarray:
    """`registered and alive` at as_of, as the engines evaluate it."""
    return ((f.rstart != NUL) & (f.rstart <= f.A) & ((f.rend == NUL) | (f.rend >= f.A))
            & ((f.death == NUL) | (f.death > f.A)))


def _active_register(f: _Folder, name: str) -> np.ndarray:
    """exists(registers, register == name, active): a row started by as_of, not ended before it."""
    regs = _read(f.out, "registers")
    ri = f.index(regs.column("patient_id"))
    start, end = _days(regs.column("start_date")), _days(regs.column("end_date"))
    ok = ((_strings(regs.column("register")).to_numpy(zero_copy_only=False) == name) & (ri >= 0)
          & (start != NUL) & (start <= f.A) & ((end == NUL) | (end >= f.A)))
    on = np.zeros(f.n, bool)
    on[ri[ok]] = True
    return on


def rule_logic(f: _Folder) -> dict:
    """The shipped rules' features, recomputed from the generated tables: `deficits` (frail.yml's
    eFI deficits: distinct categories of the published eFI set, plus polypharmacy), `efi`
    (deficits / 36), each register of rule_registers.csv (`conditions`: the person on it, as the
    rule's feature says: age floor, latest diagnosis code, not resolved by a resolved code on or
    after it, a practice register) and `ltc_count` (how many)."""
    years = _years(f)
    latest: dict[str, tuple[list[str], np.ndarray]] = {}

    def last(name: str, category: str) -> np.ndarray:
        """last(diagnoses.date, codelist=<name, category>): day number, NUL without one."""
        if name not in latest:
            latest[name] = f.latest(_codelist(name))
        cats, m = latest[name]
        return m[:, cats.index(category)] if category in cats else np.full(f.n, NUL, np.int64)

    conditions = {}
    for r in rule_registers():
        dx = last(r["diagnosis_list"], r["diagnosis_category"])
        on = (years >= int(r["min_age"])) & (dx != NUL)
        if r.get("recorded_within_months"):  # a recent code, or a recent value high enough
            months = int(r["recorded_within_months"])
            recent = (dx != NUL) & (dx > f.day(months))
            value = f.latest_value(r["value_code"], months)
            on = (years >= int(r["min_age"])) & (recent | (value >= float(r["value_min"])))
        if r["diagnosed_since"]:
            on &= dx >= (dt.date.fromisoformat(r["diagnosed_since"]) - dt.date(1970, 1, 1)).days
        if r["resolved_list"]:
            res = last(r["resolved_list"], r["resolved_category"])
            on &= ~((res != NUL) & (res >= dx))  # a resolved code on or after the latest diagnosis
        if r["practice_register"]:
            on |= _active_register(f, r["practice_register"])
        conditions[r["condition"]] = on
    deficits = f.efi_deficits(_codelist(EFI_LIST))
    return {"deficits": deficits, "efi": deficits / 36, "conditions": conditions,
            "ltc_count": sum(on.astype(np.int64) for on in conditions.values())}


def truth_report(out_dir, as_of: dt.date = dt.date(2026, 10, 31)) -> list[TruthRow]:
    """Each shipped rule's sensitivity and positive predictive value against the generated
    population's truth (_truth/). The rules' logic is recomputed here from the generated
    tables (rule_logic): the codelists the shipped rules use (packaged copies in synth/data/)
    and their register logic (rule_registers.csv, generated from the rule files): no store,
    no engine, no rules/ folder.

    Rows: per QOF register the rules count, on the register by the rule's logic against the true
    condition, with the coding completeness as the expected sensitivity; the multimorbidity
    rule's inclusion; the frail rule's frailty (eFI > 0.24) against true moderate/severe frailty;
    the HFRS rule (>= 5) against true moderate/severe frailty. For multimorbidity and frail, a
    second row scores the starter lists the rules used before (any code ever, no age floors,
    no resolved codes), labelled STARTER, to show what the published sets changed."""
    from casefind.synth.population import completeness

    f = _Folder(out_dir, as_of)
    p_code = completeness()
    years = _years(f)
    popn = _population(f)
    logic = rule_logic(f)
    on = logic["conditions"]
    names, true_c = f.truth("conditions", "condition")
    truth = {c: (true_c[:, names.index(c)] if c in names else np.zeros(f.n, bool)) for c in on}
    rows: list[TruthRow] = []
    for r in rule_registers():
        c = r["condition"]
        floor = int(r["min_age"])
        ages = f"{floor}+" if floor else "all ages"
        rows.append(_row(f"register: {c}", f"on register ({ages}, the rules' logic) vs true condition", SHIPPED,
                         popn & (years >= floor), truth[c], on[c], p_code.get(c)))

    # multimorbidity: ltc_count >= 4, or >= 2 with SMI or LD, among the rules' registers
    adults = popn & (years >= 18)
    n_true = sum(truth[c].astype(int) for c in on)
    mm_true = (n_true >= 4) | ((n_true >= 2) & (truth["serious_mental_illness"] | truth["learning_disability"]))
    n = logic["ltc_count"]
    mm = (n >= 4) | ((n >= 2) & (on["serious_mental_illness"] | on["learning_disability"]))
    measure = "include (4+ LTCs, or 2+ with SMI/LD) vs true"
    rows.append(_row("multimorbidity", measure, SHIPPED, adults, mm_true, mm))
    # before: any code of the starter list ever (its 19 categories, hypothyroidism too)
    cats, coded = f.has(_codelist("rule_ltc_qof_snomed.csv"))
    n_old = coded.sum(1)
    smi_ld_old = coded[:, cats.index("serious_mental_illness")] | coded[:, cats.index("learning_disability")]
    mm_old = (n_old >= 4) | ((n_old >= 2) & (smi_ld_old | _active_register(f, "learning_disability")))
    rows.append(_row("multimorbidity", measure, STARTER, adults, mm_true, mm_old))

    # frail: frailty moderate or severe (eFI > 0.24) at 65+
    fr = pq.read_table(f.out / "_truth" / "frailty.parquet")
    fi = f.index(fr.column("patient_id"))
    true_frail = np.zeros(f.n, bool)
    cat = _strings(fr.column("true_frailty")).to_numpy(zero_copy_only=False)
    ok = fi >= 0
    true_frail[fi[ok]] = np.isin(cat[ok], ["moderate", "severe"])
    old = popn & (years >= 65)
    measure = "frailty moderate/severe (eFI > 0.24) vs true"
    rows.append(_row("frail", measure, SHIPPED, old, true_frail, logic["efi"] > 0.24))
    rows.append(_row("frail", measure, STARTER, old, true_frail,
                     f.efi_deficits(_codelist("starter_efi_deficits_snomed.csv")) / 36 > 0.24))
    # hfrs: score >= 5 at 75+, against true moderate/severe frailty
    rows.append(_row("hfrs", "HFRS >= 5 at the latest emergency admission vs true moderate/severe frailty",
                     SHIPPED, popn & (years >= 75), true_frail, np.nan_to_num(f.hfrs(), nan=0.0) >= 5))
    return rows


def format_truth_markdown(rows: list[TruthRow]) -> str:
    lines = ["| rule | measure | codelist | people | true | flagged | sensitivity | PPV | expected |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = "" if r.expected is None else f"{r.expected:g}"
        lines.append(f"| {r.rule} | {r.measure} | {r.codelist} | {r.people:,} | {r.true:,} | {r.flagged:,} | "
                     f"{r.sensitivity:g} | {r.ppv:g} | {e} |")
    return "\n".join(lines)
