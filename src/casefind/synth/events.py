"""Event tables, vectorised: each table is a dict column -> numpy array, where a date is an int32
day number (NULL for missing), a number a float (nan for missing) and a string a pair
(vocabulary, int index; -1 for missing). patient_id holds the patient's row index."""
from __future__ import annotations

import numpy as np

from casefind.contract import schema as S
from casefind.synth._common import NULL, load_csv, rng
from casefind.synth.population import Population

WINDOW = 1096  # 36 months of activity history
MONTH = WINDOW / 36

_CODES = load_csv("codes.csv")
_MEDS = load_csv("medicines.csv")
_OBS = {r["condition"]: r["code"] for r in load_csv("observation_codes.csv")}


def _codes(cond: str, system: str) -> list[str]:
    return [r["code"] for r in _CODES if r["condition"] == cond and r["code_system"] == system]


def _in_life(pop: Population, pid: np.ndarray, d: np.ndarray) -> np.ndarray:
    return (d >= np.maximum(pop.reg_start[pid], pop.as_of - WINDOW)) & (d <= pop.exit[pid])


# ---------------------------------------------------------------- diagnoses (primary care)
class _Vocab:
    """One SNOMED CT vocabulary for primary care: each state's codes with their long-tail
    weights (diagnostic codes for the first record, all codes for follow-ups), the resolved
    codes per condition, and background codes no shipped list holds."""

    def __init__(self):
        self.codes: list[str] = []
        self.index: dict[str, int] = {}
        self.dx: dict[str, tuple] = {}
        self.all: dict[str, tuple] = {}
        by: dict[str, list] = {}
        for r in load_csv("primary_codes.csv"):
            by.setdefault(r["state"], []).append(r)
        for state, rows in by.items():
            self.all[state] = self._dist([r["code"] for r in rows], [float(r["weight"]) for r in rows])
            dx = [r for r in rows if r["role"] == "dx"]
            self.dx[state] = self._dist([r["code"] for r in dx], [float(r["weight"]) for r in dx])
        res: dict[str, list] = {}
        for r in load_csv("resolved_codes.csv"):
            res.setdefault(r["category"], []).append(r)
        self.resolved = {}
        for cond, rows in res.items():
            main = [r for r in rows if r["cluster"].endswith("res_cod")]
            rest = [r for r in rows if not r["cluster"].endswith("res_cod")]
            w = [1.0 / len(main)] * len(main)
            if rest:  # half the weight on the main resolution codes, half on the rest
                w = [0.5 / len(main)] * len(main) + [0.5 / len(rest)] * len(rest)
            self.resolved[cond] = self._dist([r["code"] for r in main + rest], w)
        other = load_csv("other_codes.csv")
        self.other = self._dist([r["code"] for r in other], [float(r["weight"]) for r in other])

    def _dist(self, codes, weights):
        for c in codes:
            if c not in self.index:
                self.index[c] = len(self.codes)
                self.codes.append(c)
        w = np.asarray(weights, float)
        return np.array([self.index[c] for c in codes], np.int32), np.cumsum(w / w.sum())

    @staticmethod
    def draw(dist, r, m: int) -> np.ndarray:
        idx, cum = dist
        return idx[np.minimum(np.searchsorted(cum, r.random(m), side="right"), len(idx) - 1)]


VOCAB = _Vocab()
FOLLOW_UPS = 2.0  # mean further records of a coded state after its first (reviews, repeats)
OTHER_PER_YEAR = 0.5  # background codes a person-year


