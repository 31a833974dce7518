"""Hospital admissions as SUS and HES deliver them: provider spells, each with a spell id, its
coded diagnoses in positions (1 the primary) and its OPCS-4 procedures, with transfers between
providers and emergency readmissions after discharge. Vectorised like events.py: a spell table
is a dict of equal-length arrays, kept sorted by (patient, start).

The timeline of a person never overlaps: a spell starts on or after the previous one's
discharge and on a later day than the previous one started, so the order of a person's spells
is their order by start date. Index admissions (emergency: the latent risk; elective: the
settings table) come first, overlapping draws dropped; then transfers and readmissions are
placed in the gaps, never past the next spell, death or deregistration; last, the last spell
of a person who died within a month of its start (or before its end) ends in hospital on the
death date, and a spell still open at the extract (or at deregistration) has no end.

Rates, and why (see docs/synthetic-data.md):
- Readmissions. NHS Digital's 30-day emergency readmission indicator (NHS OF 3b, CCG OIS 3.2,
  compendium I02040) counts an emergency admission 0-29 days after the last previous discharge,
  with continuous inpatient (CIP) spells linking transfers, and excludes cancer and obstetrics:
  12.5% in 2013/14 to 13.8% in 2017/18 (NHS Digital, "Emergency readmissions published for
  first time in five years", 2019), 14.9% in the most and 12.7% in the least deprived areas,
  higher for people 75+ (the compendium's 75+ breakdown). The Poisson index admissions of a
  high-risk person already fall within 30 days of each other at times; explicit readmissions
  follow a discharge with a probability that rises with age and true eFI deficits, at gaps of
  0-45 days weighted towards the first days (exp(-d/12)), so the share of emergency admissions
  that are 30-day readmissions lands near 14% (casefind synth --report prints it), more for the
  old and frail, and the 29/30/31-day edges and same-day readmissions occur.
- Transfers. About 2.5% of emergency spells end with a discharge to another hospital (HES
  discharge destinations 49-53: a few per cent), followed by a spell at another provider 0 to
  TRANSFER_DAYS days later (a continuation of the CIP spell); 8% of such follow-ons start
  TRANSFER_DAYS + 1 days later, which the CIP method does not link (a readmission then), so the
  edge is in the data. 12% of transferred-in spells are transferred on again (repatriation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casefind.contract import schema as S
from casefind.synth._common import NULL, load_csv, rng
from casefind.synth.events import _AGEK, _SETTINGS, WINDOW, _codes, _events, _Vocab
from casefind.synth.population import Population

EMERGENCY, ELECTIVE = 0, 1
SETTINGS = ("emergency_admission", "elective_admission")
KINDS = ("index", "readmission", "transfer", "transfer_late")  # what the generator made a spell as
INDEX, READMISSION, TRANSFER, TRANSFER_LATE = range(4)
_DEST = {d: i for i, d in enumerate(S.DISCHARGE_DESTINATIONS)}
HOME, CARE_HOME, DIED, OTHER_HOSPITAL, OTHER = (
    _DEST[d] for d in ("home", "care_home", "died", "other_hospital", "other"))
FAR = np.int64(1) << 40  # "no next spell"

# index emergency admissions a year = BASE_EMERGENCY x latent risk: readmissions and transfers
# make up the rest of the emergency spells the latent risk stands for
BASE_EMERGENCY = 0.83
MAX_BUSY = 0.6  # the most of a year's days the draws allow for time in hospital
BUSY = 0.7  # the share of the expected time in hospital allowed for (the rest is admissions lost)
OBSTETRIC_SHARE = 0.12  # of emergency admissions of women 15-49: an obstetric primary diagnosis
HYPERTENSION_PRIMARY = 0.15  # hypertension is rarely the reason for an admission
# transfers
TRANSFER_P = 0.024  # per emergency spell that can be followed by one (not the last before an end)
TRANSFER_GAP = (0.55, 0.25, 0.12, 0.08)  # the follow-on starts 0, 1, 2 (transfers) or TRANSFER_DAYS+1 days later
REPATRIATION = 0.12  # a transferred-in spell transferred on again
TRANSFER_SAME_DX = 0.75
# readmissions: probability after a discharge, at age 65-74 with no true eFI deficit
READMIT_P = 0.052
_READMIT_AGE = ([0, 16, 45, 65, 75, 85, 95], [0.8, 0.85, 0.9, 1.0, 1.1, 1.2, 1.25])
READMIT_PER_DEFICIT = 0.04
READMIT_ELECTIVE = 0.35  # after an elective discharge, relative to an emergency one
GAP_SCALE, GAP_MAX = 12.0, 45  # readmission gap: P(d) ~ exp(-d / GAP_SCALE), d = 0..GAP_MAX days
READMIT_SAME_DX = 0.4  # readmitted for the same problem
READMIT_CANCER = 0.35  # a person with cancer: readmitted for it
READMIT_OBSTETRIC = (0.6, 0.08)  # a woman 15-49 after an obstetric spell, after any other
READMIT_SAME_PROVIDER = 0.8
IN_HOSPITAL_DEATH = 0.6  # of deaths within 30 days of an emergency admission's start
# deaths in hospital: about 45% of deaths in England (ONS death registrations by place of death,
# 2019: 44-47%); TERMINAL of the deaths not already in a spell get a terminal emergency
# admission, TERMINAL_DAYS days before death on average
TERMINAL = 0.45
TERMINAL_DAYS = 7.0
SPELL_ID_STRIDE = 2_654_435_761  # a prime: i -> (i * stride + offset) mod 9e9 is one-to-one
MAX_POSITION = 20  # HES APC holds 20 diagnosis positions an episode


class Icd:
    """An ICD-10 vocabulary shared by the activity and diagnoses tables."""

    def __init__(self):
        self.codes: list[str] = []
        self.index: dict[str, int] = {}

    def ix(self, code: str) -> int:
        i = self.index.get(code)
        if i is None:
            i = self.index[code] = len(self.codes)
            self.codes.append(code)
        return i

    def many(self, codes) -> np.ndarray:
        return np.array([self.ix(c) for c in codes], np.int32)

    def starts(self, prefixes) -> np.ndarray:
        """Per vocabulary code: does it start with one of the prefixes (current vocabulary)."""
        return np.array([c.startswith(tuple(prefixes)) for c in self.codes] + [False], bool)


def _dist(rows, icd: Icd):
    codes = [r["code"] for r in rows]
    w = np.array([float(r["weight"]) for r in rows])
    return icd.many(codes), np.cumsum(w / w.sum())


_HOSP_ROWS: dict[str, list[dict]] = {}
for _r in load_csv("hospital_codes.csv"):
    _HOSP_ROWS.setdefault(_r["driver"], []).append(_r)
_PER_SPELL = {r["driver"]: float(r["per_spell"]) for r in load_csv("hospital_drivers.csv")}
_ELECTIVE = load_csv("elective_diagnoses.csv")
_PLANS = load_csv("procedure_plans.csv")
_OPCS = load_csv("opcs4_codes.csv")
REVASCULARISATION = tuple(r["code"] for r in _OPCS if r["group"] == "cardiac_revascularisation")


@dataclass
class Spells:
    """Every admission spell, sorted by (patient, start): `cols` holds pid, start, end (NULL:
    still open), setting (EMERGENCY, ELECTIVE), diag (index into icd), dest (-1: none), prov
    (provider number), kind (KINDS), cond (the true state the primary diagnosis was drawn for,
    -1 none). ids: the spell ids ("SP" and 10 digits). site: per person, the ICD-10 index of
    their cancer's site (-1 without cancer)."""
    cols: dict
    icd: Icd
    ids: list
    site: np.ndarray

    def __len__(self) -> int:
        return len(self.cols["pid"])


