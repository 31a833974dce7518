import numpy as np
import pytest

from casefind.contract import INPUT_TABLES, TABLES, nhs_number
from casefind.contract.quarantine import REASONS, unknown_value_reason


@pytest.mark.parametrize("number,ok", [
    ("9434765919", True), ("4010232137", True), ("9434765918", False), ("943476591", False),
    ("94347659190", False), ("94347659A9", False), ("", False), (" 9434765919 ", True),
])
def test_nhs_number_check_digit(number, ok):
    assert nhs_number.is_valid(number) is ok
    assert bool(nhs_number.valid_mask([number])[0]) is ok


def test_check_digit_ten_is_never_valid():
    # 123456789 has check digit 10: no number starting so is valid
    assert nhs_number.check_digit("123456789") is None
    assert not any(nhs_number.is_valid(f"123456789{d}") for d in range(10))


def test_generated_numbers_are_valid():
    nums = nhs_number.sequence(999_000_000, 10_000)
    assert len(nums) == 10_000
    assert nhs_number.valid_mask(np.array([str(n) for n in nums])).all()
    assert len(set(nums.tolist())) == len(nums)


def test_every_enum_column_has_an_unknown_reason():
    for t in (TABLES[n] for n in INPUT_TABLES):  # the review log is checked by review import
        for c in t.columns:
            if c.kind == "enum":
                assert unknown_value_reason(c.name) in REASONS


def test_restricted_tables():
    assert [n for n, t in TABLES.items() if t.restricted] == ["identities"]
