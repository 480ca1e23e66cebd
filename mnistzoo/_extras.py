"""Optional dependencies: the ``train`` extra (TensorFlow, Keras, tf2onnx, onnx, matplotlib)."""

from __future__ import annotations

import importlib.util

from .errors import MnistZooError

TRAIN_EXTRA = "pip install 'mnistzoo[train]'"
TRAIN_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx", "matplotlib")


def require_train_extra(what: str, modules: tuple[str, ...] = TRAIN_MODULES) -> None:
    """A one-line error naming the extra when one of ``modules`` is not installed."""
    missing = [m for m in modules if not _installed(m)]
    if missing:
        raise MnistZooError(f"{what} needs {', '.join(missing)}, which this install lacks (inference only); "
                            f"install the training extra: {TRAIN_EXTRA}")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        return False