# ---------------------------------------------------------------- building the timeline
def _concat(*parts) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(sp: dict, idx) -> dict:
    return {k: v[idx] for k, v in sp.items()}


def _by(major: np.ndarray, minor: np.ndarray, bits: int) -> np.ndarray:
    """The order by (major, minor) for non-negative integers, minor < 2**bits: one stable
    argsort of a combined key (numpy's lexsort is several times slower)."""
    return np.argsort((major.astype(np.int64) << bits) + minor.astype(np.int64), kind="stable")


def _sorted(sp: dict) -> dict:
    start = sp["start"].astype(np.int64)
    lo = start.min() if len(start) else 0
    return _take(sp, _by(sp["pid"], start - lo, 24))


def _next_start(sp: dict) -> np.ndarray:
    pid = sp["pid"]
    ns = np.full(len(pid), FAR, np.int64)
    same = pid[1:] == pid[:-1]
    ns[:-1][same] = sp["start"][1:][same]
    return ns


def _drop_overlaps(sp: dict) -> dict:
    """Keep a spell only if it starts on or after the discharge of every earlier spell of the
    person and on a later day than the one before: a person is in one hospital at a time."""
    sp = _sorted(sp)
    pid, start, end = sp["pid"].astype(np.int64), sp["start"].astype(np.int64), sp["end"].astype(np.int64)
    if len(pid) == 0:
        return sp
    lo = min(start.min(), end.min())
    key = (pid << 22) + (end - lo)  # a running maximum that restarts with each person
    run = np.maximum.accumulate(key)
    first = np.r_[True, pid[1:] != pid[:-1]]
    prev_max = np.r_[0, run[:-1]] - (pid << 22) + lo
    prev_start = np.r_[0, start[:-1]]
    keep = first | ((start >= prev_max) & (start > prev_start))
    return _take(sp, keep)


def _age_at(pop: Population, pid, day) -> np.ndarray:
    return (day - pop.birth[pid]) / 365.25


def _los(r, age, same_day: float) -> np.ndarray:
    mean_los = np.interp(age, [0, 65, 85, 100], [1.5, 3.5, 7, 9])
    stay = np.maximum(np.ceil(r.exponential(mean_los)), 1)
    return np.where(r.random(len(age)) < same_day, 0, stay).astype(np.int64)


