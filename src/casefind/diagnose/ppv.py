"""Positive predictive value of a rule, from clinicians' decisions on its lists.

The sources ask that IT case-finding "should be validated" by a care practitioner's review:
the share of reviewed patients a clinician accepted for case management estimates the rule's
PPV. Each patient counts once per rule, by the latest decision in force (withdrawn decisions
do not count: store/decisions.py ``latest``). Reviewed = accepted + declined + already known;
PPV = accepted / reviewed, with Wilson score limits (kpis/stats.py). "Already known" (on a
caseload already) is a correct find the programme cannot act on, so it is also given as
``ppv_incl_known`` = (accepted + already known) / reviewed.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from casefind.kpis.stats import wilson
from casefind.store import decisions

DECIDED = ("accepted", "declined", "already_known")
ALL_PRACTICES = "(all)"


def ppv_rows(log: pa.Table, rules: list[str], as_of: dt.date | None = None, level: float = 0.95) -> list[dict]:
    """Per rule, for every practice with a decision and for all of them (practice
    ``(all)``): the decisions, PPV and its Wilson interval. Decisions after ``as_of`` are
    left out when it is given."""
    if as_of is not None and log.num_rows:
        log = log.filter(pc.less_equal(log.column("date"), pa.scalar(as_of, pa.date32())))
    latest = decisions.latest(log) if log.num_rows else log
    tally: dict[tuple[str, str], Counter] = {}
    if latest.num_rows:
        for rule, practice, decision in zip(latest.column("rule").to_pylist(), latest.column("practice").to_pylist(),
                                            latest.column("decision").to_pylist()):
            if rule in rules and decision in DECIDED:
                tally.setdefault((rule, practice or "(unknown)"), Counter())[decision] += 1
                tally.setdefault((rule, ALL_PRACTICES), Counter())[decision] += 1
    rows = []
    for rule in rules:
        keys = sorted((k for k in tally if k[0] == rule), key=lambda k: (k[1] != ALL_PRACTICES, k[1]))
        for key in keys or [(rule, ALL_PRACTICES)]:
            rows.append(_row(key, tally.get(key, Counter()), level))
    return rows


def _row(key: tuple[str, str], c: Counter, level: float) -> dict:
    reviewed = sum(c[d] for d in DECIDED)
    lo, hi = wilson(c["accepted"], reviewed, level)
    known_lo, known_hi = wilson(c["accepted"] + c["already_known"], reviewed, level)
    return {"rule": key[0], "practice": key[1], "reviewed": reviewed, "accepted": c["accepted"],
            "declined": c["declined"], "already_known": c["already_known"],
            "ppv": c["accepted"] / reviewed if reviewed else None,
            "ppv_lower": _f(lo), "ppv_upper": _f(hi),
            "ppv_incl_known": (c["accepted"] + c["already_known"]) / reviewed if reviewed else None,
            "ppv_incl_known_lower": _f(known_lo), "ppv_incl_known_upper": _f(known_hi)}


def _f(x) -> float | None:
    v = float(x)
    return None if v != v else v
