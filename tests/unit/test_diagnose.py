"""Rule diagnostics (casefind diagnose) on constructed histories with known answers.

The issue: "Turnover, overlap and PPV on constructed histories with known answers". Each
patient below was written to land in one cell: stays, joins, leaves because they died,
moved or no longer qualify; a second rule overlaps the first in a known way; decisions
give a known PPV."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from casefind.diagnose import cohort, crisis, overlap, ppv, report, turnover
from casefind.diagnose.run import Options, diagnose
from casefind.errors import UsageError
from casefind.store import decisions, listings
from casefind.store.coverage import CoverageError
from casefind_testdata import N, cli, write_source

AS_OF = dt.date(2026, 10, 31)
ADMITTED = """\
rule: admitted
as_of: "2026-10-31"
population: registered and alive
features:
  admissions: count(activity, setting == "emergency_admission", within=months(12))
criteria:
  include:
    two: admissions >= 2
"""
AE = """\
rule: ae_user
as_of: "2026-10-31"
population: registered and alive
criteria:
  include:
    ae: count(activity, setting == "ae", within=months(12)) >= 1
  exclude:
    young: age < 18
"""


def _adm(pid, *dates):
    return [(pid, d, d, "emergency_admission", "3000", N, N, "home") for d in dates]


PATIENTS = [  # id, born, sex, practice, registered from, registered to, died
    ("s1", "1950-01-01", "F", "Z00001", "2000-01-01", N, N, "3", N, N),   # stays
    ("j1", "1950-01-01", "M", "Z00001", "2000-01-01", N, N, "3", N, N),   # joins
    ("d1", "1950-01-01", "F", "Z00001", "2000-01-01", N, "2026-05-01", "3", N, N),   # left: died
    ("m1", "1950-01-01", "M", "Z00002", "2000-01-01", "2026-02-01", N, "3", N, N),   # left: moved
    ("q1", "1950-01-01", "F", "Z00002", "2000-01-01", N, N, "3", N, N),   # left: no longer qualifies
    ("n1", "1950-01-01", "M", "Z00002", "2000-01-01", N, N, "3", N, N),   # A&E only
    ("k1", "2015-01-01", "F", "Z00002", "2015-01-01", N, N, "3", N, N),   # A&E, excluded (a child)
]
ACTIVITY = [
    *_adm("s1", "2025-03-10", "2025-06-10", "2026-03-10", "2026-06-10"),
    *_adm("j1", "2026-03-10", "2026-06-10"),
    *_adm("d1", "2025-03-10", "2025-06-10"),
    *_adm("m1", "2025-03-10", "2025-06-10"),
    *_adm("q1", "2025-03-10", "2025-06-10"),
    ("s1", "2026-07-01", N, "ae", "250", N, N, N),
    ("j1", "2026-07-01", N, "ae", "250", N, N, N),
    ("n1", "2026-07-01", N, "ae", "250", N, N, N),
    ("k1", "2026-07-01", N, "ae", "250", N, N, N),
    ("n1", "2023-10-15", N, "gp", "42", N, N, N),  # the data start: the crisis curve's look-back is covered
    ("n1", "2026-10-30", N, "gp", "42", N, N, N),  # the data end
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    src = write_source(root / "src", {
        "practices": [("Z00001", "Elm", "LOC001", "North", "SYS01", "Demo"),
                      ("Z00002", "Oak", "LOC001", "North", "SYS01", "Demo")],
        "patients": PATIENTS, "activity": ACTIVITY, "diagnoses": [], "medications": [], "observations": [],
        "experience": [], "registers": [], "opt_outs": [], "identities": []})
    r = cli("ingest", src, "--store", root / "store")
    assert r.exit_code == 0, r.output
    (root / "admitted.yml").write_text(ADMITTED)
    (root / "ae_user.yml").write_text(AE)
    return root


def _diagnosis(built, **options):
    return diagnose([built / "admitted.yml", built / "ae_user.yml"], built / "store", AS_OF, Options(**options))


def test_turnover_against_a_year_earlier(built):
    d = _diagnosis(built)
    t = {x.rule: x for x in d.turnover}["admitted"]
    assert (t.earlier, t.earlier_size, t.now_size, t.joined, t.stayed) == (dt.date(2025, 10, 31), 4, 2, 1, 1, )
    assert t.left == {"died": 1, "moved": 1, "no_longer_qualifies": 1}
    assert t.turnover == pytest.approx(3 / 4)
    assert d.sizes["admitted"] == {"Z00001": 2, "Z00002": 0}
    assert d.sizes["ae_user"] == {"Z00001": 2, "Z00002": 1}  # k1 excluded by the rule (a child)


def test_turnover_against_a_run(built):
    """Listed for another practice than today's, or gone from the store: moved."""
    listed = pa.table({"practice": ["Z00001", "Z00001", "Z00001"], "patient_id": ["s1", "q1", "gone"],
                       "rank": [1, 2, 3]})
    listings.record(built / "store", run_id="abcdef123456", rule="admitted", as_of=dt.date(2025, 12, 31),
                    snapshot_id="x", listed=listed)
    d = _diagnosis(built, against="abcdef123456", window=0)
    t = {x.rule: x for x in d.turnover}
    assert (t["admitted"].against, t["admitted"].earlier, t["admitted"].earlier_size) == ("abcdef123456",
                                                                                        dt.date(2025, 12, 31), 3)
    assert (t["admitted"].joined, t["admitted"].stayed) == (1, 1)
    assert t["admitted"].left == {"died": 0, "moved": 2, "no_longer_qualifies": 0}
    assert t["ae_user"].against is None  # the run's rule only
    with pytest.raises(UsageError, match="no registered run"):
        _diagnosis(built, against="000000000000")
    with pytest.raises(UsageError, match="not among the rules"):
        diagnose([built / "ae_user.yml"], built / "store", AS_OF, Options(against="abcdef123456"))


