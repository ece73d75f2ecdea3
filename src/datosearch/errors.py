"""Exception types that separate the user's bad input from datosearch's own failures.

`DatosearchError` is the base of every error caused by what the user gave (an option, a file, a
study name, a storage URL, an output path that cannot be written): the CLI prints its message in one
sentence and exits with status 2.
Anything else escaping a command is an internal error: the CLI prints the traceback and exits 1.
`SearchIncompleteError` (exit 3) is a search that stopped short of its budget because its
candidates kept failing.
"""

from __future__ import annotations


class DatosearchError(Exception):
    """Bad input from the user; the message says what is wrong in one sentence."""


class UserValueError(DatosearchError, ValueError):
    """A user-supplied value that is wrong (also a ValueError, for library callers)."""


class MissingFileError(DatosearchError, FileNotFoundError):
    """A file the user named, or the install needs, is missing."""


class SearchIncompleteError(RuntimeError):
    """The search stopped before the study held its budget of COMPLETE trials: too many candidates failed."""

    def __init__(self, message: str, failed: int, trials: int, reason: str | None) -> None:
        super().__init__(message)
        self.failed, self.trials, self.reason = failed, trials, reason


class OutputPathError(UserValueError, OSError):
    """An output path (file or directory) that cannot be written; the message names it and the true reason."""
