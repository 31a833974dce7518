"""Continuous inpatient (CIP) spells: the derived columns ``activity.cips_position`` and
``activity.previous_discharge``, from each patient's admissions.

An *admission* is an activity row whose setting is in ``ADMISSION_SETTINGS``. A patient's
admissions are taken in order of start date, then end date (a spell that ends earlier
comes first; no end date last), then store order. Admission ``i`` *continues* the
admission ``j`` just before it when ``j`` was discharged to ``other_hospital``, has an end
date, and ``i`` starts 0 to ``TRANSFER_DAYS`` days after ``j`` ended. Then

- ``cips_position`` is 1 for an admission that continues nothing (it starts a CIP spell),
  else the position of the admission it continues plus one (capped at ``MAX_POSITION``);
  0 (null) for rows that are not admissions. A CIP spell is a run of admissions each
  continuing the one before; its *end* is the end date of its last admission, and a CIP
  spell whose last admission has no end date (still in hospital) has no end.
- ``previous_discharge`` of an admission that starts a CIP spell is the latest end of the
  patient's earlier CIP spells that ended on or before the admission's start date
  (NULL_DAY where there is none); NULL_DAY for continuations and for rows that are not
  admissions.

Everything looks backwards only: an admission's values depend on admissions that started
on or before it, never on a later one, so a rule evaluated at any date sees what was known
then. Spells that overlap (one starting before the previous one ended) are not transfers;
a CIP spell that had not ended by an admission's start is not its previous discharge.
"""
from __future__ import annotations

import casefind_native  # noqa: F401  (first: it sets Numba's cache folder before numba is imported)

# isort: split
import numba as nb
import numpy as np

from casefind.contract.dates import NULL_DAY
from casefind.contract.schema import ADMISSION_SETTINGS, DISCHARGE_DESTINATIONS, MAX_POSITION, SETTINGS, TRANSFER_DAYS

_ADMISSIONS = np.array([SETTINGS.index(s) for s in ADMISSION_SETTINGS], dtype=np.int8)
_TRANSFER = DISCHARGE_DESTINATIONS.index("other_hospital")
_NO_END = np.iinfo(np.int32).max  # sorts an admission without an end date after the others


@nb.njit(cache=True)
def _walk(patient, start, end, transfer, null_day, window, cap, position, previous):
    """Admissions in order (patient, start, end); fills position and previous in place."""
    n = patient.shape[0]
    pending = np.empty(n, dtype=np.int32)  # ends of closed CIP spells after the current start
    n_pending = 0
    best = null_day  # latest end of the patient's closed CIP spells on or before the start
    for i in range(n):
        first = i == 0 or patient[i] != patient[i - 1]
        if first:
            n_pending = 0
            best = null_day
        elif (transfer[i - 1] and end[i - 1] != null_day
              and 0 <= start[i] - end[i - 1] <= window):
            position[i] = min(position[i - 1] + 1, cap)
            previous[i] = null_day
            continue
        position[i] = 1
        if not first and end[i - 1] != null_day:  # the CIP spell of i - 1 closed with it
            pending[n_pending] = end[i - 1]
            n_pending += 1
        k = 0
        while k < n_pending:  # closed spells that have ended by this start
            if pending[k] <= start[i]:
                if best == null_day or pending[k] > best:
                    best = pending[k]
                n_pending -= 1
                pending[k] = pending[n_pending]
            else:
                k += 1
        previous[i] = best


def derive(patient: np.ndarray, start: np.ndarray, end: np.ndarray, setting: np.ndarray,
           destination: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cips_position`` (int8, 0 where null) and ``previous_discharge`` (int32 day number,
    NULL_DAY where null) of activity rows given as store arrays: patient index, start and
    end day numbers (NULL_DAY for none), setting and discharge destination indices."""
    n = len(patient)
    position = np.zeros(n, dtype=np.int8)
    previous = np.full(n, NULL_DAY, dtype=np.int32)
    rows = np.flatnonzero(np.isin(setting, _ADMISSIONS))
    if rows.size == 0:
        return position, previous
    e = end[rows].astype(np.int32)
    s = start[rows].astype(np.int32)
    p = patient[rows].astype(np.int32)
    order = rows[np.lexsort((rows, np.where(e == NULL_DAY, _NO_END, e), s, p))]
    pos = np.zeros(order.size, dtype=np.int8)
    prev = np.full(order.size, NULL_DAY, dtype=np.int32)
    _walk(np.ascontiguousarray(patient[order], dtype=np.int32),
          np.ascontiguousarray(start[order], dtype=np.int32),
          np.ascontiguousarray(end[order], dtype=np.int32),
          np.ascontiguousarray(destination[order] == _TRANSFER),
          np.int32(NULL_DAY), np.int32(TRANSFER_DAYS), np.int8(MAX_POSITION), pos, prev)
    position[order] = pos
    previous[order] = prev
    return position, previous
