"""The shipped codelists against the provenance that says where they came from.

Every CSV under rules/codelists/ with a ``.provenance.json`` sidecar holds exactly what its
sidecar records of the source: the eFI sets (efi_snomed/read2/ctv3.csv) are the GM-SDE
clinical code sets, UoM-Data-Science-Platforms/gm-sde @ 6cf10afc0d745a557b2e8dd7e0b1d4b61ea40e42,
shared/clinical-code-sets/{conditions,patient}/efi-*/1/ (35 deficits; SNOMED CT 2,089 rows,
2,040 distinct codes); the QOF sets (qof_snomed.csv, qof_resolved_snomed.csv) are the NHS
England primary care domain refset clusters as published on OpenCodelists
(nhsd-primary-care-domain-refsets/<cluster>), from the copies in the OpenSAFELY repositories
the sidecars name (2,914 diagnosis rows in 19 clusters; 35 resolved rows in 9 clusters).
The loader attaches each sidecar and the file's digest; a rule reads an OpenCodelists
download as it is; `casefind codelists check` shows codes seen and never seen in a store."""
from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from casefind.ingest import run_ingest
from casefind.rules import ir
from casefind.rules.codelists import codelist_manifest
from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError
from casefind.store import Store
from casefind_testdata import cli, write_source
from casefind_testdata import synthetic_store as make_store
from spec_helpers import ENGINES, PRACTICES, patient

ROOT = Path(__file__).parents[2]
CODELISTS = ROOT / "rules" / "codelists"
SIDECARS = sorted(CODELISTS.rglob("*.provenance.json"))


def rows_of(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path, newline="", encoding="utf-8")))


def test_the_published_sets_have_sidecars():
    assert {p.name for p in SIDECARS} >= {f"{n}.provenance.json" for n in
                                          ("efi_snomed", "efi_read2", "efi_ctv3", "qof_snomed", "qof_resolved_snomed")}


@pytest.mark.parametrize("sidecar", SIDECARS, ids=[p.name for p in SIDECARS])
def test_shipped_counts_equal_the_provenance(sidecar):
    """Rows, distinct codes, and rows and distinct codes per category (per cluster for the
    QOF files) are what the sidecar records from the source."""
    prov = json.loads(sidecar.read_text())
    path = sidecar.with_name(sidecar.name.removesuffix(".provenance.json") + ".csv")
    assert prov["file"] == path.name
    rows = rows_of(path)
    counts = prov["counts"]
    assert len(rows) == counts["total_rows"]
    assert len({r["code"] for r in rows}) == counts["total_distinct_codes"]
    per_category = Counter(r["category"] for r in rows)
    distinct = {c: len({r["code"] for r in rows if r["category"] == c}) for c in per_category}
    recorded = {c: (v["distinct_codes"] if isinstance(v, dict) else v) for c, v in counts["per_category"].items()}
    assert dict(per_category) == recorded  # one row per (code, category)
    assert distinct == recorded
    if "per_cluster" in counts:  # QOF: a row may name two clusters, "strk_cod;tia_cod"
        per_cluster = Counter(c for r in rows for c in r["cluster"].split(";"))
        assert dict(per_cluster) == counts["per_cluster"]
        assert {k: v["codes"] for k, v in prov["clusters"].items()} == counts["per_cluster"]
        for condition, entry in prov["conditions"].items():
            assert per_category.get(condition, 0) == entry["rows_in_csv"], condition
    if "mapping" in prov:  # eFI: the 35 deficits, each from its GM-SDE set
        assert {m["category"] for m in prov["mapping"]} == set(per_category) and len(per_category) == 35
    for key in ("source", "release", "date_retrieved", "licence"):
        assert prov.get(key), key


