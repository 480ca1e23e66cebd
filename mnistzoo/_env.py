"""The environment fingerprint recorded with every result: library versions and hardware."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from . import _tf  # noqa: F401 - quiet TensorFlow start-up

from . import __version__  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402


def environment() -> dict:
    """Library versions and hardware, recorded with every result."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"mnistzoo": __version__, "cpu": cpu, "cores": os.cpu_count(), "gpu": gpus or None,
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "tf2onnx": tf2onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__}
