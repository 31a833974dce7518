"""Which codes casefind knows (shipped codelists, the generator's dictionaries, prefixes) and
which cannot be codes at all."""
from __future__ import annotations

import pytest

from casefind.quality.codes import verhoeff_ok, vocabulary, well_formed


@pytest.fixture(scope="module")
def vocab():
    return vocabulary()


@pytest.mark.parametrize("system, code, known", [
    ("snomed", "38341003", True),        # hypertension: QOF cluster and the starter codes
    ("snomed", "271649006", True),       # systolic blood pressure: an observation code the generator writes
    ("snomed", "185317003", True),       # telephone encounter: other_codes.csv (no codelist holds it)
    ("icd10", "I219", True),             # under the prefix I21* (Charlson)
    ("icd10", "I21", True),
    ("opcs4", "K401", True),
    ("bnf", "0206020A0", True),          # amlodipine
    ("snomed", "271807003", False),      # eruption of skin: in no shipped list or dictionary
    ("icd10", "V011", False),            # pedestrian injured: likewise
    ("dmd", "39732311000001104", False),  # no dm+d dictionary ships
    ("icd10", "38341003", False),        # a SNOMED id is not an ICD-10 code
])
def test_known(vocab, system, code, known):
    assert vocab.knows(system, code) is known


def test_a_project_folder_adds_its_codelists(tmp_path):
    assert not vocabulary().knows("snomed", "271807003")
    (tmp_path / "mine_snomed.csv").write_text("code,term\n271807003,Eruption of skin\n")
    (tmp_path / "more.csv").write_text("code,system\nV01*,icd10\n")
    vocab = vocabulary([tmp_path])
    assert vocab.knows("snomed", "271807003") and vocab.knows("icd10", "V011")
    assert str(tmp_path / "more.csv") in vocab.sources


@pytest.mark.parametrize("digits, ok", [
    ("38341003", True), ("44054006", True), ("271649006", True), ("39732311000001104", True),
    ("38341004", False), ("44054007", False), ("83341003", False),
])
def test_verhoeff(digits, ok):
    assert verhoeff_ok(digits) is ok


@pytest.mark.parametrize("system, code, ok", [
    ("snomed", "38341003", True), ("snomed", "38341004", False), ("snomed", "12345", False),
    ("snomed", "038341003", False), ("snomed", "I509", False),
    ("icd10", "I509", True), ("icd10", "I50", True), ("icd10", "I50.9", False), ("icd10", "150", False),
    ("opcs4", "K401", True), ("opcs4", "K40", True), ("opcs4", "K4011", False),
    ("read2", "G30..", True), ("ctv3", "XE0Uh", True), ("read2", "G30", False),
    ("bnf", "0206020A0", True), ("bnf", "0206020A0AAAAAA", True), ("bnf", "A206", False),
    ("dmd", "39732311000001104", True), ("dmd", "39732311000001105", False),
])
def test_well_formed(system, code, ok):
    assert well_formed(system, code) is ok
