"""The shard function and the shard manifest (docs/scale-out.md, "Shards")."""
from __future__ import annotations

import hashlib
import io
import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from rich.console import Console

from casefind.store import Store, StoreError
from casefind.store.shards import (
    DUCKDB_SHARD_EXPR,
    MANIFEST,
    ShardedStoreError,
    ShardEntry,
    ShardManifest,
    combined_snapshot_id,
    info_json,
    is_sharded,
    print_info,
    read_manifest,
    shard_of,
)

# Computed by hand with hashlib, int.from_bytes(sha256(id.encode("utf-8")).digest()[:8], "big"):
#   id            first 8 bytes        % 2  % 3  % 7  % 60
#   p1            0xf64551fcd6f07823   1    0    2    27
#   p2            0x3946ca64ff78d93c   0    1    5    16
#   p3            0x43bb00d0ce7790a5   1    1    1    1
#   P0000001      0xff66919dc079d9d8   0    1    2    40
#   9434765919    0xee17f178e64633e0   0    0    5    12
#   Ünïcode-id    0x2e082e0101841dd3   1    0    5    39
#   "" (empty)    0xe3b0c44298fc1c14   0    1    1    52
HAND = [
    ("p1", {2: 1, 3: 0, 7: 2, 60: 27}),
    ("p2", {2: 0, 3: 1, 7: 5, 60: 16}),
    ("p3", {2: 1, 3: 1, 7: 1, 60: 1}),
    ("P0000001", {2: 0, 3: 1, 7: 2, 60: 40}),
    ("9434765919", {2: 0, 3: 0, 7: 5, 60: 12}),
    ("Ünïcode-id", {2: 1, 3: 0, 7: 5, 60: 39}),
    ("", {2: 0, 3: 1, 7: 1, 60: 52}),
]


@pytest.mark.parametrize("n", [2, 3, 7, 60])
def test_shard_of_matches_the_hand_computed_table(n):
    ids = [i for i, _ in HAND]
    assert shard_of(ids, n).tolist() == [want[n] for _, want in HAND]


def test_shard_of_takes_arrow_arrays_repeats_and_nulls():
    ids = pa.chunked_array([["p2", "p1", None], ["p2", "p3"]])
    assert shard_of(ids, 7).tolist() == [5, 2, 0, 5, 1]  # a null id goes to shard 0
    assert shard_of(pa.array([1, 2], pa.int64()), 5).tolist() == shard_of(["1", "2"], 5).tolist()
    assert shard_of([], 3).tolist() == []
    assert shard_of(["p1", "p2"], 1).tolist() == [0, 0]
    with pytest.raises(ValueError):
        shard_of(["p1"], 0)


def test_duckdb_expression_is_the_same_function():
    ids = [f"P{i:07d}" for i in range(500)] + [i for i, _ in HAND]
    con = duckdb.connect()
    con.register("t", pa.table({"patient_id": ids}))
    got = con.execute(f"SELECT {DUCKDB_SHARD_EXPR} AS s FROM t", {"n_shards": 7}).fetchnumpy()["s"]
    assert np.array_equal(np.asarray(got), shard_of(ids, 7))


def test_combined_snapshot_id_is_ordered():
    a, b = combined_snapshot_id(["aa", "bb"]), combined_snapshot_id(["bb", "aa"])
    assert len(a) == 16 and a != b
    assert a == hashlib.sha256(b"aa\nbb").hexdigest()[:16]


def _manifest() -> ShardManifest:
    return ShardManifest.of([ShardEntry(0, "shards-x/shard-000", "s0", 3, {"patients": 3, "activity": 9}),
                             ShardEntry(1, "shards-x/shard-001", "s1", 2, {"patients": 2, "activity": 4})],
                            source="/data/src", created="2026-12-02T00:00:00+00:00")


def test_manifest_round_trip(tmp_path):
    m = _manifest()
    m.write(tmp_path)
    d = json.loads((tmp_path / MANIFEST).read_text())
    assert list(d)[:4] == ["format", "n_shards", "hash", "snapshot_id"]
    assert (d["format"], d["n_shards"], d["hash"]) == ("casefind-shards/1", 2, "sha256-8-mod")
    assert d["snapshot_id"] == combined_snapshot_id(["s0", "s1"])
    assert d["shards"][1] == {"id": 1, "folder": "shards-x/shard-001", "snapshot_id": "s1", "patients": 2,
                              "rows": {"patients": 2, "activity": 4}}
    back = read_manifest(tmp_path)
    assert back == m and back.patients == 5 and back.generations == {"shards-x"}
    assert is_sharded(tmp_path) and not is_sharded(tmp_path / "nope")
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST]  # no temporary file left


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "cannot read"),
    (json.dumps({"format": "casefind-shards/9", "hash": "sha256-8-mod"}), "has format casefind-shards/9"),
    (json.dumps({"format": "casefind-shards/1", "hash": "sha256-8-mod", "n_shards": 2}), "incomplete"),
    (json.dumps({**_manifest().to_json(), "n_shards": 3}), "names 2 shards, n_shards says 3"),
])
def test_bad_manifests_are_refused(tmp_path, text, says):
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(StoreError, match=says):
        read_manifest(tmp_path)


def test_store_open_refuses_a_sharded_store(tmp_path):
    _manifest().write(tmp_path)
    with pytest.raises(ShardedStoreError) as e:
        Store.open(tmp_path)
    assert e.value.message == f"{tmp_path} is a sharded store (2 shards), opened as a single store"
    assert "open_any" in e.value.hint and e.value.exit_code == 1


def test_info_shows_the_shards(tmp_path):
    _manifest().write(tmp_path)
    buf = io.StringIO()
    print_info(tmp_path, Console(file=buf, width=200))
    text = buf.getvalue()
    assert combined_snapshot_id(["s0", "s1"]) in text and "2 shards" in text and "5 patients" in text
    rows = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│ 00")]
    assert [[c.strip() for c in r] for r in rows] == [["000", "s0", "3", "3", "9"], ["001", "s1", "2", "2", "4"]]
    assert info_json(tmp_path)["shards"]["shards"][0]["rows"] == {"patients": 3, "activity": 9}
