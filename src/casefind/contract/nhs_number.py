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
    arr = np.array([("" if n is None else str(n).strip()) for n in numbers], dtype="U16") \
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
    """Valid NHS numbers (int64) from distinct nine-digit stems. About 1 stem in 11 has check
    digit 10 and cannot form a number: those are dropped, so the result is shorter than the
    input and stays unique. ``sequence`` gives an exact count."""
    stems = np.asarray(first_nine, dtype=np.int64)
    digits = (stems[:, None] // (10 ** np.arange(8, -1, -1, dtype=np.int64))) % 10
    check = 11 - (digits @ _WEIGHTS) % 11
    check = np.where(check == 11, 0, check)
    ok = check != 10
    return stems[ok] * 10 + check[ok]


def sequence(start: int, count: int) -> np.ndarray:
    """``count`` distinct valid NHS numbers from consecutive stems beginning at ``start``
    (for synthetic data use the 999 range, which is never issued to patients)."""
    out = generate(np.arange(start, start + count + count // 8 + 16, dtype=np.int64))
    if out.size < count or out[count - 1] // 10 >= 10**9:
        raise ValueError(f"not enough nine-digit stems from {start} for {count} numbers")
    return out[:count]
