"""outputs.replace_dir and folder_swapped_in: a fully written folder swapped in whole, the earlier one gone after."""
from __future__ import annotations

from pathlib import Path

import pytest

from casefind.outputs import folder_swapped_in, replace_dir


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _contents(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("earlier", [None, {"report.html": "old", "stale.parquet": "x"}])
def test_the_new_folder_takes_the_name_and_nothing_else_is_left(tmp_path, earlier):
    final = tmp_path / "evaluate-x"
    if earlier is not None:
        _folder(final, earlier)
    tmp = _folder(tmp_path / ".tmp-evaluate-x-1234", {"report.html": "new", "manifest.json": "{}"})
    replace_dir(tmp, final)
    assert _contents(final) == {"manifest.json": "{}", "report.html": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["evaluate-x"]  # no tmp, no old copy aside


def test_siblings_of_the_folder_are_left_alone(tmp_path):
    other = _folder(tmp_path / "evaluate-y", {"report.html": "y"})
    _folder(tmp_path / "evaluate-x", {"report.html": "old"})
    replace_dir(_folder(tmp_path / ".tmp-x", {"report.html": "new"}), tmp_path / "evaluate-x")
    assert _contents(other) == {"report.html": "y"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluate-x", "evaluate-y"]


def test_a_swap_that_fails_puts_the_earlier_folder_back(tmp_path, monkeypatch):
    """The earlier folder is only removed once the new one is in place, and is back under its
    own name when the new one cannot be put there."""
    import casefind.outputs as outputs

    final = _folder(tmp_path / "budget-x", {"a.parquet": "old"})
    tmp = _folder(tmp_path / ".tmp-x", {"a.parquet": "new"})
    real, calls = outputs.os.replace, []

    def second_fails(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", second_fails)
    with pytest.raises(OSError, match="disk full"):
        replace_dir(tmp, final)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".budget-x.old-")]
    assert _contents(final) == {"a.parquet": "old"} and _contents(tmp) == {"a.parquet": "new"}


def test_folder_swapped_in_replaces_the_earlier_folder_once_the_block_ends(tmp_path):
    final = _folder(tmp_path / "diagnose-2026-03-31", {"report.html": "old"})
    tmp = tmp_path / ".tmp-diagnose-1"
    with folder_swapped_in(tmp, final) as folder:
        (folder / "report.html").write_text("new")
        assert _contents(final) == {"report.html": "old"}  # a reader still sees the earlier run
    assert _contents(final) == {"report.html": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["diagnose-2026-03-31"]


@pytest.mark.parametrize("error", [ValueError("bad rule"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_earlier_folder_and_no_tmp(tmp_path, error):
    final = _folder(tmp_path / "diagnose-2026-03-31", {"report.html": "old"})
    tmp = tmp_path / ".tmp-diagnose-1"
    with pytest.raises(type(error)), folder_swapped_in(tmp, final):
        (tmp / "half.parquet").write_text("x")
        raise error
    assert _contents(final) == {"report.html": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["diagnose-2026-03-31"]
