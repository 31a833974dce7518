"""Rule errors that an analyst can act on: where (file:line:col), what, and a hint."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from casefind.errors import EXIT_RULE, CasefindError


@dataclass(frozen=True)
class Span:
    """A position in a rule file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def shifted(self, line: int, col: int) -> Span:
        """A position inside an expression that starts at this span (line/col 1-based)."""
        if line == 1:
            return Span(self.file, self.line, self.col + col - 1)
        return Span(self.file, self.line + line - 1, col)


class RuleError(CasefindError):
    """An error in a rule, KPI or codelist file, located at file:line:col where known."""

    exit_code = EXIT_RULE

    def __init__(self, span: Span | None, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.span = span
        where = f"{span}: " if span else ""
        self.args = (f"{where}{message}" + (f"\n  hint: {hint}" if hint else ""),)

    def __str__(self) -> str:
        return self.args[0]

    def describe(self) -> str:
        return f"{self.span}: {self.message}" if self.span else self.message


def did_you_mean(name: str, candidates) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
