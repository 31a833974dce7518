"""A spell id shared by patients in different shards is quarantined as one store quarantines
it (ingest/shared_spells.py): the earliest otherwise-good row in the delivery keeps it, every
later one is a duplicate_spell, and what other patients coded in it is an unknown_spell."""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from casefind.ingest.sharded import run_sharded_ingest
from casefind.store import Store
from casefind.store.shards import read_manifest, shard_of
from casefind_testdata import cli

N_SHARDS = 3
PAIRS = 8


def _share_spells(src) -> list[str]:
    """Give PAIRS spell rows of one patient the spell id of another patient's row, each pair in
    different shards, the earlier row in the delivery sometimes one and sometimes the other;
    the first pair's earlier row is made bad (a cost that is not a number), so its later row
    keeps the id. Each borrowing patient's diagnoses in that spell keep naming it."""
    act = pq.read_table(src / "activity.parquet")
    spell = act.column("spell_id").to_pylist()
    pid = act.column("patient_id").to_pylist()
    rows = [i for i, s in enumerate(spell) if s is not None]
    shard = dict(zip(pid, shard_of(pa.array(pid, pa.string()), N_SHARDS).tolist()))
    rng = np.random.default_rng(4)
    chosen, taken, used = [], set(), set()
    for i in rng.permutation(rows):
        j = next((j for j in rng.permutation(rows)[:50] if shard[pid[j]] != shard[pid[i]] and j not in used
                  and pid[j] not in taken and pid[i] not in taken), None)
        if j is not None:
            chosen.append((int(i), int(j)))
            taken |= {pid[i], pid[j]}
            used |= {i, j}
        if len(chosen) == PAIRS:
            break
    dia = pq.read_table(src / "diagnoses.parquet")
    dia_spell = dia.column("spell_id").to_pylist()
    for i, j in chosen:  # row j (and its diagnoses) now names row i's spell
        dia_spell = [spell[i] if s == spell[j] and s is not None else s for s in dia_spell]
        spell[j] = spell[i]
    cost = act.column("cost").cast(pa.string()).to_pylist()
    first = min(chosen[0])
    cost[first] = "not-a-number"
    act = act.set_column(act.schema.get_field_index("spell_id"), "spell_id", pa.array(spell, pa.string()))
    act = act.set_column(act.schema.get_field_index("cost"), "cost", pa.array(cost, pa.string()))
    pq.write_table(act, src / "activity.parquet")
    dia = dia.set_column(dia.schema.get_field_index("spell_id"), "spell_id", pa.array(dia_spell, pa.string()))
    pq.write_table(dia, src / "diagnoses.parquet")
    assert any(i < j for i, j in chosen) and any(i > j for i, j in chosen)
    return [spell[i] for i, _ in chosen]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared-spells")
    assert cli("synth", "--patients", 600, "--seed", 5, "--out", root / "src").exit_code == 0
    shared = _share_spells(root / "src")
    assert cli("ingest", root / "src", "--store", root / "single").exit_code == 0
    summary = run_sharded_ingest(root / "src", root / "sharded", N_SHARDS)
    shards = [Store.open(root / "sharded" / s.folder) for s in read_manifest(root / "sharded").shards]
    return Store.open(root / "single"), shards, summary, shared


def _quarantine(stores, table: str) -> pa.Table:
    got = [s.quarantine(table) for s in stores]
    got = pa.concat_tables([t for t in got if t.num_rows])
    return got.sort_by([("_source_row", "ascending")])


def test_the_shards_quarantine_a_shared_spell_as_one_store_does(built):
    single, shards, summary, _ = built
    for table in ("activity", "diagnoses", "procedures"):
        assert _quarantine(shards, table).equals(_quarantine([single], table)), table
    reasons = single.manifest["ingest"]["activity"]["quarantined"]
    assert reasons["duplicate_spell"] == 7 and reasons["unparseable_number"] == 1  # the bad earlier row keeps none
    assert single.manifest["ingest"]["diagnoses"]["quarantined"].get("unknown_spell", 0) > 0
    for name, t in single.manifest["ingest"].items():
        assert summary.tables[name].quarantined == t["quarantined"], name


def test_each_shared_spell_is_stored_once_as_in_one_store(built):
    single, shards, _, shared = built
    in_single = set(single.spell_ids(np.unique(single.table("activity")["spell_id"])).tolist())
    per_shard = [set(s.spell_ids(np.unique(s.table("activity")["spell_id"])).tolist()) for s in shards]
    for sid in shared:
        assert sid in in_single
        assert sum(sid in ids for ids in per_shard) == 1, sid
    assert set().union(*per_shard) == in_single
    rows = sum(s.table("activity").num_rows for s in shards)
    assert rows == single.table("activity").num_rows


