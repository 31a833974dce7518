"""The auditors' page: the audit trail, filtered, and its CSV export (casefind.audit.export).
Entries hold pseudonymised ids only, never a name or NHS number."""
from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from casefind import audit
from casefind.app.views.common import guarded, render
from casefind.errors import CasefindError

SHOWN = 500  # the newest entries on the page; the export has them all


def _filters(request: Request) -> tuple[dict, str | None]:
    q, out, problem = request.query_params, {}, None
    for key in ("user", "practice", "action", "patient_id"):
        value = q.get(key, "").strip()[:200]
        if value:
            out[key] = value
    if out.get("action") and out["action"] not in audit.ACTIONS:
        problem = f"Unknown action: choose one of {', '.join(audit.ACTIONS)}."
        out.pop("action")
    for key in ("since", "until"):
        value = q.get(key, "").strip()
        if value:
            try:
                out[key] = dt.date.fromisoformat(value)
            except ValueError:
                problem = f"{key} must be a date (YYYY-MM-DD)."
    return out, problem


@guarded(("auditor",))
def audit_page(request: Request, s, principal) -> Response:
    filters, problem = _filters(request)
    rows = audit.entries(request.app.state.store_root, **filters)
    audit.record(request.app.state.store_root, user=principal.name, role=principal.role, action="audit_view",
                 detail={k: str(v) for k, v in filters.items()})
    shown = list(reversed(rows))[:SHOWN]
    return render(request, "audit.html", s, entries=shown, total=len(rows), filters=filters, problem=problem,
                  actions=audit.ACTIONS, query=request.url.query)


@guarded(("auditor",), page=False)
def audit_csv(request: Request, s, principal) -> Response:
    filters, _ = _filters(request)
    with tempfile.TemporaryDirectory(prefix="casefind-audit-") as tmp:
        path = Path(tmp) / "audit.csv"
        try:
            n = audit.export(request.app.state.store_root, path, **filters)
        except CasefindError as e:
            return Response(e.message, status_code=400, media_type="text/plain")
        data = path.read_bytes()
    audit.record(request.app.state.store_root, user=principal.name, role=principal.role, action="audit_export",
                 detail={"entries": n, **{k: str(v) for k, v in filters.items()}})
    return Response(data, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="audit.csv"'})
