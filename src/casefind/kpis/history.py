"""The KPI history: one DuckDB database of results in long format, and a log of every run.

Writes are all-or-nothing: the results of a run replace those of the same KPI file and
periods inside one transaction, so a crash (or a kill) mid-write leaves the history as it
was, and a re-run of a period replaces it while the run log keeps both runs. One writer at
a time: a second run finds the lock taken and is told who holds it, rather than waiting or
corrupting anything. The history lives beside the store (``STORE/kpi/history.duckdb``)
unless given elsewhere.

The schema grows: a writer adds the columns its results (or the run log) have and the stored
tables lack, inside its transaction, so histories written by earlier versions keep every
row and read back with nulls in the new columns. The unrounded figures (``exact_*``) are
stored for the analyst and never exported.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from casefind import __version__
from casefind.errors import BusyError, CasefindError
from casefind.kpis.compute import RESULT_SCHEMA
from casefind.kpis.disclosure import EXACT_COLUMNS

_SQL_TYPES = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.date32(): "DATE", pa.bool_(): "BOOLEAN",
              pa.int64(): "BIGINT"}
STORED_SCHEMA = pa.schema(list(RESULT_SCHEMA) + [pa.field(c, pa.float64()) for c in EXACT_COLUMNS
                                                 if c not in RESULT_SCHEMA.names])
RUN_LOG_COLUMNS = ("log_id", "run_id", "kpi_set", "kpi_file", "kpi_sha256", "store_snapshot", "review_log",
                   "periods", "engine", "casefind_version", "started", "finished", "status", "rows", "message",
                   "disclosure")
_RUN_LOG_TYPES = {"started": "TIMESTAMPTZ", "finished": "TIMESTAMPTZ", "rows": "BIGINT"}


class HistoryLocked(BusyError):
    """Another KPI run is writing this history."""


class HistoryError(CasefindError):
    """A KPI history that cannot be read (missing, or not a casefind history)."""


def default_path(store_root: str | Path) -> Path:
    return Path(store_root) / "kpi" / "history.duckdb"


@contextmanager
def writer_lock(path: Path):
    """Exclusive, non-blocking: a second writer fails at once with the holder's details."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path = Path(path).absolute()
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise HistoryLocked(f"the KPI history {path} is being written by {holder}; "
                                "this run changed nothing: run it again when that one has finished") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"casefind kpi (pid {os.getpid()}, started {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%SZ})")
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sql_type(field: pa.Field) -> str:
    try:
        return _SQL_TYPES[field.type]
    except KeyError:
        raise HistoryError(f"the KPI results column {field.name} has a type ({field.type}) "
                           "the history cannot store") from None


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                                      "ORDER BY ordinal_position", [table]).fetchall()]


def _add_missing(con: duckdb.DuckDBPyConnection, table: str, wanted: list[tuple[str, str]]) -> None:
    """ALTER TABLE … ADD COLUMN for each (name, SQL type) the stored table lacks: older rows get nulls."""
    have = set(_columns(con, table))
    for name, sql_type in wanted:
        if name not in have:
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {sql_type}')


def _create(con: duckdb.DuckDBPyConnection) -> None:
    """The two tables, created or brought up to this version's columns, in one transaction."""
    con.execute("BEGIN TRANSACTION")
    cols = ", ".join(f'"{f.name}" {_sql_type(f)}' for f in STORED_SCHEMA)
    con.execute(f"CREATE TABLE IF NOT EXISTS kpi_results ({cols})")
    run_cols = [(c, _RUN_LOG_TYPES.get(c, "VARCHAR")) for c in RUN_LOG_COLUMNS]
    con.execute("CREATE TABLE IF NOT EXISTS kpi_runs (" + ", ".join(f"{c} {t}" for c, t in run_cols) + ")")
    _add_missing(con, "kpi_runs", run_cols)
    # a run that started but never finished was killed: say so (its results never landed)
    con.execute("UPDATE kpi_runs SET status = 'interrupted', message = 'the run stopped before "
                "committing; the history kept the results it had' WHERE status = 'running'")
    con.execute("COMMIT")


