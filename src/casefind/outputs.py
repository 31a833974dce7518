"""Writing files a person will open: names that stay inside their folder, cells a
spreadsheet will not evaluate, and writes that replace a file (or a folder of them) only once
it is complete.

Every file casefind names after something in the data (a practice code, a rule name) goes
through ``safe_child``; every CSV casefind writes goes through ``write_csv``.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from casefind.errors import CasefindError

# A name that may become one path component: letters, digits, '_', '-' and inner dots; no
# leading dot (hidden files, '..'), no separators, at most 64 characters.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_NAME = re.compile(rf"^{NAME_PATTERN}$")

# OWASP CSV injection: a cell starting with one of these is a formula to Excel, LibreOffice
# and Google Sheets (tab and carriage return too). Such a cell is prefixed with a single quote,
# which the spreadsheet shows as text. A plain number ("-5", "+44.1") is left alone: it is
# read as the number it is, not evaluated.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_TRIGGER_RE = r"^[=+\-@\t\r]"
_PLAIN_NUMBER_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


class UnsafePathError(CasefindError):
    """A name from the data that would not stay one file inside its output folder."""


def is_safe_name(name: str) -> bool:
    return bool(_NAME.match(name)) and ".." not in name


def safe_child(root: str | Path, name: str, suffix: str = "") -> Path:
    """``root/<name><suffix>``, refusing any name that is not a plain file name or that would
    resolve outside ``root`` (a symlink included)."""
    if not isinstance(name, str) or not is_safe_name(name):
        raise UnsafePathError(f"{name!r} cannot be used as a file name",
                              f"names that become files must match {NAME_PATTERN} (letters, digits, _ - .)")
    root = Path(root)
    path = root / f"{name}{suffix}"
    base = root.resolve()
    resolved = path.resolve()
    if resolved.parent != base:
        raise UnsafePathError(f"{name!r} would be written outside {root}")
    return path


def neutralise(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Text cells that a spreadsheet would evaluate, prefixed with ``'``."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return values
    risky = pc.and_(pc.match_substring_regex(values, _TRIGGER_RE),
                    pc.invert(pc.match_substring_regex(values, _PLAIN_NUMBER_RE)))
    if not pc.any(risky).as_py():
        return values
    return pc.if_else(risky, pc.binary_join_element_wise("'", values, ""), values)


def safe_cell(text: str) -> str:
    """One text cell as ``neutralise`` writes it: prefixed with ``'`` when a spreadsheet
    would evaluate it."""
    if text and text[0] in FORMULA_TRIGGERS and not re.match(_PLAIN_NUMBER_RE, text):
        return "'" + text
    return text


def restore(text: str | None) -> str | None:
    """The inverse of ``neutralise`` for one cell read back from a file we wrote."""
    if text and len(text) > 1 and text[0] == "'" and text[1] in FORMULA_TRIGGERS:
        return text[1:]
    return text


def spreadsheet_safe(table: pa.Table) -> pa.Table:
    for i, name in enumerate(table.column_names):
        col = table.column(i)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        new = neutralise(col)
        if new is not table.column(i):
            table = table.set_column(i, name, new)
    return table


def tmp_path_for(path: Path) -> Path:
    path = Path(path).absolute()
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_csv(table: pa.Table, path: str | Path, *, bom: bool = False) -> Path:
    """Write ``table`` as CSV, spreadsheet-safe, under a temporary name then renamed, so a
    failure leaves any earlier file as it was."""
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            if bom:
                f.write(b"\xef\xbb\xbf")
            pacsv.write_csv(spreadsheet_safe(table), f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_atomic(path: str | Path, write) -> Path:
    """``write(tmp_path)`` then rename onto ``path``."""
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap the fully written folder ``tmp`` in as ``final``, so that a run that fails while
    writing leaves the earlier ``final`` as it was and a reader never sees half a folder.

    An existing ``final`` is first renamed aside (a dot name beside it), then removed once
    ``tmp`` is in place (put back if ``tmp`` cannot be). ``tmp`` must be on the same file system as ``final``."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:6]}")
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)  # the earlier folder back where it was
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextmanager
def folder_swapped_in(tmp: Path, final: Path) -> Iterator[Path]:
    """``tmp`` made for the caller to fill, then swapped in as ``final`` (``replace_dir``); if
    anything raises, ``tmp`` is removed instead, so a failed run leaves no half-written folder
    and the earlier ``final`` as it was."""
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
