"""The practice's work: its lists, a patient, the print view and the spreadsheet download.

Names reach a page only through ``bridge.identities_for`` (which audits each call), only for
clinicians and administrators, and only for their own practices; analysts get pseudonyms.
Patients appear in URLs as this session's opaque handles.
"""
from __future__ import annotations

import datetime as dt
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from casefind.app import bridge
from casefind.app.views.common import NAMED, PRACTICE_VIEWERS, guarded, not_found, practices_for, render
from casefind.app.work import DECLINE_REASONS, LABELS, Row, ppv
from casefind.errors import CasefindError

STATUSES = ("all", "undecided", "decided")
log = logging.getLogger("casefind.app")


def _person(ident) -> dict:
    """An identity as the page shows it (whatever the identities module calls its fields)."""
    given = getattr(ident, "given_name", None) or ""
    family = getattr(ident, "family_name", None) or ""
    name = getattr(ident, "name", None) or f"{family.upper()}, {given}".strip(", ")
    nhs = str(getattr(ident, "nhs_number", "") or "")
    born = getattr(ident, "date_of_birth", None) or getattr(ident, "birth_date", None)
    age = getattr(ident, "age", None)
    if age is None and isinstance(born, dt.date):
        today = dt.date.today()
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return {"nhs_number": f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}" if len(nhs) == 10 else nhs, "name": name,
            "born": born, "age": age}


def identities(request: Request, principal, practice: str, rows: list[Row], action: str, purpose: str) -> dict:
    """patient_id → the person, for a named role's own practice; {} for anyone else."""
    if principal.role not in NAMED or practice not in principal.practices or not rows:
        return {}
    try:
        found = bridge.identities_for(request.app.state.store_root, practice=practice,
                                      patient_ids=[r.patient_id for r in rows], user=principal.name,
                                      role=principal.role, purpose=purpose, run_id=rows[0].run_id,
                                      rule=rows[0].rule, action=action)
    except CasefindError as e:  # refused (a patient moved practice) or no identities: audited; no names shown
        log.warning("no names shown on a %s page: %s", action, type(e).__name__)
        return {}
    return {pid: _person(i) for pid, i in found.items()}


@guarded(("clinician", "practice_admin", "analyst", "auditor"))
def home(request: Request, s, principal) -> Response:
    if principal.role == "auditor":
        return RedirectResponse("/audit", status_code=303)
    mine = practices_for(request, principal)
    if len(mine) == 1:
        return RedirectResponse(f"/practice/{mine[0]}", status_code=303)
    work = request.app.state.work
    runs = work.latest_runs()
    counts = {p: sum(1 for r in runs for q in r.practice_of.values() if q == p) for p in mine}
    return render(request, "practices.html", s, practices=mine, counts=counts)


def _practice_or_404(request: Request, principal, code: str) -> str:
    if code not in practices_for(request, principal):
        raise not_found()
    return code


def _lists(request: Request, practice: str, rule: str | None, status: str) -> list[dict]:
    """Per latest run (of ``rule``, or all): its rows for the practice, filtered, with PPV."""
    work = request.app.state.work
    out = []
    for listing in work.latest_runs():
        if rule and listing.rule != rule:
            continue
        rows = work.with_decisions(work.rows(listing, practice))
        stats = ppv(rows)
        if status == "undecided":
            rows = [r for r in rows if r.decision is None]
        elif status == "decided":
            rows = [r for r in rows if r.decision is not None]
        out.append({"listing": listing, "rows": rows, "ppv": stats})
    return out


@guarded(PRACTICE_VIEWERS)
def practice(request: Request, s, principal) -> Response:
    code = _practice_or_404(request, principal, request.path_params["code"])
    rules = [r.rule for r in request.app.state.work.latest_runs()]
    rule = request.query_params.get("rule") or None
    status = request.query_params.get("status", "all")
    rule = rule if rule in rules else None
    status = status if status in STATUSES else "all"
    lists = _lists(request, code, rule, status)
    for item in lists:
        item["people"] = identities(request, principal, code, item["rows"], "view_list", "review the list")
        item["handles"] = {r.patient_id: s.handle_for(r.run_id, r.patient_id) for r in item["rows"]}
    return render(request, "practice.html", s, practice=code, lists=lists, rules=rules, rule=rule, status=status,
                  statuses=STATUSES, named=principal.role in NAMED, mine=practices_for(request, principal))