def primary_diagnoses(pop: Population, seed: int):
    """Each coded state: a first record dated at onset (years back, never before birth, never
    after death) with a diagnostic code, and a Poisson number of follow-up records between
    onset and the end, each code drawn from the state's long-tailed vocabulary. A resolved
    condition: its records, then a resolved code, the latest. Background codes that no
    shipped list holds, for everyone."""
    r = rng(seed, 10)
    pid_parts, day_parts, code_parts = [], [], []
    ref = np.where(pop.death != NULL, pop.death, pop.as_of).astype(np.int64)
    care_day = np.full(pop.n, NULL, np.int64)
    care_day[pop.care_home[0]] = pop.care_home[1]

    def add(pid, day, code):
        pid_parts.append(pid.astype(np.int32))
        day_parts.append(day.astype(np.int32))
        code_parts.append(code)

    for j, cond in enumerate(pop.conditions):
        if cond not in VOCAB.all:
            continue
        for resolved in (False, True):
            idx = np.flatnonzero(pop.resolved[:, j] if resolved else pop.coded[:, j])
            m = len(idx)
            if m == 0:
                continue
            span = np.maximum(ref[idx] - pop.birth[idx], 2)
            back = np.minimum(r.exponential((9 if resolved else 6) * 365, m), span - 1).astype(np.int64)
            onset = ref[idx] - back
            if cond == "care_home":
                onset = np.maximum(care_day[idx], pop.birth[idx])
            end = ref[idx]
            if resolved:  # resolved at least a day after onset, before the end
                room = np.maximum(ref[idx] - onset - 1, 0)
                end = onset + 1 + np.floor(r.uniform(0.2, 0.95, m) * room).astype(np.int64)
                end = np.minimum(end, ref[idx])
            add(idx, onset, VOCAB.draw(VOCAB.dx[cond], r, m))
            k = r.poisson(FOLLOW_UPS, m)
            fu = np.repeat(np.arange(m), k)
            lo, hi = onset[fu], np.where(resolved, end[fu] - 1, end[fu])
            d = lo + np.floor(r.random(len(fu)) * (np.maximum(hi - lo, 0) + 1)).astype(np.int64)
            add(idx[fu], d, VOCAB.draw(VOCAB.all[cond], r, len(fu)))
            if resolved:
                ok = end > onset
                add(idx[ok], end[ok], VOCAB.draw(VOCAB.resolved[cond], r, int(ok.sum())))
    pid, d = _events(pop, r, np.full(pop.n, OTHER_PER_YEAR))
    add(pid, d, VOCAB.draw(VOCAB.other, r, len(pid)))
    pid = np.concatenate(pid_parts)
    return {
        "patient_id": pid,
        "date": np.concatenate(day_parts),
        "code_system": (list(S.CLINICAL_CODE_SYSTEMS), np.zeros(len(pid), np.int8)),
        "code": (VOCAB.codes, np.concatenate(code_parts).astype(np.int32)),
        "source": (list(S.SOURCES), np.zeros(len(pid), np.int8)),
        "spell_id": ([], np.full(len(pid), -1, np.int32)),
        "position": np.full(len(pid), NULL, np.int32),
    }


# ---------------------------------------------------------------- activity
# setting: (target per person-year, exponent on latent risk, age knots, age multipliers, unit cost)
_AGEK = [0, 5, 18, 45, 65, 80, 95]
_SETTINGS = {
    "ae": (0.40, 0.55, [1.6, 0.8, 1.0, 0.9, 1.0, 1.6, 2.4], 250),
    "outpatient": (1.70, 0.35, [0.6, 0.4, 0.6, 1.0, 1.8, 2.4, 2.0], 150),
    "gp": (5.0, 0.25, [1.2, 0.6, 0.7, 1.0, 1.5, 2.0, 2.2], 42),
    "elective_admission": (0.12, 0.35, [0.2, 0.1, 0.4, 1.0, 2.0, 2.2, 1.4], 1200),
    "community": (1.2, 0.8, [0.3, 0.1, 0.1, 0.3, 1.0, 4.0, 8.0], 60),
    "mental_health": (0.25, 0.3, [0.1, 0.6, 1.2, 1.0, 0.6, 0.8, 0.8], 180),
    "social_care": (0.30, 0.8, [0.05, 0.05, 0.1, 0.2, 0.8, 4.0, 9.0], 120),
    "ambulance": (0.14, 0.8, [0.5, 0.3, 0.6, 0.7, 1.0, 2.2, 3.5], 300),
    "out_of_hours": (0.25, 0.4, [1.6, 0.8, 0.9, 0.9, 1.0, 1.5, 2.0], 80),
}
# monthly weight over the 36 months (index 35 = latest): stable, rising, falling ("crisis curve")
_m = np.arange(36)
_SHAPES = np.stack([
    np.ones(36),
    np.where(_m < 26, 1.0, 1.0 + 2.5 * (_m - 25) / 10),
    np.where(_m < 14, 1.0, np.where(_m < 24, 5.0, np.maximum(0.5, 5.0 - 0.6 * (_m - 23)))),
])


