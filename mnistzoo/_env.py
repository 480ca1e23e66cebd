"""The environment fingerprint recorded with every result: library versions and hardware.

Versions come from the installed distributions, so recording them imports nothing heavy;
GPUs are listed by TensorFlow when it is already loaded (training, export), else by onnxruntime.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import __version__

LIBRARIES = ("tensorflow", "keras", "numpy", "tf2onnx", "onnxruntime", "onnx")
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@functools.cache
def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's fields in ``/proc/cpuinfo`` (empty where there is none), read once a process."""
    try:
        block = path.read_text().split("\n\n")[0]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, value in (ln.split(":", 1) for ln in block.splitlines() if ":" in ln)}


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name with its family and model numbers (``/proc/cpuinfo``; a virtual machine's name, such as
    "AMD EPYC", can stand for generations whose speeds differ 2x), or what ``platform`` says."""
    fields = _cpuinfo(cpuinfo)
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    if {"cpu family", "model"} <= fields.keys():
        return f"{fields['model name']} (family {fields['cpu family']} model {fields['model']})"
    return fields["model name"]


def cpu_features() -> list[str]:
    """The CPU's vector and int8/bf16 extensions that change inference speed or numerics (``/proc/cpuinfo``)."""
    flags = _cpuinfo().get("flags", "").split()
    return [f for f in CPU_FEATURES if f in flags]


def int8_features(features: list[str]) -> list[str]:
    """The dot-product instructions int8 kernels use (VNNI, AMX); without them u8 x s8 pairs sum in int16."""
    return [f for f in features if "vnni" in f or f == "amx_int8"]


def _gpus() -> list[str] | None:
    if "tensorflow" in sys.modules:
        gpus = [d.name for d in sys.modules["tensorflow"].config.list_physical_devices("GPU")]
    else:
        import onnxruntime

        gpus = [p for p in onnxruntime.get_available_providers() if p in ("CUDAExecutionProvider",
                                                                          "ROCMExecutionProvider")]
    return gpus or None


def environment() -> dict:
    """Library versions and hardware, recorded with every result."""
    return {"mnistzoo": __version__, "cpu": cpu_name(), "cpu_features": cpu_features(), "cores": os.cpu_count(),
            "gpu": _gpus(),
            "python": platform.python_version(), **{name: _version(name) for name in LIBRARIES}}