class _Dx:
    """Primary diagnoses of emergency and elective spells."""

    def __init__(self, pop: Population, icd: Icd):
        self.older = icd.many(_codes("acute_older", "icd10"))
        self.younger = icd.many(_codes("acute_younger", "icd10"))
        self.ltc = [(j, icd.many(codes)) for j, c in enumerate(pop.conditions) if (codes := _codes(c, "icd10"))]
        self.hypertension = pop.conditions.index("hypertension")
        self.obstetric = _dist(_HOSP_ROWS["obstetric"], icd)
        self.female = pop.sex == 0
        el = [e for e in _ELECTIVE if not e["requires"]]
        self.el_codes = icd.many([e["code"] for e in el])
        self.el_w = np.array([float(e["weight"]) for e in el])
        self.el_min = np.array([int(e["min_age"]) for e in el])
        self.el_max = np.array([float(e["max_age"] or "inf") for e in el])
        self.el_sex = np.array([{"any": -1, "F": 0, "M": 1}[e["sex"]] for e in el])
        self.el_req = [(pop.conditions.index(e["requires"]), icd.ix(e["code"]), float(e["share"]))
                       for e in _ELECTIVE if e["requires"]]

    def may_repeat(self, pop, pid, start, diag) -> np.ndarray:
        """Whether a follow-on spell may keep a diagnosis: not an obstetric one past 49."""
        age = _age_at(pop, pid, start)
        return ~self.obstetric_code[diag] | ((age >= 15) & (age < 50))

    def emergency(self, pop, r, pid, start):
        """The person's own long-term condition for about 45% of those who have one, an
        obstetric problem for some women 15-49, else a common acute reason for their age."""
        m = len(pid)
        age = _age_at(pop, pid, start)
        diag = np.where(age >= 60, self.older[r.integers(0, len(self.older), m)],
                        self.younger[r.integers(0, len(self.younger), m)]).astype(np.int32)
        cond = np.full(m, -1, np.int16)
        pick = r.random(m)
        for j, codes in self.ltc:
            p = 0.5 * (HYPERTENSION_PRIMARY if j == self.hypertension else 1)
            sel = pop.has[pid, j] & (pick < 0.45) & (r.random(m) < p)
            diag[sel] = codes[r.integers(0, len(codes), int(sel.sum()))]
            cond[sel] = j
        ob = self.female[pid] & (age >= 15) & (age < 50) & (r.random(m) < OBSTETRIC_SHARE)
        diag[ob] = _Vocab.draw(self.obstetric, r, int(ob.sum()))
        cond[ob] = -1
        return diag, cond

    def elective(self, pop, r, pid, start):
        """Chemotherapy for many of a cancer patient's planned spells, angiography for some
        with coronary heart disease, else a common planned procedure the person's age and sex
        allow."""
        m = len(pid)
        age = _age_at(pop, pid, start)
        ok = ((age[:, None] >= self.el_min[None, :]) & (age[:, None] < self.el_max[None, :] + 1)
              & ((self.el_sex[None, :] < 0) | (pop.sex[pid][:, None] == self.el_sex[None, :])))
        w = np.where(ok, self.el_w[None, :], 0.0)
        w[:, 0] += 1e-9  # never all-zero
        cum = np.cumsum(w, 1)
        k = (cum < (r.random(m) * cum[:, -1])[:, None]).sum(1)
        diag = self.el_codes[np.minimum(k, len(self.el_codes) - 1)].astype(np.int32)
        cond = np.full(m, -1, np.int16)
        done = np.zeros(m, bool)
        for j, code, share in self.el_req:
            sel = pop.has[pid, j] & ~done & (r.random(m) < share)
            diag[sel] = code
            cond[sel] = j
            done |= sel
        return diag, cond


def _dest(pop, r, pid, age) -> np.ndarray:
    """Care-home residents go back to their care home; some old people move into one; a few go
    elsewhere (the rest home). Transfers and deaths are set later."""
    m = len(pid)
    resident = pop.has[pid, pop.conditions.index("care_home")]
    u = r.random(m)
    return np.select([resident & (u < 0.9), (age >= 75) & (u < 0.03), u > 0.94],
                     [CARE_HOME, CARE_HOME, OTHER], HOME).astype(np.int8)


def _new(pop, r, pid, start, los, setting, diag, cond, local, kind) -> dict:
    m = len(pid)
    return {"pid": pid.astype(np.int32), "start": start.astype(np.int64), "end": (start + los).astype(np.int64),
            "setting": np.full(m, setting, np.int8), "diag": diag.astype(np.int32),
            "dest": (_dest(pop, r, pid, _age_at(pop, pid, start)) if setting == EMERGENCY
                     else np.full(m, HOME, np.int8)),
            "local": local.astype(np.int8), "kind": np.full(m, kind, np.int8), "cond": cond.astype(np.int16),
            "gen": np.zeros(m, np.int8)}


