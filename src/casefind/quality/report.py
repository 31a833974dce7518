"""The data-quality report of one store snapshot, as one JSON-ready dict.

What finance teams ask before they trust a budget built on the data (NHS England's Year of
Care handbook): is every provider's data there for every month, are the columns filled, are
the codes ones the rules know, are the costs and stays plausible, and what changed since
the last extract. ``build`` answers each from the store, ``trend.compare`` against an earlier
report, ``thresholds.evaluate`` against ``--fail-on``; ``render`` shows it.
"""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field

from casefind import __version__
from casefind.quality import checks, measure
from casefind.quality import unit_costs as uc
from casefind.quality.codes import Vocabulary, vocabulary
from casefind.quality.tables import CODED, MEASURED
from casefind.store import Store

FORMAT = "casefind-quality"
VERSION = 1
COST_FACTOR = 5.0  # a cost more than 5x, or under 1/5, of its setting's unit cost is implausible


@dataclass
class Options:
    months: int = 36
    top: int = 10
    unit_costs: list[dict] = field(default_factory=uc.load)
    unit_costs_file: str = field(default_factory=lambda: str(uc.shipped_path()))
    vocabulary: Vocabulary = field(default_factory=vocabulary)


def window(end: dt.date | None, months: int) -> tuple[list[str], float]:
    """The ``months`` months ending with the month of ``end``, and the share of the last month
    the data covers."""
    if end is None:
        return [], 1.0
    out, y, m = [], end.year, end.month
    for _ in range(months):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out[::-1], end.day / calendar.monthrange(end.year, end.month)[1]


def build(store: Store, options: Options, say=lambda stage: None) -> dict:
    """Every check over one snapshot."""
    say("reading the store")
    con = measure.connect(store)
    end = measure.data_end(con)
    months, last_share = window(end, options.months)
    tables, units = {}, []
    say("counting rows and completeness")
    for m in MEASURED.values():
        tables[m.name], table_units = checks.summarise(m, measure.counts(con, m), months)
        tables[m.name]["quarantined"] = _quarantined(store, m.name)
        units += table_units
    say("looking up codes")
    _codes(con, tables, units, options)
    gaps = [g for u in units if u["months"] for g in checks.gaps(u, tables[u["table"]]["months"], last_share)]
    say("checking values")
    found = _implausible(con, store, units, options, end)
    for u in units:
        key = (u["table"], u["kind"], u["code"])
        u["gaps"] = [g for g in gaps if (g["table"], g["kind"], g["code"]) == key]
        u["implausible"] = [f for f in found if (f["table"], f["kind"], f["code"]) == key]
    for name, t in tables.items():
        t["gaps"] = sum(1 for g in gaps if g["table"] == name)
        t["implausible"] = sum(f["rows"] for f in found if f["table"] == name)
    return {"format": FORMAT, "version": VERSION, "casefind_version": __version__,
            "store": str(store.root), "snapshot_id": store.snapshot_id, "created": store.manifest.get("created"),
            "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "window": {"first": months[0] if months else None, "last": months[-1] if months else None,
                       "months": len(months), "data_end": end.isoformat() if end else None},
            "settings": {"cost_factor": COST_FACTOR, "top": options.top, "unit_costs": options.unit_costs_file,
                         "unit_cost_reference": options.unit_costs,
                         "vocabulary_files": len(options.vocabulary.sources)},
            "tables": tables, "units": units, "providers": providers(units), "gaps": gaps, "implausible": found,
            "trend": None, "thresholds": []}


def _quarantined(store: Store, table: str) -> dict:
    ing = store.manifest.get("ingest", {}).get(table, {})
    by_reason = dict(ing.get("quarantined", {}))
    q, read = sum(by_reason.values()), ing.get("read", 0)
    return {"rows": q, "read": read, "share": q / read if read else None, "by_reason": by_reason}


def _codes(con, tables: dict, units: list[dict], options: Options) -> None:
    for table in CODED:
        rows = measure.codes(con, table)
        tables[table]["codes"] = checks.code_findings(rows, options.vocabulary, options.top)
        per_unit = checks.by_unit(rows)
        for u in units:
            if u["table"] == table:
                u["codes"] = checks.code_findings(per_unit.get((u["kind"], u["code"]), []), options.vocabulary,
                                                  options.top)


def _implausible(con, store: Store, units: list[dict], options: Options, end: dt.date | None) -> list[dict]:
    reference = uc.as_table(options.unit_costs)
    grouped, examples = measure.costs(con, reference, COST_FACTOR, options.top)
    found = checks.implausible("cost", "activity", grouped, _readable(store, examples),
                               f"cost more than {COST_FACTOR:g}x or under 1/{COST_FACTOR:g} of the unit cost "
                               "of its setting")
    grouped, examples = measure.stays(con, reference, end, options.top)
    found += checks.implausible("stay", "activity", grouped, _readable(store, examples),
                                "stay (end_date - start_date) negative or beyond the setting's max_days, "
                                "or an admission still open after max_days")
    for m in MEASURED.values():
        if m.max_per_month:
            found += checks.implausible("events_per_person", m.name, measure.busy_patients(con, m), [],
                                        f"patients with more than {m.max_per_month} rows in one month")
    for u in units:
        if u["rows_after_window"]:
            found.append({"check": "after_data_end", "table": u["table"], "kind": u["kind"], "code": u["code"],
                          "label": u["label"], "what": "rows dated after the end of the data",
                          "rows": u["rows_after_window"], "detail": {}, "months": [], "examples": []})
    return found


def _readable(store: Store, examples: list[dict]) -> list[dict]:
    """Examples as a provider can find them: source spell ids, ISO dates, rounded numbers."""
    out = []
    for e in examples:
        e = dict(e)
        if "spell_id" in e:
            e["spell_id"] = None if e["spell_id"] is None else store.spell_ids([e["spell_id"]])[0]
        if isinstance(e.get("start_date"), dt.date):
            e["start_date"] = e["start_date"].isoformat()
        for k in ("expected", "ratio"):
            if e.get(k) is not None:
                e[k] = round(float(e[k]), 3)
        out.append(e)
    return out


def providers(units: list[dict]) -> list[dict]:
    """The data providers across tables (a provider code in activity and procedures is one
    provider), each with the tables it sent: the index of the per-provider section."""
    out: dict[tuple, dict] = {}
    for u in units:
        if u["kind"] is None:
            continue
        entry = out.setdefault((u["kind"], u["code"]), {"kind": u["kind"], "code": u["code"], "label": u["label"],
                                                        "tables": [], "rows": 0, "gaps": 0, "implausible": 0})
        entry["tables"].append(u["table"])
        entry["rows"] += u["rows"]
        entry["gaps"] += len(u.get("gaps", []))
        entry["implausible"] += sum(f["rows"] for f in u.get("implausible", []))
    return sorted(out.values(), key=lambda p: (p["kind"], "" if p["code"] is None else p["code"]))
