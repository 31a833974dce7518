"""Maintainer tool, never imported by the generator: rebuilds the derived reference CSVs in
synth/data/ from the repository's codelists, so that the package itself never reads rules/.

    python -m casefind.synth._refresh_data [REPO_ROOT]

Writes primary_codes.csv (each true state's SNOMED CT vocabulary, with a long-tail weight),
resolved_codes.csv, verbatim copies of the codelists the report scores with (rule_*.csv and
published_*.csv: what the shipped rules use; starter_*.csv: a starter list no shipped rule uses
any more, for the report's before/after row), and rule_registers.csv: the QOF registers the
multimorbidity rule counts, read from rules/multimorbidity.yml (segments.yml checked to count
them the same way), so the truth report recomputes the rules' register logic from a table
that is the rules' own, not a copy kept by hand."""
from __future__ import annotations

import csv
import hashlib
import io
import pathlib
import re
import shutil
import sys

from ruamel.yaml import YAML

from casefind.synth.report import EFI_LIST

DATA = pathlib.Path(__file__).parent / "data"
# Long tail within each state: the shipped starter codes (the common ones) share HEAD of the
# records, Zipf-like among themselves; the other codes share the rest, the code ranked k
# weighing 1 / k**ZIPF_S. No public source gives code frequencies: the tail puts first the
# codes the eFI code set also holds (that set was built from codes in everyday use), then the
# rest, each part in the order of a fixed hash of the code (arbitrary but stable).
HEAD = 0.6
ZIPF_S = 0.9
# a tail code that another state's vocabulary holds too (e.g. psychotic depression, in both
# the depression and the SMI clusters) is a rare, specific code: it goes last, its weight
# scaled down
SHARED = 0.05

# eFI-only codes of a deficit that also names QOF conditions go to the condition whose name
# their term carries; the rest go to the deficit's eFI-only state
_KEYWORDS = {
    "rheumatoid_arthritis": r"rheumatoid",
    "dementia": r"dementia|alzheimer",
    "asthma": r"asthma",
    "copd": r"obstructive|copd|emphysema|chronic bronchitis",
    "hypothyroidism": r"hypothyroid|myxoedema|myxedema|thyroxine",
}
_CARE_HOME = {"248171000000108", "160734000"}