def test_the_loader_attaches_provenance_and_digest():
    rule = compile_rule(ROOT / "rules" / "frail.yml")
    cl = rule.codelists["efi"]
    path = CODELISTS / "published" / "efi_snomed.csv"
    assert cl.file == "codelists/published/efi_snomed.csv"
    assert cl.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    prov = dict(cl.provenance)
    sidecar = path.with_name("efi_snomed.provenance.json")
    assert prov["source"]["repository"] == "UoM-Data-Science-Platforms/gm-sde"
    assert prov["source"]["commit"] == "6cf10afc0d745a557b2e8dd7e0b1d4b61ea40e42"
    assert prov["date_retrieved"] == "2026-12-01" and prov["licence"].startswith("not stated")
    assert prov["counts"]["total_rows"] == 2089
    assert prov["sidecar"] == sidecar.name
    assert prov["sidecar_sha256"] == hashlib.sha256(sidecar.read_bytes()).hexdigest()
    # provenance is a record, not meaning: the same codes are the same codelist (engines key by it)
    bare = ir.Codelist(cl.name, cl.system, cl.codes, cl.prefixes, cl.categories, cl.weights)
    assert bare == cl and hash(bare) == hash(cl) and repr(bare) == repr(cl)

    m = codelist_manifest(rule)["efi"]
    assert m == {"file": "codelists/published/efi_snomed.csv", "digest": cl.digest, "system": "snomed",
                 "rows": 2089, "codes": 2040, "prefixes": 0, "categories": 35, "selected_categories": None,
                 "provenance": {**prov, "counts": {"total_rows": 2089, "total_distinct_codes": 2040}}}
    json.dumps(m)  # a run manifest can record it as it is (per-category counts stay in the pinned sidecar)
    assert len(prov["counts"]["per_category"]) == 35  # the codelist itself keeps them

    mm = codelist_manifest(compile_rule(ROOT / "rules" / "multimorbidity.yml"))
    assert mm["dm_cod"]["selected_categories"] == ["diabetes"] and mm["dm_cod"]["codes"] == 86
    assert mm["cancer_starter"]["provenance"] is None  # the starter list has no sidecar


def _rules_folder(tmp_path: Path, files: dict[str, str | bytes], codelists: str, features: str) -> Path:
    (tmp_path / "codelists").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = tmp_path / "codelists" / name
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    rule = tmp_path / "rule.yml"
    rule.write_text(f'rule: t\nas_of: "2026-10-31"\ncodelists:\n{codelists}features:\n{features}')
    return rule


def test_a_sidecar_that_does_not_describe_its_file_is_refused(tmp_path):
    csv_text = "code,system,category\n1,snomed,a\n2,snomed,b\n"
    rule = _rules_folder(tmp_path, {"x.csv": csv_text, "x.provenance.json": '{"counts": {"total_rows": 3}}'},
                         "  x: codelists/x.csv\n", "  n: count(diagnoses, codelist=x)\n")
    with pytest.raises(RuleError, match=re.escape("records 3 rows but codelists/x.csv has 2")) as e:
        compile_rule(rule)
    assert e.value.span.file.endswith("x.provenance.json") and "update the sidecar" in e.value.hint
    (tmp_path / "codelists" / "x.provenance.json").write_text('{"source": "here",\n "licence": }\n')
    with pytest.raises(RuleError, match="not valid JSON") as e:
        compile_rule(rule)
    assert (e.value.span.line, e.value.span.col) == (2, 13)
    (tmp_path / "codelists" / "x.provenance.json").write_text(
        '{"source": "a spreadsheet", "counts": {"total_rows": 2}}')
    cl = compile_rule(rule).codelists["x"]
    assert dict(cl.provenance)["source"] == "a spreadsheet"


# OpenCodelists downloads, byte for byte as OpenCodelists writes them (CRLF line ends): a SNOMED
# CT codelist is code,term; a dm+d codelist from before its codes were mapped is
# dmd_type,dmd_id,dmd_name,bnf_code (the layout in OpenCodelists' own test fixtures).
SNOMED_DOWNLOAD = ("code,term\r\n195967001,Asthma\r\n389145006,Allergic asthma\r\n"
                   "233678006,Childhood asthma\r\n")
DMD_DOWNLOAD = ("dmd_type,dmd_id,dmd_name,bnf_code\r\n"
                "VMP,10514511000001106,Adrenaline (base) 220micrograms/dose inhaler,0301012A0AAABAB\r\n"
                "VMP,10525011000001107,Adrenaline (base) 220micrograms/dose inhaler refill,0301012A0AAACAC\r\n")


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_an_opencodelists_download_is_read_as_it_is(tmp_path, engine):
    rule = _rules_folder(
        tmp_path / "rules", {"asthma.csv": SNOMED_DOWNLOAD, "adrenaline.csv": DMD_DOWNLOAD},
        "  asthma: {file: codelists/asthma.csv, system: snomed}\n"
        "  adrenaline: {file: codelists/adrenaline.csv, system: dmd, column: dmd_id}\n",
        "  asthma_coded: exists(diagnoses, codelist=asthma)\n"
        "  adrenaline_issued: count(medications, codelist=adrenaline)\n")
    compiled = compile_rule(rule)
    assert compiled.codelists["adrenaline"].codes == ("10514511000001106", "10525011000001107")
    assert compiled.codelists["asthma"].codes == ("195967001", "389145006", "233678006")
    assert compiled.codelists["asthma"].categories == ()  # a category column is optional
    tables = {"practices": PRACTICES, "patients": [patient("a"), patient("b")],
              "diagnoses": [("a", "2020-01-01", "snomed", "389145006", "primary_care"),
                            ("b", "2020-01-01", "snomed", "38341003", "primary_care")],
              "medications": [("a", "2026-01-01", "dmd", "10525011000001107", "1"),
                              ("a", "2026-02-01", "dmd", "10514511000001106", "1"),
                              ("b", "2026-01-01", "bnf", "0301012A0AAABAB", "1")]}  # a BNF code is not a dm+d code
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    store = Store.open(tmp_path / "store")
    out = ENGINES[engine].evaluate(store, compiled.features, compiled.as_of, compiled.population).to_pylist()
    ids = store.table("patients")["patient_id"].tolist()
    got = {ids[r["patient"]]: (r["asthma_coded"], r["adrenaline_issued"]) for r in out}
    assert got == {"a": (True, 2), "b": (False, 0)}


