"""Optional dependencies: ``train`` (TensorFlow, Keras, tf2onnx, onnx, matplotlib, SciPy), ``serve`` (FastAPI,
uvicorn) and ``ray`` (Ray, for ``mnistzoo build --engine ray``)."""

from __future__ import annotations

import importlib.util

from .errors import MnistZooError

EXTRAS = {"train": ("tensorflow", "keras", "tf2onnx", "onnx", "matplotlib", "scipy"), "serve": ("fastapi", "uvicorn"),
          "ray": ("ray",)}


def has_extra(extra: str) -> bool:
    """Whether every module of ``extra`` is installed."""
    return all(_installed(m) for m in EXTRAS[extra])


def require_extra(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """A one-line error naming ``pip install 'mnistzoo[extra]'`` when one of its modules is not installed."""
    missing = [m for m in modules or EXTRAS[extra] if not _installed(m)]
    if missing:
        raise MnistZooError(f"{what} needs {', '.join(missing)}, which this install lacks; "
                            f"install the {extra} extra: pip install 'mnistzoo[{extra}]'")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        return False