def patient_target(request: Request, s, principal):
    """(listing, row) a handle of this session stands for, if its practice is one of this
    person's; 404 otherwise."""
    target = s.handles.get(request.path_params["handle"])
    if target is None:
        raise not_found()
    work = request.app.state.work
    listing = work.run(target[0])
    practice = listing.practice_of.get(target[1]) if listing else None
    if practice is None or practice not in practices_for(request, principal):
        raise not_found()
    row = next((r for r in work.rows(listing, practice) if r.patient_id == target[1]), None)
    if row is None:
        raise not_found()
    return listing, row


@guarded(PRACTICE_VIEWERS)
def patient(request: Request, s, principal) -> Response:
    listing, row = patient_target(request, s, principal)
    work = request.app.state.work
    work.with_decisions([row])
    history = work.history(patient_ids={row.patient_id})
    earlier = [d for items in history.values() for d in reversed(items)]  # the latest first, per rule
    people = identities(request, principal, row.practice, [row], "view_patient", "review the patient")
    message = request.query_params.get("done")
    return render(request, "patient.html", s, listing=listing, row=row, person=people.get(row.patient_id),
                  earlier=earlier, labels=LABELS, reasons=DECLINE_REASONS, named=principal.role in NAMED,
                  handle=request.path_params["handle"], done=message if message in ("saved", "withdrawn") else None)


@guarded(PRACTICE_VIEWERS)
def print_view(request: Request, s, principal) -> Response:
    code = _practice_or_404(request, principal, request.path_params["code"])
    lists = _lists(request, code, None, "all")
    for item in lists:
        item["people"] = identities(request, principal, code, item["rows"], "print_list", "MDT meeting")
    if principal.role not in NAMED:  # identities_for audits the named print; record the pseudonymised one
        bridge.record(request.app.state.store_root, user=principal.name, role=principal.role, action="print_list",
                      practice=code)
    return render(request, "print.html", s, practice=code, lists=lists, named=principal.role in NAMED,
                  printed=dt.datetime.now().strftime("%d %B %Y %H:%M"))


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@guarded(NAMED, page=False)
def xlsx_download(request: Request, s, principal) -> Response:
    """The practice's workbook of the latest run of a rule, to take offline, for its own
    clinicians and administrators (the route is for no other role): by name (NHS number,
    name, date of birth, age beside the pseudonym), audited as an identifiable export, with
    the instructions sheet and the Decision drop-down; ``review import`` reads it back by
    the pseudonym. Analysts use the run's pseudonymised practices/<CODE>.xlsx."""
    code = _practice_or_404(request, principal, request.path_params["code"])
    work = request.app.state.work
    listing = next((r for r in work.latest_runs() if r.rule == request.path_params["rule"]), None)
    path = work.practice_workbook(listing, code) if listing else None
    if path is None:
        raise not_found()
    data = _named_workbook(request, principal, listing, code, path)
    name = f"{listing.rule}-{listing.as_of.isoformat()}-{code}-named.xlsx"
    return Response(data, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _named_workbook(request: Request, principal, listing, code: str, path) -> bytes:
    """The run's workbook with the practice's patients by name; names come only through
    ``identities_for``, whose audit entry (export_list: who, practice, run, rows) is on disk
    before the names are read. A refusal (a patient moved practice) is audited there and
    answers 409, with nothing sent."""
    from casefind.lists.xlsx import named_workbook

    rows = request.app.state.work.rows(listing, code)
    today = dt.date.today()
    if not rows:  # nobody listed: nothing identifiable in it, but the download is still recorded
        bridge.record(request.app.state.store_root, user=principal.name, role=principal.role, action="export_list",
                      practice=code, run_id=listing.run_id, rule=listing.rule,
                      detail={"format": "xlsx", "identifiable": True, "rows": 0})
    try:
        found = bridge.identities_for(request.app.state.store_root, practice=code,
                                      patient_ids=[r.patient_id for r in rows], user=principal.name,
                                      role=principal.role, purpose="offline review of the list",
                                      run_id=listing.run_id, rule=listing.rule, action="export_list",
                                      detail={"format": "xlsx", "identifiable": True, "rows": len(rows)})
    except CasefindError as e:
        log.warning("named workbook refused: %s", type(e).__name__)
        raise HTTPException(409, "The list can't be downloaded by name now (its patients have changed "
                                 "practice since the run). Ask for a new run of the list.") from None
    people = {pid: (i.nhs_number_formatted, i.display_name, i.date_of_birth, i.age_on(today))
              for pid, i in found.items()}
    data, _ = named_workbook(path, people, code)
    return data
