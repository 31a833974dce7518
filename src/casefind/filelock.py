"""Waiting for an exclusive lock on an open file, for a bounded time.

The review log and the audit log each let one writer append at a time, across processes:
an append takes milliseconds, so a writer waits its turn, polling, and gives up with the
caller's own error (nothing recorded) rather than hang a request or a scheduled job."""
from __future__ import annotations

import fcntl
import time
from collections.abc import Callable
from typing import IO


def flock_waiting(fh: IO, wait_s: float, busy: Callable[[], Exception], poll_s: float = 0.005) -> None:
    """Take an exclusive ``flock`` on ``fh``, trying every ``poll_s`` for up to ``wait_s``
    seconds; raise ``busy()`` if it is still held then. Release with ``fcntl.LOCK_UN``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise busy() from None
            time.sleep(poll_s)
