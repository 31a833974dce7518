"""Random small populations and random rules: every registered engine agrees with the reference.

Rules are drawn from the language's constructs (aggregations of every kind, filters,
windows, codelists, attributes, arithmetic, case, at, percentile/top); populations include
deaths, deregistrations, missing costs, same-day duplicates, and hospital spells with their
diagnoses (by position) and procedures; rules use spell_has() and filters that read other
aggregations ("the diagnoses of the latest spell"). Weighted scores with the
published HFRS and Charlson (SHMI, with its hierarchy) weights must be identical to the bit,
and equal to the exact sum of the published points."""
from __future__ import annotations

import datetime as dt
from fractions import Fraction
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spec_helpers import PRACTICES, patient, same

from casefind.engines.base import ENGINES, REFERENCE
from casefind.ingest import run_ingest
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import write_source

BASE = dt.date(2024, 1, 1)
SETTINGS = ["ae", "gp", "emergency_admission", "elective_admission", "outpatient"]
CODES = [("snomed", "38341003"), ("snomed", "44054006"), ("icd10", "I509"), ("icd10", "I500"), ("icd10", "J440")]

day = st.integers(0, 1000).map(lambda k: (BASE + dt.timedelta(days=k)).isoformat())


@st.composite
def populations(draw):
    n = draw(st.integers(1, 6))
    pats = []
    for i in range(n):
        birth = draw(st.sampled_from(["1940-02-29", "1955-06-15", "1980-01-01", "2010-10-31"]))
        death = draw(st.one_of(st.none(), day))
        reg_end = draw(st.one_of(st.none(), day))
        pats.append(patient(f"p{i}", birth=birth, death=death, reg_end=reg_end))
    ids = [p[0] for p in pats]
    deaths = {p[0]: p[6] for p in pats}

    def alive_on(pid, d):
        return deaths[pid] is None or d <= deaths[pid]

    activity, spells = [], []  # spells: (patient, spell id, admission date)
    for _ in range(draw(st.integers(0, 25))):
        pid, d = draw(st.sampled_from(ids)), draw(day)
        if not alive_on(pid, d):
            continue
        cost = draw(st.one_of(st.none(), st.sampled_from(["0", "42", "250.5", "3000"])))
        setting = draw(st.sampled_from(SETTINGS))
        primary = draw(st.sampled_from([None, "I509", "J440"]))
        if setting in ("emergency_admission", "elective_admission"):  # a spell: its own id, an end
            sid = f"S{len(spells)}"
            end = (dt.date.fromisoformat(d) + dt.timedelta(days=draw(st.integers(0, 5)))).isoformat()
            dest = draw(st.sampled_from([None, "home", "other_hospital", "care_home"]))
            spells.append((pid, sid, d))
            activity.append((pid, d, end, setting, cost, primary, None, dest, sid))
        else:
            activity += [(pid, d, None, setting, cost, primary, None, None, None)] * draw(st.integers(1, 2))
    diagnoses = []
    for _ in range(draw(st.integers(0, 12))):
        pid, d = draw(st.sampled_from(ids)), draw(day)
        if alive_on(pid, d):
            system, code = draw(st.sampled_from(CODES))
            own = [sp for sp in spells if sp[0] == pid]
            if own and system == "icd10" and draw(st.booleans()):  # coded in one of the patient's spells
                _, sid, start = draw(st.sampled_from(own))
                diagnoses.append((pid, start, system, code, "acute", sid, str(draw(st.integers(1, 3)))))
            else:
                diagnoses.append((pid, d, system, code, None, None, None))
    procedures = []
    for _, sid, start in spells:
        if draw(st.booleans()):
            procedures.append((spells[int(sid[1:])][0], start, "opcs4", draw(st.sampled_from(["K491", "W371"])), sid, "1"))
    registers = []
    for _ in range(draw(st.integers(0, 3))):
        pid, start = draw(st.sampled_from(ids)), draw(day)
        end = draw(st.one_of(st.none(), day.filter(lambda e: e >= start)))
        if alive_on(pid, start):
            registers.append((pid, "case_management", start, end))
    return {"practices": PRACTICES, "patients": pats, "activity": activity, "diagnoses": diagnoses,
            "registers": registers, "procedures": procedures}


