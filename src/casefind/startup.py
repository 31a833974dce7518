"""Start-up cost of a command in a fresh process: what it need not import.

pyarrow imports pandas (about 0.2 s, a tenth of a fresh ``casefind run``) the first time it
converts anything, only to check whether its input is a pandas object. casefind never hands
it one, so while a command that never uses pandas runs, pandas is held back: ``import
pandas`` fails as if it were not installed, and pyarrow, DuckDB and numpy carry on without
it (as they do where pandas is absent). Nothing is held back in a process that has imported
pandas already (a notebook, the test suite): there is nothing left to save.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

HELD_BACK = "pandas"


class _HoldBack:
    """A meta path finder that refuses one top-level module (and its submodules)."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name or fullname.startswith(self.name + "."):
            raise ModuleNotFoundError(f"{fullname} is not imported while casefind runs (see casefind/startup.py)",
                                      name=fullname)
        return None


@contextmanager
def without_pandas():
    """Run the block with pandas unimportable, unless it is imported already."""
    if HELD_BACK in sys.modules:
        yield
        return
    finder = _HoldBack(HELD_BACK)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
