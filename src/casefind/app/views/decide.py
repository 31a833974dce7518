"""Decisions from the patient page: record, change, withdraw.

A decision goes to the review log through ``lists.review.record_decision`` (the log ``review
import`` writes, so the next run's ``reviewed()`` sees it); a change on another day is a new
decision; a change the same day, and a withdrawal, first withdraw the decision in force
(``withdraw_decision``), so the history keeps every step. The patient is the one the URL's
handle stands for in this session: form fields never name a patient, practice or run.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from casefind.app import bridge
from casefind.app.security import check_csrf
from casefind.app.views.common import NAMED, guarded, render
from casefind.app.views.pages import patient_target
from casefind.app.work import DECLINE_REASONS
from casefind.errors import CasefindError
from casefind.lists.review import DECISIONS, record_decision
from casefind.store.decisions import DecisionConflict

try:  # pragma: no cover - arrives with the review-list work
    from casefind.lists.review import withdraw_decision
except ImportError:  # pragma: no cover
    withdraw_decision = None

MAX_NOTE = 500


def _note(decision: str, reason: str | None, note: str) -> str | None:
    parts = ([reason] if decision == "declined" and reason else []) + ([note] if note else [])
    return "; ".join(parts) or None


async def _form(request: Request, s) -> dict:
    form = await request.form()
    check_csrf(s.csrf, form.get("csrf"))
    return {k: str(form.get(k, "")).strip() for k in ("decision", "reason", "note")}


def _problem(request, s, principal, message: str) -> Response:
    return render(request, "problem.html", s, code=400, message=message, back=request.url.path.rsplit("/", 1)[0])


@guarded(NAMED, page=False)
async def decide(request: Request, s, principal) -> Response:
    form = await _form(request, s)  # the body is read on the event loop; the writes in the thread pool
    return await run_in_threadpool(_decide, request, s, principal, form)


def _decide(request: Request, s, principal, form: dict) -> Response:
    _, row = patient_target(request, s, principal)
    decision, reason, note = form["decision"], form["reason"] or None, form["note"][:MAX_NOTE]
    if decision not in DECISIONS:
        return _problem(request, s, principal, "Choose accept, decline or already known.")
    if decision == "declined" and reason not in DECLINE_REASONS:
        return _problem(request, s, principal, "Choose why the patient is declined.")
    store_root = request.app.state.store_root
    text = _note(decision, reason, note)
    try:
        try:
            record_decision(store_root, rule=row.rule, patient_id=row.patient_id, decision=decision,
                            reviewer=principal.name, note=text)
        except DecisionConflict:
            if withdraw_decision is None:
                raise
            withdraw_decision(store_root, rule=row.rule, patient_id=row.patient_id, reviewer=principal.name,
                              note=f"changed to {decision}")
            record_decision(store_root, rule=row.rule, patient_id=row.patient_id, decision=decision,
                            reviewer=principal.name, note=text)
    except CasefindError as e:
        return _problem(request, s, principal, e.message)
    bridge.record(store_root, user=principal.name, role=principal.role, action="decide", practice=row.practice,
                  patient_id=row.patient_id, run_id=row.run_id, rule=row.rule,
                  detail={"decision": decision, "reason": reason if decision == "declined" else None})
    return RedirectResponse(f"{request.url.path.rsplit('/', 1)[0]}?done=saved", status_code=303)


@guarded(NAMED, page=False)
async def withdraw(request: Request, s, principal) -> Response:
    form = await _form(request, s)
    return await run_in_threadpool(_withdraw, request, s, principal, form)


def _withdraw(request: Request, s, principal, form: dict) -> Response:
    _, row = patient_target(request, s, principal)
    if withdraw_decision is None:
        return _problem(request, s, principal, "Withdrawing a decision is not available in this version.")
    store_root = request.app.state.store_root
    try:
        done = withdraw_decision(store_root, rule=row.rule, patient_id=row.patient_id, reviewer=principal.name,
                                 note=form["note"][:MAX_NOTE] or None)
    except CasefindError as e:
        return _problem(request, s, principal, e.message)
    if not done:
        return _problem(request, s, principal, "There is no decision in force to withdraw.")
    bridge.record(store_root, user=principal.name, role=principal.role, action="withdraw", practice=row.practice,
                  patient_id=row.patient_id, run_id=row.run_id, rule=row.rule)
    return RedirectResponse(f"{request.url.path.rsplit('/', 1)[0]}?done=withdrawn", status_code=303)