def _transfers(pop, r, sp: dict, src: np.ndarray, p: float, dx: _Dx, gen: int) -> dict:
    """Some emergency spells of `src` end with a discharge to another hospital, followed by a
    spell at another provider 0..TRANSFER_DAYS days later (a few TRANSFER_DAYS + 1 days later:
    not a transfer by the CIP method)."""
    n = len(sp["pid"])
    ns = _next_start(sp)
    pid = sp["pid"]
    gap = r.choice(len(TRANSFER_GAP), n, p=TRANSFER_GAP)
    bstart = np.maximum(sp["end"] + gap, sp["start"] + 1)
    ok = src & (sp["setting"] == EMERGENCY) & (r.random(n) < p) & (bstart < ns) & (bstart <= pop.exit[pid])
    i = np.flatnonzero(ok)
    sp["dest"][i] = OTHER_HOSPITAL
    m = len(i)
    fresh_dx, fresh_cond = dx.emergency(pop, r, pid[i], bstart[i])
    same = (r.random(m) < TRANSFER_SAME_DX) & dx.may_repeat(pop, pid[i], bstart[i], sp["diag"][i])
    diag = np.where(same, sp["diag"][i], fresh_dx)
    cond = np.where(same, sp["cond"][i], fresh_cond)
    los = _los(r, _age_at(pop, pid[i], bstart[i]), 0.0)
    los = np.minimum(los, ns[i] - bstart[i])
    local = (sp["local"][i] + 1 + r.integers(0, 2, m)) % 3  # another provider
    kind = np.where(bstart[i] - sp["end"][i] > S.TRANSFER_DAYS, TRANSFER_LATE, TRANSFER)
    new = _new(pop, r, pid[i], bstart[i], los, EMERGENCY, diag, cond, local, TRANSFER)
    new["kind"] = kind.astype(np.int8)
    new["gen"][:] = gen
    return _sorted(_concat(sp, new))


def _readmissions(pop, r, sp: dict, src: np.ndarray, dx: _Dx, site: np.ndarray, gen: int) -> dict:
    """After a discharge of `src` (not to another hospital), an emergency readmission with a
    probability rising with age and true eFI deficits, 0..GAP_MAX days later, if it fits before
    the person's next spell, death or deregistration."""
    n = len(sp["pid"])
    ns = _next_start(sp)
    pid = sp["pid"]
    age = _age_at(pop, pid, sp["end"])
    p = (READMIT_P * np.interp(age, *_READMIT_AGE) * np.exp(READMIT_PER_DEFICIT * pop.deficits[pid].sum(1))
         * np.where(sp["setting"] == ELECTIVE, READMIT_ELECTIVE, 1.0))
    w = np.exp(-np.arange(GAP_MAX + 1) / GAP_SCALE)
    gap = r.choice(GAP_MAX + 1, n, p=w / w.sum())
    rstart = np.maximum(sp["end"] + gap, sp["start"] + 1)
    ok = src & (sp["dest"] != OTHER_HOSPITAL) & (r.random(n) < p) & (rstart < ns) & (rstart <= pop.exit[pid])
    i = np.flatnonzero(ok)
    m = len(i)
    rp, rs = pid[i], rstart[i]
    diag, cond = dx.emergency(pop, r, rp, rs)
    same = (r.random(m) < READMIT_SAME_DX) & dx.may_repeat(pop, rp, rs, sp["diag"][i])
    diag = np.where(same, sp["diag"][i], diag)
    cond = np.where(same, sp["cond"][i], cond)
    cancer = (site[rp] >= 0) & (r.random(m) < READMIT_CANCER)
    diag = np.where(cancer, site[rp], diag)
    cond = np.where(cancer, pop.conditions.index("cancer"), cond)
    ra = _age_at(pop, rp, rs)
    was_ob = dx.obstetric_code[sp["diag"][i]]
    woman = dx.female[rp] & (ra >= 15) & (ra < 50)
    ob = woman & (r.random(m) < np.where(was_ob, *READMIT_OBSTETRIC))
    diag = np.where(ob, _Vocab.draw(dx.obstetric, r, m), diag)
    cond = np.where(ob, -1, cond)
    los = np.minimum(_los(r, ra, 0.3), ns[i] - rs)
    local = np.where(r.random(m) < READMIT_SAME_PROVIDER, sp["local"][i], r.integers(0, 3, m))
    new = _new(pop, r, rp, rs, los, EMERGENCY, diag, cond, local, READMISSION)
    new["gen"][:] = gen
    return _sorted(_concat(sp, new))


def _terminal(pop, r, sp: dict, dx: _Dx) -> dict:
    """Most people who die in hospital are admitted in their last days: a terminal emergency
    admission, a few days before death, for a share of the deaths in the window that no spell
    already covers (so that about IN_HOSPITAL_DEATHS of all deaths are in hospital, with the
    spells that end in a death below). It starts after the person's last spell."""
    pid = sp["pid"]
    n = len(pid)
    last = np.flatnonzero(np.r_[pid[1:] != pid[:-1], True]) if n else np.zeros(0, np.int64)
    prev_start = np.full(pop.n, -FAR, np.int64)
    prev_end = np.full(pop.n, -FAR, np.int64)
    prev_start[pid[last]] = sp["start"][last]
    prev_end[pid[last]] = sp["end"][last]
    who = np.flatnonzero((pop.death != NULL) & (r.random(pop.n) < TERMINAL))
    death = pop.death[who].astype(np.int64)
    start = death - np.minimum(r.geometric(1 / TERMINAL_DAYS, len(who)) - 1, 60)
    start = np.maximum(start, np.maximum(prev_end[who], prev_start[who] + 1))
    lo = np.maximum(pop.reg_start[who], pop.as_of - WINDOW + 1)
    ok = (start <= death) & (start >= lo) & (prev_end[who] < death)
    who, start, death = who[ok], start[ok], death[ok]
    diag, cond = dx.emergency(pop, r, who, start)
    new = _new(pop, r, who, start, death - start, EMERGENCY, diag, cond, r.integers(0, 3, len(who)), INDEX)
    new["gen"][:] = 6
    return _sorted(_concat(sp, new))


