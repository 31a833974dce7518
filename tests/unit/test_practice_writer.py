"""Practice files written on two processes are the files written on one; a failure in
either comes back as one error, and the run's folder is then not swapped in."""
from __future__ import annotations

import datetime as dt

import pytest

from casefind.errors import CasefindError
from casefind.lists import practice_writer
from casefind.lists.practice_file import Cells, ListAbout
from casefind.lists.xlsx import _run_workbook

pytestmark = pytest.mark.skipif(not practice_writer._can_fork(), reason="needs fork and two cores")

ABOUT = ListAbout("frail", "Frailty", "1.0.0", dt.date(2026, 10, 31), "abc123def456")
NAMES = ["decision", "rank", "patient_id", "practice", "efi", "as_of"]


def _cells(practices: int, rows_each: int) -> dict[str, Cells]:
    return {f"P{k:03d}": Cells(NAMES, [["", i + 1, f"id{k}-{i}", f"P{k:03d}", 0.25 + i / 100, dt.date(2026, 10, 31)]
                                       for i in range(rows_each * (k % 3))])
            for k in range(practices)}


def _write(folder, slices, codes):
    folder.mkdir()
    paths = {c: folder / f"{c}.csv" for c in codes}
    return practice_writer.write_practice_files(paths, {c: s for c, s in slices.items() if s.rows},
                                                Cells(NAMES, []), ABOUT)


def test_two_processes_write_the_files_one_writes(tmp_path, monkeypatch):
    slices = _cells(9, 5)
    codes = sorted(slices)
    monkeypatch.setattr(practice_writer, "FORK_MIN_ROWS", 10**9)
    alone = _write(tmp_path / "one", slices, codes)
    forked = []
    real = practice_writer._in_child_and_here
    monkeypatch.setattr(practice_writer, "_in_child_and_here", lambda a, b: (forked.append(1), real(a, b)))
    monkeypatch.setattr(practice_writer, "FORK_MIN_ROWS", 1)
    both = _write(tmp_path / "two", slices, codes)
    assert forked and alone == both and list(both) == [c for c in codes if slices[c].rows]
    for code in codes:
        one, two = tmp_path / "one" / f"{code}.csv", tmp_path / "two" / f"{code}.csv"
        assert one.read_bytes() == two.read_bytes()
        assert _run_workbook(one.with_suffix(".xlsx")) == _run_workbook(two.with_suffix(".xlsx"))


def test_halves_share_the_rows_and_every_practice_once():
    slices = {c: s for c, s in _cells(30, 40).items() if s.rows}
    paths = {c: None for c in _cells(30, 40)}
    a, b = practice_writer._halves(paths, slices)
    assert sorted(a + b) == sorted(paths)
    rows = [sum(len(slices[c].rows) if c in slices else 0 for c in part) for part in (a, b)]
    assert abs(rows[0] - rows[1]) <= 80


@pytest.mark.parametrize("where", ["child", "here"])
def test_a_failure_on_either_side_is_one_error(tmp_path, monkeypatch, where):
    slices = _cells(6, 5)
    codes = sorted(slices)
    theirs, mine = practice_writer._halves({c: None for c in codes}, {c: s for c, s in slices.items() if s.rows})
    bad = (theirs if where == "child" else mine)[0]
    real = practice_writer.write_practice_xlsx

    def failing(path, cells, about, code):
        if code == bad:
            raise OSError(28, "No space left on device")
        return real(path, cells, about, code)

    monkeypatch.setattr(practice_writer, "write_practice_xlsx", failing)
    monkeypatch.setattr(practice_writer, "FORK_MIN_ROWS", 1)
    with pytest.raises((CasefindError, OSError)) as e:
        _write(tmp_path / "out", slices, codes)
    if where == "child":
        assert isinstance(e.value, practice_writer.PracticeFilesError)
        assert "No space left on device" in e.value.message


def test_a_child_that_dies_without_a_word_is_one_error_not_a_hang(tmp_path, monkeypatch):
    import os

    slices = _cells(6, 5)
    codes = sorted(slices)
    theirs, _ = practice_writer._halves({c: None for c in codes}, {c: s for c, s in slices.items() if s.rows})
    real = practice_writer.write_practice_xlsx

    def dying(path, cells, about, code):
        if code == theirs[0]:
            os._exit(9)  # killed mid-write, as the kernel's OOM killer would
        return real(path, cells, about, code)

    monkeypatch.setattr(practice_writer, "write_practice_xlsx", dying)
    monkeypatch.setattr(practice_writer, "FORK_MIN_ROWS", 1)
    with pytest.raises(practice_writer.PracticeFilesError, match="without a word"):
        _write(tmp_path / "out", slices, codes)