def _read(path: pathlib.Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def _bare(term: str) -> str:
    return re.sub(r"\s*\((disorder|finding|procedure|situation|regime/therapy|record artifact|qualifier value|"
                  r"morphologic abnormality|observable entity|substance|assessment scale)\)$", "", term)


def build(root: pathlib.Path) -> None:
    cl = root / "rules" / "codelists"
    pub = cl / "published"
    qof = _read(pub / "qof_snomed.csv")
    efi = _read(pub / "efi_snomed.csv")
    starter_ltc = _read(cl / "ltc_qof_snomed.csv")
    starter_efi = _read(cl / "efi_deficits_snomed.csv")
    synth_codes = [r for r in _read(DATA / "codes.csv") if r["code_system"] == "snomed"]
    deficits = _read(DATA / "efi_deficits.csv")
    in_qof = {r["code"] for r in qof}
    in_efi = {r["code"] for r in efi}

    vocab: dict[str, dict[str, dict]] = {}  # state -> code -> row
    resolved = {r["code"] for r in _read(pub / "qof_resolved_snomed.csv")}

    def add(state, code, term, role, source):
        if code in resolved:  # a resolved code is written only where a condition resolves
            return
        row = vocab.setdefault(state, {}).get(code)
        if row is None:
            vocab[state][code] = {"state": state, "code": code, "term": _bare(term), "role": role, "source": source}
        elif role == "dx":
            row["role"] = "dx"

    for r in qof:
        add(r["category"], r["code"], r["term"], "dx", f"qof:{r['cluster']}")
    for r in synth_codes:  # cancer has no published cluster; the starter codes always belong
        if r["condition"] in ("palliative_care",):
            continue
        add(r["condition"], r["code"], r["term"], "dx", "synth:codes.csv")
    for d in deficits:
        if not d["conditions"]:
            continue
        conds = d["conditions"].split(";")
        qof_conds = [c for c in conds if not c.startswith("efi_") and c != "care_home"]
        efi_states = [c for c in conds if c.startswith("efi_")]
        for r in (r for r in efi if r["category"] == d["deficit"] and r["code"] not in in_qof):
            src = f"efi:{d['deficit']}"
            if r["code"] in _CARE_HOME:
                add("care_home", r["code"], r["term"], "dx", src)
                continue
            hit = [c for c in qof_conds if c in _KEYWORDS and re.search(_KEYWORDS[c], r["term"], re.IGNORECASE)]
            if hit:
                add(hit[0], r["code"], r["term"], "fu", src)
            elif efi_states:
                add(efi_states[0], r["code"], r["term"], "dx", src)
            elif qof_conds:
                add(qof_conds[0], r["code"], r["term"], "fu", src)
    order = {r["code"]: i for i, r in enumerate(synth_codes + starter_ltc + starter_efi)}
    starter = {(r["category"], r["code"]) for r in starter_ltc}
    efi_state_of = {}
    for d in deficits:
        for c in d["conditions"].split(";") if d["conditions"] else []:
            efi_state_of.setdefault(c, d["deficit"])
    starter |= {(s, r["code"]) for r in starter_efi for s in vocab if efi_state_of.get(s) == r["category"]}
    starter |= {(r["condition"], r["code"]) for r in synth_codes}
    states_of: dict[str, int] = {}
    for codes in vocab.values():
        for code in codes:
            states_of[code] = states_of.get(code, 0) + 1
    rows = []
    for state in sorted(vocab):
        head = [r for r in vocab[state].values() if (state, r["code"]) in starter]
        tail = [r for r in vocab[state].values() if (state, r["code"]) not in starter]
        head.sort(key=lambda r: order[r["code"]])
        tail.sort(key=lambda r: (states_of[r["code"]] > 1, r["code"] not in in_efi,
                                 hashlib.sha1(r["code"].encode()).hexdigest()))
        h = HEAD if head and tail else (1.0 if head else 0.0)
        for part, mass in ((head, h), (tail, 1 - h)):
            z = [1 / (k + 1) ** ZIPF_S * (SHARED if part is tail and states_of[r["code"]] > 1 else 1)
                 for k, r in enumerate(part)]
            for r, w in zip(part, z):
                rows.append({**r, "weight": f"{mass * w / sum(z):.6g}"})
    _write(DATA / "primary_codes.csv", rows, ["state", "code", "term", "role", "weight", "source"],
           "# Generated by `python -m casefind.synth._refresh_data` from rules/codelists (see README.md)")
    for src, copy in COPIES.items():
        shutil.copyfile(cl / src, DATA / copy)
    (DATA / "rule_registers.csv").write_text(rule_registers(root), encoding="utf-8", newline="")


# codelist files (under rules/codelists/) -> their packaged copies in synth/data/
COPIES = {
    "published/qof_resolved_snomed.csv": "resolved_codes.csv",
    "published/qof_snomed.csv": "published_qof_snomed.csv",
    "published/efi_snomed.csv": "published_efi_snomed.csv",
    "ltc_qof_snomed.csv": "rule_ltc_qof_snomed.csv",
    "hfrs_icd10.csv": "rule_hfrs_icd10.csv",
    "charlson_shmi_icd10.csv": "rule_charlson_shmi_icd10.csv",
    "efi_deficits_snomed.csv": "starter_efi_deficits_snomed.csv",  # no shipped rule uses it now
}
REGISTER_FIELDS = ["condition", "min_age", "diagnosis_list", "diagnosis_category", "diagnosed_since",
                   "resolved_list", "resolved_category", "practice_register", "recorded_within_months",
                   "value_code", "value_min"]
# a condition that a recent code or a recent value shows (obesity: an obese code or a BMI of 30+
# in 12 months): `(exists(diagnoses, codelist=X, within=months(N)) or last(observations.value,
# codelist=Y, within=months(N)) >= V)`, Y an inline codelist of one code
_CODE_OR_VALUE = re.compile(r"\(exists\(diagnoses, codelist=(\w+), within=months\((\d+)\)\) or "
                            r"last\(observations\.value, codelist=(\w+), within=months\((\d+)\)\) >= ([\d.]+)\)")
# the one eFI the truth report recomputes: frail.yml's and segments.yml's, as these lines say
EFI_FEATURES = {"coded_deficits": "count_distinct(diagnoses.category, codelist=efi)",
                "medicines_12m": "count_distinct(medications.code, within=months(12))"}


class RuleShapeError(ValueError):
    """A shipped rule counts something in a way the truth report does not recompute."""


def _rule(root: pathlib.Path, name: str) -> dict:
    return YAML(typ="safe").load((root / "rules" / f"{name}.yml").read_text(encoding="utf-8"))


def _norm(text) -> str:
    return " ".join(str(text).split())


def _codelist_copy(rule: dict, name: str, where: str) -> tuple[str, str]:
    """(packaged copy, category or '') of a rule's codelist entry."""
    entry = (rule.get("codelists") or {}).get(name)
    if isinstance(entry, str):
        entry = {"file": entry}
    if (not isinstance(entry, dict) or set(entry) - {"file", "category"}
            or not isinstance(entry.get("category", ""), str)):
        raise RuleShapeError(f"{where}: codelist {name!r} is {entry!r}; the truth report reads a file "
                             f"(and one category) only")
    path = str(entry["file"]).removeprefix("codelists/")
    if path not in COPIES:
        raise RuleShapeError(f"{where}: codelist {name!r} is {entry['file']}, which synth/data/ has no copy of "
                             f"(add it to COPIES in synth/_refresh_data.py)")
    return COPIES[path], entry.get("category", "")


def _registers_of(rule: dict, where: str, rules_dir: pathlib.Path) -> list[dict]:
    """Each condition ltc_count counts, as its feature counts it. A feature must be a
    conjunction of `age >= N`, `exists(diagnoses, codelist=X)` or `X_latest >= date("...")`, and
    `not (X_resolved >= X_latest)` (X_latest, X_resolved: last(diagnoses.date, codelist=...)),
    optionally `or exists(registers, register == "R", active)`: anything else is refused,
    rather than recomputed wrongly."""
    feats = {k: _norm(v) for k, v in (rule.get("features") or {}).items()}
    params = rule.get("parameters") or {}
    ltc = feats.get("ltc_count", "")
    conds = re.findall(r"case\((\w+), 1, 0\)", ltc)
    if not conds or ltc != " + ".join(f"case({c}, 1, 0)" for c in conds):
        raise RuleShapeError(f"{where}: ltc_count is {ltc!r}, not a sum of case(condition, 1, 0)")

    def last_of(feature: str) -> str:
        m = re.fullmatch(r"last\(diagnoses\.date, codelist=(\w+)\)", feats.get(feature, ""))
        if not m:
            raise RuleShapeError(f"{where}: {feature} is {feats.get(feature)!r}, "
                                 "not last(diagnoses.date, codelist=...)")
        return m.group(1)

    out = []
    for c in conds:
        expr = feats.get(c, "")
        row = dict.fromkeys(REGISTER_FIELDS, "")
        row.update(condition=c, min_age="0")
        dx = latest = resolved = None
        parts = []
        if m := _CODE_OR_VALUE.search(expr):
            dx, months, value_list, value_months, vmin = m.groups()
            if months != value_months:
                raise RuleShapeError(f"{where}: {c}: the code and the value need the same window")
            entry = (rule.get("codelists") or {}).get(value_list)
            rows = _read(rules_dir / entry) if isinstance(entry, str) else []
            if len(rows) != 1 or rows[0].get("system") != "snomed" or rows[0]["code"].endswith("*"):
                raise RuleShapeError(f"{where}: {c}: {value_list} must be a codelist file of one SNOMED code")
            row.update(recorded_within_months=months, value_code=rows[0]["code"], value_min=vmin)
            expr = expr.replace(m.group(0), f"exists(diagnoses, codelist={dx})")
        body, _, register = expr.partition(" or ")
        for term in body.split(" and "):
            if m := re.fullmatch(r"age >= (\w+)", term):
                age = m.group(1)
                row["min_age"] = str(int(params.get(age, age)))
                parts.append(term)
            elif m := re.fullmatch(r"exists\(diagnoses, codelist=(\w+)\)", term):
                dx = m.group(1)
                parts.append(term)
            elif m := re.fullmatch(r'(\w+) >= date\("(\d{4}-\d{2}-\d{2})"\)', term):
                latest, row["diagnosed_since"] = m.group(1), m.group(2)
                parts.append(term)
            elif m := re.fullmatch(r"not \((\w+) >= (\w+)\)", term):
                resolved, latest_r = m.group(1), m.group(2)
                if latest not in (None, latest_r):
                    raise RuleShapeError(f"{where}: {c}: {term!r} compares with {latest_r}, not {latest}")
                latest = latest_r
                parts.append(term)
            else:
                raise RuleShapeError(f"{where}: {c} has {term!r}, which the truth report does not recompute")
        if latest is not None:
            dx_l = last_of(latest)
            if dx not in (None, dx_l):
                raise RuleShapeError(f"{where}: {c}: {latest} reads {dx_l}, the condition {dx}")
            dx = dx_l
        if dx is None:
            raise RuleShapeError(f"{where}: {c} is {expr!r}, with no diagnosis codelist")
        row["diagnosis_list"], row["diagnosis_category"] = _codelist_copy(rule, dx, f"{where}: {c}")
        if resolved is not None:
            row["resolved_list"], row["resolved_category"] = _codelist_copy(rule, last_of(resolved), f"{where}: {c}")
        if register:
            m = re.fullmatch(r'exists\(registers, register == "(\w+)", active\)', register)
            if not m or len(parts) != 1:
                raise RuleShapeError(f"{where}: {c} is {expr!r}; only `<one diagnosis test> or "
                                     f"exists(registers, register == \"...\", active)` is recomputed")
            row["practice_register"] = m.group(1)
        out.append(row)
    return out


def _efi_of(rule: dict, where: str) -> None:
    """The eFI as the truth report counts it: (distinct categories of the published eFI set, plus
    polypharmacy: 5+ distinct medicines in 12 months) / 36."""
    feats = {k: _norm(v) for k, v in (rule.get("features") or {}).items()}
    for k, v in EFI_FEATURES.items():
        if feats.get(k) != v:
            raise RuleShapeError(f"{where}: {k} is {feats.get(k)!r}, not {v!r}")
    efi = feats.get("efi", "")
    m = re.fullmatch(r"\((.*)\) / 36", efi)
    body = feats.get("deficits", "") if efi == "deficits / 36" else (m.group(1) if m else efi)
    if "polypharmacy" in feats:
        body = body.replace("case(polypharmacy, 1, 0)", f"case({feats['polypharmacy']}, 1, 0)")
    if body != "coded_deficits + case(medicines_12m >= 5, 1, 0)":
        raise RuleShapeError(f"{where}: the eFI is {efi!r} ({body!r}), not (coded deficits + polypharmacy) / 36")
    if _codelist_copy(rule, "efi", where) != (EFI_LIST, ""):
        raise RuleShapeError(f"{where}: the eFI codelist is not the published eFI set (the report's {EFI_LIST})")


# what the truth report takes as given of the rules' populations and inclusions: checked here
CHECKED = {
    ("frail", "population"): "registered and alive and age >= min_age",
    ("frail", "parameters.min_age"): "65",
    ("frail", "criteria.include.moderate_or_severe_frailty.when"): "efi > 0.24",
    ("multimorbidity", "population"): "registered and alive and age >= 18",
    ("multimorbidity", "parameters.min_conditions"): "4",
    ("multimorbidity", "criteria.include.four_or_more_conditions.when"): "ltc_count >= min_conditions",
    ("multimorbidity", "criteria.include.two_or_more_with_smi_or_ld.when"):
        "ltc_count >= 2 and (serious_mental_illness or learning_disability)",
    ("segments", "population"): "registered and alive",
    ("segments", "features.frail"): "age >= 65 and efi > 0.24",
}


def _at(rule: dict, path: str):
    v = rule
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    return _norm(v)


def rule_registers(root: pathlib.Path) -> str:
    """rule_registers.csv's text: one row per QOF register of multimorbidity.yml's ltc_count,
    with the packaged copies of its codelists. segments.yml must count the same registers the
    same way, and frail.yml and segments.yml the same eFI, or this raises RuleShapeError."""
    rows = _registers_of(_rule(root, "multimorbidity"), "rules/multimorbidity.yml", root / "rules")
    seg = _rule(root, "segments")
    if _registers_of(seg, "rules/segments.yml", root / "rules") != rows:
        raise RuleShapeError("rules/segments.yml counts its long-term conditions otherwise than "
                             "rules/multimorbidity.yml; the truth report recomputes one way")
    rules = {"frail": _rule(root, "frail"), "multimorbidity": _rule(root, "multimorbidity"), "segments": seg}
    _efi_of(rules["frail"], "rules/frail.yml")
    _efi_of(seg, "rules/segments.yml")
    for (name, path), want in CHECKED.items():
        if _at(rules[name], path) != want:
            raise RuleShapeError(f"rules/{name}.yml: {path} is {_at(rules[name], path)!r}, not {want!r}, "
                                 f"which the truth report assumes (synth/report.py)")
    buf = io.StringIO()
    buf.write("# Generated by `python -m casefind.synth._refresh_data` from rules/multimorbidity.yml (segments.yml\n"
              "# checked to match): the QOF registers ltc_count counts, each as its feature counts it. min_age:\n"
              "# the age floor; diagnosis_*: the diagnosis codelist (packaged copy, category); diagnosed_since:\n"
              "# the latest diagnosis on or after this date; resolved_*: the resolved codelist, a latest\n"
              "# resolved code on or after the latest diagnosis takes the person off; practice_register: an\n"
              "# active practice register that also counts; recorded_within_months: the diagnosis code counts\n"
              "# only this recent, and a value of value_code at least value_min in that window counts\n"
              "# too. Do not edit by hand.\n")
    w = csv.DictWriter(buf, fieldnames=REGISTER_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _write(path, rows, fields, header):
    with path.open("w", newline="", encoding="utf-8") as f:
        f.write(header + "\n")
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    build(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve())