def _finalise(pop, r, sp: dict) -> dict:
    """Deaths end care: the last spell of a person who died before its discharge, or (often)
    within 30 days of an emergency admission, ends in hospital on the death date. A spell
    still open at the extract or at deregistration has no end and no destination."""
    pid = sp["pid"]
    n = len(pid)
    last = np.r_[pid[1:] != pid[:-1], True] if n else np.zeros(0, bool)
    death = pop.death[pid].astype(np.int64)
    dead = last & (pop.death[pid] != NULL)
    u = r.random(n)
    died_after_admission = (sp["setting"] == EMERGENCY) & (death - sp["start"] <= 30) & (u < IN_HOSPITAL_DEATH)
    died = dead & ((sp["end"] >= death) | died_after_admission)
    sp["end"] = np.where(died, death, sp["end"])
    sp["dest"] = np.where(died, DIED, sp["dest"]).astype(np.int8)
    over = ~died & (sp["end"] > pop.exit[pid])
    sp["end"] = np.where(over, NULL, sp["end"]).astype(np.int32)
    sp["dest"] = np.where(over, -1, sp["dest"]).astype(np.int8)
    sp["start"] = sp["start"].astype(np.int32)
    return sp


def _cancer_site(pop: Population, r, icd: Icd) -> np.ndarray:
    """Each person with cancer has one primary site, by sex (no prostate cancer in women, and
    breast cancer is counted only in women here)."""
    rows = _HOSP_ROWS["cancer"]
    site = np.full(pop.n, -1, np.int32)
    has = pop.flag("cancer")
    for sex, drop in ((0, "C61"), (1, "C509"), (2, None)):
        sel = np.flatnonzero(has & (pop.sex == sex))
        site[sel] = _Vocab.draw(_dist([x for x in rows if x["code"] != drop], icd), r, len(sel))
    return site


def build(pop: Population, seed: int, numbering: tuple[int, int] | None = None) -> Spells:
    """Every emergency and elective admission spell of the population (see the module doc).
    ``numbering`` (a seed and the first spell number) numbers a block of a larger population's
    spells on from the blocks before it, so that no two blocks share a spell id."""
    r = rng(seed, 22)
    icd = Icd()
    dx = _Dx(pop, icd)
    site = _cancer_site(pop, r, icd)
    # index emergency admissions (the latent risk) and elective ones (the settings table: an age
    # profile, latent risk to a power); a person in hospital is not admitted again, so the draws
    # are raised by the share of days the person would spend in hospital (the overlapping draws
    # are dropped below), which keeps the heavy tail of the risk pyramid
    target, gamma, mult, _ = _SETTINGS["elective_admission"]
    g = np.interp(pop.age, _AGEK, mult) * pop.risk ** gamma
    rate_el = g * target / g[pop.current].mean()
    rate_em = pop.risk * BASE_EMERGENCY
    days = np.interp(pop.age, [0, 65, 85, 100], [1.5, 3.5, 7, 9]) * 0.7 + 1  # blocked a spell
    busy = np.minimum(BUSY * (rate_em * days + rate_el * 1.8) / 365, MAX_BUSY)
    pid, start = _events(pop, r, rate_em / (1 - busy))
    start = start.astype(np.int64)
    diag, cond = dx.emergency(pop, r, pid, start)
    em = _new(pop, r, pid, start, _los(r, _age_at(pop, pid, start), 0.3), EMERGENCY, diag, cond,
              r.integers(0, 3, len(pid)), INDEX)
    pid, start = _events(pop, r, rate_el / (1 - busy))
    start = start.astype(np.int64)
    diag, cond = dx.elective(pop, r, pid, start)
    los = np.where(r.random(len(pid)) < 0.7, 0, r.integers(1, 5, len(pid)))
    el = _new(pop, r, pid, start, los, ELECTIVE, diag, cond, r.integers(0, 3, len(pid)), INDEX)
    sp = _drop_overlaps(_concat(em, el))
    dx.obstetric_code = icd.starts(["O"])  # the vocabulary is complete: every primary is drawn from it
    sp = _transfers(pop, r, sp, sp["kind"] == INDEX, TRANSFER_P, dx, 1)
    sp = _transfers(pop, r, sp, sp["gen"] == 1, REPATRIATION, dx, 2)
    sp = _readmissions(pop, r, sp, np.ones(len(sp["pid"]), bool), dx, site, 3)
    sp = _transfers(pop, r, sp, sp["gen"] == 3, TRANSFER_P, dx, 4)
    sp = _readmissions(pop, r, sp, sp["gen"] >= 3, dx, site, 5)
    sp = _terminal(pop, r, sp, dx)
    sp = _finalise(pop, r, sp)
    # spell ids: unique, not in order, deterministic for the seed
    id_seed, first = numbering or (seed, 0)
    i = np.arange(first, first + len(sp["pid"]), dtype=np.int64)
    offset = int(rng(id_seed, 27).integers(0, 9_000_000_000))
    num = (i * SPELL_ID_STRIDE + offset) % 9_000_000_000 + 1_000_000_000
    ids = np.char.add("SP", num.astype("U10")).tolist()
    sys_of = pop.practices["system"][pop.practice]
    sp["prov"] = (sys_of[sp["pid"]] * 3 + sp["local"]).astype(np.int32)
    return Spells(sp, icd, ids, site)


