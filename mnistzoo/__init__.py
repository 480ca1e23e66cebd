"""mnistzoo: classic MNIST and Fashion-MNIST networks, trained honestly and exported to ONNX."""

import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the terminal

from .errors import DataError, InvalidInput, MnistZooError, NotFound, VerificationError  # noqa: E402

_LAZY = {"get_model": "zoo", "list_models": "zoo",  # loaded on first use
         "load_pretrained": "pretrained", "Classifier": "pretrained", "prepare": "preparation"}


def __getattr__(name: str):  # noqa: ANN202 - modules load on first use, so `mnistzoo list` starts fast
    if name == "__version__":  # read from the installed metadata on first use (importlib.metadata is slow)
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("mnistzoo")
        except PackageNotFoundError:  # running from a source tree that is not installed
            return "0+unknown"
    if name == "data":
        return importlib.import_module(".data", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name == "train":  # the module is callable: mnistzoo.train("mlp2", epochs=1)
        return importlib.import_module(".train", __name__)
    raise AttributeError(f"module 'mnistzoo' has no attribute {name!r}")


__all__ = ["Classifier", "DataError", "InvalidInput", "MnistZooError", "NotFound", "VerificationError", "__version__",
           "data", "get_model", "list_models", "load_pretrained", "prepare", "train"]
