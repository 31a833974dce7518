"""People, practices and their latent state: age/sex from the England age structure, a shared
latent morbidity factor (so long-term conditions cluster), deprivation that raises it, deaths and
deregistrations in the 36-month window, and a heavy-tailed latent admission risk."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from casefind.synth._common import NULL, load_csv, rng, sigmoid

_PLACES = ["Ashcombe", "Brackley Vale", "Calder Rise", "Dunmoor", "Eastwick", "Fernhill", "Greystone",
           "Harrowfield", "Ivybridge Lane", "Juniper", "Kestrel", "Larkmead", "Millbrook", "Northgate",
           "Oakhurst", "Pendle Cross", "Queensway", "Riverside", "Stonebridge", "Thornbury Park",
           "Upton Moor", "Valley Road", "Westfield", "Yarrow", "Ashdown", "Beacon", "Cobbled Row"]
_KINDS = ["Surgery", "Medical Centre", "Health Centre", "Family Practice", "Group Practice"]
# logit age slope per decade and frailty loading per condition: shapes, the level is fitted.
_SHAPE = {
    "hypertension": (0.75, 0.6), "depression": (0.0, 0.5), "obesity": (0.1, 0.4),
    "diabetes": (0.45, 0.7), "asthma": (-0.05, 0.4), "chronic_kidney_disease": (0.95, 0.8),
    "hypothyroidism": (0.35, 0.3), "cancer": (0.6, 0.5), "coronary_heart_disease": (0.8, 0.8),
    "atrial_fibrillation": (1.0, 0.7), "copd": (0.6, 0.9), "stroke_tia": (0.8, 0.8),
    "heart_failure": (0.95, 1.0), "serious_mental_illness": (0.0, 0.5), "epilepsy": (0.0, 0.4),
    "rheumatoid_arthritis": (0.35, 0.5), "dementia": (1.5, 0.8),
    "peripheral_arterial_disease": (0.85, 0.9), "learning_disability": (-0.1, 0.0),
}
# eFI-only deficits: (share among 65+, age slope per decade, frailty loading)
EFI_ONLY = {
    "efi_activity_limitation": (0.10, 0.5, 1.0), "efi_anaemia": (0.12, 0.4, 0.8),
    "efi_arthritis": (0.42, 0.4, 0.6), "efi_dizziness": (0.16, 0.3, 0.7),
    "efi_dyspnoea": (0.12, 0.3, 0.9), "efi_falls": (0.12, 0.6, 1.0),
    "efi_foot_problems": (0.16, 0.3, 0.6), "efi_fragility_fracture": (0.06, 0.6, 0.9),
    "efi_hearing_impairment": (0.30, 0.6, 0.4), "efi_heart_valve_disease": (0.05, 0.6, 0.7),
    "efi_housebound": (0.05, 0.9, 1.2), "efi_hypotension_syncope": (0.07, 0.4, 0.8),
    "efi_memory_cognitive": (0.06, 0.9, 0.9), "efi_mobility_transfer": (0.08, 0.8, 1.2),
    "efi_osteoporosis": (0.10, 0.6, 0.7), "efi_parkinsonism_tremor": (0.04, 0.5, 0.7),
    "efi_peptic_ulcer": (0.05, 0.2, 0.5), "efi_requirement_for_care": (0.06, 0.9, 1.2),
    "efi_skin_ulcer": (0.04, 0.6, 1.1), "efi_sleep_disturbance": (0.16, 0.1, 0.6),
    "efi_social_vulnerability": (0.12, 0.5, 0.6), "efi_urinary_incontinence": (0.10, 0.6, 0.9),
    "efi_urinary_system_disease": (0.10, 0.4, 0.8), "efi_visual_impairment": (0.18, 0.6, 0.6),
    "efi_weight_loss_anorexia": (0.06, 0.5, 1.0),
    "efi_respiratory_other": (0.05, 0.4, 0.8), "efi_thyroid_other": (0.02, 0.1, 0.2),
}
# states only hospital coding names (Charlson conditions with no QOF register):
# (parent state or None, share of the parent's people or of the eligible, minimum age,
#  age slope per decade, frailty loading)
HOSPITAL_ONLY = {
    "diabetes_complications": ("diabetes", 0.30, 0, 0.2, 0.4),
    "metastatic_cancer": ("cancer", 0.15, 0, 0.0, 0.5),
    "hemiplegia": ("stroke_tia", 0.12, 0, 0.0, 0.5),
    "liver_disease": (None, 0.008, 18, 0.2, 0.5),
    "severe_liver_disease": ("liver_disease", 0.20, 0, 0.0, 0.5),
    "hiv": (None, 0.0025, 15, -0.2, 0.2),
    "ctd_other": (None, 0.010, 50, 0.6, 0.4),
}
QOF = list(_SHAPE)


@dataclass(frozen=True)
class Area:
    """Where a block of a large population starts counting its practices, localities and
    systems (synth generates more than BLOCK patients as blocks, each an area of its own)."""
    practices: int = 0
    localities: int = 0
    systems: int = 0


@dataclass
class Population:
    n: int
    as_of: int
    birth: np.ndarray
    sex: np.ndarray
    practice: np.ndarray
    reg_start: np.ndarray
    reg_end: np.ndarray
    death: np.ndarray
    imd: np.ndarray
    eth: np.ndarray
    lsoa: np.ndarray
    age: np.ndarray
    frail: np.ndarray
    practices: dict
    conditions: list = field(default_factory=list)  # every true state: QOF, eFI-only, hospital-only
    has: np.ndarray | None = None  # bool (n, len(conditions)): the person truly has the state now
    coded: np.ndarray | None = None  # bool: has it and it is coded in primary care
    resolved: np.ndarray | None = None  # bool: coded once, resolved since (not in `has`)
    deficits: np.ndarray | None = None  # bool (n, 35): the true coded-type eFI deficits
    deficit_names: list = field(default_factory=list)
    care_home: tuple | None = None  # (row indexes, move-in day) of care-home residents
    risk: np.ndarray | None = None
    trajectory: np.ndarray | None = None  # 0 stable, 1 rising, 2 falling
    after: Area = Area()  # where the next block's practices, localities and systems start

    @property
    def exit(self) -> np.ndarray:
        """Last day the person is in the data: death, deregistration or the extract date."""
        e = np.full(self.n, self.as_of, np.int32)
        for d in (self.death, self.reg_end):
            e = np.where(d != NULL, np.minimum(e, d), e)
        return e

    @property
    def current(self) -> np.ndarray:
        return (self.death == NULL) & (self.reg_end == NULL)

    def flag(self, name: str) -> np.ndarray:
        """Truly has the state."""
        return self.has[:, self.conditions.index(name)]

    def coded_flag(self, name: str) -> np.ndarray:
        """Has the state and primary care knows it (a diagnosis is coded)."""
        return self.coded[:, self.conditions.index(name)]


def _practices(n: int, r: np.random.Generator, first: Area = Area()) -> dict:
    """The practices of an area of n patients; codes, names and the system index count on from
    ``first`` (where an earlier block's ended), so the blocks of a large population never share
    a code."""
    k = max(1, round(n / 8000))
    size = np.clip(r.lognormal(np.log(7000), 0.5, k), 2000, 30000)
    # 5-10 practices a locality, and never one locality for two or more practices, so that
    # locality figures differ from the system's
    n_loc = min(k, max(2, round(k / 7.5)))
    loc = np.repeat(np.arange(n_loc), [len(a) for a in np.array_split(np.arange(k), n_loc)])
    n_sys = max(1, min(n_loc, round(n / 600_000)))
    sys_of_loc = np.repeat(np.arange(n_sys), [len(a) for a in np.array_split(np.arange(n_loc), n_sys)])
    p0, l0, s0 = first.practices, first.localities, first.systems
    names = [f"{_PLACES[i % len(_PLACES)]} {_KINDS[(i // len(_PLACES)) % len(_KINDS)]}"
             + ("" if i < len(_PLACES) * len(_KINDS) else f" {i // (len(_PLACES) * len(_KINDS)) + 1}")
             for i in range(p0, p0 + k)]
    # deprivation clusters by locality (a deprived and a less deprived neighbourhood)
    loc_imd = r.uniform(2.5, 8.5, n_loc)
    if n_loc >= 2:
        loc_imd[:2] = [3.5, 7.5]
    loc_g, sys_g = loc + l0, sys_of_loc[loc] + s0
    return {
        "practice_code": [f"Z{p0 + i + 1:05d}" for i in range(k)],
        "practice_name": names,
        "locality_code": [f"LOC{loc_g[i] + 1:03d}" for i in range(k)],
        "locality_name": [f"{_PLACES[(loc_g[i] * 7 + 3) % len(_PLACES)]} Neighbourhood {loc_g[i] + 1}"
                          for i in range(k)],
        "system_code": [f"SYS{sys_g[i] + 1:02d}" for i in range(k)],
        "system_name": [f"Synthetic Integrated Care System {sys_g[i] + 1}" for i in range(k)],
        "weight": size / size.sum(),
        "imd_mean": np.clip(loc_imd[loc] + r.normal(0, 1.0, k), 2, 9),
        "system": sys_g,
    }


def build(n: int, seed: int, as_of: int, first: Area = Area()) -> Population:
    r = rng(seed, 1)
    ages = load_csv("age_structure.csv")
    p = np.array([float(a["percent_of_population"]) for a in ages])
    # oversample the old by their chance of dying or leaving in the window, so that the people
    # still registered at the extract date follow the reference age structure
    mid = np.array([(int(a["lower"]) + int(a["upper"] or 100)) / 2 for a in ages])
    out_rate = 1.1 * np.exp(-10.6 + 0.094 * mid) + np.where((mid > 18) & (mid < 40), 0.07, 0.03)
    p = p / np.exp(-2.5 * out_rate)
    band = r.choice(len(ages), n, p=p / p.sum())
    lo = np.array([int(a["lower"]) for a in ages])[band]
    hi = np.array([int(a["upper"] or 100) + 1 for a in ages])[band]
    age = lo + r.random(n) * (hi - lo)
    birth = (as_of - age * 365.25).astype(np.int32)
    birth -= ((birth + 10957) % 30).astype(np.int32) * 0  # keep day precision; month precision allowed
    sex = r.choice(3, n, p=[0.505, 0.493, 0.002]).astype(np.int8)
    pr = _practices(n, r, first)
    after = Area(first.practices + len(pr["practice_code"]), first.localities + len(set(pr["locality_code"])),
                 first.systems + len(set(pr["system_code"])))
    practice = r.choice(len(pr["weight"]), n, p=pr["weight"]).astype(np.int32)
    imd = np.clip(np.rint(pr["imd_mean"][practice] + r.normal(0, 2.0, n)), 1, 10).astype(np.int8)
    _ep = np.array([74, 1.5, 1.5, 1, 1, 1, 0.5, 1, 3, 2.5, 1, 1, 1.6, 1.4, 1, 1, 5.5])
    eth = r.choice(17, n, p=_ep / _ep.sum()).astype(np.int8)
    lsoa = ((practice + first.practices) * 20 + r.integers(0, 20, n)).astype(np.int32)
    frail = (r.normal(0, 1, n) + 0.3 * (5.5 - imd) / 4.5).astype(np.float32)
    # registration: most long-standing, ~5%/year joined in the window, never before birth
    since = r.exponential(12 * 365, n)
    reg_start = np.maximum(birth, (as_of - since).astype(np.int32))
    # deaths: Gompertz hazard scaled by frailty; deregistration ~4%/year, more in young adults
    haz = np.exp(-10.6 + 0.094 * age + 0.45 * frail)
    window = 1096
    u = r.random(n)
    dies = u < 1 - np.exp(-3 * haz)
    death = np.where(dies, as_of - r.integers(0, window, n), NULL).astype(np.int32)
    death = np.where(dies & (death < birth), birth + (as_of - birth) // 2, death).astype(np.int32)
    dereg_rate = np.where((age > 18) & (age < 40), 0.07, 0.03)
    leaves = (~dies) & (r.random(n) < 1 - np.exp(-3 * dereg_rate))
    # a leaver leaves after joining: uniformly between max(joined, window start) and as_of
    leave_lo = np.maximum(reg_start.astype(np.int64), as_of - window + 1)
    leave_at = leave_lo + np.floor(r.random(n) * (as_of - leave_lo + 1)).astype(np.int64)
    reg_end = np.where(leaves, leave_at, NULL).astype(np.int32)
    reg_end = np.where(dies, death, reg_end).astype(np.int32)
    reg_start = np.where((reg_end != NULL) & (reg_start > reg_end), np.maximum(birth, reg_end - 365),
                         reg_start).astype(np.int32)
    age_now = np.where(death != NULL, (death - birth) / 365.25, age)
    return Population(n, as_of, birth, sex, practice, reg_start, reg_end, death, imd, eth, lsoa,
                      age_now.astype(np.float32), frail, pr, after=after)


def _fit_level(base: np.ndarray, mask: np.ndarray, target: float) -> float:
    """Bisection on the logit intercept so that mean(sigmoid(c + base[mask])) == target."""
    lo, hi = -20.0, 10.0
    b = base[mask]
    if len(b) == 0:  # nobody to fit (a tiny population): the lowest level
        return lo
    if len(b) > 200_000:  # a fixed stride sample fits the level as well, and faster
        b = b[:: len(b) // 200_000]
    for _ in range(30):
        mid = (lo + hi) / 2
        if sigmoid(mid + b).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _completeness() -> dict[str, float]:
    rows = {r["state"]: float(r["completeness"]) for r in load_csv("completeness.csv")}
    default = rows.pop("default")
    return {**{k: default for k in EFI_ONLY}, **rows}


def completeness() -> dict[str, float]:
    """The probability that a true state is coded (synth/data/completeness.csv)."""
    return dict(_COMPLETENESS)


def add_conditions(pop: Population, seed: int) -> None:
    """True LTCs at age-shaped, frailty-loaded prevalence, each coded with its completeness, the
    level fitted so that CODED prevalence among currently registered people in the register's
    age group matches the QOF-like reference; then the eFI-only deficits fitted the same way
    among the 65+; resolved conditions (coded once, resolved since); hospital-only states;
    care-home residence; and the true eFI deficits that follow."""
    r = rng(seed, 2)
    ref = {row["condition"]: row for row in load_csv("ltc_prevalence.csv")}
    resolve = {row["condition"]: float(row["resolved_share"]) for row in load_csv("resolution.csv")}
    p_code = _COMPLETENESS
    cur = pop.current
    names, cols, coded, resolved = [], [], [], []
    for cond, (slope, load) in _SHAPE.items():
        row = ref[cond]
        min_age = 0 if row["register_age"] == "all" else int(row["register_age"].rstrip("+"))
        base = slope * (pop.age - 50) / 10 + load * pop.frail
        elig = pop.age >= min_age
        if cond == "learning_disability":
            elig = np.ones(pop.n, bool)
        target = float(row["percent_of_register_population"]) / 100
        c = _fit_level(base, cur & elig, min(0.95, target / p_code[cond]))
        has = (r.random(pop.n) < sigmoid(c + base)) & elig
        names.append(cond)
        cols.append(has)
        coded.append(has & (r.random(pop.n) < p_code[cond]))
        res = np.zeros(pop.n, bool)
        if cond in resolve:
            share = resolve[cond]
            c = _fit_level(base, cur & elig & ~has, target * share / (1 - share))
            res = (r.random(pop.n) < sigmoid(c + base)) & elig & ~has
        resolved.append(res)
    old = cur & (pop.age >= 65)
    for cond, (share, slope, load) in EFI_ONLY.items():
        base = slope * (pop.age - 75) / 10 + load * pop.frail
        c = _fit_level(base, old, min(0.95, share / p_code[cond]))
        has = r.random(pop.n) < sigmoid(c + base)
        names.append(cond)
        cols.append(has)
        coded.append(has & (r.random(pop.n) < p_code[cond]))
        resolved.append(np.zeros(pop.n, bool))
    for cond, (parent, share, min_age, slope, load) in HOSPITAL_ONLY.items():
        base = slope * (pop.age - 50) / 10 + load * pop.frail
        elig = cols[names.index(parent)] if parent else pop.age >= min_age
        c = _fit_level(base, elig, share)
        names.append(cond)
        cols.append(elig & (r.random(pop.n) < sigmoid(c + base)))
        coded.append(np.zeros(pop.n, bool))  # no primary-care codelist holds them
        resolved.append(np.zeros(pop.n, bool))
    pop.conditions = names
    pop.has = np.stack(cols, axis=1)
    pop.coded = np.stack(coded, axis=1)
    pop.resolved = np.stack(resolved, axis=1)
    # care homes: residents are a true state, coded with the care-home codes
    pop.care_home = care_home_residents(pop, seed)
    ch = np.zeros(pop.n, bool)
    ch[pop.care_home[0]] = True
    pop.conditions.append("care_home")
    pop.has = np.column_stack([pop.has, ch])
    pop.coded = np.column_stack([pop.coded, ch & (r.random(pop.n) < p_code["care_home"])])
    pop.resolved = np.column_stack([pop.resolved, np.zeros(pop.n, bool)])
    defs = [d for d in load_csv("efi_deficits.csv") if d["conditions"]]
    pop.deficit_names = [d["deficit"] for d in defs]
    pop.deficits = np.stack([pop.has[:, [pop.conditions.index(c) for c in d["conditions"].split(";")]].any(1)
                             for d in defs], axis=1)


def care_home_residents(pop: Population, seed: int):
    """About 0.7% of the population, mostly 80+, frail, with dementia more often."""
    r = rng(seed, 30)
    score = 0.12 * (pop.age - 85) + 0.9 * pop.frail + 1.5 * pop.flag("dementia") + r.gumbel(0, 1, pop.n)
    score = np.where(pop.age >= 65, score, -np.inf)
    k = int(0.007 * pop.n)
    idx = np.sort(np.argpartition(-score, k)[:k]) if k else np.zeros(0, np.int64)
    start = np.maximum(pop.as_of - r.integers(30, 5 * 365, len(idx)), pop.birth[idx] + 60 * 365).astype(np.int32)
    start = np.minimum(start, pop.exit[idx])
    return idx.astype(np.int32), start


def add_risk(pop: Population, seed: int) -> None:
    """Latent emergency-admission risk (expected admissions a year): age curve × morbidity ×
    deprivation × a lognormal individual factor, which gives the heavy tail of the risk pyramid."""
    r = rng(seed, 3)
    knots_age = np.array([0, 5, 15, 45, 65, 75, 85, 95])
    knots_rate = np.log([0.12, 0.035, 0.05, 0.06, 0.11, 0.2, 0.32, 0.42])
    a = np.interp(pop.age, knots_age, knots_rate)
    n_ltc = pop.has[:, : len(_SHAPE)].sum(1)
    logr = a + 0.19 * (n_ltc - n_ltc.mean()) + 0.06 * (5.5 - pop.imd) + r.normal(0, 0.5, pop.n)
    risk = np.exp(logr)
    risk *= 0.085 / risk[pop.current].mean()
    pop.risk = np.minimum(risk, 15).astype(np.float32)
    hi = pop.risk > np.quantile(pop.risk, 0.8)
    u = r.random(pop.n)
    pop.trajectory = np.where(hi & (u < 0.10), 1, np.where(hi & (u > 0.94), 2, 0)).astype(np.int8)


_COMPLETENESS = _completeness()
