"""``casefind audit``: check the audit log's hash chain, show and export its entries
(docs/audit.md)."""
from __future__ import annotations

from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option, resolve_store
from casefind.errors import CasefindError

_DATE = click.DateTime(formats=["%Y-%m-%d"])


class AuditChainBroken(CasefindError):
    """``audit verify`` found the chain broken: every problem was listed (exit 1)."""


def _store_option(f):
    return click.option("--store", type=click.Path(path_type=Path), default=None,
                        help="Population store whose audit log to read (default: CASEFIND_STORE, casefind.toml, "
                             "else the demo workspace).")(f)


def _filters(f):
    for decorator in reversed([
        click.option("--user", default=None, help="Only this user's entries."),
        click.option("--practice", default=None, help="Only entries about this practice (its code)."),
        click.option("--action", default=None, help="Only this action (e.g. view_patient, decide, reidentify)."),
        click.option("--patient", "patient_id", default=None, help="Only entries naming this pseudonymised id."),
        click.option("--since", type=_DATE, default=None, help="From this UTC day (YYYY-MM-DD), inclusive."),
        click.option("--until", type=_DATE, default=None, help="To this UTC day (YYYY-MM-DD), inclusive."),
    ]):
        f = decorator(f)
    return f


def _chosen(user, practice, action, patient_id, since, until) -> dict:
    return {"user": user, "practice": practice, "action": action, "patient_id": patient_id,
            "since": since.date() if since else None, "until": until.date() if until else None}


command = click.Group("audit", help="The audit trail of identifiable views and decisions: verify, show, export.")


@command.command("verify")
@_store_option
@click.option("--anchor", "anchors", multiple=True, metavar="SEQ:HASH",
              help="A head recorded earlier (as this command prints it): the log must still hold that entry "
                   "with that hash (repeatable).")
@json_option
def verify_command(store, anchors, as_json):
    """Check the hash chain: exit 0 when intact, 1 listing every problem.

    \b
    Finds an edited, removed, reordered or inserted entry and a bad line. Prints
    the head (SEQ:HASH): record it somewhere the store's users cannot write (an
    email, a ticket, a printed log) and give it back later with --anchor to prove
    that nobody rewrote the log up to it.
    """
    from casefind.audit import parse_anchor, verify

    root = resolve_store(store)
    result = verify(root, [parse_anchor(a) for a in anchors])
    head = f"{result.head['seq']}:{result.head['hash']}" if result.head else None
    if as_json:
        emit_json({"ok": result.ok, "entries": result.entries, "problems": result.problems, "head": head})
    elif result.ok:
        click.echo(f"audit log intact: {result.entries} entries" + (f"; head {head}" if head else ""))
    else:
        for p in result.problems:
            click.echo(f"  {p}", err=True)
    if not result.ok:
        raise AuditChainBroken(f"the audit log's chain is broken: {len(result.problems)} problem(s) in "
                               f"{result.entries} entries", "keep a copy of the log as it is and tell your "
                               "information governance lead; the problems name the entries concerned")


def _show_table(rows: list[dict], total: int) -> None:
    from rich.table import Table
    from rich.text import Text

    from casefind.ui import console

    table = Table(box=None, header_style="bold")
    for name in ("seq", "time (UTC)", "user", "action", "practice", "patients", "rule"):
        table.add_column(name, overflow="fold")
    for e in rows:
        ids = [e["patient_id"]] if e.get("patient_id") else (e.get("patient_ids") or [])
        patients = ids[0] + (f" +{len(ids) - 1}" if len(ids) > 1 else "") if ids else ""
        cells = [str(e["seq"]), e["time"][:16].replace("T", " "), f"{e['user']} ({e['role']})", e["action"],
                 e.get("practice") or "", patients, e.get("rule") or ""]
        table.add_row(*[Text(c) for c in cells])  # Text: data is never read as markup
    console.print(table)
    if total > len(rows):
        console.print(Text(f"the latest {len(rows)} of {total} entries (--limit)"))


@command.command("show")
@_store_option
@_filters
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="Show the latest N entries.")
@json_option
def show_command(store, user, practice, action, patient_id, since, until, limit, as_json):
    """The entries that match the filters, latest last."""
    from casefind.audit import entries

    found = entries(resolve_store(store), **_chosen(user, practice, action, patient_id, since, until))
    if as_json:
        emit_json(found[-limit:])
    else:
        _show_table(found[-limit:], len(found))


@command.command("export")
@_store_option
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The file to write: .csv (for a spreadsheet, UTF-8 with BOM) or .parquet.")
@_filters
@json_option
def export_command(store, output, user, practice, action, patient_id, since, until, as_json):
    """Write the entries that match the filters to a CSV or Parquet file."""
    from casefind.audit import export

    n = export(resolve_store(store), output, **_chosen(user, practice, action, patient_id, since, until))
    if as_json:
        emit_json({"output": str(output), "entries": n})
    else:
        click.echo(f"wrote {n} audit entries to {output}")
