"""Checks of numeric options and output paths, shared by the API and the CLI (which adds nothing)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import InvalidInput

MAX_SEED = 2**32 - 1  # numpy's and Keras' seeds are unsigned 32-bit


def positive_int(name: str, value: int | None) -> int | None:
    """``value`` unless it is given and not a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    return value


def non_negative_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")
    return value


def positive_float(name: str, value: float | None) -> float | None:
    """``value`` unless it is given and not a finite number above zero."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"{name} must be a finite number above 0, got {value!r}")
    return float(value)


def seed(value: int) -> int:
    """A random seed numpy and Keras accept: an integer from 0 to 2**32-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise InvalidInput(f"--seed must be an integer from 0 to {MAX_SEED}, got {value!r}")
    return value


def output_file(path: Path, option: str) -> Path:
    """A file path that can be written (an existing file is replaced), checked before any work."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{option} {path} is a directory; give a file name such as {path / 'result.json'}")
    parent = path.parent if str(path.parent) else Path(".")
    _writable_dir(parent, option, f"the directory of {option} {path}")
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidInput(f"{option} {path} is not writable; choose another file")
    return path


def output_dir(path: Path, option: str) -> Path:
    """A directory that exists or can be created, and is writable, checked before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"{option} {path} is a file, not a directory; give a directory path")
    _writable_dir(path, option, f"{option} {path}")
    return path


def _writable_dir(path: Path, option: str, what: str) -> None:
    """``path`` is (or, through its nearest existing ancestor, can become) a writable directory."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InvalidInput(f"{what} cannot be created: {probe} is a file; choose another path for {option}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InvalidInput(f"{what} is not writable ({probe} is read-only to you); choose another path for {option}")
