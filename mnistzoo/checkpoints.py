"""A run's trained weights, ``model.weights.h5``: the source of truth of every published file.

Weights only (no optimiser state, about 4 bytes a parameter), written by Keras from a freshly built model of the
zoo class, and read back into the architecture that class builds: no code or configuration is deserialised, so a
weights file from anywhere is safe to load. Its SHA-256 is the card's ``weights_sha256``. A run trained before
weights were kept has only ``model.keras``; :func:`keep_weights` derives its weights file (once, after the
checkpoint matched its card) and records the hash in the card.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import _tf  # noqa: F401 - quiet TensorFlow start-up
from ._io import sha256_file
from .errors import InvalidInput, MnistZooError
from .records import TrainCard, read_record, write_record
from .runs import CARD, KERAS, WEIGHTS
from .zoo import get_model

import keras  # noqa: E402


def save_weights(model: keras.Model, name: str, path: Path) -> str:
    """Write ``model``'s weights (no optimiser state) for zoo model ``name`` to ``path`` atomically; its SHA-256."""
    fresh = get_model(name).build()
    fresh.set_weights(model.get_weights())
    tmp = path.with_name(f".{path.name.removesuffix('.weights.h5')}.partial.weights.h5")  # Keras wants the suffix
    try:
        fresh.save_weights(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise MnistZooError(f"cannot write {path} ({exc.strerror or exc}); free disk space and rerun") from None
    finally:
        tmp.unlink(missing_ok=True)
    return sha256_file(path)


def load_weights(path: Path, name: str, sha256: str, fix: str) -> keras.Model:
    """The zoo model ``name`` with the weights in ``path``, after the file's SHA-256 matched ``sha256``."""
    def load(file: Path) -> keras.Model:
        model = get_model(name).build()
        model.load_weights(file)
        return model

    return _verified(Path(path), sha256, fix, "weights file", load)


def _verified(path: Path, sha256: str, fix: str, what: str, load: Callable[[Path], keras.Model]) -> keras.Model:
    """``load(path)`` once the file's SHA-256 is ``sha256``; a missing, altered or unreadable file is one line."""
    if not path.is_file():
        raise InvalidInput(f"{path}: the trained {what} is missing; {fix}")
    if sha256_file(path) != sha256:
        problem = "does not match the SHA-256 its card records"
    else:
        try:
            return load(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
            problem = f"cannot be read ({type(exc).__name__})"
    raise InvalidInput(f"{path}: corrupt {what}, it {problem}; {fix}")


def keep_weights(run: Path) -> TrainCard:
    """Make sure the finished run in ``run`` holds ``model.weights.h5`` and its card records the hash."""
    fix = f"retrain with `mnistzoo train ID --force` (run {run})"
    card = read_record(run / CARD, TrainCard, fix)
    if card.get("weights_sha256") and (run / WEIGHTS).is_file():
        return card
    model = load_keras(run / KERAS, card["model_sha256"], fix)
    card["weights_sha256"] = save_weights(model, card["name"], run / WEIGHTS)
    write_record(run / CARD, card)
    return card


def load_keras(path: Path, sha256: str, fix: str) -> keras.Model:
    """A whole saved Keras model (``model.keras``, safe mode) after its SHA-256 matched ``sha256``."""
    return _verified(Path(path), sha256, fix, "checkpoint", keras.models.load_model)


def load_trained(run: Path, card: TrainCard, fix: str) -> keras.Model:
    """The run's trained model: from its weights file where the card records one, else from ``model.keras``."""
    if card.get("weights_sha256"):
        return load_weights(run / WEIGHTS, card["name"], card["weights_sha256"], fix)
    return load_keras(run / KERAS, card["model_sha256"], fix)
