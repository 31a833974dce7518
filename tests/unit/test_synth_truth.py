"""The synthetic population can prove the rules: codes come from the full published sets with
a long tail (and codes no list holds), resolved codes follow their diagnosis, hospital
diagnoses cover every HFRS category and Charlson condition, the truth files agree with one
another, populations of two or more practices have two or more localities, the HFRS high band
lands near its published share, and the truth report scores the shipped rules as the engine
evaluates them."""
from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from casefind.synth import frailty_category, generate
from casefind.synth import population as P
from casefind.synth._common import load_csv, rng
from casefind.synth.report import (
    EFI_LIST,
    HFRS_HIGH_TARGET,
    SHIPPED,
    STARTER,
    _codelist,
    _Folder,
    hfrs_high_share,
    rule_logic,
    rule_registers,
    truth_report,
)

ROOT = Path(__file__).parents[2]
N = 20_000
AS_OF = dt.date(2026, 10, 31)


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    return generate(N, 1, tmp_path_factory.mktemp("truth") / "out")


@pytest.fixture(scope="module")
def folder(res):
    return _Folder(res.out, AS_OF)


@pytest.fixture(scope="module")
def dx(res):
    return pq.read_table(res.out / "diagnoses.parquet")


def _codes_by(path: Path, key: str = "category") -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    with path.open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            out[r[key]].add(r["code"])
    return out


def test_codes_come_from_the_full_published_sets(dx):
    seen = set(pc.unique(dx.filter(pc.equal(dx.column("code_system"), "snomed")).column("code")).to_pylist())
    efi = _codes_by(ROOT / "rules/codelists/published/efi_snomed.csv")
    coverage = {cat: len(codes & seen) / len(codes) for cat, codes in efi.items()}
    assert len(coverage) == 35
    # most of every eFI deficit's codes appear, not just the starter list's one to three
    assert min(coverage.values()) >= 0.5, sorted(coverage.items(), key=lambda kv: kv[1])[:5]
    starter = _codes_by(ROOT / "rules/codelists/efi_deficits_snomed.csv")
    assert sum(len((efi[c] - starter[c]) & seen) for c in efi) > 1000
    qof = _codes_by(ROOT / "rules/codelists/published/qof_snomed.csv")
    assert sum(len(codes & seen) for codes in qof.values()) > 1000


