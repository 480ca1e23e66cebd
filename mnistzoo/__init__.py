"""mnistzoo: classic MNIST and Fashion-MNIST networks, trained honestly and exported to ONNX."""

from importlib.metadata import PackageNotFoundError, version

from . import data
from .errors import DataError, MnistZooError, VerificationError

try:
    __version__ = version("mnistzoo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["DataError", "MnistZooError", "VerificationError", "__version__", "data"]
