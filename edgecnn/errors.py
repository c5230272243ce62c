"""Errors a user can act on. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations


class EdgecnnError(Exception):
    """Bad input or an unmet precondition, stated so that the user knows what to do.

    ``exit_code`` is 2 for usage errors (like click's) and 1 for failures of the work itself.
    """

    exit_code = 1


class UsageError(EdgecnnError):
    """The command was asked for something that does not exist or cannot be."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """An unknown model, device, format or precision name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an error's message (at most ``limit`` characters), or its type's name when it has none:
    what a one-line report of a library's failure shows."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
