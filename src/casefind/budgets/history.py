"""The cohort register's changes in DuckDB, beside the KPI history (``budgets.duckdb``).

One row per join or leave, dated, with its reason and the run that found it. Re-running a
year replaces that budget's rows for the year in one transaction, so a crash leaves the
earlier rows as they were. One writer at a time (a lock file beside the database).
"""
from __future__ import annotations

import datetime as dt
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from casefind.errors import BusyError, CasefindError
from casefind.kpis import history as kpi_history

COLUMNS = ("budget VARCHAR, year VARCHAR, patient_id VARCHAR, change_date DATE, change VARCHAR, "
           "reason VARCHAR, run_id VARCHAR, recorded_at TIMESTAMPTZ")
# each year's settlement, so the next year's statement can bring forward what was carried
SETTLEMENT = ("budget VARCHAR, year VARCHAR, run_id VARCHAR, carried_forward DOUBLE, adjusted_total DOUBLE, "
              "recorded_at TIMESTAMPTZ")


class RegisterLocked(BusyError):
    """Another budget run is writing the register database."""


class RegisterDbError(CasefindError):
    """A register database that cannot be opened."""


def default_path(store_root: str | Path) -> Path:
    return kpi_history.default_path(store_root).parent / "budgets.duckdb"


@contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RegisterLocked(f"the budget register {path} is being written by another run (pid in "
                                 f"{fh.name}); nothing changed: run again when it has finished") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"casefind budget (pid {os.getpid()})")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write(path: Path, budget: str, year: str, changes: pa.Table, run_id: str,
          settlement: tuple[float, float] = (0.0, 0.0)) -> int:
    """Replace (budget, year)'s changes with ``changes`` (patient_id, change_date, change,
    reason) and its settlement (carried forward, adjusted total); returns the rows written."""
    now = dt.datetime.now(dt.UTC)
    with _lock(path):
        try:
            con = duckdb.connect(str(path))
        except duckdb.Error as e:
            raise RegisterDbError(f"cannot open the budget register {path}: {e}") from None
        try:
            con.execute(f"CREATE TABLE IF NOT EXISTS register_changes ({COLUMNS})")
            con.execute(f"CREATE TABLE IF NOT EXISTS settlements ({SETTLEMENT})")
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("DELETE FROM register_changes WHERE budget = ? AND year = ?", [budget, year])
                con.execute("DELETE FROM settlements WHERE budget = ? AND year = ?", [budget, year])
                con.execute("INSERT INTO settlements VALUES (?, ?, ?, ?, ?, ?)",
                            [budget, year, run_id, float(settlement[0]), float(settlement[1]), now])
                con.register("new_changes", changes)
                con.execute("INSERT INTO register_changes SELECT ?, ?, patient_id, change_date, change, reason, ?, ? "
                            "FROM new_changes", [budget, year, run_id, now])
                con.unregister("new_changes")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()
    return changes.num_rows


def carried_into(path: Path, budget: str, previous_year: str) -> float | None:
    """What the previous year's run of this budget carried forward (None: no such run)."""
    if not Path(path).exists():
        return None
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'settlements'"
        if not con.execute(tables).fetchone()[0]:
            return None
        row = con.execute("SELECT carried_forward FROM settlements WHERE budget = ? AND year = ?",
                          [budget, previous_year]).fetchone()
        return None if row is None else float(row[0])
    finally:
        con.close()


def read(path: Path, budget: str | None = None, year: str | None = None) -> pa.Table:
    if not Path(path).exists():
        raise RegisterDbError(f"no budget register at {path}", "run casefind budget FILE --year YYYY-YY first")
    con = duckdb.connect(str(path), read_only=True)
    try:
        where, args = [], []
        for col, v in (("budget", budget), ("year", year)):
            if v is not None:
                where.append(f"{col} = ?")
                args.append(v)
        sql = "SELECT * FROM register_changes" + (" WHERE " + " AND ".join(where) if where else "")
        return con.sql(sql + " ORDER BY budget, year, change_date, patient_id, change", params=args).to_arrow_table()
    finally:
        con.close()