def test_overlap_of_the_rules(built):
    o = _diagnosis(built, window=0).overlap
    assert o.rules == ("admitted", "ae_user") and o.sizes == (2, 3)
    assert o.both.tolist() == [[2, 2], [2, 3]]
    assert o.jaccard[0, 1] == pytest.approx(2 / 3)
    assert o.intersections == [(("admitted", "ae_user"), 2), (("ae_user",), 1)]


@pytest.mark.parametrize("masks, both, jaccard01, upset", [
    ({"a": [1, 1, 0, 0], "b": [0, 1, 1, 0]}, [[2, 1], [1, 2]], 1 / 3, [(("a",), 1), (("b",), 1), (("a", "b"), 1)]),
    ({"a": [1, 1, 1, 0], "b": [1, 1, 1, 0]}, [[3, 3], [3, 3]], 1.0, [(("a", "b"), 3)]),
    ({"a": [0, 0, 0, 0], "b": [0, 0, 0, 0]}, [[0, 0], [0, 0]], None, []),
])
def test_overlap_table(masks, both, jaccard01, upset):
    o = overlap.overlap({k: np.array(v, bool) for k, v in masks.items()})
    assert o.both.tolist() == both
    assert (np.isnan(o.jaccard[0, 1]) if jaccard01 is None else o.jaccard[0, 1] == pytest.approx(jaccard01))
    assert o.intersections == upset
    svg = overlap.upset_svg(o)
    assert ("<svg" in svg) == bool(upset) and "<script" not in svg


