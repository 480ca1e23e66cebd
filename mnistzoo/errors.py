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


class ExportError(InvalidInput):
    """A run cannot be exported: not trained, corrupt, or bad options (exit code 2)."""


class ParityError(VerificationError):
    """An ONNX file was produced but does not match Keras (or, int8, the specification) within tolerance (exit 1)."""


class ShapeError(VerificationError):
    """An ONNX file's shapes are not all known statically with a symbolic batch (exit code 1)."""


class SpecError(MnistZooError):
    """A zoo_specs file is malformed (exit code 2)."""


class BuildError(MnistZooError):
    """Some jobs of a build failed; the others finished (exit code 1)."""

    exit_code = 1


def literal(text: object) -> str:
    """``text`` as typed, with control characters (newlines, escapes) shown escaped: safe in a one-line message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
