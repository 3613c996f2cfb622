"""Errors that reach the user as one clear line (the CLI prints them and exits with code 2)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message names the file or option, the value given and what is allowed.

    The CLI prints ``str(error)`` on one line of stderr and exits with code 2; the traceback is
    shown only with ``--debug``.
    """


def fail(where: str, message: str) -> InputError:
    """Build an :class:`InputError` whose text starts with ``where`` (a file or option name)."""
    return InputError(f"{where}: {message}" if where else message)