# ---------------------------------------------------------------- truth
def truth(sp: Spells) -> dict:
    """Per spell, by the definitions: cips_position (1 starts a continuous inpatient spell; 2, 3,
    ... continue one by a transfer: the previous spell discharged to another hospital at most
    TRANSFER_DAYS days before), previous_discharge (for a CIP start: the discharge of the
    person's previous CIP spell, i.e. of the spell before it), readmission_30d (an emergency CIP
    start 0-29 days after that discharge: NHS Digital's 30-day emergency readmission, before its
    cancer and obstetrics exclusions), excluded (cancer: primary C00-C97; obstetrics: O chapter)."""
    c = sp.cols
    pid, start, end, dest = c["pid"], c["start"].astype(np.int64), c["end"].astype(np.int64), c["dest"]
    n = len(pid)
    same_prev = np.r_[False, pid[1:] == pid[:-1]]
    prev_end = np.r_[NULL, end[:-1]].astype(np.int64)
    prev_dest = np.r_[-1, dest[:-1]]
    gap = start - prev_end
    cont = same_prev & (prev_dest == OTHER_HOSPITAL) & (prev_end != NULL) & (gap >= 0) & (gap <= S.TRANSFER_DAYS)
    first = np.flatnonzero(~cont)
    grp = np.cumsum(~cont) - 1
    cips = (np.arange(n) - first[grp] + 1) if n else np.zeros(0, np.int64)
    starts_after = ~cont & same_prev & (prev_end != NULL)
    previous = np.where(starts_after, prev_end, NULL)
    readmit = starts_after & (c["setting"] == EMERGENCY) & (gap >= 0) & (gap <= 29)
    codes = np.array(sp.icd.codes + [""], dtype=object)[c["diag"]]
    is_cancer = [x[:1] == "C" and x[1:3].isdigit() and int(x[1:3]) <= 97 for x in sp.icd.codes]  # C00-C97
    cancer = np.array([*is_cancer, False])[c["diag"]]
    obstetric = sp.icd.starts(["O"])[c["diag"]]
    excluded = np.where(cancer, "cancer", np.where(obstetric, "obstetrics", None))
    return {"cips_position": cips.astype(np.int32), "previous_discharge": previous.astype(np.int32),
            "readmission_30d": readmit, "is_transfer": cont, "excluded": excluded, "codes": codes}


_ACSC = {"asthma": "asthma", "copd": "copd", "coronary_heart_disease": "angina", "heart_failure": "heart_failure",
         "diabetes": "diabetes", "epilepsy": "epilepsy", "hypertension": "hypertension", "dementia": "dementia"}
# the primary-diagnosis groups of NHS OF 2.3.i for the conditions above (CHD's acute myocardial
# infarction is not an ambulatory-care-sensitive condition; angina is: I20, I25)
_ACSC_PREFIX = {"angina": ("I20", "I25"), "copd": ("J41", "J42", "J43", "J44", "J47"), "asthma": ("J45", "J46"),
                "heart_failure": ("I50", "I110", "I130", "J81"), "diabetes": ("E10", "E11", "E12", "E13", "E14"),
                "epilepsy": ("G40", "G41", "R56"), "hypertension": ("I10", "I119"),
                "dementia": ("F00", "F01", "F02", "F03")}


def acsc(pop: Population, sp: Spells) -> np.ndarray:
    """Per spell, the chronic ambulatory-care-sensitive condition (NHS OF 2.3.i group) an
    emergency admission was generated for: its primary diagnosis drawn from the person's own
    long-term condition, in that condition's ACSC group; None otherwise."""
    c = sp.cols
    out = np.full(len(sp), None, dtype=object)
    for cond, name in _ACSC.items():
        j = pop.conditions.index(cond)
        hit = sp.icd.starts(_ACSC_PREFIX[name])[c["diag"]]
        out[(c["cond"] == j) & hit & (c["setting"] == EMERGENCY)] = name
    return out