def _events(pop: Population, r, rate_per_year: np.ndarray):
    """Poisson events over the window shaped by each person's trajectory, thinned to the
    days the person was registered and alive."""
    tot = _SHAPES.sum(1)[pop.trajectory] / 36
    cnt = r.poisson(rate_per_year * 3 * tot)
    pid = np.repeat(np.arange(pop.n, dtype=np.int32), cnt)
    cdf = np.cumsum(_SHAPES, 1) / _SHAPES.sum(1, keepdims=True)
    tr = pop.trajectory[pid]
    u = r.random(len(pid))
    month = np.empty(len(pid), np.int64)
    for t in range(3):
        sel = tr == t
        month[sel] = np.searchsorted(cdf[t], u[sel], side="right")
    month = np.minimum(month, 35)
    d = (pop.as_of - WINDOW + 1 + (month + r.random(len(pid))) * MONTH).astype(np.int32)
    d = np.minimum(d, pop.as_of)
    keep = _in_life(pop, pid, d)
    return pid[keep], d[keep]


def activity(pop: Population, seed: int, spells):
    """Contacts and attendances by setting, care-home periods, and the admission spells
    (synth.spells: emergency and elective, with their spell ids)."""
    r = rng(seed, 20)
    cols = {k: [] for k in ("pid", "start", "end", "setting", "cost", "diag", "prov", "dest", "spell")}
    setting_ix = {s: i for i, s in enumerate(S.SETTINGS)}
    n_prov = 3 * (pop.practices["system"].max() + 1)
    sys_of = pop.practices["system"][pop.practice]

    def add(setting, pid, start, end, cost, diag=None, dest=None, prov=None, spell=None):
        m = len(pid)
        cols["pid"].append(pid)
        cols["start"].append(start)
        cols["end"].append(end if end is not None else np.full(m, NULL, np.int32))
        cols["setting"].append(np.full(m, setting_ix[setting], np.int8))
        c = cost * r.lognormal(0, 0.15, m)
        c[r.random(m) < 0.005] = np.nan
        cols["cost"].append(np.round(c, 2))
        cols["diag"].append(diag if diag is not None else np.full(m, -1, np.int32))
        cols["dest"].append(dest if dest is not None else np.full(m, -1, np.int8))
        cols["prov"].append(prov if prov is not None else np.full(m, -1, np.int32))
        cols["spell"].append(spell if spell is not None else np.full(m, -1, np.int32))

    # admission spells: emergency about GBP 3,000 (GBP 350 an excess bed day after 5), elective
    # or day case about GBP 1,200
    sc = spells.cols
    for k, setting in enumerate(("emergency_admission", "elective_admission")):
        sel = np.flatnonzero(sc["setting"] == k)
        st, en = sc["start"][sel], sc["end"][sel]
        los = np.where(en == NULL, 0, en - st)
        cost = 3000 + 350 * np.maximum(0, los - 5) if k == 0 else np.full(len(sel), 1200)
        add(setting, sc["pid"][sel], st, en, cost.astype(float), sc["diag"][sel], sc["dest"][sel],
            sc["prov"][sel], sel.astype(np.int32))

    for setting, (target, gamma, mult, unit) in _SETTINGS.items():
        if setting == "elective_admission":  # a spell: synth.spells
            continue
        g = np.interp(pop.age, _AGEK, mult) * pop.risk ** gamma
        if setting == "mental_health":
            g = g * (1 + 8 * pop.flag("serious_mental_illness") + 2 * pop.flag("depression") + 2 * pop.flag("dementia"))
        rate = g * target / g[pop.current].mean()
        pid, start = _events(pop, r, rate)
        m = len(pid)
        prov = None
        if setting in ("ae", "outpatient"):
            prov = (sys_of[pid] * 3 + r.integers(0, 3, m)).astype(np.int32)
        add(setting, pid, start, None, np.full(m, float(unit)), prov=prov)

    # care homes: residents billed in 28-day periods
    ch = care_home_residents(pop, seed)
    pid_l, st_l = [], []
    ch_exit = pop.exit[ch[0]]
    for k in range(40):
        s = pop.as_of - WINDOW + 28 * k
        sel = ch[0][(ch[1] <= s) & (ch_exit >= s)]
        pid_l.append(sel)
        st_l.append(np.full(len(sel), s, np.int32))
    pid = np.concatenate(pid_l).astype(np.int32)
    start = np.concatenate(st_l)
    end = np.minimum(start + 27, pop.exit[pid]).astype(np.int32)
    add("care_home", pid, start, end, 900 * 4 * np.ones(len(pid)))

    prov_vocab = [f"ZT{i + 1:03d}" for i in range(n_prov)]
    table = {
        "patient_id": np.concatenate(cols["pid"]).astype(np.int32),
        "start_date": np.concatenate(cols["start"]).astype(np.int32),
        "end_date": np.concatenate(cols["end"]).astype(np.int32),
        "setting": (list(S.SETTINGS), np.concatenate(cols["setting"])),
        "cost": np.concatenate(cols["cost"]),
        "primary_diagnosis": (spells.icd.codes, np.concatenate(cols["diag"])),
        "provider_code": (prov_vocab, np.concatenate(cols["prov"])),
        "discharge_destination": (list(S.DISCHARGE_DESTINATIONS), np.concatenate(cols["dest"])),
        "spell_id": (spells.ids, np.concatenate(cols["spell"])),
    }
    table["funding"] = (list(S.FUNDING), funding(table["setting"][1], table["patient_id"], pop.n, seed))
    return table


