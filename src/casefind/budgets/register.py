"""The cohort register: who is in the cohort on which days of the year, and why they joined
and left, worked out with numpy from the month-end evaluations (budgets/features.py).

Method (docs/budgets.md): the register is kept monthly. A person in the cohort the day
before the year starts is ``in_cohort_at_start``. One first found in it at a month's end
joins on the first day of that month (or on the day they registered, or the day a
clinician accepted them, when later). One found in at a month's end and not at the next
leaves on the day they died or deregistered when that falls from the last day they were
found in to the month's end (those days count), else they ``no_longer_qualifies`` on the
last day of the month they were last found in. Months after the store's data keep the last
complete month's cohort (no one joins or leaves in them). Days count inclusively: a person
who dies on the 15th is in for 15 days of the month.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from casefind.budgets.features import NO_DATE, Values, day
from casefind.budgets.years import FinancialYear
from casefind.store import Store

JOIN_REASONS = ("in_cohort_at_start", "meets_rule", "accepted_by_clinician")
LEAVE_REASONS = ("died", "deregistered", "no_longer_qualifies")
FAR = np.iinfo(np.int64).max // 4


@dataclass(frozen=True)
class Register:
    """``patients``: store indices of everyone in the cohort at some time in the year; the
    arrays below are per such patient x month (12), then per stint (a spell in the cohort)."""

    patients: np.ndarray
    first_day: np.ndarray     # first day in the cohort in the month (store day number)
    last_day: np.ndarray      # last day; last_day < first_day: not in that month
    days: np.ndarray          # days in the cohort in the month
    stint_of: np.ndarray      # the stint covering the month, -1 none
    in_at_end: np.ndarray     # in the cohort at the month's end (people at month end)
    stint_patient: np.ndarray  # row into ``patients``
    stint_first: np.ndarray    # first month (0-11)
    stint_last: np.ndarray     # last month with days in it
    joined: np.ndarray         # day numbers
    left: np.ndarray           # NO_DATE: still in at the year's end
    join_reason: np.ndarray    # index into JOIN_REASONS
    leave_reason: np.ndarray   # index into LEAVE_REASONS, -1 none
    category: np.ndarray       # category index at joining
    incentive: np.ndarray      # earned the incentive while in the cohort

    @property
    def n_stints(self) -> int:
        return len(self.stint_patient)


def _patient_days(store: Store, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = store.table("patients")

    def col(name: str, none: int) -> np.ndarray:
        v = pt[name][rows].astype(np.int64)
        return np.where(v == NO_DATE, none, v)

    return col("registration_start", -FAR), col("registration_end", FAR), col("death_date", FAR)


def build(store: Store, values: Values, year: FinancialYear, complete: int) -> Register:
    """The register from the evaluations at the day before the year and the first
    ``complete`` month ends (the months the data covers)."""
    cols = [values.at(year.start - dt.timedelta(days=1))] + [values.at(d) for d in year.month_ends()[:complete]]
    member = values.cohort[:, cols] | values.accepted[:, cols]
    rows = np.nonzero(member.any(axis=1))[0]
    member, meets = member[rows], values.cohort[rows][:, cols]
    accepted_on = values.accepted_on[rows][:, cols]
    category, incentive = values.category[rows][:, cols], values.incentive[rows][:, cols]
    if complete < 12:  # months beyond the data keep the last complete month's cohort
        pad = 12 - complete
        member = np.concatenate([member, np.repeat(member[:, -1:], pad, axis=1)], axis=1)
    reg_start, reg_end, death = _patient_days(store, rows)
    starts = np.array([day(d) for d in year.month_starts()], np.int64)
    ends = np.array([day(d) for d in year.month_ends()], np.int64)
    first_day, last_day, leave_reason_m, leave_day_m = _month_days(member, starts, ends, complete, reg_start,
                                                                   reg_end, death, meets, accepted_on)
    days = np.maximum(last_day - first_day + 1, 0)
    return _stints(rows, member, meets, first_day, last_day, days, leave_reason_m, leave_day_m, category,
                   incentive, complete)


def _month_days(member, starts, ends, complete, reg_start, reg_end, death, meets, accepted_on):
    """Each patient-month's first and last day in the cohort, and who left in it, why and when."""
    n = len(member)
    first_day = np.full((n, 12), 0, np.int64)
    last_day = np.full((n, 12), -1, np.int64)
    leave_reason = np.full((n, 12), -1, np.int64)
    leave_day = np.full((n, 12), NO_DATE, np.int64)
    for m in range(12):
        now, before = member[:, m + 1], member[:, m]
        joined = now & ~before
        lo = np.full(n, starts[m])
        if m < complete:
            by_acceptance = joined & ~meets[:, m + 1]
            lo = np.where(joined, np.maximum(lo, reg_start), lo)
            lo = np.where(by_acceptance, np.maximum(lo, accepted_on[:, m + 1]), lo)
        lo = np.minimum(lo, ends[m])
        first_day[:, m] = np.where(now, lo, first_day[:, m])
        last_day[:, m] = np.where(now, ends[m], last_day[:, m])
        left = before & ~now
        prev_end = starts[m] - 1
        # on the last day found in (a month's end) counts too: registered and alive that day
        died = left & (death >= prev_end) & (death <= ends[m]) & (death <= reg_end)
        dereg = left & ~died & (reg_end >= prev_end) & (reg_end <= ends[m])
        exact = np.where(died, death, reg_end)
        first_day[:, m] = np.where(died | dereg, starts[m], first_day[:, m])
        last_day[:, m] = np.where(died | dereg, exact, last_day[:, m])
        leave_reason[:, m] = np.select([died, dereg, left], [0, 1, 2], -1)
        leave_day[:, m] = np.select([died | dereg, left], [exact, prev_end], NO_DATE)
    return first_day, last_day, leave_reason, leave_day


