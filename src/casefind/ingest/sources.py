"""Find and read an ingest source: a folder of Parquet/CSV files, or a DuckDB database.

Reading keeps every value as the source gave it (CSV columns as text); typing and
validation happen later, so a bad value can be quarantined verbatim.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind.contract import INPUT_TABLES, TABLES


class IngestError(Exception):
    """A source that cannot be ingested at all (as opposed to bad rows, which are quarantined)."""


@dataclass
class Source:
    path: Path
    kind: str  # folder | duckdb
    tables: dict[str, pa.Table] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # table -> file or db table
    ignored: list[str] = field(default_factory=list)


_NULLS = ["", "NULL", "null"]


def _read_csv(path: Path) -> pa.Table:
    try:
        names = pacsv.open_csv(path).schema.names
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=True, null_values=_NULLS))
    except pa.ArrowInvalid as e:
        raise IngestError(f"{path}: cannot read as CSV ({e})") from e


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise IngestError(f"{path}: cannot read as Parquet ({e})") from e


def _read_folder(root: Path) -> Source:
    src = Source(root, "folder")
    readers = {".parquet": _read_parquet, ".csv": _read_csv}
    found: dict[str, list[Path]] = {}
    for path in sorted(list(root.iterdir()) + list((root / "restricted").glob("*"))):
        if path.is_dir():
            continue
        if path.suffix in readers and path.stem in INPUT_TABLES:
            found.setdefault(path.stem, []).append(path)
        elif not path.name.startswith((".", "_")):
            src.ignored.append(str(path.relative_to(root)))
    for name, paths in found.items():
        if len(paths) > 1:
            raise IngestError(f"{root}: table {name} is given more than once "
                              f"({', '.join(str(p.relative_to(root)) for p in paths)}); keep one")
        src.tables[name] = readers[paths[0].suffix](paths[0])
        src.origins[name] = str(paths[0].relative_to(root))
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
                rel = con.table(name)
                fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
                src.tables[name] = fetch()
                src.origins[name] = f"{path.name}:{name}"
            else:
                src.ignored.append(name)
    finally:
        con.close()
    return src


def read_source(path: str | Path) -> Source:
    path = Path(path)
    if path.is_dir():
        src = _read_folder(path)
    elif path.is_file() and path.suffix in (".duckdb", ".db", ".ddb"):
        src = _read_duckdb(path)
    elif not path.exists():
        raise IngestError(f"{path} does not exist; give a folder of Parquet/CSV files or a DuckDB database")
    else:
        raise IngestError(f"{path}: not a folder or a DuckDB database (.duckdb)")
    missing = [n for n, t in TABLES.items() if t.required and n not in src.tables]
    if missing:
        raise IngestError(f"{path}: required table(s) missing: {', '.join(missing)} "
                          f"(expected files like {missing[0]}.parquet or {missing[0]}.csv)")
    return src
