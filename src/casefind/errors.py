"""One error base for everything a user can cause, with the exit code a scheduler reads.

Every failure that a user's input, data or environment can cause is a ``CasefindError``
(or a subclass); the CLI catches this one base, once, and prints one ``error:`` line, the
hint, and exits with ``exit_code``. Anything else that escapes is a bug in casefind: the CLI
says so, and shows the traceback only with ``--debug``.

Exit codes (documented in the README and ``docs/scheduling.md``):
  1 the job failed (bad source, bad store, I/O, a list that failed validation)
  2 the command was used wrongly (a bad option value, a date outside the data)
  3 ``--strict`` found rows that break the data contract
  4 the rule, KPI or codelist file has an error (file:line:col)
  5 another process holds the resource (KPI history, store, review log): retry later
"""
from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STRICT, EXIT_RULE, EXIT_BUSY = 0, 1, 2, 3, 4, 5


class CasefindError(Exception):
    """A failure the user can act on: ``message`` says what is wrong, ``hint`` how to fix it."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None):
        self.message, self.hint = message, hint
        super().__init__(message)

    def describe(self) -> str:
        """The one line the CLI prints after ``error:``."""
        return self.message

    def __reduce__(self):
        """Pickled as its state, whatever a subclass's ``__init__`` takes: an error raised in
        another process (a Spark executor) comes back to the CLI as itself, hint included."""
        return _rebuilt, (type(self), self.args, dict(self.__dict__))


def _rebuilt(cls: type, args: tuple, state: dict) -> CasefindError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class UsageError(CasefindError):
    """The command was used wrongly: a bad option value, a date outside the store's data.
    ``option`` names the option at fault, so the message can point at it."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None, option: str | None = None):
        self.option = option
        super().__init__(f"{option}: {message}" if option else message, hint)


class BusyError(CasefindError):
    """Another process is writing the same thing; nothing changed, try again later."""

    exit_code = EXIT_BUSY


class DataError(CasefindError):
    """Input data (a source, a list file) that cannot be used at all."""
