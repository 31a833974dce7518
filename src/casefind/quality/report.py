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
import functools
from dataclasses import dataclass, field

from casefind import __version__
from casefind.quality import checks, measure, parts
from casefind.quality import unit_costs as uc
from casefind.quality.codes import Vocabulary, vocabulary
from casefind.quality.parts import COST_FACTOR
from casefind.quality.tables import CODED, MEASURED
from casefind.store import Store
from casefind.store.sharded import ShardedStore

FORMAT = "casefind-quality"
VERSION = 1


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


def build(store: Store | ShardedStore, options: Options, say=lambda stage: None) -> dict:
    """Every check over one snapshot, of one store or of a sharded one (quality/parts.py)."""
    say("reading the store")
    if isinstance(store, ShardedStore):
        end = parts.data_end(store.map(_shard_dates, "reading the event dates", say))
        raw = parts.merge(store.map(functools.partial(_shard_part, options, end), "counting", say), options.top)
        created = store.shard_manifest.created
    else:
        con = measure.connect(store)
        end = measure.data_end(con)
        raw = parts.part(store, options, end, con, say)
        created = store.manifest.get("created")
    return _report(store, raw, options, end, created)


def _shard_dates(shard: Store, i: int) -> dict:
    return parts.date_counts(shard)


def _shard_part(options: Options, end: dt.date | None, shard: Store, i: int) -> parts.Part:
    return parts.part(shard, options, end)


def _report(store, raw: parts.Part, options: Options, end: dt.date | None, created: str | None) -> dict:
    """The report from a store's raw counts: summaries, codes, gaps and implausible values."""
    months, last_share = window(end, options.months)
    tables, units = {}, []
    for m in MEASURED.values():
        tables[m.name], table_units = checks.summarise(m, raw.counts[m.name], months)
        tables[m.name]["quarantined"] = _quarantined(raw.quarantined[m.name])
        units += table_units
    _codes(raw, tables, units, options)
    gaps = [g for u in units if u["months"] for g in checks.gaps(u, tables[u["table"]]["months"], last_share)]
    found = _implausible(raw, units)
    for u in units:
        key = (u["table"], u["kind"], u["code"])
        u["gaps"] = [g for g in gaps if (g["table"], g["kind"], g["code"]) == key]
        u["implausible"] = [f for f in found if (f["table"], f["kind"], f["code"]) == key]
    for name, t in tables.items():
        t["gaps"] = sum(1 for g in gaps if g["table"] == name)
        t["implausible"] = sum(f["rows"] for f in found if f["table"] == name)
    return {"format": FORMAT, "version": VERSION, "casefind_version": __version__,
            "store": str(store.root), "snapshot_id": store.snapshot_id, "created": created,
            "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "window": {"first": months[0] if months else None, "last": months[-1] if months else None,
                       "months": len(months), "data_end": end.isoformat() if end else None},
            "settings": {"cost_factor": COST_FACTOR, "top": options.top, "unit_costs": options.unit_costs_file,
                         "unit_cost_reference": options.unit_costs,
                         "vocabulary_files": len(options.vocabulary.sources)},
            "tables": tables, "units": units, "providers": providers(units), "gaps": gaps, "implausible": found,
            "trend": None, "thresholds": []}


def _quarantined(q: dict) -> dict:
    by_reason, read = q["by_reason"], q["read"]
    n = sum(by_reason.values())
    return {"rows": n, "read": read, "share": n / read if read else None, "by_reason": by_reason}


def _codes(raw: parts.Part, tables: dict, units: list[dict], options: Options) -> None:
    for table in CODED:
        rows = raw.codes[table]
        tables[table]["codes"] = checks.code_findings(rows, options.vocabulary, options.top)
        per_unit = checks.by_unit(rows)
        for u in units:
            if u["table"] == table:
                u["codes"] = checks.code_findings(per_unit.get((u["kind"], u["code"]), []), options.vocabulary,
                                                  options.top)


def _implausible(raw: parts.Part, units: list[dict]) -> list[dict]:
    grouped, examples = raw.costs
    found = checks.implausible("cost", "activity", grouped, _readable(examples),
                               f"cost more than {COST_FACTOR:g}x or under 1/{COST_FACTOR:g} of the unit cost "
                               "of its setting")
    grouped, examples = raw.stays
    found += checks.implausible("stay", "activity", grouped, _readable(examples),
                                "stay (end_date - start_date) negative or beyond the setting's max_days, "
                                "or an admission still open after max_days")
    for m in MEASURED.values():
        if m.max_per_month:
            found += checks.implausible("events_per_person", m.name, raw.busy[m.name], [],
                                        f"patients with more than {m.max_per_month} rows in one month")
    for u in units:
        if u["rows_after_window"]:
            found.append({"check": "after_data_end", "table": u["table"], "kind": u["kind"], "code": u["code"],
                          "label": u["label"], "what": "rows dated after the end of the data",
                          "rows": u["rows_after_window"], "detail": {}, "months": [], "examples": []})
    return found


def _readable(examples: list[dict]) -> list[dict]:
    """Examples as a provider can find them: ISO dates, rounded numbers (spell ids are the
    source's already: quality/parts.py)."""
    out = []
    for e in examples:
        e = dict(e)
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