def _stints(rows, member, meets, first_day, last_day, days, leave_reason_m, leave_day_m, category, incentive,
            complete) -> Register:
    """Spells in the cohort: each starts where a patient is in and was not (or at the start)
    and ends at the next month with a leaver's reason."""
    n = len(rows)
    start_mask = np.zeros((n, 13), bool)  # column 0: in at the start; column m+1: joined in month m
    start_mask[:, 0] = member[:, 0]
    start_mask[:, 1:] = member[:, 1:] & ~member[:, :-1]
    sp, sc = np.nonzero(start_mask)
    ep, em = np.nonzero(leave_reason_m >= 0)
    skey, ekey = sp * 13 + sc, ep * 13 + em + 1
    j = np.searchsorted(ekey, skey, side="left")
    j_ok = j < len(ekey)
    ended = np.zeros(len(sp), bool)
    ended[j_ok] = ep[j[j_ok]] == sp[j_ok]
    j = np.where(ended, j, 0)
    first_m = np.maximum(sc - 1, 0)
    end_m = np.where(ended, em[j] if len(em) else 0, 12)  # the month the patient left in (12: never)
    exact_leave = ended & (leave_reason_m[ep[j], em[j]] < 2) if len(em) else ended
    last_m = np.where(exact_leave, end_m, end_m - 1)
    eval_col = np.minimum(sc, complete)  # the evaluation the stint started at
    stint_of = np.full((n, 12), -1, np.int64)
    for m in range(12):
        active = (first_m <= m) & (last_m >= m)
        stint_of[sp[active], m] = np.nonzero(active)[0]
    first_days = first_day[sp, first_m]
    joined = np.where(sc == 0, first_day[sp, 0], first_days)
    left = np.where(ended, leave_day_m[ep[j], em[j]] if len(em) else NO_DATE, NO_DATE)
    join_reason = np.where(sc == 0, 0, np.where(meets[sp, eval_col], 1, 2))
    leave_reason = np.where(ended, leave_reason_m[ep[j], em[j]] if len(em) else -1, -1)
    return Register(
        patients=rows, first_day=first_day, last_day=last_day, days=days, stint_of=stint_of,
        in_at_end=member[:, 1:], stint_patient=sp, stint_first=first_m, stint_last=last_m, joined=joined,
        left=left, join_reason=join_reason, leave_reason=leave_reason, category=category[sp, eval_col],
        incentive=_earned(incentive & _in_eval(member, complete), sp, eval_col, np.minimum(end_m, complete)))


def _in_eval(member: np.ndarray, complete: int) -> np.ndarray:
    return member[:, : complete + 1]


def _earned(flags: np.ndarray, patient: np.ndarray, first_col: np.ndarray, last_col: np.ndarray) -> np.ndarray:
    """Whether the incentive's condition held at any evaluation of the stint (columns
    first_col..last_col inclusive)."""
    if not flags.any():  # no incentive, or no one earned it
        return np.zeros(len(patient), bool)
    cs = np.concatenate([np.zeros((len(flags), 1), np.int64), np.cumsum(flags, axis=1)], axis=1)
    hi = np.minimum(last_col, flags.shape[1] - 1) + 1
    return (cs[patient, hi] - cs[patient, first_col]) > 0
