"""What the quality report counts, as one store's raw part, and the exact merge of shards' parts.

Every count the report reads is a sum over rows grouped by unit, month and the like, and a
patient's rows all sit in one shard, so a sharded store's counts are its shards' added key by
key (``merge``); the practices table, copied into every shard, is counted once. Patients over
a table's monthly limit are counted in their own shard, so they add too, and the most any had
is the largest. The examples (the furthest costs and stays per provider) are each shard's
furthest, merged and cut to ``top`` by the same order as the SQL's. The end of the data (a
99.9th percentile of every event date) needs every date, so ``data_end`` reads each shard's
count of rows per date and takes the percentile of their sum, as DuckDB's ``quantile_disc``
does.
"""
from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass

from casefind.quality import measure
from casefind.quality import unit_costs as uc
from casefind.quality.tables import CODED, MEASURED
from casefind.store import Store

QUANTILE = 0.999
COST_FACTOR = 5.0  # a cost more than 5x, or under 1/5, of its setting's unit cost is implausible
COPIED = ("practices",)  # tables every shard holds whole


@dataclass(frozen=True)
class Part:
    """One store's raw counts, before the checks read them: per measured table its counts per
    unit and month, its busy patients and its quarantine; per coded table its codes; the
    implausible costs and stays, grouped and with their furthest examples (spell ids as the
    source sent them)."""

    counts: dict[str, list[dict]]
    busy: dict[str, list[dict]]
    quarantined: dict[str, dict]
    codes: dict[str, list[dict]]
    costs: tuple[list[dict], list[dict]]
    stays: tuple[list[dict], list[dict]]


def date_counts(store: Store) -> dict[dt.date, int]:
    """Rows per event date over every dated table (pass 1 of ``data_end`` on shards)."""
    con = measure.connect(store)
    return dict(con.execute(f"SELECT d, count(*) FROM ({measure.dates_sql()}) WHERE d IS NOT NULL GROUP BY d")
                .fetchall())


def data_end(counts: list[dict[dt.date, int]]) -> dt.date | None:
    """DuckDB's ``quantile_disc(d, 0.999)`` over the dates counted: the date at 0-based
    position ceil(n x 0.999) - 1 of the n dates sorted."""
    total: dict[dt.date, int] = defaultdict(int)
    for c in counts:
        for d, k in c.items():
            total[d] += k
    n = sum(total.values())
    if not n:
        return None
    at, seen = max(math.ceil(n * QUANTILE) - 1, 0), 0
    for d in sorted(total):
        seen += total[d]
        if seen > at:
            return d
    raise AssertionError("unreachable: the position is below the count")


def part(store: Store, options, end: dt.date | None, con=None, say=lambda s: None) -> Part:
    """Every raw count of one store (``con``: its connection, if already made)."""
    con = con or measure.connect(store)
    say("counting rows and completeness")
    counts = {m.name: measure.counts(con, m) for m in MEASURED.values()}
    busy = {m.name: measure.busy_patients(con, m) for m in MEASURED.values() if m.max_per_month}
    say("looking up codes")
    codes = {table: measure.codes(con, table) for table in CODED}
    say("checking values")
    reference = uc.as_table(options.unit_costs)
    grouped, examples = measure.costs(con, reference, COST_FACTOR, options.top)
    costs = (grouped, _source_spells(store, examples))
    grouped, examples = measure.stays(con, reference, end, options.top)
    stays = (grouped, _source_spells(store, examples))
    return Part(counts, busy, {m.name: _quarantined(store, m.name) for m in MEASURED.values()}, codes, costs, stays)


def merge(parts: list[Part], top: int) -> Part:
    """The parts of every shard as one store's (see the module's docstring)."""
    def each(field: str, name: str) -> list[list[dict]]:
        chosen = parts[:1] if name in COPIED else parts
        return [getattr(p, field)[name] for p in chosen]

    first = parts[0]
    return Part(
        counts={name: _added(each("counts", name)) for name in first.counts},
        busy={name: _added(each("busy", name), largest=("most",)) for name in first.busy},
        quarantined={name: _quarantine_added(each("quarantined", name)) for name in first.quarantined},
        codes={name: _added(each("codes", name)) for name in first.codes},
        costs=(_added([p.costs[0] for p in parts]), _furthest([p.costs[1] for p in parts], cost_distance, top)),
        stays=(_added([p.stays[0] for p in parts]), _furthest([p.stays[1] for p in parts], stay_distance, top)))


def cost_distance(e: dict) -> float:
    """How far a cost is from its unit cost, as the SQL orders the examples (0 furthest)."""
    return 1e300 if e["ratio"] == 0 else max(e["ratio"], 1 / e["ratio"])


def stay_distance(e: dict) -> float:
    return abs(e["days"])


def _added(pieces: list[list[dict]], largest: tuple[str, ...] = ()) -> list[dict]:
    """Rows with the same key (every text, date or None field) as one row whose numbers are
    summed (``largest``: the largest taken), in key order."""
    out: dict[tuple, dict] = {}
    for rows in pieces:
        for r in rows:
            key = tuple((k, v) for k, v in r.items() if not _is_count(v))
            row = out.get(key)
            if row is None:
                out[key] = dict(r)
                continue
            for k, v in r.items():
                if _is_count(v):
                    row[k] = max(row[k], v) if k in largest else row[k] + v
    return [out[k] for k in sorted(out, key=_sortable)]


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _sortable(key: tuple) -> tuple:
    return tuple((k, v is None, "" if v is None else str(v)) for k, v in key)


def _furthest(pieces: list[list[dict]], distance, top: int) -> list[dict]:
    """The ``top`` furthest examples per unit over every piece, ordered as the SQL orders them
    (unit, then furthest first, then earliest start)."""
    by_unit: dict[tuple, list[dict]] = defaultdict(list)
    for rows in pieces:
        for e in rows:
            by_unit[(e["unit_kind"], e["unit_code"])].append(e)
    out = []
    for unit in sorted(by_unit, key=lambda u: tuple("" if x is None else x for x in u)):
        out += sorted(by_unit[unit], key=lambda e: (-distance(e), e["start_date"] or dt.date.max))[:top]
    return out


def _source_spells(store: Store, examples: list[dict]) -> list[dict]:
    """Examples with the spell id the provider sent (a shard's spell numbers are its own)."""
    out = []
    for e in examples:
        e = dict(e)
        if "spell_id" in e:
            e["spell_id"] = None if e["spell_id"] is None else store.spell_ids([e["spell_id"]])[0]
        out.append(e)
    return out


def _quarantined(store: Store, table: str) -> dict:
    ing = store.manifest.get("ingest", {}).get(table, {})
    return {"read": ing.get("read", 0), "by_reason": dict(ing.get("quarantined", {}))}


def _quarantine_added(pieces: list[dict]) -> dict:
    by_reason: dict[str, int] = defaultdict(int)
    for p in pieces:
        for reason, k in p["by_reason"].items():
            by_reason[reason] += k
    return {"read": sum(p["read"] for p in pieces), "by_reason": dict(by_reason)}
