"""The activity table's optional ``funding`` column: the contract, ingest (stored, null kept,
bad values quarantined), rules reading it on every engine, and the synthetic generator
(the Year of Care handbook's out-of-scope kinds, drawn without moving any other value)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow.parquet as pq
import pytest

from casefind.contract import TABLES
from casefind.contract.quarantine import REASONS
from casefind.contract.schema import FUNDING, FUNDING_DEFAULT, SETTINGS
from casefind.engines.base import ENGINES
from casefind.ingest import run_ingest
from casefind.rules.compile import Compiler
from casefind.rules.errors import RuleError, Span
from casefind.rules.load import Located, RuleSource
from casefind.store import Store
from casefind.synth import events, generate
from casefind_testdata import GOOD, N, write_source


def test_the_contract_column():
    col = TABLES["activity"].column("funding")
    assert (col.kind, col.nullable, col.derived) == ("enum", True, False)
    # the Year of Care handbook's out-of-scope services: "high-cost low-volume residential
    # services, block contracts without activity data, out-of-area and nationally
    # commissioned services" (docs/ domain notes, "Money")
    assert col.values == FUNDING == ("activity", "block", "national", "out_of_area", "high_cost_low_volume")
    assert FUNDING_DEFAULT == "activity"
    assert "Year of Care" in col.doc and "null reads as this" in col.doc
    assert "unknown_funding" in REASONS


def _activity(*funding) -> list[tuple]:
    """p1's GP contacts, one a day from 2025-01-01, each with a funding (None: left empty)."""
    return [("p1", f"2025-01-{i + 1:02d}", N, "gp", "42", N, N, N, N, f) for i, f in enumerate(funding)]


def _ingest(tmp_path, activity):
    tables = {k: list(v) for k, v in GOOD.items()}
    tables["activity"] = activity
    summary = run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    return summary, Store.open(tmp_path / "store")


def _stored(store: Store) -> list[str | None]:
    t = store.table("activity")
    values = t.encodings["funding"]["values"]
    return [values[v] if v >= 0 else None for v in t["funding"]]


def test_ingest_stores_funding_keeps_nulls_and_quarantines_the_rest(tmp_path):
    summary, store = _ingest(tmp_path, _activity("block", None, "national", "grant", "out_of_area",
                                                 "high_cost_low_volume", "activity", "Block"))
    assert summary.tables["activity"].quarantined == {"unknown_funding": 2}
    assert summary.tables["activity"].stored == 6
    assert _stored(store) == ["block", None, "national", "out_of_area", "high_cost_low_volume", "activity"]
    reasons = store.quarantine("activity").column("_reason").to_pylist()
    assert reasons == ["unknown_funding", "unknown_funding"]


def test_a_source_without_funding_ingests_as_before(tmp_path):
    summary, store = _ingest(tmp_path, [r[:9] for r in _activity("block", "national")])
    assert summary.quarantined_total == 0
    assert "funding" in summary.missing_columns["activity"]
    assert _stored(store) == [None, None]  # and so reads as activity-funded


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_rules_count_by_funding_on_every_engine(tmp_path, engine):
    _, store = _ingest(tmp_path, _activity("block", None, "block", "national"))
    c = Compiler(RuleSource(tmp_path / "x.yml", Located("x", Span("x.yml", 1, 1))), {})
    exprs = {name: c.expression(Located(text, Span("x.yml", 1, 1))) for name, text in {
        "block": 'count(activity, funding == "block")',
        "not_national": 'count(activity, funding != "national")',
        "empty": "count(activity) - count(activity, funding in "
                 '("activity", "block", "national", "out_of_area", "high_cost_low_volume"))',
    }.items()}
    got = ENGINES[engine].evaluate(store, exprs, dt.date(2025, 12, 31)).to_pylist()
    p1 = next(r for r in got if r["patient"] == 0)
    assert (p1["block"], p1["not_national"], p1["empty"]) == (2, 2, 1)  # != leaves the null row out


def test_a_misspelt_funding_in_a_rule_is_refused(tmp_path):
    c = Compiler(RuleSource(tmp_path / "x.yml", Located("x", Span("x.yml", 1, 1))), {})
    with pytest.raises(RuleError) as e:
        c.expression(Located('count(activity, funding == "out_of_are")', Span("x.yml", 3, 5)))
    assert e.value.hint == "did you mean 'out_of_area'?"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(4000, 21, tmp_path_factory.mktemp("funding") / "src").out


def test_the_generator_pays_mostly_by_activity(synth):
    t = pq.read_table(synth / "activity.parquet").select(["patient_id", "setting", "funding"]).to_pylist()
    assert all(r["funding"] in FUNDING for r in t)
    by = {}
    for r in t:
        by.setdefault(r["setting"], []).append(r["funding"])
    share = {s: {f: v.count(f) / len(v) for f in FUNDING} for s, v in by.items()}
    assert sum(r["funding"] == "activity" for r in t) / len(t) > 0.85
    for s in set(SETTINGS) - {"emergency_admission", "elective_admission", "community", "mental_health", "care_home"}:
        assert share.get(s, {"activity": 1.0})["activity"] == 1.0, s
    assert 0.25 < share["community"]["block"] < 0.45 and 0.4 < share["mental_health"]["block"] < 0.6
    for s in ("emergency_admission", "elective_admission"):
        assert 0 < share[s]["out_of_area"] < 0.1 and 0 < share[s]["national"] < 0.1, s
        assert share[s]["block"] == 0
    # a high-cost low-volume placement is a resident's: all of their care-home rows or none
    placed = {}
    for r in t:
        if r["setting"] == "care_home":
            placed.setdefault(r["patient_id"], set()).add(r["funding"])
    assert all(len(v) == 1 for v in placed.values())
    assert {f for v in placed.values() for f in v} == {"activity", "high_cost_low_volume"}


def test_funding_has_its_own_random_stream(synth, tmp_path, monkeypatch):
    """Generated without the funding draws (all 'activity'), every other value is the same."""
    monkeypatch.setattr(events, "funding", lambda setting, pid, n, seed: np.zeros(len(setting), np.int8))
    plain = generate(4000, 21, tmp_path / "plain").out
    for path in sorted(p.relative_to(synth) for p in synth.rglob("*.parquet")):
        a, b = pq.read_table(synth / path), pq.read_table(plain / path)
        keep = [c for c in a.column_names if c != "funding"]
        assert a.select(keep).equals(b.select(keep)), path
    assert set(pq.read_table(plain / "activity.parquet").column("funding").to_pylist()) == {"activity"}
