"""The synthetic generator: deterministic, contract-conformant, calibrated, and its injected
errors are exactly the ones it reports."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from casefind.contract import INPUT_TABLES, TABLES
from casefind.contract import schema as S
from casefind.contract.nhs_number import valid_mask
from casefind.contract.quarantine import REASONS
from casefind.synth import generate
from casefind.synth._common import load_csv
from casefind.synth.report import calibration_report

N = 50_000


@pytest.fixture(scope="session")
def clean(tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    return generate(N, 1, base / "a")


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    base = tmp_path_factory.mktemp("small")
    return base, generate(3000, 7, base / "x"), generate(3000, 7, base / "y"), generate(3000, 8, base / "z")


@pytest.fixture(scope="session")
def dirty(tmp_path_factory):
    return generate(5000, 3, tmp_path_factory.mktemp("dirty") / "d", inject_errors=0.01)


def _path(res, name):
    sub = "restricted/" if TABLES[name].restricted else ""
    return res.out / f"{sub}{name}.parquet"


def test_deterministic_per_seed(small):
    _, x, y, z = small
    for name in INPUT_TABLES:
        a, b = _path(x, name).read_bytes(), _path(y, name).read_bytes()
        assert a == b, name
    assert _path(x, "activity").read_bytes() != _path(z, "activity").read_bytes()


def test_contract_columns_and_enums(clean):
    # every code comes from the packaged reference data (the vocabularies the generator draws
    # from: full published code sets, resolved codes, background and hospital codes)
    codes = {r["code"] for f in ("codes.csv", "medicines.csv", "observation_codes.csv", "primary_codes.csv",
                                 "resolved_codes.csv", "other_codes.csv", "hospital_codes.csv",
                                 "elective_diagnoses.csv", "opcs4_codes.csv") for r in load_csv(f)}
    for name in INPUT_TABLES:
        t = TABLES[name]
        tbl = pq.read_table(_path(clean, name))
        # the source columns only: derived ones (activity's cips_position, previous_discharge)
        # are ingest's to compute, and a source that has them has them dropped
        assert tuple(tbl.column_names) == tuple(c.name for c in t.source_columns), name
        assert not {c.name for c in t.columns if c.derived} & set(tbl.column_names), name
        assert clean.rows[name] == tbl.num_rows and tbl.num_rows > 0, name
        for c in t.source_columns:
            col = tbl.column(c.name)
            if not c.nullable:
                assert col.null_count == 0, (name, c.name)
            if c.kind == "enum":
                vals = set(pc.unique(col).drop_null().to_pylist())
                assert vals <= set(c.values), (name, c.name, vals - set(c.values))
            if c.kind == "code" or (name == "activity" and c.name == "primary_diagnosis"):
                vals = set(pc.unique(col).drop_null().to_pylist())
                assert vals <= codes, (name, c.name, list(vals - codes)[:5])
    pats = pq.read_table(_path(clean, "patients"))
    ids = pats.column("patient_id").to_pylist()
    assert len(set(ids)) == len(ids) and all(len(i) == 12 for i in ids[:100])
    prac = set(pq.read_table(_path(clean, "practices")).column("practice_code").to_pylist())
    assert set(pc.unique(pats.column("practice_code")).to_pylist()) <= prac


def test_events_within_life(clean):
    pats = pq.read_table(_path(clean, "patients"))
    pid = pats.column("patient_id")
    birth = pats.column("birth_date").cast("int32").to_numpy()
    death = pats.column("death_date").cast("int32").fill_null(10 ** 6).to_numpy()
    for name in ("diagnoses", "activity", "procedures", "medications", "observations", "registers"):
        t = pq.read_table(_path(clean, name))
        i = pc.index_in(t.column("patient_id"), value_set=pid).to_numpy()
        d = t.column(TABLES[name].event_dates[0]).cast("int32").to_numpy()
        assert (d >= birth[i]).all() and (d <= death[i]).all(), name
        for s, e in TABLES[name].ends:
            st = t.column(s).cast("int32").to_numpy()
            en = t.column(e).cast("int32").fill_null(10 ** 6).to_numpy()
            assert (en >= st).all(), name


def test_identities_valid_and_apart(clean):
    ids = pq.read_table(_path(clean, "identities"))
    assert valid_mask(np.array(ids.column("nhs_number").to_pylist())).all()
    assert ids.column("nhs_number").to_pylist()[0].startswith(("999", "998"))
    assert not (clean.out / "identities.parquet").exists()
    for name in S.ANALYSIS_TABLES:
        tbl = pq.read_table(_path(clean, name))
        assert "nhs_number" not in tbl.column_names and "given_name" not in tbl.column_names


def test_calibration(clean):
    rows = calibration_report(clean.out)
    bad = [r for r in rows if not r.ok]
    assert not bad, bad


def test_no_injection_at_rate_zero(clean):
    assert clean.injected == {}
    assert json.loads((clean.out / "_truth" / "injected.json").read_text()) == {}


def test_injection_covers_every_applicable_reason(dirty):
    inj = dirty.injected
    assert json.loads((dirty.out / "_truth" / "injected.json").read_text()) == inj
    assert all(v >= 1 for v in inj.values())
    reasons = {k.split(".")[1] for k in inj}
    assert reasons == set(REASONS)
    expected_extra = {name: sum(v for k, v in inj.items() if k.startswith(name + ".")) for name in INPUT_TABLES}
    # in-place identity faults do not add rows
    expected_extra["identities"] -= sum(inj.get(f"identities.{r}", 0)
                                        for r in ("invalid_nhs_number", "unknown_practice", "missing_value"))
    clean = generate(5000, 3, dirty.out.parent / "c")
    for name in INPUT_TABLES:
        assert dirty.rows[name] == clean.rows[name] + expected_extra[name], name
    pats = pq.read_table(_path(dirty, "patients"))
    assert pats.schema.field("birth_date").type == "string"
