"""Whose an error is: the user's (a bad flag, config, env id or file: the CLI prints one line and
exits 2) or fastdqn's (a bug: a traceback, exit 1).

The phases that check what the user gave run inside ``user_input()``. A ValueError, TypeError,
FileNotFoundError or gymnasium error raised there is marked as the user's; the same error raised
once the run is going is not, so a bug in the trainer never reads as a usage mistake. The
exception itself is left as it was: the Python API raises the types and messages it always did.
"""

from __future__ import annotations

from contextlib import contextmanager

import gymnasium

_MARK = "_fastdqn_user_error"
USER_INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError, gymnasium.error.Error)


class UserError(Exception):
    """A mistake on the command line that no library call checks: one line, no traceback."""


@contextmanager
def user_input():
    """Mark the errors raised in this block (checking the user's flags, config, env or files) as
    the user's mistake."""
    try:
        yield
    except USER_INPUT_ERRORS as e:
        setattr(e, _MARK, True)
        raise


def is_user_error(e: BaseException) -> bool:
    return isinstance(e, UserError) or getattr(e, _MARK, False) is True
