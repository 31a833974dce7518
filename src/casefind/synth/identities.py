"""Pseudonyms and identities. patient_id is a keyed 48-bit bijection of the row index, shown as
12 hex characters: unique by construction, stable per seed, and it does not reveal order.
NHS numbers come from the 999/998 stems (999 is reserved for testing), check digit valid."""
from __future__ import annotations

import numpy as np

from casefind.contract import nhs_number
from casefind.synth._common import rng

_MASK = np.uint64((1 << 48) - 1)
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
GIVEN = ["Alex", "Sam", "Jo", "Priya", "Amir", "Grace", "Tom", "Aisha", "Owen", "Maya", "Leon", "Ruth",
         "Nia", "Omar", "Beth", "Kofi", "Ellen", "Ravi", "Zara", "Hugh", "Iris", "Jude", "Kit", "Lena"]
FAMILY = ["Ashdown", "Brindle", "Carrow", "Denholm", "Eskdale", "Fairbairn", "Gilmour", "Hallam",
          "Ingleby", "Jessop", "Kettering", "Lowther", "Marwood", "Nettleship", "Ormerod", "Pickering",
          "Quarrie", "Rushworth", "Sowerby", "Thwaite", "Underhill", "Varley", "Wetherall", "Yeadon"]


def pseudonyms(index: np.ndarray, seed: int) -> np.ndarray:
    key = rng(seed, 90).integers(0, 1 << 48, 4, dtype=np.uint64)
    x = (index.astype(np.uint64) + key[0]) & _MASK
    with np.errstate(over="ignore"):
        for k in (1, 2, 3):
            x ^= x >> np.uint64(23)
            x = (x * (key[k] | np.uint64(1))) & _MASK
            x ^= x >> np.uint64(17)
    nib = (x[:, None] >> (np.arange(44, -1, -4, dtype=np.uint64))) & np.uint64(15)
    return _HEX[nib.astype(np.intp)].view("S12").ravel().astype("U12")


def _stem_pool() -> np.ndarray:
    """Nine-digit stems from the 999 and 998 ranges whose check digit is not 10."""
    stems = np.arange(999_999_999, 997_999_999, -1, dtype=np.int64)
    digits = (stems[:, None] // (10 ** np.arange(8, -1, -1, dtype=np.int64))) % 10
    ok = (11 - (digits @ np.arange(10, 1, -1)) % 11) != 10
    return stems[ok]


# How many distinct synthetic NHS numbers the ranges hold: the most patients synth can make.
CAPACITY = 1_818_182


def nhs_numbers(n: int, seed: int, first: int = 0) -> np.ndarray:
    """NHS numbers first..first+n-1 of the seed's order of the pool: a block of a large
    population takes the numbers after the blocks before it, so none is given twice."""
    pool = _stem_pool()
    if first + n > len(pool):
        raise ValueError("too many patients for the synthetic NHS number ranges")
    pick = rng(seed, 91).permutation(len(pool))[first:first + n]
    return nhs_number.generate(pool[pick])


def identities(pids: np.ndarray, practice_codes: np.ndarray, seed: int, numbering: tuple[int, int] | None = None
               ) -> dict:
    """Names and NHS numbers; ``numbering`` (the population's seed and the block's first
    patient) draws a block's NHS numbers from the whole population's order."""
    r = rng(seed, 92)
    n = len(pids)
    number_seed, first = numbering or (seed, 0)
    return {
        "patient_id": pids,
        "nhs_number": nhs_numbers(n, number_seed, first).astype("U10"),
        "given_name": np.array(GIVEN)[r.integers(0, len(GIVEN), n)],
        "family_name": np.array(FAMILY)[r.integers(0, len(FAMILY), n)],
        "practice_code": practice_codes,
    }
