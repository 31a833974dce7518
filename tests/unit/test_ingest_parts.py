"""A table given as a folder of Parquet parts (what Spark, Hive or a lake writes): read
whole by one store's ingest and a batch at a time by a sharded one, the same rows in the
same schema either way, known from the parts' footers before a row is read."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from casefind.ingest import IngestError
from casefind.ingest.sources import Parts, Source


def _parts(tmp_path, parts: dict[str, pa.Table]) -> Parts:
    folder = tmp_path / "src" / "activity"
    for rel, table in parts.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / rel)
    return Parts.of("activity", folder, tmp_path / "src", Source(tmp_path / "src", "folder"))


def _streamed(parts: Parts, rows: int) -> tuple[pa.Table, int]:
    batches = [b for k in range(len(parts.paths)) for b in parts.batches(k, rows)]
    return pa.concat_tables(batches), max(b.num_rows for b in batches)


def test_parts_that_differ_are_one_schema_whole_or_a_batch_at_a_time(tmp_path):
    parts = _parts(tmp_path, {
        "part-0.parquet": pa.table({"x": pa.array([1, 2, 3], pa.int32()), "y": ["a", "b", "c"]}),
        "part-1.parquet": pa.table({"x": pa.array([4], pa.int64()), "z": [1.5]}),
        "k=q/part-0.parquet": pa.table({"x": pa.array([5, 6], pa.int64()), "y": ["e", "f"]}),
    })
    assert parts.schema == pa.schema([("x", pa.int64()), ("y", pa.string()), ("k", pa.string()), ("z", pa.float64())])
    whole = parts.whole()
    assert whole.to_pydict() == {"x": [5, 6, 1, 2, 3, 4],  # parts in path order: k=q/ sorts first
                                 "y": ["e", "f", "a", "b", "c", None],
                                 "k": ["q", "q", None, None, None, None],
                                 "z": [None, None, None, None, None, 1.5]}
    streamed, most = _streamed(parts, 2)
    assert most == 2
    assert streamed.equals(whole.cast(streamed.schema)) and streamed.schema == whole.schema


def test_a_column_typed_differently_across_parts_is_read_as_text(tmp_path):
    """As one concat of the parts reads them: every column of more than one type, even one
    that would promote (int32 and int64), becomes text once any column cannot promote."""
    parts = _parts(tmp_path, {
        "a.parquet": pa.table({"cost": pa.array([1.25, 2.0]), "n": pa.array([1, 2], pa.int32())}),
        "b.parquet": pa.table({"cost": ["3.5"], "n": pa.array([3], pa.int64())}),
    })
    assert parts.as_text == {"cost", "n"}
    whole = parts.whole()
    assert whole.to_pydict() == {"cost": ["1.25", "2", "3.5"], "n": ["1", "2", "3"]}
    assert _streamed(parts, 1)[0].equals(whole)


def test_a_column_also_given_by_a_partition_folder_is_an_error(tmp_path):
    with pytest.raises(IngestError, match=r"'setting' is both in .* and a partition folder above it"):
        _parts(tmp_path, {"setting=gp/part-0.parquet": pa.table({"setting": ["ae"]})})


def test_parts_whose_columns_cannot_be_one_table_are_an_error(tmp_path):
    nested = pa.table({"x": pa.array([[1, 2]], pa.list_(pa.int64()))})
    parts = _parts(tmp_path, {"a.parquet": pa.table({"x": [1]}), "b.parquet": nested})
    with pytest.raises(IngestError, match="column 'x' has different types in the parts of"):
        parts.whole()