# ---------------------------------------------------------------- hospital diagnoses
# acute secondary diagnoses a spell: the mean at age 75 with no true deficit is
# _PER_SPELL["acute"], times these age multipliers, times exp(ACUTE_PER_DEFICIT * deficits)
_ACUTE_AGE = ([0, 18, 45, 65, 75, 85, 95], [0.15, 0.2, 0.35, 0.65, 1.0, 1.3, 1.5])
ACUTE_PER_DEFICIT = 0.12
# background secondary codes: _PER_SPELL["background"] at 75, times these
_BACKGROUND_AGE = ([0, 18, 45, 65, 75, 85, 95], [0.1, 0.25, 0.5, 0.8, 1.0, 1.05, 1.0])
# every recording rate of hospital_drivers.csv (states and acute diagnoses) times this: tuned with
# the readmissions and transfers in, so that the HFRS high band among people 75+ with an
# emergency admission stays at Gilbert et al.'s share (report.HFRS_HIGH_TARGET)
RECORDING = 0.88
ELECTIVE_RECORDING = 0.7  # elective spells record a true state at this share of the emergency rate
ELECTIVE_ACUTE = 0.25  # and have this share of the acute diagnoses
CHEMO_SITE = 0.9  # a chemotherapy spell records the cancer


def hospital_diagnoses(pop: Population, seed: int, spells: Spells) -> dict:
    """Every spell's diagnoses (source acute, dated at admission, named by spell and position):
    position 1 its primary diagnosis (the activity row's), then in random order the secondary
    ones: each true state of the person recorded with the state's per-spell probability
    (hospital_drivers.csv; a state primary care has not coded is found here too; a cancer as
    the person's own site), a Poisson number of acute and frailty-syndrome diagnoses rising
    with age and true eFI deficits, and a Poisson number of background codes rising with age,
    up to MAX_POSITION positions. This is what puts the Hospital Frailty Risk Score's high
    band among the old and frail, and every Charlson condition in the data."""
    r = rng(seed, 21)
    c = spells.cols
    icd = spells.icd
    pid, start, setting = c["pid"], c["start"], c["setting"]
    dists = {d: _dist(rows, icd) for d, rows in _HOSP_ROWS.items() if d != "obstetric"}
    n = len(pid)
    spell = np.arange(n)
    elective = setting == ELECTIVE
    sp_parts, code_parts, pri_parts = [spell], [c["diag"].astype(np.int32)], [np.zeros(n)]

    def add(sel, codes):
        sp_parts.append(sel)
        code_parts.append(codes)
        pri_parts.append(1 + r.random(len(sel)))

    cancer = pop.conditions.index("cancer")
    has = pop.has[pid]  # each spell's person's true states
    scale = RECORDING * np.where(elective, ELECTIVE_RECORDING, 1.0)
    for j, cond in enumerate(pop.conditions):
        if cond not in dists:
            continue
        sel = spell[has[:, j] & (r.random(n) < _PER_SPELL[cond] * scale)]
        if j == cancer:
            add(sel, spells.site[pid[sel]])
        else:
            add(sel, _Vocab.draw(dists[cond], r, len(sel)))
    chemo = spell[(c["cond"] == cancer) & elective & (r.random(n) < CHEMO_SITE)]
    add(chemo, spells.site[pid[chemo]])
    age = _age_at(pop, pid, start)
    lam = (RECORDING * _PER_SPELL["acute"] * np.interp(age, *_ACUTE_AGE)
           * np.exp(ACUTE_PER_DEFICIT * pop.deficits[pid].sum(1)) * np.where(elective, ELECTIVE_ACUTE, 1.0))
    sel = np.repeat(spell, r.poisson(lam))
    add(sel, _Vocab.draw(dists["acute"], r, len(sel)))
    sel = np.repeat(spell, r.poisson(_PER_SPELL["background"] * np.interp(age, *_BACKGROUND_AGE)))
    add(sel, _Vocab.draw(dists["background"], r, len(sel)))
    sp = np.concatenate(sp_parts).astype(np.int64)
    code = np.concatenate(code_parts).astype(np.int64)
    pri = np.concatenate(pri_parts)
    ok = code >= 0
    sp, code, pri = sp[ok], code[ok], pri[ok]
    del has
    # one row per spell and code (the primary where a secondary repeats it), then positions:
    # the primary first, the secondaries in a random order
    rank = (pri * (1 << 19)).astype(np.int64)  # primary 0, secondaries 2**19 .. 2**20
    assert len(icd.codes) < 1 << 12
    o = _by(sp, (code << 20) + rank, 32)
    sp, code, rank = sp[o], code[o], rank[o]
    first = np.r_[True, (sp[1:] != sp[:-1]) | (code[1:] != code[:-1])]
    sp, code, rank = sp[first], code[first], rank[first]
    o = _by(sp, rank, 21)
    sp, code = sp[o], code[o]
    starts = np.r_[0, np.flatnonzero(sp[1:] != sp[:-1]) + 1]
    position = np.arange(len(sp)) - np.repeat(starts, np.diff(np.r_[starts, len(sp)])) + 1
    keep = position <= MAX_POSITION
    sp, code, position = sp[keep], code[keep], position[keep]
    m = len(sp)
    return {
        "patient_id": pid[sp], "date": start[sp],
        "code_system": (list(S.CLINICAL_CODE_SYSTEMS), np.ones(m, np.int8)),
        "code": (icd.codes, code.astype(np.int32)),
        "source": (list(S.SOURCES), np.ones(m, np.int8)),
        "spell_id": (spells.ids, sp.astype(np.int32)),
        "position": position.astype(np.int32),
    }