@pytest.mark.parametrize("entry,words,hint", [
    ("{file: codelists/adrenaline.csv, column: dmd_id}", "must say its code system", "system: snomed, column: dmd_id"),
    ("{file: codelists/adrenaline.csv, system: dmd, column: dmd_code}", "has no column 'dmd_code'",
     "did you mean 'dmd_id'?"),
    ("{file: codelists/adrenaline.csv, system: dmd}", "needs a 'code' column", "column: dmd_id"),
    ("{file: codelists/asthma.csv}", "does not say its code system", "add system: snomed"),
    ("{file: codelists/asthma.csv, system: snomed, category: asthma}", "category: needs a category column", None),
    ("{file: codelists/asthma.csv, system: snomed, colum: code}", "unknown key 'colum'", "did you mean 'column'?"),
    ("{system: snomed, codes: ['1'], column: code}", "column: is for a CSV file", None),
])
def test_a_download_the_rule_does_not_describe_is_refused_at_its_entry(tmp_path, entry, words, hint):
    rule = _rules_folder(tmp_path, {"asthma.csv": SNOMED_DOWNLOAD, "adrenaline.csv": DMD_DOWNLOAD},
                         f"  c: {entry}\n", "  n: count(medications, codelist=c)\n")
    with pytest.raises(RuleError, match=words) as e:
        compile_rule(rule)
    assert (e.value.span.file, e.value.span.line) == (str(rule), 4)
    if hint:
        assert hint in e.value.hint


def test_category_selection_names_categories_of_the_file(tmp_path):
    files = {"q.csv": "code,system,category\n1,snomed,diabetes\n2,snomed,asthma\n3,snomed,diabetes\n"}
    rule = _rules_folder(tmp_path, files, "  dm: {file: codelists/q.csv, category: diabetes}\n"
                                          "  both: {file: codelists/q.csv, category: [diabetes, asthma]}\n",
                         "  n: count(diagnoses, codelist=dm)\n")
    c = compile_rule(rule).codelists
    assert c["dm"].codes == ("1", "3") and c["dm"].selected == ("diabetes",)
    assert c["both"].codes == ("1", "2", "3")
    rule.write_text(rule.read_text().replace("category: diabetes}", "category: diabetis}"))
    with pytest.raises(RuleError, match="has no category 'diabetis'") as e:
        compile_rule(rule)
    assert e.value.hint == "did you mean 'diabetes'?"


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("codelists_check"), 2000, 3)


def test_codelists_check_names_seen_and_unseen_codes(synthetic_store):
    rule = ROOT / "rules" / "frail.yml"
    r = cli("codelists", "check", rule, "--store", synthetic_store)
    assert r.exit_code == 0, r.output
    report = json.loads(cli("codelists", "check", rule, "--store", synthetic_store, "--json").output)
    (efi,) = report["codelists"]
    dictionary = set(Store.open(synthetic_store).dictionary("code.snomed").tolist())
    codes = {row["code"] for row in rows_of(CODELISTS / "published" / "efi_snomed.csv")}
    assert efi["codes"] == len(codes) == 2040
    assert efi["codes_seen"] == len(codes & dictionary) and 0 < efi["codes_seen"] < efi["codes"]
    assert set(efi["codes_never_seen"]) == codes - dictionary
    assert efi["categories"] == 35 and efi["provenance"]["date_retrieved"] == "2026-12-01"
    for words in ("seen", "never", f"{efi['codes_seen']:,}", f"{len(codes - dictionary):,}", "gm-sde",
                  "2026-12-01", "not stated"):
        assert words in r.output, words
