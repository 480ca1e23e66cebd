"""The Keras side of parity and timing: loading a checkpoint, predictions and latency (imports TensorFlow)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import _tf  # noqa: F401 - quiet TensorFlow start-up
from .errors import InvalidInput
from .timing import Latency, batch_of, percentiles, time_runs
from .zoo import get_model

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


def load_keras(path: Path, name: str | None = None) -> keras.Model:
    """A saved ``.keras`` model (safe mode: no code is deserialised), or a ``.weights.h5`` file read into the zoo
    model ``name`` builds; a one-line error otherwise."""
    weights = str(path).endswith(".weights.h5")
    try:
        if not weights:
            return keras.models.load_model(path)
        if name is None:
            raise ValueError("a weights file needs its model's name")
        model = get_model(name).build()
        model.load_weights(path)
        return model
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
        raise InvalidInput(f"{path}: cannot load the Keras checkpoint ({type(exc).__name__}); "
                           "give the .weights.h5 or .keras file saved by mnistzoo with --keras") from None


def predict_keras(model: keras.Model, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Probabilities of ``images`` (N,28,28) raw pixels, in batches, in inference mode."""
    return np.concatenate([keras.ops.convert_to_numpy(model(images[i:i + batch].astype(np.float32), training=False))
                           for i in range(0, len(images), batch)])


def keras_latency(model: keras.Model, images: np.ndarray, batch_sizes: list[int], *, runs: int = 200,
                  warmup: int = 20, seconds: float | None = None, with_predict: bool = True) -> list[Latency]:
    """The Keras model on the same batches, under ``tf.function`` and (unless told not to) ``model.predict``."""
    serve = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1
    rows = []
    for batch in batch_sizes:
        x = tf.constant(batch_of(images, batch))
        rows.append(percentiles(time_runs(lambda: serve(x).numpy(), runs, warmup, seconds),
                                batch, "keras tf.function", threads))
        if with_predict:
            rows.append(percentiles(time_runs(lambda: model.predict(x, verbose=0), max(runs // 4, 5),
                                              max(warmup // 4, 2), seconds), batch, "keras model.predict", threads))
    return rows