def test_a_long_tail_within_each_state(dx):
    # a few codes carry most records, many are rare: within hypertension, the top code holds
    # far more than the median one
    codes = _codes_by(ROOT / "rules/codelists/published/qof_snomed.csv")["hypertension"]
    counts = pc.value_counts(dx.column("code")).to_pylist()
    n = sorted((c["counts"] for c in counts if c["values"] in codes), reverse=True)
    assert n[0] > 20 * n[len(n) // 2]


def test_some_codes_are_in_no_shipped_list(dx):
    listed = set()
    for path in [*(ROOT / "rules/codelists").glob("*.csv"), *(ROOT / "rules/codelists/published").glob("*.csv")]:
        with path.open(encoding="utf-8") as f:
            listed |= {r["code"] for r in csv.DictReader(f)}
    other = {r["code"] for r in load_csv("other_codes.csv")}
    assert not other & listed
    seen = set(pc.unique(dx.column("code")).to_pylist())
    assert len(other & seen) == len(other)


def test_resolved_codes_follow_their_diagnosis(folder):
    res_rows = load_csv("resolved_codes.csv")
    dx_rows = [{"code": r["code"], "system": "snomed", "category": r["state"]}
               for r in load_csv("primary_codes.csv") if r["role"] == "dx"]
    rcats, who, cat, day = folder.pairs(res_rows)
    assert set(rcats) == {r["condition"] for r in load_csv("resolution.csv")}
    assert set(np.unique(cat)) == set(range(len(rcats)))  # every resolving condition resolves somewhere
    dcats, first = folder.latest(dx_rows)  # latest diagnosis code date
    _, dwho, dcat, dday = folder.pairs(dx_rows)
    earliest = np.full(first.shape, np.iinfo(np.int64).max)
    np.minimum.at(earliest, (dwho, dcat), dday)
    j = np.array([dcats.index(c) for c in rcats])[cat]
    assert (earliest[who, j] < day).all()  # a diagnosis before every resolved code
    # the resolved code is the latest: those people are off the register, not truly ill now
    register = folder.register()
    names, true_c = folder.truth("conditions", "condition")
    for k, c in enumerate(rcats):
        people = np.unique(who[cat == k])
        assert not register[c][people].any(), c
        assert not true_c[people, names.index(c)].any(), c
    # a few per cent of asthma and depression resolve, as the resolution table says
    asthma = (cat == rcats.index("asthma")).sum()
    assert 0.1 * register["asthma"].sum() < asthma < register["asthma"].sum()


def test_every_hfrs_category_and_charlson_condition_appears(folder):
    hfrs, m = folder.has(_codelist("rule_hfrs_icd10.csv"), system="icd10", source="acute")
    assert len(hfrs) == 109 and m.any(0).all(), [c for c, x in zip(hfrs, m.any(0)) if not x]
    charlson, m = folder.has(_codelist("rule_charlson_shmi_icd10.csv"), system="icd10", source="acute")
    assert len(charlson) == 17 and m.any(0).all(), [c for c, x in zip(charlson, m.any(0)) if not x]
    # both members of each hierarchy pair
    for pair in (("diabetes", "diabetes_complications"), ("liver_disease", "severe_liver_disease"),
                 ("cancer", "metastatic_cancer")):
        assert all(m[:, charlson.index(c)].sum() >= 3 for c in pair), pair
    # hospital codes are ICD-10 without the dot, 3 or 4 characters
    for r in load_csv("hospital_codes.csv"):
        assert 3 <= len(r["code"]) <= 4 and r["code"][0].isalpha() and "." not in r["code"], r


def test_hfrs_high_band_near_the_published_share(folder):
    share, people = hfrs_high_share(folder)
    _, low, high = HFRS_HIGH_TARGET
    assert people > 300
    assert low <= share <= high, (share, people)
    # and it is the old and frail who reach it
    age_at = (np.minimum(folder.exit, folder.A) - folder.birth) / 365.25
    score = folder.hfrs()
    assert (score[age_at < 50] > 15).mean() < 0.005


def test_truth_files_are_consistent(res, folder):
    t = res.out / "_truth"
    fr = pq.read_table(t / "frailty.parquet")
    assert fr.num_rows == N and set(fr.column_names) == {"patient_id", "true_frailty", "true_deficits"}
    count = fr.column("true_deficits").to_numpy()
    assert (np.asarray(fr.column("true_frailty").to_pylist()) == frailty_category(count)).all()
    de = pq.read_table(t / "deficits.parquet")
    names = set(de.column("deficit").to_pylist())
    assert len(names) == 36 and "polypharmacy" in names
    per = dict(zip(*np.unique(np.asarray(de.column("patient_id").to_pylist()), return_counts=True)))
    ids = fr.column("patient_id").to_pylist()
    assert [per.get(p, 0) for p in ids] == count.tolist()
    co = pq.read_table(t / "conditions.parquet")
    assert set(co.column("condition").to_pylist()) == set(P.QOF)
    assert (t / "latent.parquet").exists()
    # true prevalence exceeds coded prevalence by the coding completeness
    names, true_c = folder.truth("conditions", "condition")
    register = folder.register()
    p = P.completeness()
    for c in ("hypertension", "dementia", "chronic_kidney_disease"):
        ratio = (register[c] & folder.cur).sum() / (true_c[:, names.index(c)] & folder.cur).sum()
        assert abs(ratio - p[c]) < 0.06, (c, ratio)


def test_two_or_more_practices_make_two_or_more_localities():
    r = rng(0, 0)
    for n in (16_000, 30_000, 50_000, 100_000, 200_000):
        pr = P._practices(n, r)
        k, loc = len(pr["practice_code"]), set(pr["locality_code"])
        assert k >= 2 and len(loc) >= 2, (n, k, loc)
    assert len(set(P._practices(5_000, r)["locality_code"])) == 1  # one practice, one locality


def test_the_demo_size_has_two_localities_that_differ(tmp_path):
    pr = P._practices(50_000, rng(1, 1))
    assert len(pr["practice_code"]) == 6 and len(set(pr["locality_code"])) == 2
    loc = np.array(pr["locality_code"])
    imd = {code: pr["imd_mean"][loc == code].mean() for code in set(loc)}
    assert max(imd.values()) - min(imd.values()) > 1.5  # a deprived and a less deprived locality


def test_truth_report_scores_the_rules(res):
    rows = truth_report(res.out, AS_OF)
    by = {(r.rule, r.codelist): r for r in rows}
    registers = {r["condition"]: r for r in rule_registers()}
    # the rules' 18 QOF registers: hypothyroidism is no longer one
    assert len(registers) == 18 and "hypothyroidism" not in registers
    assert {r.rule for r in rows if r.rule.startswith("register: ")} == {f"register: {c}" for c in registers}
    # the share of each condition's diagnosis records (the generator's first code) whose code the
    # rule's cluster lacks: obesity's and CKD's commonest starter codes (414916001 Obesity, an
    # unstaged 709044004 Chronic kidney disease) are in neither BMIOBESE_COD nor CKD_COD (stages 3-5)
    outside = {}
    for c, r in registers.items():
        cluster = {x["code"] for x in _codelist(r["diagnosis_list"]) if x["category"] == r["diagnosis_category"]}
        dx = [x for x in load_csv("primary_codes.csv") if x["state"] == c and x["role"] == "dx"]
        weight_outside = sum(float(x["weight"]) for x in dx if x["code"] not in cluster)
        outside[c] = weight_outside / sum(float(x["weight"]) for x in dx)
    assert {c for c, share in outside.items() if share > 0.05} == {"obesity", "chronic_kidney_disease"}, outside
    for c in registers:
        reg = by[(f"register: {c}", SHIPPED)]
        assert reg.expected is not None, c
        if reg.true >= 150:
            assert reg.ppv > 0.9, (c, reg)
            if outside[c] <= 0.05:  # the rule's cluster holds what is coded: sensitivity is the coding completeness
                assert abs(reg.sensitivity - reg.expected) < 0.07, (c, reg)
            else:  # what the cluster lacks, the register misses
                assert reg.sensitivity < reg.expected - 0.1, (c, reg)
    # each register's population is those at or above its age floor
    people = {c: by[(f"register: {c}", SHIPPED)].people for c in registers}
    assert people["hypertension"] > people["asthma"] > people["rheumatoid_arthritis"] > people["diabetes"] \
        > people["depression"] == people["epilepsy"]
    # against the starter lists the rules used before: the published eFI set finds more frailty;
    # the registers' resolved codes and age floors flag fewer people wrongly (the clusters' obesity
    # and CKD gaps above cost multimorbidity sensitivity)
    for rule in ("multimorbidity", "frail"):
        new, old = by[(rule, SHIPPED)], by[(rule, STARTER)]
        assert new.people == old.people and new.true == old.true, rule
        assert 0 < new.sensitivity < 1 and new.ppv > 0.95, (rule, new)
    assert by[("frail", STARTER)].sensitivity < by[("frail", SHIPPED)].sensitivity - 0.1
    assert by[("multimorbidity", STARTER)].ppv < by[("multimorbidity", SHIPPED)].ppv - 0.05
    assert 0 < by[("hfrs", SHIPPED)].sensitivity < 1
    assert {r.codelist for r in rows} == {SHIPPED, STARTER}


def test_report_logic_is_the_engines(tmp_path):
    """The truth report recomputes the rules' features from the generated tables (rule_logic);
    on a small population, the native engine over an ingested store gives the same numbers,
    patient by patient: frail's deficits, and each QOF register and ltc_count of multimorbidity
    and segments (whose population is everyone registered, children too, so the age floors
    count). The population is one where the register logic matters: resolved codes and age
    floors take people off registers that any-code-ever counting would put them on."""
    from casefind.engines import native
    from casefind.ingest import run_ingest
    from casefind.rules.compile import compile_rule
    from casefind.store import Store

    generate(3000, 5, tmp_path / "src")
    run_ingest(tmp_path / "src", tmp_path / "store")
    store = Store.open(tmp_path / "store")
    ids = store.table("patients").arrow.column("patient_id").to_pylist()
    f = _Folder(tmp_path / "src", AS_OF)
    pos = {p: i for i, p in enumerate(f.pid.to_pylist())}
    logic = rule_logic(f)
    registers = rule_registers()
    conditions = [r["condition"] for r in registers]
    mine = {"deficits": logic["deficits"], "ltc_count": logic["ltc_count"], **logic["conditions"]}
    checks = {"frail": ["deficits"], "multimorbidity": ["ltc_count", *conditions],
              "segments": ["ltc_count", *conditions]}
    for rule, features in checks.items():
        r = compile_rule(ROOT / "rules" / f"{rule}.yml")
        vals = native.evaluate(store, dict(r.features), r.as_of, r.population)
        who = np.array([pos[ids[p]] for p in vals.column("patient").to_pylist()])
        assert len(who) > 1000, rule
        for feature in features:
            got = vals.column(feature).to_pylist()
            if feature in conditions:  # a condition tested on a missing date is missing: not on it
                got = [bool(g) for g in got]
            else:
                assert None not in got, (rule, feature)
            want = mine[feature][who].tolist()
            bad = [(ids[p], w, g) for p, w, g in zip(vals.column("patient").to_pylist(), want, got) if w != g]
            assert not bad, (rule, feature, len(bad), bad[:5])
    # not vacuous: any diagnosis code ever, at any age, would put people on registers the rules'
    # logic keeps them off (a resolved code after it; under the age floor)
    years = (np.datetime64(AS_OF) - f.birth.astype("datetime64[D]")).astype(int) / 365.25
    resolved = floored = 0
    for r in registers:
        _, ever = f.has([x for x in _codelist(r["diagnosis_list"]) if x["category"] == r["diagnosis_category"]])
        ever = ever.any(1) & f.cur
        off = ever & ~logic["conditions"][r["condition"]]
        floored += int((off & (years < int(r["min_age"]))).sum())
        resolved += int((off & (years >= int(r["min_age"]) + 1)).sum()) if r["resolved_list"] else 0
    assert resolved > 20 and floored > 5, (resolved, floored)


def test_packaged_codelists_are_the_repositorys():
    """The package carries copies of the codelists and of the rules' register logic (it never
    reads rules/): when a rule, its codelist or a published set changes,
    `python -m casefind.synth._refresh_data` must be run."""
    from importlib import resources

    from casefind.synth._refresh_data import rule_registers as from_rules

    data = resources.files("casefind.synth").joinpath("data")
    cl = ROOT / "rules/codelists"
    pairs = {
        "rule_ltc_qof_snomed.csv": cl / "ltc_qof_snomed.csv",
        "rule_hfrs_icd10.csv": cl / "hfrs_icd10.csv",
        "rule_charlson_shmi_icd10.csv": cl / "charlson_shmi_icd10.csv",
        "published_efi_snomed.csv": cl / "published/efi_snomed.csv",
        "published_qof_snomed.csv": cl / "published/qof_snomed.csv",
        "resolved_codes.csv": cl / "published/qof_resolved_snomed.csv",
        "starter_efi_deficits_snomed.csv": cl / "efi_deficits_snomed.csv",  # the old frail rule's list
    }
    for name, src in pairs.items():
        assert data.joinpath(name).read_bytes() == src.read_bytes(), (
            f"{name} is stale: run python -m casefind.synth._refresh_data")
    # every codelist the rules the report scores use has its packaged copy
    for rule in ("frail", "multimorbidity", "segments", "hfrs"):
        used = set(re.findall(r"codelists/[\w/]+\.csv", (ROOT / "rules" / f"{rule}.yml").read_text(encoding="utf-8")))
        used.discard("codelists/bmi_value_snomed.csv")  # its one code is in rule_registers.csv (value_code)
        assert used and {ROOT / "rules" / u for u in used} <= set(pairs.values()), (rule, used)
    # the register table is the rule files' own, and names only checked copies
    assert data.joinpath("rule_registers.csv").read_text(encoding="utf-8") == from_rules(ROOT), \
        "rule_registers.csv is stale: run python -m casefind.synth._refresh_data"
    named = {r[k] for r in rule_registers() for k in ("diagnosis_list", "resolved_list") if r[k]}
    assert named and named <= set(pairs), named
    assert data.joinpath(EFI_LIST).read_bytes() == (cl / "published/efi_snomed.csv").read_bytes()


def test_refresh_refuses_rules_it_cannot_recompute(tmp_path):
    """A register feature of a form the report does not recompute stops the refresh, rather than
    leaving the truth report to score something else; a changed age floor changes the table."""
    from casefind.synth._refresh_data import RuleShapeError
    from casefind.synth._refresh_data import rule_registers as from_rules

    (tmp_path / "rules").mkdir()
    for name in ("frail", "multimorbidity", "segments"):
        (tmp_path / "rules" / f"{name}.yml").write_text((ROOT / "rules" / f"{name}.yml").read_text(encoding="utf-8"),
                                                        encoding="utf-8")
    (tmp_path / "rules" / "codelists").mkdir()  # the value rule's code is read from its file
    shutil.copyfile(ROOT / "rules" / "codelists" / "bmi_value_snomed.csv",
                    tmp_path / "rules" / "codelists" / "bmi_value_snomed.csv")
    mm = tmp_path / "rules" / "multimorbidity.yml"
    text = mm.read_text(encoding="utf-8")
    asthma = "asthma: age >= 6 and exists(diagnoses, codelist=ast_cod) and not (ast_resolved >= ast_latest)"
    assert asthma in text
    for other in ("asthma: age >= 6 and exists(diagnoses, codelist=ast_cod) and medicines_12m >= 1",
                  "asthma: age >= 6 and exists(diagnoses, codelist=ast_cod, within=months(12))",
                  "asthma: age >= 6 and exists(diagnoses, codelist=ast_cod) and not (ast_resolved > ast_latest)"):
        mm.write_text(text.replace(asthma, other), encoding="utf-8")
        with pytest.raises(RuleShapeError):
            from_rules(tmp_path)
    seg = tmp_path / "rules" / "segments.yml"
    seg_text = seg.read_text(encoding="utf-8")
    mm.write_text(text.replace(asthma, asthma.replace(">= 6", ">= 7")), encoding="utf-8")
    seg.write_text(seg_text.replace(asthma, asthma.replace(">= 6", ">= 7")), encoding="utf-8")
    assert "\nasthma,7," in from_rules(tmp_path)
    seg.write_text(seg_text, encoding="utf-8")  # segments now counts asthma otherwise
    with pytest.raises(RuleShapeError):
        from_rules(tmp_path)