def test_ppv_from_decisions(built):
    """PPV = accepted / reviewed; a withdrawn decision does not count; 'listed' is not a review."""
    day = dt.date(2026, 10, 1)
    rows = [("s1", "accepted", "Z00001"), ("j1", "declined", "Z00001"), ("q1", "accepted", "Z00002"),
            ("q1", "withdrawn", "Z00002"), ("d1", "already_known", "Z00001"), ("n1", "listed", "Z00002")]
    decisions.append(built / "store", pa.Table.from_pylist(
        [{"patient_id": p, "rule": "admitted", "decision": dec, "date": day, "practice": pr, "run_id": None,
          "reviewer": "dr", "note": None} for p, dec, pr in rows], decisions.INPUT_SCHEMA))
    got = {(r["rule"], r["practice"]): r for r in _diagnosis(built, window=0).ppv}
    total = got[("admitted", "(all)")]
    assert (total["reviewed"], total["accepted"], total["declined"], total["already_known"]) == (3, 1, 1, 1)
    assert total["ppv"] == pytest.approx(1 / 3) and total["ppv_incl_known"] == pytest.approx(2 / 3)
    # Wilson (1927) score interval for 1/3, z = 1.96: 0.0615 to 0.7923
    assert total["ppv_lower"] == pytest.approx(0.0615, abs=1e-4)
    assert total["ppv_upper"] == pytest.approx(0.7923, abs=1e-4)
    assert got[("admitted", "Z00001")]["reviewed"] == 3 and ("admitted", "Z00002") not in got
    assert got[("ae_user", "(all)")]["reviewed"] == 0 and got[("ae_user", "(all)")]["ppv"] is None
    early = ppv.ppv_rows(decisions.in_force(decisions.read_log(built / "store")), ["admitted"], dt.date(2026, 9, 1))
    assert early[0]["reviewed"] == 0  # decisions after as_of are left out


def test_identification_and_the_curve(built):
    """s1, d1, m1, q1 reach two admissions on 10 June 2025: identified at the June month-end
    (month 0), their admissions at months -3 and 0 (and s1's at +9 and +12)."""
    d = _diagnosis(built)
    c = {x.rule: x for x in d.curves}["admitted"]
    assert c.identified == 4
    rows = {(r["group"], r["month"]): r for r in c.rows}
    assert rows[("cohort", 0)]["mean_admissions"] == 1.0 and rows[("cohort", -3)]["mean_admissions"] == 1.0
    assert rows[("cohort", 9)]["mean_admissions"] == 0.25 and rows[("cohort", 12)]["mean_admissions"] == 0.25
    assert rows[("cohort", 0)]["mean_cost"] == 3000.0 and rows[("cohort", 1)]["mean_cost"] == 0.0
    assert c.matched == 0  # nobody outside the cohort has two admissions: no like-for-like comparison
    assert rows[("comparison", 0)]["people"] == 0 and rows[("comparison", 0)]["mean_cost"] is None


def test_identified_needs_the_washout():
    w = crisis.Window(dt.date(2026, 10, 31), window=2, washout=2)
    assert w.dates == [dt.date(2025, 7, 31), dt.date(2025, 8, 31), dt.date(2025, 9, 30), dt.date(2025, 10, 31)]
    masks = np.array([[1, 0, 0, 0, 0],    # washout 1: patient 0 was already selected
                      [0, 0, 0, 0, 0],    # washout 2
                      [1, 1, 0, 0, 1],    # window 1: patients 1 and 4 new
                      [1, 1, 1, 0, 0]],   # window 2: patient 2 new
                     bool)
    found = cohort.Cohorts(None, tuple(w.dates), masks)
    assert crisis.identified(found, w).tolist() == [-1, 0, 1, -1, 0]