window = st.sampled_from(["", ", within=months(6)", ", within=months(12)", ", between=(months(12), months(6))",
                          ", within=days(90)"])
filt = st.sampled_from(["", ', setting == "ae"', ', setting in ("gp", "outpatient")', ", cost > 40",
                        ", not (cost >= 250)", ', setting != "gp"', ", codelist=hf"])
agg = st.one_of(
    st.builds(lambda f, w: f"count(activity{f}{w})", filt, window),
    st.builds(lambda f, w: f"exists(activity{f}{w})", filt, window),
    st.builds(lambda fn, f, w: f"{fn}(activity.cost{f}{w})", st.sampled_from(["sum", "mean", "min", "max", "first", "last"]), filt, window),
    st.builds(lambda fn, f: f"{fn}(activity.start_date{f})", st.sampled_from(["first", "last", "max"]), filt),
    st.builds(lambda f: f"days_since(activity{f})", filt),
    st.builds(lambda w: f"count_distinct(diagnoses.category, codelist=ltc{w})", window),
    st.builds(lambda w: f"count_distinct(diagnoses.code{w})", window),
    st.builds(lambda w: f"score(diagnoses, codelist=ltc{w})", window),
    st.builds(lambda w: f"score(diagnoses, codelist=ltc, hierarchy=(hypertension > diabetes){w})", window),
    st.builds(lambda f, m: f"trend(activity{f}, over=months({m}))", filt, st.sampled_from([3, 6, 12])),
    st.just('exists(registers, register == "case_management", active)'),
    st.builds(lambda w: f"count(activity, spell_has(diagnoses, position == 1, codelist=hf){w})", window),
    st.builds(lambda w: f"exists(activity, spell_has(procedures, codelist=cardiac) and not spell_has(diagnoses, position >= 2){w})", window),
    st.builds(lambda w: f"count(activity, cips_position == 1 and days_between(previous_discharge, start_date) <= 29{w})", window),
    st.builds(lambda w: f"count(activity, cips_position >= 2{w})", window),
)
patient_expr = st.sampled_from(["age", "age >= 65", "registered and alive", 'sex == "F"', "imd_decile",
                                "days_between(birth_date, as_of)"])


@st.composite
def rules(draw):
    feats = {}
    for i in range(draw(st.integers(1, 4))):
        feats[f"a{i}"] = draw(agg)
    numeric = [k for k, v in feats.items() if not v.startswith(("exists", "first(activity.start", "last(activity.start", "max(activity.start"))]
    feats["pe"] = draw(patient_expr)
    # filters that read other aggregations: the latest spell's diagnoses, rows above a value
    feats["latest"] = draw(st.sampled_from(['last(activity.spell_id, setting == "emergency_admission")',
                                            "last(activity.spell_id)"]))
    feats["in_latest"] = draw(st.sampled_from(["count(diagnoses, spell_id == latest)",
                                               "score(diagnoses, spell_id == latest and position >= 2, codelist=ltc_icd)"]))
    if numeric:
        x = draw(st.sampled_from(numeric))
        feats["cmp"] = f"{x} >= {draw(st.sampled_from([0, 1, 2, 100]))}"
        feats["arith"] = f"{x} * 2 + 1"
        feats["tier"] = f'case({x} > 2, "high", {x} > 0, "some", "none")'
        feats["then"] = f"{x} at as_of - months({draw(st.sampled_from([1, 6, 13]))})"
        feats["pct"] = f"percentile({x})"
        if not feats[x].startswith("trend"):  # a trend cannot be read per row
            feats["above"] = f"count(activity, cost > {x}{draw(window)})"
        feats["top"] = f"top({x}, {draw(st.sampled_from(['10%', '50%']))})"
    as_of = (BASE + dt.timedelta(days=draw(st.integers(200, 1100)))).isoformat()
    return feats, as_of, draw(st.sampled_from([None, "age >= 18", "registered"]))


