"""casefind dataset: one row per patient of a rule's population, every feature; both engines
the same, several as_of in long form, --columns, the opt-out policy and its metadata, every
output format, and clean errors (exit 2) for the mistakes an analyst makes."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from casefind import __version__
from casefind.engines.base import ENGINES, REFERENCE
from casefind.lists import dataset as ds
from casefind.lists.dataset import dataset, metadata
from casefind.project import rule_files
from casefind.store import Store
from casefind_testdata import cli

ROOT = Path(__file__).parents[2]
RULES = rule_files(ROOT / "rules")
FRAIL = ROOT / "rules" / "frail.yml"
AS_OF = dt.date(2026, 10, 31)


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
    """3,000 synthetic patients, synthesised and ingested as the README does it."""
    root = tmp_path_factory.mktemp("dataset")
    r = cli("synth", "--patients", 3000, "--seed", 11, "--out", root / "src")
    assert r.exit_code == 0, r.output
    r = cli("ingest", root / "src", "--store", root / "store")
    assert r.exit_code == 0, r.output
    return root


@pytest.fixture(scope="module")
def store(pop):
    return pop / "store"


@pytest.fixture(scope="module")
def frail(store):
    return dataset(FRAIL, store)


def same(a: pa.Table, b: pa.Table) -> None:
    """Same columns, types and rows; decimals equal to 1e-9 (relative)."""
    assert a.schema.remove_metadata() == b.schema.remove_metadata()
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if pa.types.is_floating(a.schema.field(name).type):
            bad = [i for i, (u, v) in enumerate(zip(x, y))
                   if not (u == v or (u is not None and v is not None
                                      and math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12)))]
        else:
            bad = [i for i, (u, v) in enumerate(zip(x, y)) if u != v]
        assert not bad, f"{name}: row {bad[0]}: {x[bad[0]]!r} vs {y[bad[0]]!r}"


def opted_out(pop: Path, kinds) -> set[str]:
    """Pseudonymised ids with an opt-out of these kinds (of any date), from the source."""
    t = pq.read_table(pop / "src" / "opt_outs.parquet").to_pylist()
    return {r["patient_id"] for r in t if r["kind"] in kinds}


# --- every engine, every shipped rule -----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("rule", RULES, ids=[p.stem for p in RULES])
def test_every_engine_gives_the_same_dataset(store, rule):
    reference = dataset(rule, store, engine=REFERENCE)
    assert reference.num_rows > 0 and metadata(reference)["engine"] == REFERENCE
    for name in ENGINES:
        if name != REFERENCE:
            mine = dataset(rule, store, engine=name)
            same(mine, reference)
            assert metadata(mine)["engine"] == name


def test_columns_are_typed_keyed_and_complete(frail):
    names = frail.column_names
    assert names[:3] == ["patient_id", "practice", "locality"]
    assert {"age", "sex", "efi", "frailty", "last_admission", "include:recent_crisis",
            "exclude:palliative_care", "eligible"} <= set(names)
    types = {f.name: f.type for f in frail.schema}
    assert types["patient_id"] == pa.string() and types["frailty"] == pa.string()
    assert types["efi"] == pa.float64() and types["emergency_12m"] == pa.int64()
    assert types["last_admission"] == pa.date32() and types["polypharmacy"] == pa.bool_()
    assert types["include:recent_crisis"] == pa.bool_() and types["eligible"] == pa.bool_()
    ids = frail.column("patient_id").to_pylist()
    assert len(set(ids)) == len(ids)  # one row per patient
    assert min(frail.column("age").to_pylist()) >= 65  # the rule's population


def test_every_population_member_is_a_row_unless_opted_out(pop, store, frail):
    everyone = dataset(FRAIL, store, opt_out="none")
    meta = metadata(frail)["counts"][0]
    assert everyone.num_rows == meta["population"]
    gone = set(everyone.column("patient_id").to_pylist()) - set(frail.column("patient_id").to_pylist())
    assert gone == set(everyone.column("patient_id").to_pylist()) & opted_out(pop, ("type1", "ndo"))
    assert len(gone) == meta["excluded_opt_out_total"] > 0


def test_eligible_is_what_a_run_would_list_before_caps(store, tmp_path):
    r = cli("run", FRAIL, "--store", store, "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    manifest = json.loads(next((tmp_path / "out").glob("*/manifest.json")).read_text())
    # a run excludes type 1 opt-outs only; so, with exclude-type1, eligible counts agree
    t = dataset(FRAIL, store, opt_out="exclude-type1")
    eligible = set(t.filter(t.column("eligible")).column("patient_id").to_pylist())
    assert len(eligible) == manifest["counts"]["eligible"]
    listed = pacsv.read_csv(next((tmp_path / "out").glob("*/list.csv")),
                            convert_options=pacsv.ConvertOptions(column_types={"patient_id": pa.string()}))
    assert set(listed.column("patient_id").to_pylist()) <= eligible


# --- several as_of ------------------------------------------------------------------------------

def test_several_as_of_in_long_form(store):
    dates = [dt.date(2026, 4, 30), dt.date(2026, 10, 31)]
    long = dataset(FRAIL, store, as_of=[d.isoformat() for d in dates])
    assert long.column_names[:4] == ["patient_id", "as_of", "practice", "locality"]
    assert long.schema.field("as_of").type == pa.date32()
    as_of = long.column("as_of").to_pylist()
    first = as_of.index(dates[1])
    assert set(as_of[:first]) == {dates[0]} and set(as_of[first:]) == {dates[1]}  # a block per date, in order
    for d in dates:  # each block is that date's dataset
        block = long.filter(pc.equal(long.column("as_of"), d)).drop_columns(["as_of"])
        same(block, dataset(FRAIL, store, as_of=d))
    for engine in ENGINES:  # the default engine made `long`; every other gives the same
        if engine != metadata(long)["engine"]:
            same(long, dataset(FRAIL, store, as_of=dates, engine=engine))
    meta = metadata(long)
    assert meta["as_of"] == [d.isoformat() for d in dates] and len(meta["counts"]) == 2


# --- --columns ------------------------------------------------------------------------------------

def test_columns_picks_some(store, frail):
    t = dataset(FRAIL, store, columns=["efi", "frailty", "imd_decile", "include:recent_crisis", "eligible", "efi"])
    assert t.column_names == ["patient_id", "practice", "locality", "efi", "frailty", "imd_decile",
                              "include:recent_crisis", "eligible"]
    assert t.schema.field("imd_decile").type == pa.int64()
    for name in ("patient_id", "efi", "frailty", "include:recent_crisis", "eligible"):
        assert t.column(name).to_pylist() == frail.column(name).to_pylist(), name


def test_an_unknown_column_is_a_usage_error_with_a_suggestion(store, tmp_path):
    r = cli("dataset", FRAIL, "--store", store, "--output", tmp_path / "x.parquet", "--columns", "efi,frailtyy")
    assert r.exit_code == 2, r.output
    assert "--columns" in r.output and "frailtyy" in r.output and "did you mean 'frailty'" in r.output
    assert not (tmp_path / "x.parquet").exists()


# --- the opt-out policy and the metadata --------------------------------------------------------

def test_opt_out_policies(pop, store):
    def ids(policy):
        return set(dataset(FRAIL, store, opt_out=policy, columns=["efi"]).column("patient_id").to_pylist())

    default, type1_only, none = ids("exclude-ndo-and-type1"), ids("exclude-type1"), ids("none")
    ndo, type1 = opted_out(pop, ("ndo",)), opted_out(pop, ("type1",))
    assert ndo & none and type1 & none  # the population has both kinds
    assert not default & (ndo | type1)  # by default both are left out
    assert not type1_only & type1 and (ndo - type1) & none <= type1_only
    assert none == default | (none & (ndo | type1))  # none keeps everyone
    with pytest.raises(ds.UsageError, match="--opt-out") as e:
        dataset(FRAIL, store, opt_out="nonee")
    assert e.value.hint == "did you mean 'none'?"


def test_an_opt_out_excludes_the_patient_from_earlier_as_of_too(pop, store):
    """Used now: an opt-out made after an as_of still keeps the patient out of its block."""
    rule, then = ROOT / "rules" / "segments.yml", dt.date(2026, 4, 30)
    t = pq.read_table(pop / "src" / "opt_outs.parquet").to_pylist()
    later = {r["patient_id"] for r in t if r["date"] > then}
    everyone = set(dataset(rule, store, as_of=then, opt_out="none", columns=["segment"])
                   .column("patient_id").to_pylist())
    assert later & everyone  # some in the population then opted out afterwards
    long = dataset(rule, store, as_of=[then, AS_OF], columns=["segment"])
    assert not set(long.column("patient_id").to_pylist()) & later
    counts = metadata(long)["counts"]
    assert counts[0]["excluded_opt_out_total"] >= len(later & everyone)


def test_metadata_says_how_it_was_made(store, frail):
    meta = metadata(frail)
    assert meta["rule"] == "frail" and meta["rule_version"] == "1.1.0"
    assert meta["rule_sha256"] == hashlib.sha256(FRAIL.read_bytes()).hexdigest()
    assert meta["store_snapshot"] == Store.open(store).snapshot_id
    assert meta["as_of"] == ["2026-10-31"] and meta["engine"] == "native"
    assert meta["casefind_version"] == __version__
    assert meta["opt_out"]["policy"] == "exclude-ndo-and-type1"
    assert meta["opt_out"]["excluded_kinds"] == ["type1", "ndo"]
    assert "national data opt-out" in meta["opt_out"]["statement"]
    assert "population decides" in meta["population"]
    c = meta["counts"][0]
    assert c["rows"] == frail.num_rows == c["population"] - c["excluded_opt_out_total"]
    assert set(c["excluded_opt_out"]) == {"type1", "ndo"}
    assert [x["name"] for x in meta["columns"]] == frail.column_names
    opened = dataset(FRAIL, Store.open(store))  # an open store does as well as its folder
    same(opened, frail)
    assert metadata(opened)["store"] == meta["store"]


# --- output formats -----------------------------------------------------------------------------

def _read(path: Path, schema: pa.Schema) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    if path.suffix == ".feather":
        return feather.read_table(path)
    if path.suffix == ".arrow":
        with pa.memory_map(str(path)) as f:
            return pa.ipc.open_file(f).read_all()
    types = {f.name: f.type for f in schema}
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".arrow", ".feather"])
def test_every_output_format_round_trips(store, frail, tmp_path, ext):
    out = tmp_path / f"frail{ext}"
    r = cli("dataset", FRAIL, "--store", store, "--output", out)
    assert r.exit_code == 0, r.output
    assert f"{frail.num_rows:,} rows" in r.output and "frail" in r.output
    back = _read(out, frail.schema)
    same(back, frail)
    meta = metadata(out)
    assert meta["rule"] == "frail" and meta["counts"] == metadata(frail)["counts"]
    if ext == ".csv":
        assert (tmp_path / "frail.csv.meta.json").exists()
    written = [out.name] + (["frail.csv.meta.json"] if ext == ".csv" else [])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)  # no temporary file left


def test_csv_is_spreadsheet_safe(store, tmp_path):
    t = pa.table({"patient_id": ["a"], "note": ["=HYPERLINK(\"x\")"]}).replace_schema_metadata(
        {"casefind": json.dumps({"rule": "x"})})
    ds.write(t, tmp_path / "t.csv")
    assert "'=HYPERLINK" in (tmp_path / "t.csv").read_text()


# --- mistakes: exit 2, nothing written ----------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--output", "{tmp}/frail.xlsx"], ["--output", ".xlsx"]),
    (["--output", "{tmp}/no/such/folder/frail.parquet"], ["--output", "does not exist"]),
    (["--output", "{tmp}/frail.parquet", "--as-of", "2031-01-31"], ["--as-of", "outside the store's data"]),
    (["--output", "{tmp}/frail.parquet", "--as-of", "2026-13-01"], ["--as-of", "YYYY-MM-DD"]),
    (["--output", "{tmp}/frail.parquet", "--opt-out", "ndo"], ["--opt-out"]),
    (["--output", "{tmp}/frail.parquet", "--columns", ","], ["--columns"]),
])
def test_mistakes_are_clean_usage_errors(store, tmp_path, args, words):
    r = cli("dataset", FRAIL, "--store", store, *[a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    for w in words:
        assert w in r.output, (w, r.output)
    assert "Traceback" not in r.output and "unexpectedly" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_a_partly_covered_date_needs_allow_partial(store, tmp_path):
    out = tmp_path / "f.parquet"
    r = cli("dataset", FRAIL, "--store", store, "--output", out, "--as-of", "2026-11-30")
    assert r.exit_code == 2 and "--allow-partial" in r.output and not out.exists()
    r = cli("dataset", FRAIL, "--store", store, "--output", out, "--as-of", "2026-11-30", "--allow-partial")
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and metadata(out)["coverage"]["partial"]


@pytest.mark.parametrize("ext", [".parquet", ".csv"])
def test_a_failed_write_leaves_the_earlier_file(store, tmp_path, monkeypatch, ext):
    out = tmp_path / f"frail{ext}"
    assert cli("dataset", FRAIL, "--store", store, "--output", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    if ext == ".parquet":
        monkeypatch.setattr(ds.pq, "write_table", broken)
    else:
        monkeypatch.setattr("casefind.outputs.pacsv.write_csv", broken)
    r = cli("dataset", FRAIL, "--store", store, "--output", out, "--as-of", "2026-09-30")
    assert r.exit_code == 1 and "No space left" in r.output, r.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file left either


# --- the docs page's Python examples run --------------------------------------------------------

DOC = (ROOT / "docs" / "datasets.md").read_text()
PYTHON = [m.group(1) for m in re.finditer(r"```python\n(.*?)```", DOC, re.S)]


def test_docs_have_python_examples():
    assert len(PYTHON) >= 2 and any("to_pandas" in b for b in PYTHON) and any("polars" in b for b in PYTHON)


@pytest.mark.parametrize("i", range(len(PYTHON)))
def test_docs_python_example_runs(store, tmp_path, monkeypatch, i):
    code = PYTHON[i]
    for module, signs in {"pandas": ("import pandas", "to_pandas"), "polars": ("import polars",)}.items():
        if any(s in code for s in signs):
            pytest.importorskip(module)
    (tmp_path / "rules").symlink_to(ROOT / "rules")
    (tmp_path / "pop").symlink_to(store)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/datasets.md example {i + 1}", "exec"), {"__name__": "docs_example"})
