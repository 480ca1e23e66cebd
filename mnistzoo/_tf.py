"""Import TensorFlow/Keras once, with the native start-up log lines (oneDNN, CUDA probing) kept off stderr.

Training, export and reports need the ``train`` extra; without it, importing them is a one-line error.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from ._extras import require_extra


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block; Python's sys.stderr is kept."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


require_extra("train", "training, export, Keras parity and reports")
with native_stderr_silenced():
    import keras  # noqa: F401
    import tensorflow as tf

    tf.config.list_physical_devices()  # probes CUDA now, quietly, instead of at the first op
