"""Small helpers the app tests share."""
from __future__ import annotations

import re

from casefind.store import decisions


def handles(html: str) -> list[str]:
    """The patient handles a page links to, in order."""
    return re.findall(r'href="/patient/([A-Za-z0-9_-]+)"', html)


def decided(store) -> list[tuple[str, str, str]]:
    """(patient_id, practice, decision) of every decision in the review log."""
    log = decisions.read_log(store).to_pylist()
    return [(r["patient_id"], r["practice"], r["decision"]) for r in log if r["decision"] != "listed"]
