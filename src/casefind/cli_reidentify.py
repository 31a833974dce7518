"""``casefind reidentify --practice CODE LIST --output FILE``: one practice's rows of a run's
list with NHS number, name and date of birth added, for that practice's own use (audited;
docs/audit.md)."""
from __future__ import annotations

import csv
import getpass
import io
from dataclasses import dataclass
from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option, resolve_store
from casefind.errors import DataError, UsageError

DELIMITERS = (",", ";", "\t")
WARNING = ("# IDENTIFIABLE: NHS numbers and names of patients of practice {practice}, for their direct care "
           "only. Keep it on the practice's systems; do not email it outside secure NHS mail.")


@dataclass
class ListRows:
    """A list read as text cells: lines above the header (a practice file's instructions),
    the header, the rows, and where the pseudonymised id and practice are."""

    preamble: list[list[str]]
    header: list[str]
    rows: list[list[str]]
    id_col: int
    practice_col: int
    titled: bool  # plain titles ("Patient ID (pseudonymised)") rather than machine names


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return "unknown"


def _machine_name(cell: str) -> str | None:
    from casefind.lists import practice_file

    text = " ".join(cell.split())
    return text if text in ("patient_id", "practice") else practice_file.import_name(text)


def _decode(data: bytes, path: Path) -> str:
    for codec in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: not UTF-8 or Windows-1252 text", "give the list file `casefind run` wrote")


def _from_csv(path: Path) -> ListRows:
    from casefind.outputs import restore

    text = _decode(path.read_bytes(), path)
    for delimiter in DELIMITERS:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        for n, record in enumerate(records):
            names = [_machine_name(c) for c in record]
            if "patient_id" in names and "practice" in names:
                rows = [[restore(c.strip()) or "" for c in r] for r in records[n + 1:] if any(c.strip() for c in r)]
                return ListRows(records[:n], record, rows, names.index("patient_id"), names.index("practice"),
                                titled=record[names.index("patient_id")].strip() != "patient_id")
    raise DataError(f"{path}: no header row with the pseudonymised id and the practice",
                    "give a list file written by `casefind run` (practices/<CODE>.csv, list.csv) or its run folder")


def _from_parquet(path: Path) -> ListRows:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path)
    except (OSError, pa.ArrowInvalid):
        raise DataError(f"{path}: not a Parquet file casefind can read") from None
    if "patient_id" not in t.column_names or "practice" not in t.column_names:
        raise DataError(f"{path}: no patient_id and practice columns", "give the list.parquet of a run")
    cols = [["" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))
             for v in pc.cast(t.column(c), pa.string()).to_pylist()] if t.schema.field(c).type != pa.bool_()
            else ["" if v is None else str(v).lower() for v in t.column(c).to_pylist()] for c in t.column_names]
    rows = [list(r) for r in zip(*cols)]
    names = t.column_names
    return ListRows([], names, rows, names.index("patient_id"), names.index("practice"), titled=False)


def read_rows(path: Path) -> ListRows:
    """A run folder (its list.parquet), a list's .parquet, or a list CSV (a practice file
    with its instructions and plain titles, or list.csv)."""
    if path.is_dir():
        path = path / "list.parquet"
    if not path.is_file():
        raise UsageError(f"no list file {path}", "give practices/<CODE>.csv of a run, its list.csv, or the run "
                                                 "folder", option="LIST")
    if path.suffix.lower() == ".parquet":
        return _from_parquet(path)
    return _from_csv(path)


def _check_output(output: Path, store_root: Path, list_path: Path) -> None:
    out = output.absolute().resolve()
    if output.is_dir() or not out.parent.is_dir():
        raise UsageError(f"{output}: give a new file's name in an existing folder", option="--output")
    if output.suffix.lower() not in (".csv", ".xlsx"):
        raise UsageError(f"{output.name}: the identifiable list is written as .csv, or .xlsx for the named "
                         "workbook", option="--output")
    if out == list_path.absolute().resolve():
        raise UsageError("--output would overwrite the list: write the identifiable copy to a new file",
                         option="--output")
    store = store_root.absolute().resolve()
    if store == out.parent or store in out.parents:
        raise UsageError(f"{output} is inside the store {store_root}: identities are never kept in the "
                         "analysis store", option="--output")


