"""The crisis curve's matched comparison against the synthetic generator's truth.

The issue: "the crisis curve's matched comparison on a synthetic cohort where the
generator's truth knows the answer". The generator (docs/synthetic-data.md) draws events
from each person's latent risk shaped by a trajectory fixed in calendar time: nothing
responds to being identified. So the truth is that there is no programme effect: after
identification, the cohort's admissions and a well-matched comparison's agree, and both
fall from the identification month's crisis by regression to the mean alone.

A programme run in half the practices (the rule's population) makes the other half a fair
pool: people there cross the same threshold at the same time, and nobody is kept out of the
pool by the rule's criteria themselves.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from casefind.contract.dates import to_day
from casefind.diagnose import crisis
from casefind.diagnose.run import Options, diagnose
from casefind.store import Store
from casefind.synth.events import _SHAPES
from casefind_testdata import synthetic_store

PATIENTS, SEED = 50_000, 5
PILOT = """\
rule: pilot
as_of: "2026-10-31"
population: registered and alive and practice in ("Z00001", "Z00003", "Z00005")
features:
  admissions: count(activity, setting == "emergency_admission", within=months(12))
criteria:
  include:
    repeated: admissions >= 2
"""


@pytest.fixture(scope="module")
def curve(tmp_path_factory):
    root = tmp_path_factory.mktemp("crisis-truth")
    store = synthetic_store(root, PATIENTS, SEED)
    (root / "pilot.yml").write_text(PILOT)
    d = diagnose([root / "pilot.yml"], store, dt.date(2026, 10, 31), Options())
    return d.curves[0], Store.open(store), root / "src" / "_truth" / "latent.parquet"


def _expected_after(store: Store, truth_file, who: np.ndarray, month: np.ndarray) -> float:
    """Truth: mean expected emergency admissions a person a month over months +1..+12, from
    the latent risk (expected admissions a year) and the trajectory's monthly weights over the
    generator's 36 months (synth/events.py: a month's rate is risk / 12 x its weight)."""
    truth = pq.read_table(truth_file)
    ids = store.table("patients").arrow.column("patient_id")
    at = pc.index_in(ids, value_set=truth.column("patient_id")).to_numpy()
    risk = truth.column("latent_risk").to_numpy()[at]
    kind = {"stable": 0, "rising": 1, "falling": 2}
    trajectory = np.array([kind[t] for t in truth.column("trajectory").to_pylist()])[at]
    first = int(crisis.month_of(to_day(dt.date(2026, 10, 31)))) - 35  # the generator's first month
    cols = (month - first)[:, None] + np.arange(1, crisis.SPAN + 1)[None, :]
    weights = _SHAPES[trajectory[who]][np.arange(len(who))[:, None], cols]
    return float((risk[who][:, None] / 12 * weights).mean())


def test_enough_people_are_matched(curve):
    c, _, _ = curve
    assert c.identified >= 100 and c.matched >= 0.3 * c.identified


def test_the_truth_balances(curve):
    """Matching on what identification saw balances what it did not: the latent risk."""
    c, store, truth = curve
    case, control, month = c.pairs
    ok = control >= 0
    cohort = _expected_after(store, truth, case[ok], month[ok])
    comparison = _expected_after(store, truth, control[ok], month[ok])
    assert comparison == pytest.approx(cohort, rel=0.15)


def _after_events(c, group: str) -> float:
    return c.summary[group]["admissions_after"] * c.summary[group]["people"] * crisis.SPAN


def test_curves_agree_after_identification(curve):
    """No intervention in the generator: after identification, the matched cohort's and the
    comparison's admissions differ by no more than chance (3 Poisson standard errors)."""
    c, _, _ = curve
    cohort, comparison = _after_events(c, "matched_cohort"), _after_events(c, "comparison")
    assert abs(cohort - comparison) <= 3 * np.sqrt(cohort + comparison)


def test_the_observed_cohort_matches_its_truth(curve):
    """The cohort's admissions after identification are what its latent risk predicts,
    while in the identification month they are many times that: regression to the mean."""
    c, store, truth = curve
    case, _, month = c.pairs
    expected = _expected_after(store, truth, case, month)
    observed = _after_events(c, "cohort")
    predicted = expected * len(case) * crisis.SPAN
    # emergency readmissions and transfers come on top of the latent admissions (about 15%)
    assert predicted * 0.8 - 3 * np.sqrt(predicted) <= observed <= predicted * 1.35 + 3 * np.sqrt(predicted)
    assert c.summary["cohort"]["admissions_month0"] > 10 * expected


@pytest.mark.parametrize("group", ["cohort", "matched_cohort", "comparison"])
def test_every_group_regresses(group, curve):
    """The crisis curve: a peak in the identification month, then a fall, in the comparison too."""
    s = curve[0].summary[group]
    assert s["admissions_month0"] > 5 * s["admissions_after"]
    assert s["cost_month0"] > 2 * s["cost_after"]


def test_matched_before_identification(curve):
    """Matched on the 12 months to identification: the months before agree within chance."""
    c, _, _ = curve
    a, b = (c.summary[g]["admissions_before"] * c.summary[g]["people"] * crisis.SPAN
            for g in ("matched_cohort", "comparison"))
    assert abs(a - b) <= 3 * np.sqrt(a + b)