# ---------------------------------------------------------------- procedures
class _Plans:
    def __init__(self):
        self.codes = [r["code"] for r in _OPCS]
        index = {c: i for i, c in enumerate(self.codes)}
        self.rows = []
        group: dict[tuple, int] = {}
        for k, row in enumerate(_PLANS):
            key = (row["setting"], row["diagnosis"])
            if key in group and group[key] != len(group) - 1:
                raise ValueError(f"procedure_plans.csv: the rows of plan {key} must be consecutive")
            g = group.setdefault(key, len(group))
            pairs = [x.split(":") for x in row["codes"].split()]
            idx = np.array([index[c] for c, _ in pairs], np.int32)
            w = np.array([float(x) for _, x in pairs])
            self.rows.append({"setting": EMERGENCY if row["setting"] == "emergency" else ELECTIVE,
                              "prefix": row["diagnosis"], "p": float(row["probability"]),
                              "after": row["after"] == "1", "group": g, "order": k,
                              "dist": (idx, np.cumsum(w / w.sum()))})
        self.groups = len(group)


PLANS = _Plans()


def procedures(pop: Population, seed: int, spells: Spells) -> dict:
    """OPCS-4 procedures of the spells (procedure_plans.csv): a plan by setting and primary
    diagnosis; each procedure dated within the spell (a plan's procedures on one day: an
    elective plan on the admission day, an emergency one in the first days), position 1 the
    spell's first (main) procedure, then the others in plan order."""
    r = rng(seed, 24)
    c = spells.cols
    n = len(spells)
    pid, start, setting = c["pid"], c["start"].astype(np.int64), c["setting"]
    last = np.where(c["end"] == NULL, pop.exit[pid], c["end"]).astype(np.int64)
    los = np.maximum(last - start, 0)
    day = np.zeros(n, np.int64)  # the day of the current plan's procedures
    fired = np.zeros(n, bool)  # an earlier row of the current plan applied
    group = -1
    sp_parts, code_parts, order_parts, day_parts = [], [], [], []
    for row in PLANS.rows:
        if row["group"] != group:  # rows of a plan are consecutive
            group = row["group"]
            fired[:] = False
            el = row["setting"] == ELECTIVE
            day = start if el else start + np.floor(r.random(n) * (np.minimum(los, 2) + 1)).astype(np.int64)
        match = setting == row["setting"]
        if row["prefix"] != "*":
            match &= spells.icd.starts([row["prefix"]])[c["diag"]]
        if row["after"]:
            match &= fired
        sel = np.flatnonzero(match & (r.random(n) < row["p"]))
        fired[sel] = True
        sp_parts.append(sel)
        code_parts.append(_Vocab.draw(row["dist"], r, len(sel)))
        order_parts.append(np.full(len(sel), row["order"]))
        if row["prefix"] == "*":  # a procedure of any spell: any day of it
            day_parts.append(start[sel] + np.floor(r.random(len(sel)) * (los[sel] + 1)).astype(np.int64))
        else:
            day_parts.append(day[sel])
    sp = np.concatenate(sp_parts).astype(np.int64)
    code = np.concatenate(code_parts).astype(np.int64)
    order = np.concatenate(order_parts)
    d = np.concatenate(day_parts)
    o = _by(sp, (code << 12) + order, 32)  # one row per spell and code
    sp, code, order, d = sp[o], code[o], order[o], d[o]
    first = np.r_[True, (sp[1:] != sp[:-1]) | (code[1:] != code[:-1])] if len(sp) else np.zeros(0, bool)
    sp, code, order, d = sp[first], code[first], order[first], d[first]
    o = _by(sp, order, 12)
    sp, code, d = sp[o], code[o], d[o]
    starts = np.r_[0, np.flatnonzero(sp[1:] != sp[:-1]) + 1] if len(sp) else np.zeros(0, np.int64)
    position = np.arange(len(sp)) - np.repeat(starts, np.diff(np.r_[starts, len(sp)])) + 1
    m = len(sp)
    return {
        "patient_id": pid[sp], "date": d.astype(np.int32),
        "code_system": (list(S.PROCEDURE_CODE_SYSTEMS), np.zeros(m, np.int8)),
        "code": (PLANS.codes, code.astype(np.int32)),
        "spell_id": (spells.ids, sp.astype(np.int32)),
        "position": position.astype(np.int32),
    }


def revascularised(spells: Spells, procs: dict) -> np.ndarray:
    """Per spell: has a coronary revascularisation (CABG, PCI: opcs4_codes.csv's
    cardiac_revascularisation group), what excludes angina and heart-failure admissions from
    NHS OF 2.3.i."""
    vocab, idx = procs["code"]
    is_rv = np.array([c in REVASCULARISATION for c in vocab] + [False])
    out = np.zeros(len(spells), bool)
    out[procs["spell_id"][1][is_rv[idx]]] = True
    return out
