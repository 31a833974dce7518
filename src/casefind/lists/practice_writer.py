"""Write every practice's files (CSV and workbook), on two processes when that pays.

A run writes one CSV and one workbook per practice of the store (125 at 1M patients).
XlsxWriter is pure Python, so the workbooks cost the run about a second at 1M, on one core
whatever threads are used (the GIL). Where the list is large enough, a forked child writes
about half of the practices' files (by rows) while this process writes the rest: the child
shares the list's cells with its parent without pickling them, and only writes files into
the run's temporary folder, which is swapped in whole only when both succeeded. A failure
in the child comes back as a CasefindError with its message; elsewhere (no ``fork``, one
core, a small list) every file is written here, one after another.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

from casefind.errors import CasefindError
from casefind.lists.practice_file import Cells, ListAbout, write_practice_csv
from casefind.lists.xlsx import write_practice_xlsx

FORK_MIN_ROWS = 2_000  # below this the fork (tens of ms at 1M) costs more than it saves


class PracticeFilesError(CasefindError):
    """A practice's files could not be written (by the child that wrote them); nothing was
    swapped in."""


def write_practice_files(paths: dict[str, Path], slices: dict[str, Cells], empty: Cells,
                         about: ListAbout) -> dict[str, int]:
    """Each practice's CSV and workbook at ``paths`` (its rows in ``slices``, none:
    ``empty``); rows per listed practice."""
    def write(codes: list[str]) -> None:
        for code in codes:
            mine = slices.get(code, empty)
            write_practice_csv(paths[code], mine, about, code)
            write_practice_xlsx(paths[code].with_suffix(".xlsx"), mine, about, code)

    rows = sum(len(c.rows) for c in slices.values())
    if rows >= FORK_MIN_ROWS and len(paths) > 1 and _can_fork():
        theirs, mine = _halves(paths, slices)
        _in_child_and_here(lambda: write(theirs), lambda: write(mine))
    else:
        write(list(paths))
    return {code: len(slices[code].rows) for code in paths if code in slices and slices[code].rows}


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) > 1


def _halves(paths: dict[str, Path], slices: dict[str, Cells]) -> tuple[list[str], list[str]]:
    """The practices in two lists of about equal work (rows, plus one for each file's own
    cost), largest first, each to the lighter list."""
    work = {code: len(slices[code].rows) + 8 if code in slices else 8 for code in paths}
    parts: tuple[list[str], list[str]] = ([], [])
    load = [0, 0]
    for code in sorted(paths, key=lambda c: -work[c]):
        k = 0 if load[0] <= load[1] else 1
        parts[k].append(code)
        load[k] += work[code]
    return parts


def _in_child_and_here(child: Callable[[], None], here: Callable[[], None]) -> None:
    """``child()`` in a forked process while ``here()`` runs in this one; its failure raised
    here (after ``here`` has finished), as ``here``'s is."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def run_child() -> None:
        try:
            child()
            send.send(None)
        except BaseException as e:  # any failure: its message, raised in the parent
            send.send(f"{type(e).__name__}: {e}")
            raise SystemExit(1) from None

    proc = ctx.Process(target=run_child, daemon=True)
    proc.start()
    send.close()  # the child's end only: a child that dies without a word then reads as the pipe's end
    try:
        here()
    finally:
        try:
            failure = receive.recv()
        except EOFError:
            failure = "it stopped without a word"
        proc.join()
        receive.close()
    if failure is not None or proc.exitcode:
        raise PracticeFilesError(f"writing practice files failed: {failure}; nothing was written",
                                 "check the output folder's space and permissions")
