"""Spells, continuous inpatient (CIP) spells and readmissions, on every engine.

Ingest derives activity.cips_position (1 starts a CIP spell, 2, 3, ... a transfer that
continues it: the admission before was discharged to other_hospital at most TRANSFER_DAYS,
2, days earlier) and activity.previous_discharge (for a CIP spell's first admission, the
end of the patient's previous CIP spell). Spell ids are numbers shared by activity and
diagnoses, so ``spell_id == index_spell`` finds the diagnoses of an admission.

    patient     admissions (start..end, E emergency / L elective, OH other_hospital)      readmissions  transfers
    same_day    E 01-01..01-05, E 01-05..01-06                   (0 days)                 1             0
    day29       E 01-01..01-05, E 02-03..02-04                   (29 days)                1             0
    day30       E 01-01..01-05, E 02-04..02-05                   (30 days)                0             0
    day31       E 01-01..01-05, E 02-05..02-06                   (31 days)                0             0
    moved0      E 01-01..01-05 OH, E 01-05..01-09                (a transfer, same day)   0             1
    moved2      E 01-01..01-05 OH, E 01-07..01-09                (a transfer, 2 days)     0             1
    moved3      E 01-01..01-05 OH, E 01-08..01-09                (3 days: readmitted)     1             0
    chain       E 01-01..01-05 OH, L 01-06..01-10 OH, E 01-12..01-20 home,
                E 02-10..02-12        (21 days after the chain's end, 36 after 01-05)    1             2
    long_chain  E 01-01..01-05 OH, E 01-07..03-01 home, E 03-20..03-21
                                         (19 days after 03-01; 74 after 01-05)            1             1
    elective    L 01-01..01-03, E 01-20..01-22                   (an elective discharge)  1             0
    to_elective E 01-01..01-03, L 01-10..01-12                   (not an emergency)       0             0
    in_hospital E 01-01.. (no end), E 01-15..01-16               (no discharge yet)       0             0
    overlap     E 01-01..01-20, E 01-05..01-06, E 01-25..01-26   (5 days after 01-20)     1             0
    late        E 10-01..10-05, E 11-02 (after as_of, unseen)                              0             0
    nobody_in   a GP contact only                                                          0             0

(all in 2026; as_of 2026-10-31). index_spell is the spell of the latest emergency admission,
dx_in_index the number of its diagnoses:

    patient     index spell  its diagnoses (positions)     dx_in_index  primary_in_index
    chain       C4           J189 (1), I10 (2), E119 (3)   3            1
    same_day    S2           J440 (1)                      1            1
    day29       D2           none (D1 has J189)            0            0
    nobody_in   none                                       0            0
"""
from __future__ import annotations

import pytest

from spec_helpers import ENGINES, evaluate_case, patient

AS_OF = "2026-10-31"
E, L = "emergency_admission", "elective_admission"


def adm(pid, start, end, setting=E, dest="home", spell=None):
    return (pid, f"2026-{start}", end and f"2026-{end}", setting, "1000", None, "RXX01", dest, spell)


def dx(pid, code, spell, position, date):
    return (pid, f"2026-{date}", "icd10", code, "acute" if spell else "primary_care", spell,
            None if position is None else str(position))


OH = "other_hospital"
ACTIVITY = [
    adm("same_day", "01-01", "01-05", spell="S1"), adm("same_day", "01-05", "01-06", spell="S2"),
    adm("day29", "01-01", "01-05", spell="D1"), adm("day29", "02-03", "02-04", spell="D2"),
    adm("day30", "01-01", "01-05"), adm("day30", "02-04", "02-05"),
    adm("day31", "01-01", "01-05"), adm("day31", "02-05", "02-06"),
    adm("moved0", "01-01", "01-05", dest=OH), adm("moved0", "01-05", "01-09"),
    adm("moved2", "01-01", "01-05", dest=OH), adm("moved2", "01-07", "01-09"),
    adm("moved3", "01-01", "01-05", dest=OH), adm("moved3", "01-08", "01-09"),
    adm("chain", "01-01", "01-05", dest=OH, spell="C1"), adm("chain", "01-06", "01-10", L, dest=OH, spell="C2"),
    adm("chain", "01-12", "01-20", spell="C3"), adm("chain", "02-10", "02-12", spell="C4"),
    adm("long_chain", "01-01", "01-05", dest=OH), adm("long_chain", "01-07", "03-01"),
    adm("long_chain", "03-20", "03-21"),
    adm("elective", "01-01", "01-03", L), adm("elective", "01-20", "01-22"),
    adm("to_elective", "01-01", "01-03"), adm("to_elective", "01-10", "01-12", L),
    adm("in_hospital", "01-01", None), adm("in_hospital", "01-15", "01-16"),
    adm("overlap", "01-01", "01-20"), adm("overlap", "01-05", "01-06"), adm("overlap", "01-25", "01-26"),
    adm("late", "10-01", "10-05"), adm("late", "11-02", "11-03"),
    ("nobody_in", "2026-03-01", None, "gp", None, None, None, None, None),
]
DIAGNOSES = [
    dx("chain", "J189", "C4", 1, "02-10"), dx("chain", "I10", "C4", 2, "02-10"), dx("chain", "E119", "C4", 3, "02-11"),
    dx("chain", "J189", "C1", 1, "01-01"), dx("chain", "J189", None, None, "03-01"),
    dx("same_day", "J440", "S2", 1, "01-05"), dx("same_day", "J440", "S1", 1, "01-01"),
    dx("day29", "J189", "D1", 1, "01-01"),
]
PATIENTS = sorted({r[0] for r in ACTIVITY})
TABLES = {"patients": [patient(p) for p in PATIENTS], "activity": ACTIVITY, "diagnoses": DIAGNOSES}

