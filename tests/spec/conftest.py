"""The one fixture every spec test runs on: each registered engine (``engine``), and
``spec_test``, which runs a case written as tables on it (spec_helpers.run_case)."""
from __future__ import annotations

import itertools

import pytest

from spec_helpers import ENGINES, run_case


@pytest.fixture(params=sorted(ENGINES))
def engine(request) -> str:
    """The name of a registered engine: a spec test runs once on each."""
    return request.param


@pytest.fixture
def spec_test(tmp_path, engine):
    """``spec_test(tables=..., features=..., expected=..., ...)`` checks one case on ``engine``."""
    counter = itertools.count()

    def run(**case) -> None:
        run_case(tmp_path / f"case{next(counter)}", engine, **case)

    return run