CODELISTS = ('  hf: {system: icd10, prefixes: ["I50"]}\n'
             '  cardiac: {system: opcs4, prefixes: ["K49"]}\n'
             "  ltc: {file: ltc.csv}\n  ltc_icd: {file: ltc_icd.csv, system: icd10}\n")
LTC_CSV = "code,system,category,weight\n38341003,snomed,hypertension,1\n44054006,snomed,diabetes,2.5\n"
LTC_ICD = "code,category,weight\nI509,heart_failure,3\nI500,heart_failure,4\n"


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(populations(), rules())
def test_native_equals_reference(tmp_path_factory, pop, rule):
    tmp = tmp_path_factory.mktemp("prop")
    feats, as_of, population = rule
    run_ingest(write_source(tmp / "src", pop), tmp / "store")
    (tmp / "ltc.csv").write_text(LTC_CSV)
    (tmp / "ltc_icd.csv").write_text(LTC_ICD)
    body = f'rule: prop\nas_of: "{as_of}"\n' + (f"population: {population}\n" if population else "")
    body += "codelists:\n" + CODELISTS + "features:\n" + "".join(f"  {k}: {v}\n" for k, v in feats.items())
    (tmp / "r.yml").write_text(body)
    r = compile_rule(tmp / "r.yml")
    store = Store.open(tmp / "store")
    ref = ENGINES[REFERENCE].evaluate(store, r.features, r.as_of, r.population).to_pylist()
    some = list(range(0, len(ref), 2))
    for name, engine in ENGINES.items():
        if name != REFERENCE:
            nat = engine.evaluate(store, r.features, r.as_of, r.population).to_pylist()
            assert len(ref) == len(nat), name
            for a, b in zip(ref, nat):
                for k in feats:
                    if a[k] is None or b[k] is None:
                        assert a[k] is None and b[k] is None, (name, k, feats[k], a, b, body)
                    else:
                        assert same(b[k], a[k]), (name, k, feats[k], a[k], b[k], body)
        # evaluating only some patients (as a run's re-check does) gives their same values
        sub = engine.evaluate(store, r.features, r.as_of, r.population, patients=some).to_pylist()
        assert [row["patient"] for row in sub] == some, name
        for row in sub:
            full = ref[row["patient"]]
            for k in feats:
                assert (row[k] is None and full[k] is None) or same(row[k], full[k]), \
                    (name, k, feats[k], row[k], full[k])


# --- weighted scores with the published HFRS and Charlson (SHMI) weights: identical to the bit ---

ROOT = Path(__file__).parents[2]


def _published(name: str) -> list[dict]:
    import csv

    return list(csv.DictReader(open(ROOT / "rules" / "codelists" / name)))


HFRS_ROWS = _published("hfrs_icd10.csv")
CHARLSON_ROWS = _published("charlson_shmi_icd10.csv")
CHARLSON_HIERARCHY = (("diabetes_complications", "diabetes"), ("severe_liver_disease", "liver_disease"),
                      ("metastatic_cancer", "cancer"))
SCORE_CODES = sorted({r["code"].rstrip("*") + s for r in HFRS_ROWS + CHARLSON_ROWS for s in ("", "9")})


@st.composite
def coded_populations(draw):
    n = draw(st.integers(1, 8))
    pats = [patient(f"p{i}", birth="1940-01-01") for i in range(n)]
    diagnoses = []
    for i in range(n):
        for _ in range(draw(st.integers(0, 9))):
            source = draw(st.sampled_from(["acute", "acute", None, "primary_care"]))
            diagnoses.append((f"p{i}", draw(day), "icd10", draw(st.sampled_from(SCORE_CODES)), source))
    return {"practices": PRACTICES, "patients": pats, "diagnoses": diagnoses}