FEATURES = """\
  readmissions: count(activity, setting == "emergency_admission" and cips_position == 1 and days_between(previous_discharge, start_date) <= 29)
  transfers: count(activity, cips_position >= 2)
  index_spell: last(activity.spell_id, setting == "emergency_admission")
  dx_in_index: count(diagnoses, spell_id == index_spell)
  primary_in_index: count(diagnoses, spell_id == index_spell and position == 1)
"""

READMISSIONS = {"same_day": 1, "day29": 1, "day30": 0, "day31": 0, "moved0": 0, "moved2": 0, "moved3": 1,
                "chain": 1, "long_chain": 1, "elective": 1, "to_elective": 0, "in_hospital": 0, "overlap": 1,
                "late": 0, "nobody_in": 0}
TRANSFERS = {"moved0": 1, "moved2": 1, "chain": 2, "long_chain": 1}
DX_IN_INDEX = {"chain": (3, 1), "same_day": (1, 1), "day29": (0, 0), "nobody_in": (0, 0)}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_readmissions_and_transfers(tmp_path, engine):
    got = evaluate_case(tmp_path, engine, TABLES, FEATURES, AS_OF)
    assert {p: got[p]["readmissions"] for p in PATIENTS} == READMISSIONS
    assert {p: got[p]["transfers"] for p in PATIENTS} == {p: TRANSFERS.get(p, 0) for p in PATIENTS}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_the_diagnoses_of_the_index_spell(tmp_path, engine):
    got = evaluate_case(tmp_path, engine, TABLES, FEATURES, AS_OF)
    assert {p: (got[p]["dx_in_index"], got[p]["primary_in_index"]) for p in DX_IN_INDEX} == DX_IN_INDEX
    assert got["nobody_in"]["index_spell"] is None and got["day30"]["index_spell"] is None  # no spell ids
    spells = [got[p]["index_spell"] for p in ("chain", "same_day", "day29")]
    assert all(isinstance(s, int) and s > 0 for s in spells) and len(set(spells)) == 3


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_an_earlier_evaluation_date_sees_only_what_was_known_then(tmp_path, engine):
    """At 2026-02-05 the chain's readmission (02-10) has not happened; the others have.

        patient  readmissions at 2026-02-05  why
        day29    1                           02-03 is on or before the date
        day31    0                           02-05 is 31 days after 01-05
        chain    0                           02-10 is after the date; transfers 2 all the same

    and the chain's index spell is then C3 (01-12), which has no diagnoses.
    """
    got = evaluate_case(tmp_path, engine, TABLES, FEATURES, "2026-02-05")
    assert {p: got[p]["readmissions"] for p in ("day29", "day31", "chain")} == {"day29": 1, "day31": 0, "chain": 0}
    assert got["chain"]["transfers"] == 2
    assert (got["chain"]["dx_in_index"], got["chain"]["primary_in_index"]) == (0, 0)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_readmission_windows_at_their_edges(tmp_path, engine):
    """days_between(previous_discharge, start_date) of each CIP spell's first admission:

        patient   gaps (days)         within 0  within 29  within 30
        same_day  0                   1         1          1
        day29     29                  0         1          1
        day30     30                  0         0          1
        day31     31                  0         0          0
        moved3    3                   0         1          1
    """
    features = "".join(
        f"  within_{n}: count(activity, cips_position == 1 and days_between(previous_discharge, start_date) <= {n})\n"
        for n in (0, 29, 30))
    features += "  gap: max(activity, cips_position == 1, value=days_between(previous_discharge, start_date))\n"
    got = evaluate_case(tmp_path, engine, TABLES, features, AS_OF)
    want = {"same_day": (1, 1, 1, 0), "day29": (0, 1, 1, 29), "day30": (0, 0, 1, 30), "day31": (0, 0, 0, 31),
            "moved3": (0, 1, 1, 3)}
    assert {p: (got[p]["within_0"], got[p]["within_29"], got[p]["within_30"], got[p]["gap"]) for p in want} == want
