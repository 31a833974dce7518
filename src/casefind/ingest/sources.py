"""Find and read an ingest source: a folder of Parquet/CSV files, or a DuckDB database.

A table is one file (``activity.parquet``, ``activity.csv``) or a folder of Parquet parts
(``activity/part-0.parquet``), possibly hive-partitioned (``activity/year=2026/...``: each
``key=value`` folder gives a column). Whatever else the source holds is listed as ignored.
Reading keeps every value as the source gave it (CSV columns as text); typing and
validation happen later, so a bad value can be quarantined verbatim.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind.contract import INPUT_TABLES, TABLES
from casefind.errors import DataError


class IngestError(DataError):
    """A source that cannot be ingested at all (as opposed to bad rows, which are quarantined)."""


@dataclass
class Source:
    path: Path
    kind: str  # folder | duckdb
    tables: dict[str, pa.Table] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # table -> file or db table
    ignored: list[str] = field(default_factory=list)


_NULLS = ["", "NULL", "null"]
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
RESTRICTED = "restricted"  # the subfolder identities may sit in


def check_unique_names(table: str, names: list[str], where: str) -> None:
    """Two columns of one name cannot both be kept, nor one chosen silently."""
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if dup:
        raise IngestError(f"table {table}: column {dup[0]!r} appears more than once in {where}",
                          "rename or remove the duplicate column")


def _read_csv(path: Path, table: str) -> pa.Table:
    try:
        names = pacsv.open_csv(path).schema.names
        check_unique_names(table, names, f"the header of {path}")
        return pacsv.read_csv(path, convert_options=csv_as_text(names))
    except pa.ArrowInvalid as e:
        raise IngestError(f"{path}: cannot read as CSV ({e})") from e


def csv_as_text(names: list[str]) -> pacsv.ConvertOptions:
    """Every CSV column as text, empty and NULL as missing (typing happens later)."""
    return pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True,
                                null_values=_NULLS)


def _read_parquet(path: Path, table: str) -> pa.Table:
    try:
        f = pq.ParquetFile(path)
        check_unique_names(table, f.schema_arrow.names, str(path))
        return f.read()
    except (pa.ArrowException, OSError) as e:
        raise IngestError(f"{path}: cannot read as Parquet ({e})") from e


def _hidden(rel: Path) -> bool:
    """Bookkeeping of the tools that write datasets (_SUCCESS, .crc, _delta_log/), but not
    a partition folder whose key starts with '_'."""
    return any(part.startswith(".") or (part.startswith("_") and "=" not in part) for part in rel.parts)


def _partition_values(table: str, rel_folder: Path) -> dict[str, str | None]:
    """``year=2026/month=01`` → {"year": "2026", "month": "01"}, as text, as the path gives them."""
    out = {}
    for part in rel_folder.parts:
        if "=" in part:
            key, value = (unquote(x) for x in part.split("=", 1))
            if key in out:
                raise IngestError(f"table {table}: partition key {key!r} appears twice in {rel_folder}")
            out[key] = None if value in ("", _HIVE_NULL) else value
    return out


def _parquet_parts(table: str, folder: Path, root: Path, src: Source) -> list[Path]:
    """A table folder's Parquet parts, in the order they are read; the rest in ``src.ignored``."""
    parquet = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        hidden = _hidden(path.relative_to(folder))
        if path.suffix == ".parquet" and not hidden:
            parquet.append(path)
        elif not hidden or path.suffix == ".parquet":  # a hidden part is data left out: say so
            src.ignored.append(str(path.relative_to(root)))
    if not parquet:
        raise IngestError(f"table {table}: the folder {folder} holds no Parquet parts (*.parquet)",
                          f"give {table} as {table}.parquet, {table}.csv or a folder of Parquet parts")
    return parquet