def _identified(lr: ListRows, practice: str, ids: dict, left_out: set[str]) -> tuple[list[str], list[list[str]]]:
    """The header and rows with NHS number, name and date of birth after the pseudonymised id."""
    from casefind.outputs import safe_cell

    added = ["NHS number", "Name", "Date of birth"] if lr.titled else ["nhs_number", "name", "birth_date"]
    at = lr.id_col + 1
    header = lr.header[:at] + added + lr.header[at:]
    rows = []
    for r in lr.rows:
        if r[lr.practice_col] != practice or r[lr.id_col] in left_out:
            continue
        who = ids.get(r[lr.id_col])
        extra = ["", "", ""] if who is None else \
            [who.nhs_number_formatted, who.display_name, who.birth_date.isoformat() if who.birth_date else ""]
        rows.append([safe_cell(c) for c in r[:at] + extra + r[at:]])
    return header, rows


def _write(output: Path, practice: str, lr: ListRows, header: list[str], rows: list[list[str]]) -> None:
    from casefind.outputs import safe_cell, write_atomic

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([WARNING.format(practice=practice)])
    for line in lr.preamble:
        w.writerow([safe_cell(c) for c in line])
    w.writerow(header)
    w.writerows(rows)
    data = b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")
    write_atomic(output, lambda tmp: Path(tmp).write_bytes(data))
    output.chmod(0o600)


def _list_about(lr: ListRows) -> tuple[str | None, str | None]:
    """The run and rule the rows name (the first row's), for the audit entry."""
    names = [_machine_name(c) if lr.titled else c for c in lr.header]
    first = lr.rows[0] if lr.rows else []
    def cell(name):
        return first[names.index(name)] or None if name in names and first else None
    return cell("run_id"), cell("rule")


def reidentify(store, practice, list_path, output, user, role, as_json):
    """Add NHS number, name and date of birth to one practice's rows of a list.

    \b
    LIST is a run's practices/<CODE>.csv, its list.csv or list.parquet, or the run
    folder. Only rows of --practice are written, and only for patients registered
    there now; the file is UTF-8 with a BOM for Excel, readable only by you. Every
    call is written to the audit log (pseudonymised ids only): see docs/audit.md.
    """
    from casefind.reidentify import identities_for, registered_ids

    root = resolve_store(store)
    _check_output(output, root, list_path)
    if output.suffix.lower() == ".xlsx":
        summary = _named_xlsx(root, practice, list_path, output, user, role)
        if as_json:
            emit_json(summary)
        else:
            click.echo(f"wrote the named workbook of practice {practice} to {output} ({summary['rows']} rows, "
                       f"{summary['identified']} identified); audited")
        return
    lr = read_rows(list_path)
    mine = [r[lr.id_col] for r in lr.rows if r[lr.practice_col] == practice]
    other_practices = len(lr.rows) - len(mine)
    if not mine:
        raise UsageError(f"no rows of practice {practice} in {list_path} ({other_practices} of other practices)",
                         "give that practice's own list, or the run folder", option="--practice")
    moved = set(mine) - registered_ids(root, practice, mine)
    run_id, rule = _list_about(lr)
    ids = identities_for(root, practice=practice, patient_ids=[p for p in mine if p not in moved], user=user,
                         role=role, purpose=f"casefind reidentify to {output.name}"[:120], run_id=run_id,
                         rule=rule)
    header, rows = _identified(lr, practice, ids, moved)
    _write(output, practice, lr, header, rows)
    summary = {"output": str(output), "practice": practice, "rows": len(rows), "identified": len(ids),
               "without_identity": len(rows) - len(ids), "left_out_other_practices": other_practices,
               "left_out_no_longer_registered": len(moved), "user": user}
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"wrote {len(rows)} rows of practice {practice} to {output} ({len(ids)} identified; left out "
                   f"{other_practices} of other practices, {len(moved)} no longer registered there); audited")