def test_nearest_match_with_replacement():
    s = crisis.Strata(key=np.array([1, 1, 1, 2, 1, 1, 2]),
                      prior_cost=np.array([100., 500., 900., 50., 480., 120., 60.]), tiebreak=np.arange(7))
    cases, pool = np.array([4, 5, 3]), np.array([0, 1, 2, 6])
    assert crisis.nearest(s, cases, pool).tolist() == [1, 0, 6]
    assert crisis.nearest(s, np.array([4, 1]), np.array([0])).tolist() == [0, 0]   # with replacement
    assert crisis.nearest(s, np.array([3]), np.array([0, 1])).tolist() == [-1]     # nobody in its stratum
    assert crisis.nearest(s, np.array([3]), np.array([], np.int64)).tolist() == [-1]
    # a case whose stratum (2) is empty, its insertion point the start of stratum 3's pool
    s2 = crisis.Strata(key=np.array([2, 3, 3, 3, 3]), prior_cost=np.array([0., 10., 20., 30., 29.]),
                       tiebreak=np.arange(5))
    assert crisis.nearest(s2, np.array([0, 4]), np.array([1, 2, 3])).tolist() == [-1, 3]


@pytest.mark.parametrize("case_cost, expected", [
    (300.0, 2),   # 100 below (patients 1 and 2 tie: 2 has the lower tie-break) and 100 above: the lower cost
    (399.0, 3),   # nearer above
    (200.0, 2),   # equal to 1 and 2: the lower tie-break
    (50.0, 2),    # below everyone: the lowest, first by tie-break
    (999.0, 3),   # above everyone: the highest
])
def test_nearest_ties(case_cost, expected):
    s = crisis.Strata(key=np.array([7, 7, 7, 7]), prior_cost=np.array([case_cost, 200., 200., 400.]),
                      tiebreak=np.array([0, 2, 1, 3]))
    got = crisis.nearest(s, np.array([0]), np.array([1, 2, 3]))[0]
    assert got == expected


@pytest.mark.parametrize("as_of, month_end", [(dt.date(2026, 10, 31), dt.date(2026, 10, 31)),
                                              (dt.date(2026, 10, 30), dt.date(2026, 9, 30)),
                                              (dt.date(2024, 3, 1), dt.date(2024, 2, 29))])
def test_last_month_end(as_of, month_end):
    assert crisis.last_month_end(as_of) == month_end


def test_uncovered_crisis_window_is_refused(built):
    with pytest.raises(CoverageError, match="crisis curve") as e:
        _diagnosis(built, window=12, washout=12)
    assert "--window" in e.value.hint


def test_report_written_whole(built, tmp_path):
    d = _diagnosis(built)
    folder = report.write(d, tmp_path / "out")
    assert folder.name == "diagnose-2026-10-31"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["crisis.parquet", "manifest.json", "overlap.parquet", "ppv.parquet", "report.html", "sizes.parquet",
         "turnover.parquet", "upset.parquet"])
    page = (folder / "report.html").read_text()
    assert "<script" not in page and "http" not in page  # self-contained: no scripts, no external references
    assert "admitted" in page and "<svg" in page
    report.write(d, tmp_path / "out")  # again: replaced whole
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["diagnose-2026-10-31"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError):
        report.write(d, tmp_path / "file")


def test_turnover_row_of_an_empty_cohort():
    t = turnover.Turnover("r", AS_OF, AS_OF, None, 0, 0, 0, 0, {"died": 0, "moved": 0, "no_longer_qualifies": 0})
    assert t.turnover is None and t.row()["left"] == 0


def test_reference_engine_gives_the_same_diagnosis(built):
    """The duckdb engine (one evaluation per date) and the native one (all dates in one pass)."""
    native, reference = _diagnosis(built), _diagnosis(built, engine="duckdb")
    assert reference.sizes == native.sizes
    assert [t.row() for t in reference.turnover] == [t.row() for t in native.turnover]
    assert [c.rows for c in reference.curves] == [c.rows for c in native.curves]


@pytest.mark.parametrize("raw, step", [(396.0, 500.0), (0.0425, 0.05), (1.0, 1.0), (0.3, 0.5), (12.0, 20.0),
                                       (0.0, 1.0)])
def test_crisis_chart_ticks_are_round_numbers(raw, step):
    """Axis steps of 1, 2 or 5 times a power of ten: £0, £500, £1,000, never £396, £792."""
    from casefind.diagnose.charts import nice_step

    assert nice_step(raw) == pytest.approx(step)
