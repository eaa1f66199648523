"""User-facing errors.

Anything raised as :class:`AlbenchError` is the user's to fix (a bad option, a broken file, an
unknown name). The CLI prints it as one line and exits non-zero; other exceptions are bugs and get a
traceback only with ``--debug``.
"""

from __future__ import annotations


class AlbenchError(Exception):
    """A problem with the user's input, reported as a single line."""


class DataError(AlbenchError):
    """A data set on disk is missing, malformed or inconsistent."""


class ConfigError(AlbenchError):
    """An option, preset or ``--set`` override is invalid."""


class SelectionError(AlbenchError):
    """A strategy returned an invalid selection."""
