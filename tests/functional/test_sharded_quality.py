"""`casefind quality` on a sharded store gives the report one store of the same patients
gives: rows, completeness, codes, gaps, implausible values with their furthest examples,
quarantine and the end of the data, however many shards (docs/scale-out.md). The source has
contract-breaking rows injected, so quarantine and implausible values have something to count."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tests.functional.test_quality import _inject

from casefind.ingest.sharded import run_sharded_ingest
from casefind.quality import report
from casefind.quality.parts import data_end
from casefind.store import Store
from casefind.store.sharded import ShardedStore, open_any
from casefind_testdata import cli

SHARDS = (1, 3, 4)
OWN = ("store", "snapshot_id", "created", "generated")  # what names the store itself


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """test_quality's faults (a provider missing for a month, costs ten times the unit cost, a
    half-empty column, a hostile provider code) on an extract with contract-breaking rows."""
    root = tmp_path_factory.mktemp("sharded-quality")
    r = cli("synth", "--patients", 3000, "--seed", 4, "--out", root / "src")
    assert r.exit_code == 0, r.output
    _inject(root / "src")
    _unknown_patients(root / "src", 40)
    r = cli("ingest", root / "src", "--store", root / "single")
    assert r.exit_code == 0, r.output
    for n in SHARDS:
        run_sharded_ingest(root / "src", root / f"sh{n}", n)
    return root


def _unknown_patients(src, n: int) -> None:
    """``n`` diagnoses of patients the extract does not hold (quarantined, in whichever shard
    their ids hash to), and diagnosis codes no codelist knows."""
    t = pq.read_table(src / "diagnoses.parquet")
    extra = t.slice(0, n).set_column(t.schema.get_field_index("patient_id"), "patient_id",
                                     pa.array([f"nobody-{i}" for i in range(n)], t.schema.field("patient_id").type))
    t = pa.concat_tables([t, extra])
    odd = pa.array([i % 97 == 0 for i in range(t.num_rows)])  # codes no codelist knows, in every shard
    unknown = pa.array([f"99{i % 7}0000{i % 3}" for i in range(t.num_rows)], t.schema.field("code").type)
    t = t.set_column(t.schema.get_field_index("code"), "code", pc.if_else(odd, unknown, t.column("code")))
    pq.write_table(t, src / "diagnoses.parquet")


def _report(root) -> dict:
    return {k: v for k, v in report.build(open_any(root), report.Options()).items() if k not in OWN}


def test_a_sharded_quality_report_is_the_single_stores(stores):
    want = _report(stores / "single")
    assert want["tables"]["diagnoses"]["quarantined"]["by_reason"] == {"unknown_patient": 40}
    assert want["implausible"] and any(f["examples"] for f in want["implausible"])
    assert want["tables"]["diagnoses"]["codes"]["distinct_unknown"] > 1
    for n in SHARDS:
        assert _report(stores / f"sh{n}") == want, n


def test_the_practices_every_shard_holds_are_counted_once(stores):
    want = _report(stores / "single")["tables"]["practices"]
    got = _report(stores / "sh4")["tables"]["practices"]
    assert got["rows"] == want["rows"] == Store.open(stores / "single").table("practices").num_rows


def test_the_end_of_the_data_is_duckdbs_percentile_of_every_date():
    """quantile_disc(d, 0.999): the date at 0-based position ceil(0.999 n) - 1."""
    import datetime as dt

    import duckdb

    day = dt.date(2025, 1, 1)
    for n in (1, 7, 999, 1000, 1001, 4321):
        dates = [day + dt.timedelta(days=(i * 37) % 400) for i in range(n)]
        want = duckdb.execute("SELECT quantile_disc(d, 0.999) FROM (SELECT unnest(?::DATE[]) AS d)",
                              [dates]).fetchone()[0]
        halves = [{}, {}]
        for i, d in enumerate(dates):
            halves[i % 2][d] = halves[i % 2].get(d, 0) + 1
        assert data_end(halves) == want, n
    assert data_end([{}, {}]) is None


def test_the_cli_reports_a_sharded_store_with_a_trend_against_one_store(stores, tmp_path):
    r = cli("quality", "--store", stores / "sh3", "--against", stores / "single", "--json",
            "--output", tmp_path / "q.html")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["snapshot_id"] == ShardedStore(stores / "sh3").snapshot_id
    assert (tmp_path / "q.html").exists()
    assert got["trend"] is not None
    r = cli("quality", "--store", stores / "single", "--against", stores / "sh3", "--json")
    assert r.exit_code == 0, r.output