def _log(con: duckdb.DuckDBPyConnection, values: dict) -> None:
    """One row of the run log, by column name (older logs may order their columns differently)."""
    names = list(values)
    con.execute(f"INSERT INTO kpi_runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                list(values.values()))


def write(path: Path, results: pa.Table, run: dict, *, before_commit=None) -> str:
    """Replace the results for (kpi_set, periods) with ``results`` and log the run.
    ``before_commit`` (tests) is called inside the transaction, to simulate a crash."""
    log_id = f"{run['run_id']}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    with writer_lock(path):
        con = _connect_write(path)
        try:
            _create(con)
            disclosure = run.get("disclosure")
            _log(con, {"log_id": log_id, "run_id": run["run_id"], "kpi_set": run["kpi_set"],
                       "kpi_file": run["kpi_file"], "kpi_sha256": run["kpi_sha256"],
                       "store_snapshot": run["store_snapshot"], "review_log": run.get("review_log"),
                       "periods": json.dumps(run["periods"]), "engine": run["engine"],
                       "casefind_version": run["casefind_version"], "started": run["started"], "status": "running",
                       "message": run.get("message"),
                       "disclosure": None if disclosure is None else json.dumps(disclosure, sort_keys=True)})
            try:
                con.execute("BEGIN TRANSACTION")
                _add_missing(con, "kpi_results", [(f.name, _sql_type(f)) for f in results.schema])
                con.execute("DELETE FROM kpi_results WHERE kpi_set = ? AND period IN (SELECT unnest(?))",
                            [run["kpi_set"], run["periods"]])
                con.register("new_rows", results)
                names = ", ".join(f'"{c}"' for c in results.column_names)
                con.execute(f"INSERT INTO kpi_results ({names}) SELECT {names} FROM new_rows")
                con.unregister("new_rows")
                if before_commit is not None:
                    before_commit()
                con.execute("UPDATE kpi_runs SET status = 'ok', finished = ?, rows = ? WHERE log_id = ?",
                            [dt.datetime.now(dt.UTC), results.num_rows, log_id])
                con.execute("COMMIT")
            except BaseException as e:
                con.execute("ROLLBACK")
                con.execute("UPDATE kpi_runs SET status = 'failed', finished = ?, message = ? WHERE log_id = ?",
                            [dt.datetime.now(dt.UTC), f"{type(e).__name__}: {e}"[:500], log_id])
                raise
        finally:
            con.close()
    return log_id


def _connect_write(path: Path) -> duckdb.DuckDBPyConnection:
    if Path(path).is_dir():
        raise HistoryError(f"the KPI history {path} is a folder; give a file such as {Path(path) / 'history.duckdb'}")
    try:
        return duckdb.connect(str(path))
    except duckdb.Error as e:
        raise HistoryError(f"cannot open the KPI history {path}: {e}",
                           "give --history a DuckDB file casefind wrote, or a new file name") from None


def _connect_read(path: Path) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise HistoryError(f"no KPI history at {path}; compute one with `casefind kpi rules/kpis/triple_aim.yml "
                           "--period YYYY-MM`")
    if path.is_dir():
        raise HistoryError(f"the KPI history {path} is a folder, not a casefind KPI history")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as e:
        if "lock" not in str(e).lower():
            raise HistoryError(f"cannot read the KPI history {path}: {e}") from None
        raise HistoryLocked(f"the KPI history {path} is being written by a KPI run; "
                            "try again when it has finished") from None
    except duckdb.Error as e:
        raise HistoryError(f"{path} is not a KPI history casefind can read: {e}") from None


def read(path: Path, kpi_set: str | None = None, periods: list[str] | None = None,
         through: str | None = None) -> pa.Table:
    """Results, ordered; optionally one KPI file, some periods, or every period up to one."""
    con = _connect_read(path)
    try:
        where, args = [], []
        if kpi_set:
            where.append("kpi_set = ?")
            args.append(kpi_set)
        if periods:
            where.append("period IN (SELECT unnest(?))")
            args.append(list(periods))
        if through:
            where.append("period_end <= (SELECT max(period_end) FROM kpi_results WHERE period = ?)")
            args.append(through)
        have = set(_columns(con, "kpi_results"))
        select = ", ".join(f'"{f.name}"' if f.name in have else f'CAST(NULL AS {_sql_type(f)}) AS "{f.name}"'
                           for f in STORED_SCHEMA)  # a column an older history lacks reads as null
        sql = f"SELECT {select} FROM kpi_results" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY kpi_set, kpi, standardised, period_end, level, unit_code, breakdown, breakdown_value"
        return con.sql(sql, params=args).to_arrow_table().cast(STORED_SCHEMA)
    finally:
        con.close()


def runs(path: Path) -> pa.Table:
    """The run log, oldest first; columns an older log lacks (``disclosure``) read as null."""
    con = _connect_read(path)
    try:
        have = set(_columns(con, "kpi_runs"))
        select = ", ".join(c if c in have else f"CAST(NULL AS {_RUN_LOG_TYPES.get(c, 'VARCHAR')}) AS {c}"
                           for c in RUN_LOG_COLUMNS)
        return con.sql(f"SELECT {select} FROM kpi_runs ORDER BY started").to_arrow_table()
    finally:
        con.close()


def drop_periods(path: Path, kpi_set: str, periods: list[str]) -> int:
    """Remove ``kpi_set``'s results for ``periods`` (e.g. zeros computed before the data
    began), in one transaction, logged in the run log as a 'dropped' entry."""
    if not path.exists():
        raise HistoryError(f"no KPI history at {path}")
    now = dt.datetime.now(dt.UTC)
    with writer_lock(path):
        con = _connect_write(path)
        try:
            _create(con)
            con.execute("BEGIN TRANSACTION")
            n = con.execute("SELECT count(*) FROM kpi_results WHERE kpi_set = ? AND period IN (SELECT unnest(?))",
                            [kpi_set, periods]).fetchone()[0]
            con.execute("DELETE FROM kpi_results WHERE kpi_set = ? AND period IN (SELECT unnest(?))",
                        [kpi_set, periods])
            _log(con, {"log_id": f"drop-{now:%Y%m%dT%H%M%S%f}", "kpi_set": kpi_set, "periods": json.dumps(periods),
                       "casefind_version": __version__, "started": now, "finished": now, "status": "dropped",
                       "rows": -n, "message": f"removed {n} rows for {', '.join(periods)}"})
            con.execute("COMMIT")
        finally:
            con.close()
    return n


def export(path: Path, out: Path, kpi_set: str | None, periods: list[str]) -> int:
    """Write the history (one KPI set, some periods) to .csv (spreadsheet-safe) or .parquet,
    replacing ``out`` only when complete: the published figures only, never the unrounded
    ``exact_*`` ones. Returns the rows written."""
    import pyarrow.parquet as pq

    from casefind.errors import UsageError
    from casefind.outputs import write_atomic, write_csv

    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise UsageError(f"{out}: write .csv or .parquet", option="--export")
    if not out.parent.is_dir():
        raise UsageError(f"the folder {out.parent} does not exist", option="--export")
    table = read(path, kpi_set, periods or None)
    table = table.drop_columns([c for c in table.column_names if c.startswith("exact_")])
    if out.suffix == ".csv":
        write_csv(table, out)
    else:
        write_atomic(out, lambda tmp: pq.write_table(table, tmp))
    return table.num_rows


def snapshots_of(path: Path, table: pa.Table) -> list[str]:
    """The store snapshots behind the runs whose rows ``table`` holds (from the run log)."""
    run_ids = set(table.column("run_id").to_pylist())
    return sorted({r["store_snapshot"] for r in runs(path).to_pylist() if r["run_id"] in run_ids})
