"""mnistzoo: classic MNIST and Fashion-MNIST networks, trained honestly and exported to ONNX."""

import importlib
import os
from importlib.metadata import PackageNotFoundError, version

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the terminal

from . import data  # noqa: E402
from .errors import DataError, MnistZooError, VerificationError  # noqa: E402

try:
    __version__ = version("mnistzoo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_LAZY = {"get_model": "zoo", "list_models": "zoo",  # these import TensorFlow: only on first use
         "load_pretrained": "pretrained", "Classifier": "pretrained"}


def __getattr__(name: str):  # noqa: ANN202
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name == "train":  # the module is callable: mnistzoo.train("mlp2", epochs=1)
        return importlib.import_module(".train", __name__)
    raise AttributeError(f"module 'mnistzoo' has no attribute {name!r}")


__all__ = ["Classifier", "DataError", "MnistZooError", "VerificationError", "__version__", "data", "get_model",
           "list_models", "load_pretrained", "train"]