# setting -> (funding, share of rows); the rest are paid by activity. A care home's high-cost
# low-volume placement is a person's, so it is drawn per resident, the others per row.
_FUNDING_SHARES = {
    "emergency_admission": (("out_of_area", 0.03), ("national", 0.02)),
    "elective_admission": (("out_of_area", 0.03), ("national", 0.04)),
    "community": (("block", 0.35),),
    "mental_health": (("block", 0.5),),
}
HIGH_COST_PLACEMENTS = 0.15  # share of care-home residents in a high-cost low-volume placement


def funding(setting: np.ndarray, pid: np.ndarray, n: int, seed: int) -> np.ndarray:
    """How each activity row is paid for (index into schema.FUNDING): mostly by activity.
    Its own random stream, drawn after every other column, so adding it changed no other value."""
    r = rng(seed, 25)
    ix = {f: i for i, f in enumerate(S.FUNDING)}
    out = np.full(len(setting), ix["activity"], np.int8)
    u = r.random(len(setting))
    for name, shares in _FUNDING_SHARES.items():
        here = setting == S.SETTINGS.index(name)
        edge = 0.0
        for kind, share in shares:
            out[here & (u >= edge) & (u < edge + share)] = ix[kind]
            edge += share
    placed = r.random(n) < HIGH_COST_PLACEMENTS
    out[(setting == S.SETTINGS.index("care_home")) & placed[pid]] = ix["high_cost_low_volume"]
    return out


def merge(a, b):
    out = {}
    for k in a:
        if isinstance(a[k], tuple):
            va, ia = a[k]
            vb, ib = b[k]
            if not va or va is vb:  # nothing to map (primary care names no spell)
                out[k] = (vb, np.concatenate([np.asarray(ia, np.int64), np.asarray(ib, np.int64)]))
                continue
            vocab = list(dict.fromkeys(va + vb))
            pos = {v: i for i, v in enumerate(vocab)}
            mb = np.array([pos[v] for v in vb] + [-1], np.int64)
            ma = np.array([pos[v] for v in va] + [-1], np.int64)
            out[k] = (vocab, np.concatenate([ma[ia], mb[ib]]))
        else:
            out[k] = np.concatenate([a[k], b[k]])
    return out


def care_home_residents(pop: Population, seed: int):
    """About 0.7% of the population, mostly 80+, frail, with dementia more often (chosen with
    the conditions: see population.care_home_residents)."""
    return pop.care_home


# ---------------------------------------------------------------- medications
def medication_plan(pop: Population, seed: int):
    """Which medicines each person is on: each condition brings its usual drugs with a
    probability, so more LTCs mean more medicines (the polypharmacy eFI deficit follows)."""
    r = rng(seed, 40)
    drugs = list(dict.fromkeys(m["code"] for m in _MEDS))
    on = np.zeros((pop.n, len(drugs)), bool)
    for m in _MEDS:
        j = drugs.index(m["code"])
        if m["condition"] == "older_general":
            on[:, j] |= (pop.age >= 65) & (r.random(pop.n) < 0.25)
        else:
            on[:, j] |= pop.coded_flag(m["condition"]) & (r.random(pop.n) < 0.7)
    return drugs, on


