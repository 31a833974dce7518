"""The checks: from the counts ``measure`` returns to findings a reader acts on.

Each function takes plain rows (dicts) and returns plain dicts, so that the report is JSON
as it stands and every check is testable without a store.
"""
from __future__ import annotations

import math
from collections import defaultdict
from statistics import median

from casefind.quality.codes import Vocabulary, well_formed
from casefind.quality.tables import Measured, unit_label

NEIGHBOURS = 3        # months each side a month is compared with (their median: its expected rows)
LOW_SHARE = 0.5       # a month under this share of its expected rows ...
Z = 4.0               # ... and at least this many standard deviations below them is a gap
_CHI2_MEDIAN = 0.4549  # median of a chi-square variable with one degree of freedom


def unit_key(row: dict) -> tuple:
    return (row["unit_kind"], row["unit_code"])


def _share(filled: int, applicable: int) -> float | None:
    return None if applicable == 0 else filled / applicable


def completeness(rows: list[dict], m: Measured) -> dict:
    """Per measured column: rows it applies to, rows that fill it, the share."""
    out = {}
    for col in m.measured_columns():
        a = sum(r[f"a:{col}"] for r in rows)
        f = sum(r[f"f:{col}"] for r in rows)
        out[col] = {"applies_to": m.applies.get(col, ("", "every row"))[1], "applicable": a, "filled": f,
                    "share": _share(f, a)}
    return out


def summarise(m: Measured, rows: list[dict], window: list[str]) -> tuple[dict, list[dict]]:
    """The table's totals and one summary per unit (provider): rows, rows per month of the
    window, rows before and after it, completeness."""
    inside = set(window)
    by_unit: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_unit[unit_key(r)].append(r)
    units = [_unit(m, key, rs, inside, window) for key, rs in sorted(by_unit.items(), key=lambda kv: _order(kv[0]))]
    table = {"rows": sum(r["rows"] for r in rows), "unit_kind": m.unit_kind, "unit_note": m.unit_note,
             "months": _months(rows, inside, window) if m.month else {},
             "rows_before_window": sum(u["rows_before_window"] for u in units),
             "rows_after_window": sum(u["rows_after_window"] for u in units),
             "completeness": completeness(rows, m), "not_measured": m.not_measured(),
             "providers": len(units) if m.unit_kind else 0}
    return table, units


def _order(key: tuple) -> tuple:
    return tuple("" if k is None else k for k in key)


def _months(rows: list[dict], inside: set, window: list[str]) -> dict[str, int]:
    out = dict.fromkeys(window, 0)
    for r in rows:
        if r["month"] in inside:
            out[r["month"]] += r["rows"]
    return out


def _unit(m: Measured, key: tuple, rows: list[dict], inside: set, window: list[str]) -> dict:
    kind, code = key
    dated = [r for r in rows if m.month and r["month"] is not None and window]
    return {"table": m.name, "kind": kind, "code": code, "label": unit_label(kind, code),
            "rows": sum(r["rows"] for r in rows),
            "months": _months(rows, inside, window) if m.month else {},
            "rows_before_window": sum(r["rows"] for r in dated if r["month"] < window[0]),
            "rows_after_window": sum(r["rows"] for r in dated if r["month"] > window[-1]),
            "completeness": completeness(rows, m)}


def dispersion(pairs: list[tuple[int, float]]) -> float:
    """How much more a unit's months vary than chance (Poisson) would make them: the median
    squared standardised residual over its chi-square median (1 for Poisson data; rows that
    come in clusters, such as the diagnoses of a spell, vary more). At least 1; the median
    keeps one real gap from hiding itself."""
    ratios = [(rows - expected) ** 2 / expected for rows, expected in pairs if expected > 0]
    return max(1.0, median(ratios) / _CHI2_MEDIAN) if ratios else 1.0


def is_gap(rows: int, expected: float, phi: float = 1.0) -> bool:
    """Under half the rows expected, and at least ``Z`` standard deviations below them."""
    if expected <= 0 or rows >= LOW_SHARE * expected:
        return False
    return (rows - expected) / math.sqrt(phi * expected) <= -Z


def gaps(unit: dict, table_months: dict[str, int], last_share: float = 1.0) -> list[dict]:
    """Months of a unit's span with no rows, or far fewer than its neighbours. The span runs
    from the unit's first month with rows to the table's last month with rows, so a provider
    that stops sending has gaps, and one that starts later has none before it started. The
    first month of the span is never a gap (a feed may start mid-month); the window's last
    month is compared in proportion to the days the data covers (``last_share``)."""
    months = list(unit["months"])
    held = [m for m in months if unit["months"][m] > 0]
    table_held = [m for m in months if table_months.get(m, 0) > 0]
    if not held or not table_held:
        return []
    span = months[months.index(held[0]):months.index(table_held[-1]) + 1]
    pairs = []
    for i, month in enumerate(span[1:], start=1):
        around = span[max(0, i - NEIGHBOURS):i] + span[i + 1:i + 1 + NEIGHBOURS]
        expected = median(unit["months"][m] for m in around)
        pairs.append((month, unit["months"][month], expected * (last_share if month == months[-1] else 1.0)))
    phi = dispersion([(r, e) for _, r, e in pairs])
    return [{"table": unit["table"], "kind": unit["kind"], "code": unit["code"], "label": unit["label"],
             "month": month, "rows": rows, "expected": round(expected, 1), "gap": "missing" if rows == 0 else "low"}
            for month, rows, expected in pairs if is_gap(rows, expected, phi)]


def code_findings(rows: list[dict], vocab: Vocabulary, top: int) -> dict:
    """Coded rows, unknown and malformed rows and their shares, and the ``top`` unknown codes."""
    total = sum(r["rows"] for r in rows)
    per_code: dict[tuple, int] = defaultdict(int)
    malformed = unknown = 0
    for r in rows:
        if vocab.knows(r["system"], r["code"]):
            continue
        unknown += r["rows"]
        per_code[(r["system"], r["code"])] += r["rows"]
        if not well_formed(r["system"], r["code"]):
            malformed += r["rows"]
    ranked = sorted(per_code.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {"coded_rows": total, "unknown_rows": unknown, "unknown_share": _share(unknown, total),
            "malformed_rows": malformed, "malformed_share": _share(malformed, total),
            "distinct_unknown": len(per_code),
            "top_unknown": [{"system": s, "code": c, "rows": n, "malformed": not well_formed(s, c)}
                            for (s, c), n in ranked]}


def by_unit(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        out[unit_key(r)].append(r)
    return out


def implausible(check: str, table: str, grouped: list[dict], examples: list[dict], what: str) -> list[dict]:
    """One finding per unit from grouped counts (``rows`` or ``patients``), with its examples."""
    ex = by_unit(examples)
    out = []
    for key, rs in sorted(by_unit(grouped).items(), key=lambda kv: _order(kv[0])):
        count_key = "patients" if "patients" in rs[0] else "rows"
        detail: dict[str, int] = defaultdict(int)
        for r in rs:
            if "most" in r:  # patients over a table's limit: the most any had in a month
                detail["most in one month"] = max(detail["most in one month"], r["most"])
            else:
                detail[r.get("direction") or r.get("setting") or "rows"] += r[count_key]
        out.append({"check": check, "table": table, "kind": key[0], "code": key[1], "label": unit_label(*key),
                    "what": what, "rows": sum(r[count_key] for r in rs), "detail": dict(detail),
                    "months": sorted({r["month"] for r in rs if r["month"]}),
                    "examples": [{k: v for k, v in e.items() if k not in ("unit_kind", "unit_code")}
                                 for e in ex.get(key, [])]})
    return out
