"""What the pack says about each KPI beyond its figures: its integrity assessment, source
framework and the cohorts it concerns, read from the history's ``integrity`` (JSON text),
``framework`` and ``cohorts`` (comma-separated) columns.

Why: the sources judged only 18% of the measures in five national outcomes frameworks "high
integrity" (measurable, reportable, influenced by integrated care), so a reader needs to see,
next to each figure, which tests it passes before it carries a decision. Histories written
before these columns hold nulls: they read as "not recorded", never as a failed test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

ASSESSED = "assessed"
NOT_ASSESSED = "not assessed"  # a user's KPI file that gives no integrity: block
NOT_RECORDED = "not recorded"  # a history written before the column existed
UNREADABLE = "unreadable"  # the column holds something that is not an assessment
TESTS = (  # the history's key, and the test as the pack states it
    ("measurable", "Measurable", "the data define it"),
    ("reportable", "Reportable", "it can be published at the level used"),
    ("influenced", "Influenced by integrated care", ""),
)
SOURCES_LINE = "the sources judged 18% of the measures in five national outcomes frameworks high integrity"
ALL_COHORT = "all"


@dataclass(frozen=True)
class Test:
    """One of the three tests, with the words the pack states it in, and its outcome."""

    key: str
    label: str
    meaning: str
    passed: bool


@dataclass(frozen=True)
class Assessment:
    """One KPI's integrity as the history records it; ``tests`` only when ``status`` is assessed."""

    status: str
    tests: tuple[Test, ...] = ()
    note: str = ""

    @property
    def high_integrity(self) -> bool | None:
        """All three tests passed; None when there is no assessment to judge."""
        return all(t.passed for t in self.tests) if self.status == ASSESSED else None

    @property
    def met(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def failed(self) -> list[str]:
        return [t.label.lower() for t in self.tests if not t.passed]


UNRECORDED = Assessment(NOT_RECORDED)


def assessment(text: str | None) -> Assessment:
    """The ``integrity`` cell as an Assessment: null is not recorded, ``assessed: false`` is
    not assessed, and anything without the three true/false tests is unreadable."""
    if text is None:
        return UNRECORDED
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return Assessment(UNREADABLE)
    if not isinstance(data, dict):
        return Assessment(UNREADABLE)
    if data.get("assessed") is False:
        return Assessment(NOT_ASSESSED)
    if not all(isinstance(data.get(key), bool) for key, *_ in TESTS):
        return Assessment(UNREADABLE)
    tests = tuple(Test(key, label, meaning, data[key]) for key, label, meaning in TESTS)
    return Assessment(ASSESSED, tests, str(data.get("note") or ""))


def cohorts(text: str | None) -> tuple[str, ...] | None:
    """The cohorts a KPI concerns; None when not recorded, () when the KPI file names none."""
    if text is None:
        return None
    return tuple(c.strip() for c in text.split(",") if c.strip())


def cohort_text(names: tuple[str, ...] | None) -> str:
    """Cohorts as the pack prints them: segment names with spaces, ``all`` as the whole population."""
    if names is None:
        return NOT_RECORDED
    if not names:
        return "not stated"
    return "; ".join("the whole population" if n == ALL_COHORT else n.replace("_", " ") for n in names)


def framework_text(framework: str | None) -> str:
    if framework is None:
        return NOT_RECORDED
    return framework.strip() or "not stated"


def status_text(a: Assessment) -> str:
    return "not readable in the history" if a.status == UNREADABLE else a.status


def verdict(a: Assessment) -> str:
    """The assessment in a few words: high integrity, or which tests it fails."""
    if a.status != ASSESSED:
        return f"integrity {status_text(a)}"
    if a.high_integrity:
        return "high integrity: meets all three tests"
    return f"not high integrity: {a.met} of 3 tests met (not {' or '.join(a.failed)})"


def marker(a: Assessment) -> dict | None:
    """The summary table's compact marker: a glyph, the words it stands for (its text
    alternative) and the verdict as a tooltip; None when the history records nothing."""
    if a.status == NOT_RECORDED:
        return None
    if a.high_integrity:
        return {"css": "high", "glyph": "\u25c6", "text": "high integrity", "title": verdict(a)}
    if a.status == ASSESSED:
        return {"css": "partial", "glyph": "\u25c7", "text": f"{a.met} of 3 integrity tests met",
                "title": verdict(a)}
    return {"css": "none", "glyph": "\u25cb", "text": verdict(a), "title": verdict(a)}


def count_line(assessments: list[Assessment]) -> str:
    """'N of M measures meet all three integrity tests (...)', and how many have no assessment."""
    total = len(assessments)
    if total and all(a.status == NOT_RECORDED for a in assessments):
        return f"Integrity is not recorded in this history for any of the {total} measures ({SOURCES_LINE})."
    high = sum(bool(a.high_integrity) for a in assessments)
    noun = "measure meets" if total == 1 else "measures meet"
    line = f"{high} of {total} {noun} all three integrity tests ({SOURCES_LINE})"
    missing = sum(a.status != ASSESSED for a in assessments)
    if missing:
        line += f"; {missing} {'is' if missing == 1 else 'are'} not assessed or not recorded"
    return line + "."