@dataclass(frozen=True)
class Parts:
    """A table given as a folder of Parquet parts, each read as the one schema of them all,
    known from the parts' footers before any row is read: so the parts can be read whole
    (one store), one batch at a time (a sharded ingest) or one part per task (Spark), and
    give the same rows. Parts may differ: a column missing from a part is empty there, a
    column typed differently across parts (int32 and int64 promote) is read as text."""
    table: str
    folder: Path
    paths: tuple[Path, ...]
    schema: pa.Schema
    as_text: frozenset[str]  # columns typed differently across parts, read as text

    @classmethod
    def of(cls, table: str, folder: Path, root: Path, src: Source) -> Parts:
        paths = tuple(_parquet_parts(table, folder, root, src))
        schemas = [_part_schema(table, folder, p) for p in paths]
        try:
            return cls(table, folder, paths, pa.unify_schemas(schemas, promote_options="permissive"), frozenset())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        types: dict[str, set] = {}
        for s in schemas:
            for f in s:
                types.setdefault(f.name, set()).add(f.type)
        as_text = frozenset(n for n, ts in types.items() if len(ts - {pa.null()}) > 1)
        texts = [pa.schema([f.with_type(pa.string()) if f.name in as_text else f for f in s]) for s in schemas]
        try:
            return cls(table, folder, paths, pa.unify_schemas(texts, promote_options="permissive"), as_text)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise IngestError(f"table {table}: the parts of {folder} cannot be read as one table ({e})",
                              "write every part with the same columns and types") from e

    def read(self, k: int) -> pa.Table:
        """Part ``k`` whole, as the schema."""
        return self._as_schema(_read_parquet(self.paths[k], self.table), k)

    def batches(self, k: int, rows: int):
        """Part ``k`` a batch of at most ``rows`` rows at a time, as the schema."""
        path = self.paths[k]
        try:
            for b in pq.ParquetFile(path).iter_batches(rows):
                yield self._as_schema(pa.Table.from_batches([b]), k)
        except (pa.ArrowException, OSError) as e:
            raise IngestError(f"{path}: cannot read as Parquet ({e})") from e

    def whole(self) -> pa.Table:
        """Every part, in order (the names are unique: each part's are checked, and the
        schemas are unified by name)."""
        return pa.concat_tables([self.read(k) for k in range(len(self.paths))])

    def _as_schema(self, t: pa.Table, k: int) -> pa.Table:
        path = self.paths[k]
        for key, value in _partition_values(self.table, path.relative_to(self.folder).parent).items():
            t = t.append_column(key, pa.array([value] * t.num_rows, pa.string()))
        for name in self.as_text & set(t.column_names):
            i = t.schema.get_field_index(name)
            try:
                t = t.set_column(i, name, t.column(i).cast(pa.string()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise IngestError(f"table {self.table}: column {name!r} has different types in the "
                                  f"parts of {self.folder} ({t.column(i).type} in {path.name})",
                                  "write every part with the same types") from e
        if t.schema == self.schema:
            return t
        try:  # promoted as one concat of all the parts would (no copy of the rows)
            return pa.concat_tables([self.schema.empty_table(), t], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise IngestError(f"table {self.table}: the parts of {self.folder} cannot be read as one table ({e})",
                              "write every part with the same columns and types") from e


def _part_schema(table: str, folder: Path, path: Path) -> pa.Schema:
    """A part's columns as its footer gives them, then its partition folders' (text)."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise IngestError(f"{path}: cannot read as Parquet ({e})") from e
    check_unique_names(table, schema.names, str(path))
    for key in _partition_values(table, path.relative_to(folder).parent):
        if key in schema.names:
            raise IngestError(f"table {table}: column {key!r} is both in {path} and a "
                              "partition folder above it", "keep one of the two")
        schema = schema.append(pa.field(key, pa.string()))
    return schema


def read_parts(table: str, folder: Path, root: Path, src: Source) -> pa.Table:
    """A table written as a folder of Parquet parts (a dataset), hive partitions included."""
    return Parts.of(table, folder, root, src).whole()


def _candidates(root: Path) -> list[Path]:
    """What a source folder offers: its entries, and those of its restricted/ subfolder."""
    restricted = root / RESTRICTED
    inner = sorted(restricted.iterdir()) if restricted.is_dir() else []
    return sorted(p for p in root.iterdir() if p != restricted) + inner


def folder_tables(root: Path, src: Source) -> dict[str, Path]:
    """The contract's tables a source folder gives (name: file or parts folder), each once;
    everything else is listed in ``src.ignored``."""
    readers = (".parquet", ".csv")
    found: dict[str, list[Path]] = {}
    for path in _candidates(root):
        if path.name.startswith((".", "_")):
            continue
        table = path.name if path.is_dir() else path.stem
        if table in INPUT_TABLES and (path.is_dir() or path.suffix in readers):
            found.setdefault(table, []).append(path)
        else:
            src.ignored.append(str(path.relative_to(root)) + ("/" if path.is_dir() else ""))
    for name, paths in found.items():
        if len(paths) > 1:
            raise IngestError(f"{root}: table {name} is given more than once "
                              f"({', '.join(str(p.relative_to(root)) for p in paths)}); keep one")
        src.origins[name] = str(paths[0].relative_to(root)) + ("/" if paths[0].is_dir() else "")
    return {name: paths[0] for name, paths in found.items()}


def _read_folder(root: Path) -> Source:
    src = Source(root, "folder")
    readers = {".parquet": _read_parquet, ".csv": _read_csv}
    for name, path in folder_tables(root, src).items():
        src.tables[name] = read_parts(name, path, root, src) if path.is_dir() else readers[path.suffix](path, name)
    return src


def _read_duckdb(path: Path) -> Source:
    import duckdb

    src = Source(path, "duckdb")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        raise IngestError(f"{path}: cannot open as a DuckDB database ({e})") from e
    try:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables").fetchall()]
        for name in names:
            if name in INPUT_TABLES:
                src.tables[name] = duckdb_table(con, path, name)
                src.origins[name] = f"{path.name}:{name}"
            else:
                src.ignored.append(name)
    finally:
        con.close()
    return src


def duckdb_table(con, path: Path, name: str) -> pa.Table:
    """One contract table of a DuckDB database (``name`` from the database's own list)."""
    import duckdb

    rel = con.table(name)
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    try:
        return fetch()
    except duckdb.Error as e:
        raise IngestError(f"{path}: cannot read table {name} ({e})") from e


def source_kind(path: Path) -> str:
    """``folder`` or ``duckdb``; an IngestError for anything else."""
    if path.is_dir():
        return "folder"
    if path.is_file() and path.suffix in (".duckdb", ".db", ".ddb"):
        return "duckdb"
    if not path.exists():
        raise IngestError(f"{path} does not exist; give a folder of Parquet/CSV files or a DuckDB database")
    raise IngestError(f"{path}: not a folder or a DuckDB database (.duckdb)")


def read_source(path: str | Path) -> Source:
    path = Path(path)
    src = _read_folder(path) if source_kind(path) == "folder" else _read_duckdb(path)
    check_required(path, src.tables)
    return src


def check_required(path: Path, names) -> None:
    missing = [n for n, t in TABLES.items() if t.required and n not in names]
    if missing:
        raise IngestError(f"{path}: required table(s) missing: {', '.join(missing)} "
                          f"(expected files like {missing[0]}.parquet or {missing[0]}.csv)")
