"""Checks of numeric options and output paths, shared by the API and the CLI (which adds nothing)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .errors import ExportError, InvalidInput

MAX_SEED = 2**32 - 1  # numpy's and Keras' seeds are unsigned 32-bit
PRECISIONS = ("float32", "mixed_bfloat16")  # Keras dtype policies; the notebooks trained in float32
DEFAULT_OPSET = 17
OPSETS = range(13, 19)


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


check_seed = seed  # for the functions below, whose parameter of that name shadows it


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


# ----------------------------------------------------------------------------- the stages' options, checked before
# TensorFlow is imported, so a bad flag fails at once


def train_options(model_id: str, *, epochs: int | None = None, batch_size: int | None = None, seed: int = 0,
                  limit: int | None = None, precision: str = "float32") -> Any:
    """The zoo model ``train`` would train (a :class:`ZooModel`), after every option was checked."""
    from .zoo import get_model

    for name, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--limit", limit)):
        positive_int(name, value)
    check_seed(seed)
    if precision not in PRECISIONS:
        raise InvalidInput(f"unknown --precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return get_model(model_id)


def opsets(values: list[int]) -> list[int]:
    """The opsets asked for, each supported, without repeats."""
    bad = [o for o in values if isinstance(o, bool) or not isinstance(o, int) or o not in OPSETS]
    if bad or not values:
        raise ExportError(f"unsupported opset {bad[0] if bad else '(none)'}; "
                          f"choose from {OPSETS.start}-{OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    return list(dict.fromkeys(values))


def parse_opsets(text: str) -> list[int]:
    """``"13,15,17"`` -> ``[13, 15, 17]``, each checked against the supported range."""
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ExportError(f"unsupported opset list {text!r}; give numbers like 17 or 13,15,17,18") from None
    return opsets(numbers)


def export_options(*, opsets_asked: list[int] | None = None, atol: float = 1e-5, max_flips: int = 0,
                   quantize: str | None = None, seed: int = 0, calibration_seed: int = 0) -> list[int]:
    """Check export's options; the opsets to export (default: ``DEFAULT_OPSET``)."""
    chosen = opsets(opsets_asked or [DEFAULT_OPSET])
    if quantize not in (None, "int8"):
        raise ExportError(f"unsupported --quantize {quantize!r}; the only choice is int8")
    positive_float("--atol", atol)
    non_negative_int("--max-flips", max_flips)
    check_seed(seed)
    check_seed(calibration_seed)
    return chosen
