"""flock_waiting: the one bounded wait for a writer's lock (the review log, the audit log)."""
from __future__ import annotations

import fcntl

import pytest

from casefind.errors import BusyError
from casefind.filelock import flock_waiting


def test_a_free_lock_is_taken_and_a_held_one_gives_the_callers_error(tmp_path):
    path = tmp_path / ".lock"
    with open(path, "w") as first, open(path, "w") as second:
        flock_waiting(first, 1.0, lambda: BusyError("never"))
        with pytest.raises(BusyError, match="still held"):
            flock_waiting(second, 0.02, lambda: BusyError("still held"), poll_s=0.005)
        fcntl.flock(first, fcntl.LOCK_UN)
        flock_waiting(second, 0.02, lambda: BusyError("not now"))  # free again: taken at once
        fcntl.flock(second, fcntl.LOCK_UN)
