"""Fixtures shared by the tests (data helpers are in casefind_testdata.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from casefind_testdata import GOOD, with_bad_rows, write_source


@pytest.fixture
def tiny_source(tmp_path) -> Path:
    return write_source(tmp_path / "source", GOOD)


@pytest.fixture
def bad_source(tmp_path) -> Path:
    return write_source(tmp_path / "bad_source", with_bad_rows())
