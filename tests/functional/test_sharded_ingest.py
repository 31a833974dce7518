"""``ingest --shards N``: a sharded store holds exactly the single store's patients and rows,
split by the patient's hash, and is swapped in atomically (docs/scale-out.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from casefind.errors import CasefindError, UsageError
from casefind.ingest import sharded
from casefind.ingest.sharded import ingest_store, run_sharded_ingest, summary_json
from casefind.store import Store, StoreError
from casefind.store.identities import open_identities
from casefind.store.shards import MANIFEST, read_manifest, shard_of
from casefind_testdata import GOOD, cli, write_source

N_SHARDS = 3
RULES = Path(__file__).parents[2] / "rules"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    r = cli("synth", "--patients", 600, "--seed", 5, "--out", root / "src", "--inject-errors", 0.02)
    assert r.exit_code == 0, r.output
    single = root / "single"
    assert cli("ingest", root / "src", "--store", single).exit_code == 0
    summary = run_sharded_ingest(root / "src", root / "sharded", N_SHARDS)
    return root, Store.open(single), summary


def _shards(root):
    m = read_manifest(root / "sharded")
    return m, [Store.open(root / "sharded" / s.folder) for s in m.shards]


def _ids(store) -> list[str]:
    return store.table("patients").arrow.column("patient_id").to_pylist()


def test_every_patient_is_in_exactly_one_shard_the_one_its_hash_names(built):
    root, single, _ = built
    manifest, shards = _shards(root)
    assert manifest.n_shards == N_SHARDS and manifest.patients == single.n_patients
    seen = [pid for s in shards for pid in _ids(s)]
    assert sorted(seen) == sorted(_ids(single)) and len(set(seen)) == len(seen)
    for k, s in enumerate(shards):
        assert set(shard_of(_ids(s), N_SHARDS).tolist()) == {k}
        assert s.n_patients == manifest.shards[k].patients > 0


def test_rows_per_table_add_up_to_the_single_store(built):
    root, single, summary = built
    manifest, _ = _shards(root)
    for name, meta in single.manifest["tables"].items():
        if meta.get("file") is None:
            continue
        per_shard = [s.rows[name] for s in manifest.shards]
        want = [meta["rows"]] * N_SHARDS if name == "practices" else meta["rows"]  # practices: in every shard
        assert (per_shard if name == "practices" else sum(per_shard)) == want, name
    for name, t in single.manifest["ingest"].items():  # the summary adds up as one ingest's
        assert (summary.tables[name].read, summary.tables[name].stored) == (t["read"], t["stored"]), name
        assert summary.tables[name].quarantined == t["quarantined"], name
    assert summary.quarantined_total > 0  # the injected errors are quarantined in the shards too


def _rows(store, table: str, pid: str, columns: list[str]) -> list[tuple]:
    """One patient's rows, decoded (codes and text through the store's own dictionaries)."""
    p = _ids(store).index(pid)
    t = store.table(table)
    lo, hi = t.offsets[p], t.offsets[p + 1]
    out = []
    for c in columns:
        v = t[c][lo:hi]
        enc = t.encodings[c]
        if enc["kind"] == "code":  # the code system is fixed, or named per row by another column
            names = list(enc["dictionaries"].values())
            which = t[enc["system_column"]][lo:hi] if enc["system_column"] else np.zeros(len(v), int)
            v = np.array([store.dictionary(names[w])[x] if x >= 0 else None for w, x in zip(which, v, strict=True)])
        elif enc["kind"] == "spell":  # numbered per store: compare the source's spell ids
            v = store.spell_ids(v)
        elif enc["kind"] == "text":
            v = store.dictionary(enc["dictionary"])[v]
        out.append(v.tolist())
    return sorted(zip(*out, strict=True), key=repr)


def test_the_quarantine_is_the_single_stores_with_the_deliverys_row_numbers(built):
    """Each shard's quarantined rows, put together, are the single store's: the same rows as
    the source gave them, reasons and columns, numbered by their row in the delivery (not in
    the shard's part of it). Practices, copied into every shard, are shard 0's."""
    root, single, _ = built
    _, shards = _shards(root)
    keys = [("_source_row", "ascending"), ("_reason", "ascending")]
    seen = 0
    for name in single.manifest["tables"]:
        want = single.quarantine(name)
        if not want.num_rows:
            continue
        pieces = [s.quarantine(name) for s in (shards[:1] if name == "practices" else shards)]
        got = pa.concat_tables([p for p in pieces if p.num_rows])
        assert got.sort_by(keys).equals(want.sort_by(keys)), name
        seen += want.num_rows
    assert seen > 50  # the injected errors, of every kind


def test_each_patients_rows_equal_the_single_stores(built):
    root, single, _ = built
    _, shards = _shards(root)
    checks = {"activity": ["start_date", "end_date", "setting", "cost", "spell_id", "cips_position"],
              "medications": ["date", "code", "quantity"], "observations": ["date", "value"]}
    for s in shards:
        for pid in _ids(s)[::40]:
            for table, columns in checks.items():
                assert _rows(s, table, pid, columns) == _rows(single, table, pid, columns), (table, pid)


def test_the_summary_and_shard_manifests(built):
    root, _, summary = built
    manifest, shards = _shards(root)
    out = summary_json(summary)
    assert out["snapshot_id"] == manifest.snapshot_id and out["store"] == str(root / "sharded")
    assert [s["snapshot_id"] for s in out["shards"]] == [s.snapshot_id for s in shards]
    assert [s["folder"] for s in out["shards"]] == [s.folder for s in manifest.shards]
    for k, s in enumerate(shards):
        assert s.manifest["source"]["path"] == str((root / "src").resolve())  # not the split
        assert s.manifest["shard"] == {"id": k, "n_shards": N_SHARDS, "hash": "sha256-8-mod"}
        pids = set(_ids(s))
        assert set(open_identities(s.root).column("patient_id").to_pylist()) <= pids  # each its own
    assert not [p for p in (root / "sharded").iterdir() if p.name.startswith(".building-")]


def test_reingest_gives_the_same_shards_and_a_new_patient_moves_nobody(built, tmp_path):
    root, _, _ = built
    before, shards = _shards(root)
    ids_before = [_ids(s) for s in shards]  # read now: the old folders go after the swap
    again = run_sharded_ingest(root / "src", root / "sharded", N_SHARDS)
    after, shards_again = _shards(root)
    assert again.snapshot_id == after.snapshot_id == before.snapshot_id  # same content, same ids
    assert after.generations != before.generations
    assert [_ids(s) for s in shards_again] == ids_before
    assert [p.name for p in (root / "sharded").iterdir() if p.name.startswith("shards-")] == \
        [next(iter(after.generations))]  # the previous generation was removed after the swap
    src = tmp_path / "src"
    src.mkdir()
    for f in (root / "src").glob("*.parquet"):
        (src / f.name).write_bytes(f.read_bytes())
    patients = pq.read_table(src / "patients.parquet")
    extra = patients.slice(0, 5).set_column(0, "patient_id", pa.array([f"new-{i}" for i in range(5)]))
    pq.write_table(pa.concat_tables([patients, extra]), src / "patients.parquet")
    run_sharded_ingest(src, tmp_path / "grown", N_SHARDS)
    grown = [Store.open(tmp_path / "grown" / s.folder) for s in read_manifest(tmp_path / "grown").shards]
    for old, new in zip(ids_before, grown, strict=True):
        assert set(old) <= set(_ids(new))
    assert sum(s.n_patients for s in grown) == sum(map(len, ids_before)) + 5


def test_a_failure_while_building_shard_2_leaves_the_previous_store(built, monkeypatch):
    root, _, _ = built
    store = root / "sharded"
    manifest_bytes = (store / MANIFEST).read_bytes()
    before, shards = _shards(root)
    calls = []

    def failing(source, shard_store, **kw):
        calls.append(shard_store)
        if len(calls) == 2:
            (shard_store / "half-written").parent.mkdir(parents=True, exist_ok=True)
            raise OSError("disk full")
        return real(source, shard_store, **kw)

    real = sharded.run_ingest
    monkeypatch.setattr(sharded, "run_ingest", failing)
    with pytest.raises(OSError, match="disk full"):
        run_sharded_ingest(root / "src", store, N_SHARDS)
    assert len(calls) == 2
    assert (store / MANIFEST).read_bytes() == manifest_bytes
    assert sorted(p.name for p in store.iterdir()) == sorted([".lock", MANIFEST, *before.generations])
    ids_root = store.with_name("sharded-identities")
    assert sorted(p.name for p in ids_root.iterdir()) == sorted(before.generations)
    after = [Store.open(store / s.folder) for s in read_manifest(store).shards]
    assert [s.snapshot_id for s in after] == [s.snapshot_id for s in shards]
    assert all(len(open_identities(s.root)) for s in after)  # their identities untouched


def test_commands_that_read_a_store_read_a_sharded_one(built):
    """Every command opens its store with open_any; the one that shows a store's make-up says
    it is sharded, and one that prints a plan shows shard 000's."""
    root, _, _ = built
    for args in (("explain", "frail"), ("codelists", "check", "frail"), ("quality",), ("info",)):
        r = cli(*args, "--store", root / "sharded")
        assert r.exit_code == 0, (args, r.output)
        assert "Traceback" not in r.output
    assert "shown on shard 000" in cli("explain", "frail", "--store", root / "sharded").output


@pytest.mark.parametrize("n", [0, -1, 1025])
def test_zero_negative_or_too_many_shards_are_usage_errors(tmp_path, n):
    src = write_source(tmp_path / "src", GOOD)
    with pytest.raises(UsageError, match="--shards: must be from 1 to 1024"):
        ingest_store(src, tmp_path / "s", shards=n)
    with pytest.raises(UsageError, match="from 1 to 1024 shards"):
        run_sharded_ingest(src, tmp_path / "s", n)
    assert not (tmp_path / "s").exists()


def test_one_shard_is_todays_single_store(tmp_path):
    src = write_source(tmp_path / "src", GOOD)
    s = ingest_store(src, tmp_path / "s", shards=1)
    assert Store.open(tmp_path / "s").snapshot_id == s.snapshot_id and "shards" not in summary_json(s)


def test_identities_and_practices_go_with_their_shards(tmp_path):
    src = write_source(tmp_path / "src", GOOD)  # p1, p3 in shard 1, p2 in shard 0 (of 2)
    run_sharded_ingest(src, tmp_path / "s", 2, identities_store=tmp_path / "ids")
    shards = [Store.open(tmp_path / "s" / e.folder) for e in read_manifest(tmp_path / "s").shards]
    assert [sorted(_ids(s)) for s in shards] == [["p2"], ["p1", "p3"]]
    assert [s.manifest["counts"]["practices"] for s in shards] == [2, 2]
    assert [sorted(open_identities(s.root).column("patient_id").to_pylist()) for s in shards] == [["p2"], ["p1"]]
    assert np.all(shards[1].table("diagnoses").offsets[-1] == 2)  # p1's two diagnoses


def test_refusals_before_anything_is_built(tmp_path):
    src = write_source(tmp_path / "src", GOOD)
    with pytest.raises(UsageError, match="3 shards for 3 patient row"):  # p1 0, p2 1, p3 1: shard 2 empty
        run_sharded_ingest(src, tmp_path / "s", 3)
    assert not (tmp_path / "s").exists()
    assert cli("ingest", src, "--store", tmp_path / "single").exit_code == 0
    with pytest.raises(StoreError, match="is a single store"):
        run_sharded_ingest(src, tmp_path / "single", 2)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty and is not a casefind store"):
        run_sharded_ingest(src, tmp_path / "odd", 2)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        run_sharded_ingest(src, tmp_path / "file", 2)


def _bad_birth_dates(*which: int) -> dict:
    return {**GOOD, "patients": [(p[0], "bad-date", *p[2:]) if i in which else p
                                 for i, p in enumerate(GOOD["patients"])]}


def test_a_shards_error_names_the_shard(tmp_path):
    src = write_source(tmp_path / "src", _bad_birth_dates(0))  # p1, in shard 2 of 2
    with pytest.raises(CasefindError, match=r"^shard 2 of 2: --strict: 9 row\(s\) broke the contract"):
        run_sharded_ingest(src, tmp_path / "s", 2, strict=True)
    assert not (tmp_path / "s").exists() and not (tmp_path / "s-identities").exists()


def test_strict_checks_every_shard_and_counts_what_one_store_would(tmp_path):
    """Bad rows in both shards (every diagnosis's date: p1's in shard 2, p2's in shard 1):
    the refusal names both and counts every bad row of the source, as a single store's
    --strict does, and the CLI prints the whole summary."""
    src = write_source(tmp_path / "src", {**GOOD, "diagnoses": [(d[0], "bad-date", *d[2:]) for d in GOOD["diagnoses"]]})
    single = cli("ingest", src, "--store", tmp_path / "one", "--strict", "--json")
    assert single.exit_code != 0 and not (tmp_path / "one").exists()
    want = json.loads(single.stdout[single.stdout.index("{"):])
    with pytest.raises(CasefindError, match=rf"^shards 1, 2 of 2: --strict: {want['quarantined_total']} row\(s\)"):
        run_sharded_ingest(src, tmp_path / "s", 2, strict=True)
    r = cli("ingest", src, "--store", tmp_path / "s", "--shards", 2, "--strict", "--json")
    assert r.exit_code == single.exit_code and "Traceback" not in r.output
    got = json.loads(r.stdout[r.stdout.index("{"):])
    assert got["tables"] == want["tables"] and got["quarantined_total"] == want["quarantined_total"] > 0
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("n", ["0", "-1", "1025", str(10**20)])
def test_the_cli_refuses_zero_negative_or_too_many_shards(tmp_path, n):
    r = cli("ingest", tmp_path, "--store", tmp_path / "s", "--shards", n)
    assert r.exit_code == 2 and "--shards" in r.output, r.output
    assert not (tmp_path / "s").exists()


def test_ingest_json_and_info_through_the_cli(built, tmp_path):
    """The CLI's ingest --shards --json names every shard; info shows the manifest, table and JSON."""
    root = built[0]
    r = cli("ingest", root / "src", "--store", tmp_path / "s", "--shards", "2", "--json")
    assert r.exit_code == 0, r.output
    import json

    said = json.loads(r.stdout)
    assert len(said["shards"]) == 2
    info = cli("info", "--store", tmp_path / "s", "--json")
    assert info.exit_code == 0, info.output
    body = json.loads(info.stdout)
    assert body["sharded"] is True and body["shards"]["n_shards"] == 2 and "settings" in body
    table = cli("info", "--store", tmp_path / "s")
    assert table.exit_code == 0 and "shard" in table.output.lower(), table.output


def test_the_split_streams_in_batches_and_gives_the_same_shards(built, tmp_path, monkeypatch):
    """Batches of 97 rows (the split holds one at a time): the same shards, to the snapshot id."""
    from casefind.ingest import stream

    root, _, _ = built
    monkeypatch.setattr(stream, "BATCH_ROWS", 97)
    run_sharded_ingest(root / "src", tmp_path / "batched", N_SHARDS)
    want = [s.snapshot_id for s in read_manifest(root / "sharded").shards]
    assert [s.snapshot_id for s in read_manifest(tmp_path / "batched").shards] == want


def _as_csv(src, out):
    import pyarrow.csv as pacsv

    for path in src.rglob("*.parquet"):
        target = out / path.relative_to(src).with_suffix(".csv")
        target.parent.mkdir(parents=True, exist_ok=True)
        pacsv.write_csv(pq.read_table(path), target)


def _as_duckdb(src, out):
    import duckdb

    db = out / "source.duckdb"
    with duckdb.connect(str(db)) as con:
        for path in sorted(src.rglob("*.parquet")):
            con.execute(f"CREATE TABLE {path.stem} AS SELECT * FROM read_parquet(?)", [str(path)])
    return db


def _as_parts(src, out):
    import shutil

    shutil.copytree(src, out, ignore=shutil.ignore_patterns("_truth"))
    activity = pq.read_table(out / "activity.parquet")
    (out / "activity.parquet").unlink()
    (out / "activity").mkdir()
    half = activity.num_rows // 2
    pq.write_table(activity.slice(0, half), out / "activity" / "part-0.parquet")
    pq.write_table(activity.slice(half), out / "activity" / "part-1.parquet")


@pytest.mark.parametrize("kind", ["csv", "duckdb", "parts"])
def test_every_kind_of_source_splits_into_the_single_stores_rows(built, tmp_path, kind, monkeypatch):
    """CSV read a batch at a time as text, a DuckDB database (a table read whole) and a table
    given as parts (a part and a batch at a time), split into shards whose patients' rows
    are the single store's of the same source."""
    from casefind.ingest import stream
    from casefind.ingest.pipeline import run_ingest

    root, _, _ = built
    monkeypatch.setattr(stream, "BATCH_ROWS", 250)
    folder = tmp_path / "src"
    source = {"csv": lambda: _as_csv(root / "src", folder) or folder,
              "duckdb": lambda: folder.mkdir() or _as_duckdb(root / "src", folder),
              "parts": lambda: _as_parts(root / "src", folder) or folder}[kind]()
    run_ingest(source, tmp_path / "single")
    run_sharded_ingest(source, tmp_path / "sharded", N_SHARDS)
    single = Store.open(tmp_path / "single")
    manifest = read_manifest(tmp_path / "sharded")
    shards = [Store.open(tmp_path / "sharded" / s.folder) for s in manifest.shards]
    assert sorted(pid for s in shards for pid in _ids(s)) == sorted(_ids(single))
    for s in shards:
        for pid in _ids(s)[::60]:
            for table, columns in {"activity": ["start_date", "setting", "cost", "spell_id"],
                                   "medications": ["date", "code"]}.items():
                assert _rows(s, table, pid, columns) == _rows(single, table, pid, columns), (kind, table, pid)
    assert sum(s.rows["activity"] for s in manifest.shards) == single.manifest["tables"]["activity"]["rows"]


@pytest.mark.parametrize("missing", ["part", "identities"])
def test_a_shard_task_that_cannot_see_the_shared_folders_says_so(tmp_path, missing):
    """On a cluster an executor without the driver's storage would otherwise write the
    shard's identities to its own disk and report success."""
    import pyarrow as pa

    from casefind.ingest.sharded import ShardIngest
    from casefind.ingest.sources import Source

    split, ids = tmp_path / "build" / "sources", tmp_path / "ids"
    if missing == "identities":
        (split / "shard-001").mkdir(parents=True)
    src = Source(tmp_path, "folder", {"identities": pa.table({})})  # a source with identities
    task = ShardIngest(tmp_path / "build", ids, split, src, str(tmp_path), 2, False, pa.array([], pa.string()))
    gone = split / "shard-001" if missing == "part" else ids
    with pytest.raises(CasefindError, match=rf"^shard 2 of 2: {gone} is not visible where shard shard-001") as e:
        task(1, lambda stage: None)
    assert "every Spark executor" in e.value.hint and not ids.exists()


def _spoil_shard(src, shard: int, n: int) -> int:
    """Every patient row of ``shard`` (of ``n``) given a birth date that is not a date; how many."""
    path = src / "patients.parquet"
    t = pq.read_table(path)
    spoil = (shard_of(t.column("patient_id").to_pylist(), n) == shard).tolist()
    dates = [("not-a-date" if s else None if d is None else d.isoformat())
             for s, d in zip(spoil, t.column("birth_date").to_pylist(), strict=True)]
    pq.write_table(t.set_column(t.schema.get_field_index("birth_date"), "birth_date", pa.array(dates)), path)
    return sum(spoil)


def test_a_shard_whose_every_patient_row_is_bad_is_stored_empty_and_nothing_changes(tmp_path):
    """As a single store would, the sharded store keeps every good patient: the shard whose
    patients all break the contract is stored empty, and a list, a dataset and KPIs read
    from the sharded store equal the single store's."""
    src = tmp_path / "src"
    assert cli("synth", "--patients", 300, "--seed", 3, "--out", src).exit_code == 0
    spoiled = _spoil_shard(src, 0, 3)
    assert cli("ingest", src, "--store", tmp_path / "one").exit_code == 0
    r = cli("ingest", src, "--store", tmp_path / "s", "--shards", 3)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    shards = [Store.open(tmp_path / "s" / s.folder) for s in read_manifest(tmp_path / "s").shards]
    assert shards[0].table("patients").arrow.num_rows == 0 and spoiled > 0
    assert sum(s.table("patients").arrow.num_rows for s in shards) == 300 - spoiled
    for store in ("one", "s"):
        for args in (("run", RULES / "frail.yml", "--out", tmp_path / f"list-{store}"),
                     ("dataset", RULES / "frail.yml", "--output", tmp_path / f"ds-{store}.parquet"),
                     ("kpi", RULES / "kpis" / "triple_aim.yml", "--from", "2026-08", "--to", "2026-10",
                      "--output", tmp_path / f"kpi-{store}.parquet")):
            r = cli(*args, "--store", tmp_path / store)
            assert r.exit_code == 0, (args, r.output)
    for name in ("ds", "kpi"):
        one, sharded_ = (_without_run(pq.read_table(tmp_path / f"{name}-{s}.parquet")) for s in ("one", "s"))
        keys = [(c, "ascending") for c in one.column_names]
        assert one.num_rows > 0 and one.sort_by(keys).equals(sharded_.sort_by(keys)), name
    one, sharded_ = (_without_run(pq.read_table(next((tmp_path / f"list-{s}").glob("*/list.parquet"))))
                     for s in ("one", "s"))
    assert one.equals(sharded_)


def _without_run(t: pa.Table) -> pa.Table:
    """A result's values, without what names the run (its id, its file metadata)."""
    return t.drop_columns([c for c in ("run_id",) if c in t.column_names]).replace_schema_metadata(None)


def test_a_sharded_source_with_no_good_patient_is_refused_and_nothing_is_left(tmp_path):
    src = write_source(tmp_path / "src", _bad_birth_dates(0, 1, 2))
    r = cli("ingest", src, "--store", tmp_path / "s", "--shards", 2)
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "no patients could be stored: all 3 rows of patients break the contract" in r.output
    assert not (tmp_path / "s").exists() and not (tmp_path / "s-identities").exists()
