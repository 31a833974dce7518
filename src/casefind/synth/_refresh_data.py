"""Maintainer tool, never imported by the generator: rebuilds the derived reference CSVs in
synth/data/ from the repository's codelists, so that the package itself never reads rules/.

    python -m casefind.synth._refresh_data [REPO_ROOT]

Writes primary_codes.csv (each true state's SNOMED CT vocabulary, with a long-tail weight),
resolved_codes.csv, and verbatim copies of the codelists the report scores against
(rule_*.csv: what the shipped rules use; published_*.csv: the full published sets)."""
from __future__ import annotations

import csv
import hashlib
import pathlib
import re
import shutil
import sys

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
            hit = [c for c in qof_conds if c in _KEYWORDS and re.search(_KEYWORDS[c], r["term"], re.I)]
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
    for state in vocab:
        for code in vocab[state]:
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
    shutil.copyfile(pub / "qof_resolved_snomed.csv", DATA / "resolved_codes.csv")
    for name in ("ltc_qof_snomed", "efi_deficits_snomed", "hfrs_icd10", "charlson_shmi_icd10"):
        shutil.copyfile(cl / f"{name}.csv", DATA / f"rule_{name}.csv")
    for name in ("efi_snomed", "qof_snomed"):
        shutil.copyfile(pub / f"{name}.csv", DATA / f"published_{name}.csv")


def _write(path, rows, fields, header):
    with path.open("w", newline="", encoding="utf-8") as f:
        f.write(header + "\n")
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    build(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve())
