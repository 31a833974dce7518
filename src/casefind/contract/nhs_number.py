"""NHS numbers: ten digits, the tenth a modulus-11 check digit over the first nine.

Weights 10..2 on digits 1-9; check = 11 - (sum mod 11); 11 becomes 0; 10 means the
nine digits can never form a valid number. (NHS Data Dictionary, "NHS Number".)
"""
from __future__ import annotations

import numpy as np

_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)


def check_digit(first_nine: str) -> int | None:
    """The check digit for nine digits, or None where no valid number can end them."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid(nhs_number: str) -> bool:
    s = str(nhs_number).strip()
    if len(s) != 10 or not s.isdigit():
        return False
    return check_digit(s[:9]) == int(s[9])


def valid_mask(numbers: list | np.ndarray) -> np.ndarray:
    """Vectorised ``is_valid`` over many numbers (None counts as invalid)."""
    arr = np.array([("" if n is None else str(n).strip()) for n in numbers], dtype="U10") \
        if not isinstance(numbers, np.ndarray) or numbers.dtype.kind != "U" else numbers
    n = len(arr)
    ok = np.char.str_len(arr) == 10
    ok &= np.char.isdigit(arr)
    digits = np.zeros((n, 10), dtype=np.int64)
    if ok.any():
        b = arr[ok].astype("S10").view(np.uint8).reshape(-1, 10).astype(np.int64) - 48
        digits[ok] = b
    total = digits[:, :9] @ _WEIGHTS
    check = 11 - total % 11
    check = np.where(check == 11, 0, check)
    return ok & (check != 10) & (check == digits[:, 9])


def generate(first_nine: np.ndarray) -> np.ndarray:
    """Valid NHS numbers from nine-digit stems (int64 < 1e9); stems that cannot form one
    (check digit 10) are nudged to the next stem that can. Returns int64 ten-digit numbers."""
    stems = np.asarray(first_nine, dtype=np.int64).copy()
    for _ in range(3):
        digits = (stems[:, None] // (10 ** np.arange(8, -1, -1, dtype=np.int64))) % 10
        check = 11 - (digits @ _WEIGHTS) % 11
        check = np.where(check == 11, 0, check)
        bad = check == 10
        if not bad.any():
            return stems * 10 + check
        stems[bad] += 1
    raise AssertionError("unreachable: consecutive stems cannot all need check digit 10")