def medications(pop: Population, seed: int, plan):
    r = rng(seed, 41)
    drugs, on = plan
    pid, drug = np.nonzero(on)
    pid = pid.astype(np.int32)
    interval = np.where(r.random(len(pid)) < 0.6, 28, 56)
    first = pop.as_of - 364 + (r.random(len(pid)) * interval).astype(np.int32)
    last = pop.exit[pid]
    lo = np.maximum(first, pop.reg_start[pid])
    cnt = np.where(last >= lo, (last - lo) // interval + 1, 0)
    rp = np.repeat(np.arange(len(pid)), cnt)
    k = np.arange(len(rp)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    d = (lo[rp] + k * interval[rp]).astype(np.int32)
    qty = np.where(np.isin(np.array(drugs)[drug[rp]], ["0301011R0", "0302000C0"]), 1.0, interval[rp].astype(float))
    return {
        "patient_id": pid[rp], "date": d,
        "code_system": (list(S.MEDICATION_CODE_SYSTEMS), np.ones(len(rp), np.int8)),
        "code": (drugs, drug[rp].astype(np.int32)),
        "quantity": qty,
    }


# ---------------------------------------------------------------- observations, experience
def observations(pop: Population, seed: int):
    r = rng(seed, 50)
    vocab = ["sbp", "dbp", "bmi", "hba1c", "egfr"]
    units = ["mm[Hg]", "mm[Hg]", "kg/m2", "mmol/mol", "mL/min/1.73m2"]
    adult = pop.age >= 18
    ht = (pop.coded_flag("hypertension") | pop.coded_flag("diabetes") | pop.coded_flag("chronic_kidney_disease")
          | pop.coded_flag("coronary_heart_disease"))
    parts = []

    def take(kind, who, per_year):
        pid, d = _events(pop, r, np.where(who, per_year, 0.0))
        parts.append((kind, pid, d))

    take(0, adult, np.where(ht, 2.0, 0.25))
    take(2, adult, np.where(ht | pop.coded_flag("obesity"), 1.0, 0.15))
    take(3, pop.coded_flag("diabetes"), 2.0)
    take(4, pop.coded_flag("chronic_kidney_disease") | pop.coded_flag("diabetes"), 1.0)
    kinds, pids, days = [], [], []
    for kind, pid, d in parts:
        kinds.append(np.full(len(pid), kind, np.int32))
        pids.append(pid)
        days.append(d)
        if kind == 0:
            kinds.append(np.full(len(pid), 1, np.int32))
            pids.append(pid)
            days.append(d)
    kind = np.concatenate(kinds)
    pid = np.concatenate(pids)
    d = np.concatenate(days)
    n = len(pid)
    z = r.normal(0, 1, n)
    val = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3, kind == 4],
        [np.where(pop.flag("hypertension")[pid], 142, 124) + 14 * z,
         np.where(pop.flag("hypertension")[pid], 84, 76) + 9 * z,
         np.where(pop.flag("obesity")[pid], 34 + 3 * np.abs(z), 25.5 + 2.5 * z.clip(-3, 1.5)),
         58 + 12 * z, np.where(pop.flag("chronic_kidney_disease")[pid], 45 + 9 * z.clip(-3, 1.5), 80 + 12 * z)])
    return {
        "patient_id": pid, "date": d,
        "code_system": (list(S.CLINICAL_CODE_SYSTEMS), np.zeros(n, np.int8)),
        "code": ([_OBS[v] for v in vocab], kind),
        "value": np.round(val, 1),
        "unit": (units, kind),
    }


def experience(pop: Population, seed: int):
    """Patient-reported measures for a quarter of people with an LTC; worse with frailty."""
    r = rng(seed, 60)
    ltc = pop.coded[:, :19].any(1)
    pid, d = _events(pop, r, np.where(ltc & (pop.age >= 16) & (r.random(pop.n) < 0.25), 0.5, 0.0))
    n = len(pid)
    measure = np.tile(np.arange(4), n)
    pid4 = np.repeat(pid, 4)
    d4 = np.repeat(d, 4)
    f = pop.frail[pid4]
    z = r.normal(0, 1, 4 * n)
    val = np.select([measure == 0, measure == 1, measure == 2, measure == 3],
                    [np.clip(60 - 5 * f + 10 * z, 0, 100).round(1), np.clip(6.5 - 0.6 * f + 1.5 * z, 1, 10).round(0),
                     np.clip(0.8 - 0.1 * f + 0.15 * z, -0.59, 1).round(3), (z + 0.5 - 0.3 * f > 0).astype(float)])
    return {"patient_id": pid4, "date": d4,
            "measure": (["pam", "outcomes_star", "eq5d_index", "supported_to_manage"], measure), "value": val}