def _exact_score(rows: list[dict], codes: list[str], hierarchy=()) -> Fraction:
    """The published score of these codes, in exact arithmetic: each category once, at its
    largest weight; a category below a present one in the hierarchy does not count."""
    weight: dict[str, Fraction] = {}
    for r in rows:
        w = Fraction(r["weight"])
        weight[r["category"]] = max(weight.get(r["category"], w), w)
    present = {r["category"] for r in rows for c in codes
               if (c.startswith(r["code"][:-1]) if r["code"].endswith("*") else c == r["code"])}
    lower = {lo for hi, lo in hierarchy if hi in present}
    return sum((weight[c] for c in present - lower), Fraction(0))


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(coded_populations(), window, st.sampled_from(["", 'source == "acute", ']),
       st.sampled_from([0, 1, 4.9, 5, 15, 15.1, 21]))
def test_weighted_scores_are_exact_and_identical_on_both_engines(tmp_path_factory, pop, win, flt, threshold):
    import shutil

    tmp = tmp_path_factory.mktemp("scores")
    run_ingest(write_source(tmp / "src", pop), tmp / "store")
    for name in ("hfrs_icd10.csv", "charlson_shmi_icd10.csv"):
        shutil.copyfile(ROOT / "rules" / "codelists" / name, tmp / name)
    pairs = ", ".join(f"{hi} > {lo}" for hi, lo in CHARLSON_HIERARCHY)
    feats = {
        "hfrs": "score(diagnoses, codelist=hfrs)",
        "hfrs_w": f"score(diagnoses, {flt}codelist=hfrs{win})",
        "band": 'case(hfrs_w > 15, "high", hfrs_w >= 5, "intermediate", "low")',
        "at_or_over": f"hfrs_w >= {threshold}", "over": f"hfrs_w > {threshold}", "equal": f"hfrs == {threshold}",
        "charlson_points": f"score(diagnoses, codelist=charlson, hierarchy=({pairs}))",
        "charlson_w": f"sum(diagnoses.weight, {flt}codelist=charlson{win}, hierarchy=({pairs}))",
        "charlson": "max(charlson_w, 0)",
        "charlson_flat": "score(diagnoses, codelist=charlson)",
        "sum_of_both": "hfrs_w + charlson",
    }
    body = ('rule: prop\nas_of: "2026-10-31"\ncodelists:\n  hfrs: hfrs_icd10.csv\n  charlson: charlson_shmi_icd10.csv\n'
            "features:\n" + "".join(f"  {k}: {v}\n" for k, v in feats.items()))
    (tmp / "r.yml").write_text(body)
    r = compile_rule(tmp / "r.yml")
    store = Store.open(tmp / "store")
    ref = ENGINES[REFERENCE].evaluate(store, r.features, r.as_of, r.population).to_pylist()
    for name, engine in ENGINES.items():
        if name != REFERENCE:
            nat = engine.evaluate(store, r.features, r.as_of, r.population).to_pylist()
            assert len(ref) == len(nat), name
            for a, b in zip(ref, nat):
                for k in feats:  # to the bit: repr of a double is exact
                    assert repr(a[k]) == repr(b[k]), (name, k, feats[k], a[k], b[k], body)
    ids = store.table("patients")["patient_id"].tolist()
    for a in ref:
        # every diagnosis on or before as_of counts for the unwindowed scores
        codes = [d[3] for d in pop["diagnoses"] if d[0] == ids[a["patient"]] and d[1] <= "2026-10-31"]
        for k, rows, hierarchy in (("hfrs", HFRS_ROWS, ()), ("charlson_points", CHARLSON_ROWS, CHARLSON_HIERARCHY),
                                   ("charlson_flat", CHARLSON_ROWS, ())):
            want = _exact_score(rows, codes, hierarchy)
            assert a[k] == float(want), (k, codes, a[k], want)  # the double nearest the exact sum
        assert a["equal"] == (_exact_score(HFRS_ROWS, codes) == Fraction(str(threshold)))
