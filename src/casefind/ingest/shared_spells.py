"""A spell id used by patients in different shards: quarantined as one store would.

A spell id is unique in the delivery. One store keeps the first otherwise-good activity row
with it and quarantines every later one as ``duplicate_spell`` (ingest/validate.py), and
then the diagnoses and procedures of other patients that name it as ``unknown_spell``. A
shard sees only its own patients, so two patients in different shards who share an id are
both kept. After the split, each part's spell ids are compared (``candidates``): an id found
in more than one part may need it, and only those parts are kept after their shard is built.
Once every shard is built, each candidate's otherwise-good rows are found in each part (rows
the shard's quarantine holds for another reason are not), and the earliest in the delivery
(the routes give every part row its delivery row) wins. Each other shard's good rows of it
are forced to ``duplicate_spell`` by ingesting that shard again (``duplicates``), which also
quarantines what named them. No spell shared: nothing read but one column of each part.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from casefind.ingest.normalise import text_key
from casefind.ingest.validate import SPELL_TABLE

COLUMN = "spell_id"
DUPLICATE = "duplicate_spell"


def part_spells(part: Path) -> pa.Array:
    """Each row's spell id in one part's activity, as ingest compares it (null: none). The
    activity is one file, or a folder of parts where the delivery gave it so."""
    one = part / f"{SPELL_TABLE}.parquet"
    files = [one] if one.exists() else sorted((part / SPELL_TABLE).glob("*.parquet"))
    if not files or COLUMN not in pq.read_schema(files[0]).names:
        return pa.array([], pa.string())
    return text_key(pa.concat_tables([pq.read_table(f, columns=[COLUMN]) for f in files]).column(COLUMN))


def candidates(parts: list[Path]) -> pa.Array:
    """The spell ids found in more than one part."""
    seen = [pc.unique(part_spells(p).drop_null()) for p in parts]
    if not seen:
        return pa.array([], pa.string())
    counts = pc.value_counts(pa.concat_arrays(seen))
    return counts.field("values").filter(pc.greater(counts.field("counts"), 1))


def holds(part: Path, shared: pa.Array) -> bool:
    return len(shared) > 0 and pc.any(pc.is_in(part_spells(part), value_set=shared)).as_py() is True


def duplicates(parts: dict[int, Path], shared: pa.Array, quarantined: Callable[[int], pa.Table],
               delivery_rows: Callable[[int, np.ndarray], np.ndarray]) -> dict[int, np.ndarray]:
    """Per shard, the part rows of activity to quarantine as ``duplicate_spell``: its
    otherwise-good rows of a shared id whose earliest otherwise-good row is in another shard.
    ``quarantined(i)``: shard i's activity quarantine; ``delivery_rows(i, rows)``: their rows
    in the delivery."""
    found = []  # (spell, delivery row, shard, part row) of every otherwise-good row of a shared id
    for i, part in parts.items():
        ids = part_spells(part)
        rows = np.flatnonzero(pc.fill_null(pc.is_in(ids, value_set=shared), False).to_numpy(zero_copy_only=False))
        if not len(rows):
            continue
        delivery = delivery_rows(i, rows)
        q = quarantined(i)
        if q.num_rows:
            other = q.filter(pc.not_equal(q.column("_reason"), DUPLICATE)).column("_source_row")
            bad = np.isin(delivery + 1, other.to_numpy(zero_copy_only=False))
            rows, delivery = rows[~bad], delivery[~bad]
        found.append(pa.table({"spell": ids.take(pa.array(rows)), "delivery": delivery,
                               "shard": np.full(len(rows), i, np.int64), "row": rows}))
    if not found:
        return {}
    t = pa.concat_tables(found)
    t = t.take(pc.sort_indices(t, sort_keys=[("spell", "ascending"), ("delivery", "ascending")]))
    spell = pc.dictionary_encode(t.column("spell")).combine_chunks().indices.to_numpy()
    shard, row = t.column("shard").to_numpy(), t.column("row").to_numpy()
    first = np.r_[True, spell[1:] != spell[:-1]]  # each id's earliest row in the delivery
    lost = shard != shard[first][np.cumsum(first) - 1]
    return {int(i): np.sort(row[lost & (shard == i)]) for i in np.unique(shard[lost])}
