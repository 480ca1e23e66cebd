"""Typed errors. Each carries the process exit code the CLI uses for it."""

from __future__ import annotations


class MnistZooError(Exception):
    """A user-facing error: bad input or an unusable environment (exit code 2)."""

    exit_code = 2


class InvalidInput(MnistZooError, ValueError):
    """A value, file or record given to mnistzoo is unusable; also a ``ValueError`` for API callers."""


class NotFound(MnistZooError):
    """What was asked for is not where mnistzoo looks (a model file, a run, a record); the message says how to make
    or fetch it (exit code 2)."""


class DataError(MnistZooError):
    """A dataset could not be read, verified or cached."""


class VerificationError(MnistZooError):
    """An artifact was produced but failed its verification (exit code 1)."""

    exit_code = 1


def literal(text: object) -> str:
    """``text`` as typed, with control characters (newlines, escapes) shown escaped: safe in a one-line message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
