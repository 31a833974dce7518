"""A source read one table at a time, in batches, for ``ingest --shards N``: the split
holds one batch of one table (a DuckDB table is read whole), never the whole source
(docs/scale-out.md, step 1). A folder of Parquet parts is read a part and a batch at a
time, every batch in the schema of all the parts.

The batches are the rows ``read_source`` gives, read the same way (CSV as text, Parquet as
stored), so each shard receives what the in-memory split gave it."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind.contract import INPUT_TABLES
from casefind.ingest.sources import (
    IngestError,
    Parts,
    Source,
    check_required,
    check_unique_names,
    csv_as_text,
    duckdb_table,
    folder_tables,
    source_kind,
)

BATCH_ROWS = 1 << 18  # rows per batch: about 25 MB of activity


@dataclass
class TableStream:
    schema: pa.Schema
    batches: Iterator[pa.Table]


@dataclass
class LazySource:
    """What ``read_source`` finds (``meta``: kind, origins, ignored; no tables read) and,
    per table, how to stream it."""
    meta: Source
    openers: dict[str, Callable[[], TableStream]]
    parts: dict[str, Callable[[], Parts]] = field(default_factory=dict)  # tables given as Parquet parts


def open_source(path: str | Path) -> LazySource:
    path = Path(path)
    lazy = _folder(path) if source_kind(path) == "folder" else _duckdb(path)
    check_required(path, lazy.openers)
    return lazy


def _folder(root: Path) -> LazySource:
    meta = Source(root, "folder")
    openers: dict[str, Callable[[], TableStream]] = {}
    parts: dict[str, Callable[[], Parts]] = {}
    for name, path in folder_tables(root, meta).items():
        if path.is_dir():
            parts[name] = lambda name=name, path=path: Parts.of(name, path, root, meta)
            openers[name] = lambda name=name: _parts(parts[name]())
        elif path.suffix == ".parquet":
            openers[name] = lambda name=name, path=path: _parquet(path, name)
        else:
            openers[name] = lambda name=name, path=path: _csv(path, name)
    return LazySource(meta, openers, parts)


def _whole(table: pa.Table) -> TableStream:
    return TableStream(table.schema, iter([table]))


def _parts(parts: Parts, which: range | None = None) -> TableStream:
    """A folder of parts (or the parts ``which``) a batch at a time, every batch in the
    parts' one schema."""
    which = range(len(parts.paths)) if which is None else which
    return TableStream(parts.schema, (b for k in which for b in parts.batches(k, BATCH_ROWS)))


def part_stream(parts: Parts, k: int) -> TableStream:
    """Part ``k`` alone, a batch at a time (a split task's share of a table)."""
    return _parts(parts, range(k, k + 1))


def _parquet(path: Path, table: str) -> TableStream:
    try:
        f = pq.ParquetFile(path)
        check_unique_names(table, f.schema_arrow.names, str(path))
    except (pa.ArrowException, OSError) as e:
        raise IngestError(f"{path}: cannot read as Parquet ({e})") from e

    def batches():
        try:
            for b in f.iter_batches(BATCH_ROWS):
                yield pa.Table.from_batches([b])
        except (pa.ArrowException, OSError) as e:
            raise IngestError(f"{path}: cannot read as Parquet ({e})") from e
    return TableStream(f.schema_arrow, batches())


def _csv(path: Path, table: str) -> TableStream:
    try:
        names = pacsv.open_csv(path).schema.names
        check_unique_names(table, names, f"the header of {path}")
        reader = pacsv.open_csv(path, convert_options=csv_as_text(names))
    except pa.ArrowInvalid as e:
        raise IngestError(f"{path}: cannot read as CSV ({e})") from e

    def batches():
        try:
            for b in reader:
                yield pa.Table.from_batches([b])
        except pa.ArrowInvalid as e:
            raise IngestError(f"{path}: cannot read as CSV ({e})") from e
    return TableStream(reader.schema, batches())


def _duckdb(path: Path) -> LazySource:
    """A DuckDB database: each table read whole when its turn comes (one table in memory)."""
    import duckdb

    meta = Source(path, "duckdb")
    try:
        con = duckdb.connect(str(path), read_only=True)
        names = [r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()]
        con.close()
    except duckdb.Error as e:
        raise IngestError(f"{path}: cannot open as a DuckDB database ({e})") from e
    openers = {}
    for name in names:
        if name in INPUT_TABLES:
            meta.origins[name] = f"{path.name}:{name}"
            openers[name] = lambda name=name: _duckdb_table(path, name)
        else:
            meta.ignored.append(name)
    return LazySource(meta, openers)


def _duckdb_table(path: Path, name: str) -> TableStream:
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        raise IngestError(f"{path}: cannot open as a DuckDB database ({e})") from e
    try:
        return _whole(duckdb_table(con, path, name))
    finally:
        con.close()
