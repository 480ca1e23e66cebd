"""Typed errors. Each carries the process exit code the CLI uses for it."""

from __future__ import annotations


class MnistZooError(Exception):
    """A user-facing error: bad input or an unusable environment (exit code 2)."""

    exit_code = 2


class DataError(MnistZooError):
    """A dataset could not be read, verified or cached."""


class VerificationError(MnistZooError):
    """An artifact was produced but failed its verification (exit code 1)."""

    exit_code = 1