def test_without_a_shared_spell_no_shard_is_ingested_twice(tmp_path, monkeypatch):
    """The check reads one column of each part; nothing is kept or ingested again."""
    from casefind.ingest import sharded

    calls = []
    real = sharded.run_ingest
    monkeypatch.setattr(sharded, "run_ingest", lambda *a, **k: calls.append(k) or real(*a, **k))
    assert cli("synth", "--patients", 300, "--seed", 2, "--out", tmp_path / "src").exit_code == 0
    summary = run_sharded_ingest(tmp_path / "src", tmp_path / "s", N_SHARDS)
    assert "duplicate_spell" not in summary.tables["activity"].quarantined
    assert len(calls) == N_SHARDS and all(k["duplicate_spells"] is None for k in calls)


def test_strict_counts_the_shared_spells_as_one_store_does(built, tmp_path):
    """--strict refuses the shard with the bad cost before spells are compared, so it is
    never built; its quarantine as checked still takes part in deciding the shared spells,
    and the refusal counts what one store's --strict counts, duplicate and unknown spells
    included."""
    single = built[0]
    src = single.manifest["source"]["path"]
    one = cli("ingest", src, "--store", tmp_path / "one", "--strict", "--json")
    r = cli("ingest", src, "--store", tmp_path / "s", "--shards", N_SHARDS, "--strict", "--json")
    assert r.exit_code == one.exit_code == 3, r.output
    got, want = (json.loads(x.stdout[x.stdout.index("{"):]) for x in (r, one))
    assert want["tables"]["activity"]["quarantined"]["duplicate_spell"] == 7
    assert got["tables"] == want["tables"] and got["quarantined_total"] == want["quarantined_total"]
    assert not (tmp_path / "s").exists()


def as_parts(src, out, tables=("activity", "diagnoses")) -> None:
    """The source with ``tables`` given as folders of Parquet parts of unequal sizes, as a
    lake holds them (the other tables linked)."""
    out.mkdir()
    for path in src.iterdir():
        if path.stem not in tables:
            (out / path.name).symlink_to(path.resolve())
    for name in tables:
        t = pq.read_table(src / f"{name}.parquet")
        cuts = [0, t.num_rows // 5, t.num_rows // 2, t.num_rows]
        (out / name).mkdir()
        for k, (a, b) in enumerate(itertools.pairwise(cuts)):
            pq.write_table(t.slice(a, b - a), out / name / f"part-{k}.parquet")


class _Elsewhere:
    """A mapper that runs each task as an executor would, from another working folder, and
    records what it ran."""

    name = "elsewhere"

    def __init__(self, workdir: Path):
        self.workdir, self.calls = workdir, []

    def map_each(self, indices, task, what, say, unit="shard"):
        self.calls.append((what, unit, len(indices)))
        here = Path.cwd()
        os.chdir(self.workdir)
        try:
            return [task(i, say) for i in indices]
        finally:
            os.chdir(here)


def test_a_delivery_in_parquet_parts_splits_a_part_at_a_time_into_the_same_shards(built, tmp_path, monkeypatch):
    """Each part split by a task of its own (as Spark's executors split a lake's parts), run
    from another folder with the delivery named by a relative path; the shards' parts in
    the delivery's order: the same shards, and each quarantined row numbered by its row in
    the delivery, as from one file."""
    from casefind.store.sharded import mapped_by

    single, _, summary, _ = built
    as_parts(Path(single.manifest["source"]["path"]), tmp_path / "parts")
    (tmp_path / "executor").mkdir()
    monkeypatch.chdir(tmp_path)
    mapper = _Elsewhere(tmp_path / "executor")
    with mapped_by(mapper):
        got = run_sharded_ingest("parts", "s", N_SHARDS)
    assert ("splitting activity", "part", 3) in mapper.calls and ("splitting diagnoses", "part", 3) in mapper.calls
    assert got.snapshot_id == summary.snapshot_id
    again = [Store.open(tmp_path / "s" / s.folder) for s in read_manifest(tmp_path / "s").shards]
    for table in ("activity", "diagnoses", "procedures"):
        assert _quarantine(again, table).equals(_quarantine([single], table)), table
    assert sum(t.num_rows for t in (s.quarantine("activity") for s in again)) > 7
