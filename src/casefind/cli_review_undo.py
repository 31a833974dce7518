"""``casefind review undo``: withdraw a decision recorded for a patient on a rule's list.

The withdrawal is appended to the review log (nothing is deleted): the history keeps the
decision and its withdrawal, and the next run's ``reviewed()`` no longer counts it.
"""
from __future__ import annotations

from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option, resolve_store


@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Population store to use. Default: $CASEFIND_STORE, else casefind.toml's [paths] store, "
                   "else the demo workspace.")
@click.option("--rule", required=True, help="The rule whose list the patient was on (e.g. frail).")
@click.option("--patient", "patient_id", required=True, help="Pseudonymised patient id, as on the list.")
@click.option("--on", "withdrawn_on", type=click.DateTime(["%Y-%m-%d"]),
              help="Date of the withdrawal (default: today).")
@click.option("--reviewer", help="Who withdrew the decision.")
@click.option("--note", help="Why it was withdrawn (optional).")
@json_option
def undo(store, rule, patient_id, withdrawn_on, reviewer, note, as_json):
    """Withdraw the patient's decision on RULE's list. It is recorded as withdrawn (the
    history is kept); from then on the patient counts as not reviewed for the rule, and a
    new decision may be recorded, even the same day."""
    from casefind.lists.review import withdraw_decision
    from casefind.ui import console

    withdrawn = withdraw_decision(resolve_store(store), rule=rule, patient_id=patient_id, reviewer=reviewer,
                                  on=withdrawn_on.date() if withdrawn_on else None, note=note)
    if as_json:
        emit_json({"command": "review undo", "rule": rule, "withdrawn": bool(withdrawn)})
    else:
        console.print("withdrawn" if withdrawn else "no decision in force for that patient and rule; nothing recorded")


command = click.command("undo")(undo)
