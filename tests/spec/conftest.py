"""The one fixture every spec test runs on: each registered engine (``engine``), and
``spec_test``, which runs a case written as tables on it (spec_helpers.run_case)."""
from __future__ import annotations

import itertools

import pytest

from spec_helpers import ENGINES, run_case

FUSED = "native+fused"  # the native engine with every per-patient expression in its fused loop
PER_PATIENT = {"operators", "case", "at", "attributes"}  # the constructs the fused loop computes


def pytest_generate_tests(metafunc):
    """Every registered engine for each spec test; the per-patient constructs also on the
    native engine with its fused loop forced (engines/fused.py: below FUSE_MIN_WORK
    patients x periods x nodes it is left to numpy, so small cases would never reach it)."""
    if "engine" in metafunc.fixturenames:
        fused = [FUSED] if metafunc.definition.path.parent.name in PER_PATIENT else []
        metafunc.parametrize("engine", [*sorted(ENGINES), *fused], indirect=True)


@pytest.fixture
def engine(request, monkeypatch) -> str:
    """The name of the engine a spec test runs on."""
    if request.param != FUSED:
        return request.param
    from casefind.engines import fused

    monkeypatch.setattr(fused, "FUSE_MIN_WORK", 0)
    return "native"


@pytest.fixture
def spec_test(tmp_path, engine):
    """``spec_test(tables=..., features=..., expected=..., ...)`` checks one case on ``engine``."""
    counter = itertools.count()

    def run(**case) -> None:
        run_case(tmp_path / f"case{next(counter)}", engine, **case)

    return run