# ---------------------------------------------------------------- registers, opt-outs
def registers(pop: Population, seed: int):
    r = rng(seed, 70)
    parts = []
    names = ["case_management", "palliative_care", "virtual_ward", "care_home", "learning_disability"]
    alive = pop.current
    # palliative: ~0.5% of the living, the most likely to die; plus a third of recent deaths
    haz = np.log(np.maximum(pop.risk, 1e-6)) + 0.1 * pop.age + r.gumbel(0, 0.5, pop.n)
    k = int(0.005 * alive.sum())
    cand = np.flatnonzero(alive)
    pal = cand[np.argsort(-haz[cand], kind="stable")[:k]]
    st = np.maximum(pop.as_of - r.integers(14, 540, len(pal)), pop.birth[pal])
    parts.append((1, pal, st, np.full(len(pal), NULL, np.int32)))
    dead = np.flatnonzero((pop.death != NULL) & (r.random(pop.n) < 0.35))
    st = np.maximum(pop.death[dead] - r.integers(7, 365, len(dead)), pop.birth[dead])
    parts.append((1, dead, st, pop.death[dead]))
    # case management: ~1.5% of the highest latent risk among everyone in the data in the last
    # two years, so enrolment does not foresee death or moving away (drawn from the living
    # alone, no case-managed person ever died: a matched evaluation then "found" fewer deaths);
    # joined in the two years before they left the data, some discharged, the rest on it until
    # they left
    k = int(0.015 * alive.sum())
    exit_day = pop.exit
    recent = np.flatnonzero(exit_day > pop.as_of - 730)
    cm = recent[np.argsort(-(np.log(pop.risk[recent] + 1e-6) + r.gumbel(0, 0.7, len(recent))), kind="stable")[:k]]
    st = np.maximum(np.maximum(exit_day[cm] - r.integers(7, 730, len(cm)), pop.reg_start[cm]), pop.birth[cm])
    gone = exit_day[cm] < pop.as_of
    en = np.where(r.random(len(cm)) < 0.3, np.minimum(st + r.integers(30, 300, len(cm)), exit_day[cm]), NULL)
    en = np.where(gone & (en == NULL), exit_day[cm], en)
    parts.append((0, cm, st, en.astype(np.int32)))
    # virtual ward: short stays for a few of the very high risk
    vw = cand[pop.risk[cand] > np.quantile(pop.risk[cand], 0.995)]
    vw = vw[r.random(len(vw)) < 0.3]
    st = np.maximum(pop.as_of - r.integers(1, 700, len(vw)), pop.birth[vw])
    parts.append((2, vw, st, np.minimum(st + r.integers(5, 15, len(vw)), pop.as_of)))
    ch, st = care_home_residents(pop, seed)
    parts.append((3, ch, st, np.where(pop.exit[ch] < pop.as_of, pop.exit[ch], NULL)))
    ld = np.flatnonzero(pop.coded_flag("learning_disability"))
    st = pop.birth[ld] + r.integers(3 * 365, 10 * 365, len(ld))
    st = np.minimum(st, pop.exit[ld])
    parts.append((4, ld, st, np.where(pop.death[ld] != NULL, pop.death[ld], NULL)))
    return {
        "patient_id": np.concatenate([p[1] for p in parts]).astype(np.int32),
        "register": (names, np.concatenate([np.full(len(p[1]), p[0], np.int8) for p in parts])),
        "start_date": np.concatenate([p[2] for p in parts]).astype(np.int32),
        "end_date": np.concatenate([p[3] for p in parts]).astype(np.int32),
    }


def opt_outs(pop: Population, seed: int):
    r = rng(seed, 80)
    u = r.random(pop.n)
    kind = np.where(u < 0.012, 0, np.where(u < 0.045, 1, -1))
    pid = np.flatnonzero(kind >= 0).astype(np.int32)
    d = np.maximum(pop.as_of - r.integers(1, 6 * 365, len(pid)), pop.birth[pid]).astype(np.int32)
    d = np.minimum(d, pop.exit[pid])
    return {"patient_id": pid, "kind": (list(S.OPT_OUT_KINDS), kind[pid].astype(np.int8)), "date": d}