def _workbook_source(list_path: Path, practice: str) -> Path:
    """The run's pseudonymised workbook for ``practice``: given, or in the run folder given."""
    from casefind.outputs import UnsafePathError, safe_child

    if list_path.is_dir():
        try:
            list_path = safe_child(list_path / "practices", practice, ".xlsx")
        except UnsafePathError:
            raise UsageError(f"practice code {practice!r} is not a plain code", option="--practice") from None
    if list_path.suffix.lower() != ".xlsx" or not list_path.is_file():
        raise UsageError(f"no workbook {list_path} to add names to: give --output a .csv name for an identifiable "
                         "CSV", "the named workbook is made from the run's practices/<CODE>.xlsx: give that file or "
                         "the run folder", option="LIST")
    return list_path


def _named_xlsx(root: Path, practice: str, list_path: Path, output: Path, user: str, role: str) -> dict:
    """The run's workbook for ``practice`` with its patients by name (lists/xlsx.py
    ``named_workbook``), as the app's download gives it; patients no longer registered there
    keep their row, without a name."""
    import datetime as dt

    from casefind.lists.xlsx import named_workbook, read_workbook
    from casefind.outputs import write_atomic
    from casefind.reidentify import identities_for, registered_ids

    source = _workbook_source(list_path, practice)
    try:
        header, rows = read_workbook(source)
    except ValueError as e:
        raise DataError(f"{source}: {e}", "give the practices/<CODE>.xlsx that `casefind run` wrote") from None
    pid, code = header.index("patient_id"), header.index("practice") if "practice" in header else None
    mine = [c[pid] for _, c in rows if c[pid] and (code is None or c[code] == practice)]
    if len(mine) != sum(1 for _, c in rows if c[pid]):
        raise UsageError(f"{source} holds rows of another practice than {practice}", option="--practice")
    here = registered_ids(root, practice, mine)
    found = identities_for(root, practice=practice, patient_ids=[p for p in mine if p in here], user=user,
                           role=role, purpose=f"casefind reidentify to {output.name}"[:120],
                           detail={"format": "xlsx", "identifiable": True, "rows": len(mine)})
    today = dt.date.today()
    people = {p: (i.nhs_number_formatted, i.display_name, i.date_of_birth, i.age_on(today)) for p, i in found.items()}
    data, n = named_workbook(source, people, practice)
    write_atomic(output, lambda tmp: Path(tmp).write_bytes(data))
    output.chmod(0o600)
    return {"output": str(output), "practice": practice, "rows": n, "identified": len(found),
            "without_identity": n - len(found), "left_out_no_longer_registered": len(mine) - len(here), "user": user}


command = click.command("reidentify")(
    click.option("--store", type=click.Path(path_type=Path), default=None,
                 help="Population store (default: CASEFIND_STORE, casefind.toml, else the demo workspace).")(
    click.option("--practice", required=True, help="The practice whose patients to identify (its code).")(
    click.argument("list_path", metavar="LIST", type=click.Path(path_type=Path))(
    click.option("--output", type=click.Path(path_type=Path), required=True,
                 help="The identifiable file to write (a new file, outside the store): .csv, or .xlsx for "
                      "the named workbook (from the run's practices/<CODE>.xlsx or the run folder).")(
    click.option("--user", default=_login, show_default="your login name",
                 help="Who is re-identifying, for the audit log.")(
    click.option("--role", type=click.Choice(["clinician", "practice_admin"]), default="practice_admin",
                 show_default=True, help="Your role at the practice, for the audit log.")(
    json_option(reidentify))))))))
