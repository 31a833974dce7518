"""casefind evaluate recovers a planted effect, and finds none where none was planted.

The population is a synthetic store whose source is then modified. Half of the people
with an emergency admission in the 12 months to a month end (one month end drawn per
person, November 2024 to October 2025) join a register, ``test_programme``, on a day of
that month; everyone else is a possible control. In the "planted" source each of the
treated people's emergency admissions in the 12 months after their index month is
removed with probability 0.3 (the other activity is kept); in the "null" source nothing
is removed. The true effect on the matched treated people is then known exactly: minus
the mean number of their admissions removed. Selecting people after an admission makes
the treated group's admissions fall by themselves (regression to the mean, the crisis
curve), which matching on prior admissions and the difference in differences must remove.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from casefind.cli import main
from casefind.cli_evaluate import command
from casefind.evaluate.outcomes import month_end
from casefind_testdata import cli

if "evaluate" not in main.commands:  # until cli.py registers it
    main.add_command(command)

PATIENTS, SEED, REMOVE = 30_000, 11, 0.3
MONTHS = [month_end(2024, 11 + k) for k in range(12)]

SPEC = """\
evaluation: planted
features:
  emergency_before: count(activity, setting == "emergency_admission", within=window)
  emergency_band: case(emergency_before >= 3, 3, emergency_before)
  cost_before: sum(activity.cost, within=window)
group:
  register: test_programme
  from: "2024-11-01"
  to: "2025-10-31"
eligible: registered and alive
window: 12
match:
  exact: [sex, emergency_band]
  method: {method}
  features: [age, emergency_before, cost_before]
  caliper: {caliper}   # SDs of the logit, or of the standardised distance
  ratio: 2
  replacement: false
  seed: 3
outcomes:
  emergency_admissions: count(activity, setting == "emergency_admission", within=window)
  ae: count(activity, setting == "ae", within=window)
  deaths: not alive
"""


def _add_months(d: dt.date, k: int) -> dt.date:
    return month_end(d.year, d.month + k)


def _assign(src) -> tuple[pa.Table, dict[str, dt.date]]:
    """Who is treated, and on which day: half of those with an emergency admission in the 12
    months to their drawn month end, alive and registered at it."""
    rng = np.random.default_rng(SEED)
    pts = pq.read_table(src / "patients.parquet")
    act = pq.read_table(src / "activity.parquet")
    ids = pts.column("patient_id").to_pylist()
    month = {p: MONTHS[i] for p, i in zip(ids, rng.integers(0, 12, len(ids)))}
    gone = {p for p, d, r in zip(ids, pts.column("death_date").to_pylist(), pts.column("registration_end").to_pylist())
            if (d is not None and d <= month[p]) or (r is not None and r <= month[p])}
    ea = act.filter(pc.equal(act.column("setting"), "emergency_admission"))
    before = set()
    for p, d in zip(ea.column("patient_id").to_pylist(), ea.column("start_date").to_pylist()):
        if _add_months(month[p], -12) < d <= month[p]:
            before.add(p)
    chosen = [p for p in sorted(before - gone) if rng.random() < 0.5]  # sorted first: a set's order is per process
    index = {p: month[p].replace(day=int(rng.integers(1, month[p].day + 1))) for p in chosen}
    return act, index


def _write_source(src, dst, act: pa.Table, index: dict[str, dt.date], remove: float) -> dict[str, int]:
    """A copy of ``src`` with the register rows added and, per treated person, each emergency
    admission in the window after the index month removed with probability ``remove``."""
    shutil.copytree(src, dst)
    rng = np.random.default_rng(SEED + 1)
    removed: dict[str, int] = {}
    keep = []
    for p, d, s in zip(act.column("patient_id").to_pylist(), act.column("start_date").to_pylist(),
                       act.column("setting").to_pylist()):
        drop = False
        if p in index and s == "emergency_admission":
            m = month_end(index[p].year, index[p].month)
            drop = m < d <= _add_months(m, 12) and rng.random() < remove
        removed[p] = removed.get(p, 0) + drop
        keep.append(not drop)
    pq.write_table(act.filter(pa.array(keep)), dst / "activity.parquet")
    reg = pq.read_table(src / "registers.parquet")
    extra = pa.table({"patient_id": list(index), "register": ["test_programme"] * len(index),
                      "start_date": pa.array(list(index.values()), pa.date32()),
                      "end_date": pa.array([None] * len(index), pa.date32())})
    pq.write_table(pa.concat_tables([reg, extra.cast(reg.schema)]), dst / "registers.parquet")
    return removed


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    assert cli("synth", "--patients", PATIENTS, "--seed", SEED, "--out", root / "src").exit_code == 0
    act, index = _assign(root / "src")
    out = {}
    for name, remove in (("planted", REMOVE), ("null", 0.0)):
        removed = _write_source(root / "src", root / f"src_{name}", act, index, remove)
        r = cli("ingest", root / f"src_{name}", "--store", root / f"store_{name}")
        assert r.exit_code == 0, r.output
        out[name] = (root / f"store_{name}", removed)
    for method, caliper in (("propensity", 0.2), ("nearest", 1.0)):
        (root / f"{method}.yml").write_text(SPEC.format(method=method, caliper=caliper))
    return root, out, len(index)


def _run(root, store, method: str):
    r = cli("evaluate", root / f"{method}.yml", "--store", store, "--out", root / f"out_{store.name}_{method}",
            "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    folder = root / f"out_{store.name}_{method}" / "evaluate-planted"
    return summary, {e["outcome"]: e for e in summary["effects"]}, pq.read_table(folder / "matches.parquet")


def _truth(matches: pa.Table, removed: dict[str, int]) -> float:
    treated = matches.group_by("set_id").aggregate([("treated_patient_id", "min")]).column(1).to_pylist()
    return -float(np.mean([removed.get(p, 0) for p in treated]))


@pytest.mark.parametrize("method", ["propensity", "nearest"])
def test_planted_effect_is_recovered_within_its_interval(stores, method):
    root, out, n_treated = stores
    store, removed = out["planted"]
    summary, effects, matches = _run(root, store, method)
    truth = _truth(matches, removed)
    e = effects["emergency_admissions"]
    assert n_treated > 400 and summary["counts"]["matched"] > 0.85 * n_treated
    assert truth < -0.05  # a real effect was planted
    assert e["lower"] <= truth <= e["upper"], (truth, e)
    assert e["upper"] < 0, e  # and it is detected
    assert effects["ae"]["lower"] <= 0 <= effects["ae"]["upper"]  # A&E was left alone
    after = {b["feature"]: b["smd"] for b in summary["balance"] if b["stage"] == "after"}
    before = {b["feature"]: b["smd"] for b in summary["balance"] if b["stage"] == "before"}
    assert before["emergency_before"] > 0.5  # the treated were selected on admissions ...
    assert all(abs(v) <= 0.1 for v in after.values()), after  # ... and matching balanced them


def test_no_effect_when_none_is_planted(stores):
    root, out, _ = stores
    store, removed = out["null"]
    assert sum(removed.values()) == 0
    _, effects, _ = _run(root, store, "propensity")
    for outcome in ("emergency_admissions", "ae"):
        e = effects[outcome]
        assert e["lower"] <= 0 <= e["upper"], (outcome, e)
    # without matching on it, the fall in the treated group's admissions would look like an effect
    e = effects["emergency_admissions"]
    assert e["upper"] - e["lower"] < 0.4
