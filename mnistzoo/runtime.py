"""onnxruntime sessions: their settings, the input contract, the embedded card, batched prediction (timing and
tuning them is :mod:`mnistzoo.timing`).

Only onnxruntime and numpy are needed: nothing here imports TensorFlow, Keras, tf2onnx or even
the ``onnx`` package, so a plain ``pip install mnistzoo`` runs exported files. Another runtime
(OpenVINO, say) would be one more session factory here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .contract import INPUT_NAME, OUTPUT_NAME
from .errors import InvalidInput, MnistZooError
from .records import OnnxCard, parse_record

CARD_KEY = "mnistzoo.card"
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
OPTIMIZATIONS = {"extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,  # fusions, NCHW kept
                 "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}  # and the NCHWc layout for convolutions


@dataclass(frozen=True)
class SessionSettings:
    """How onnxruntime runs a file: intra-op threads (None: all cores), whether idle pool threads spin, the
    graph optimisation level (see :data:`OPTIMIZATIONS`), and how many images one call gets (None: the whole batch)."""

    threads: int | None = None
    spinning: bool = True
    optimization: str = "all"
    quantization_moves: bool = True  # onnxruntime may move QuantizeLinear above a MaxPool and absorb a Relu
    chunk: int | None = None  # a larger batch runs as calls of this many images, whose activations stay in cache


# onnxruntime's passes behind ``quantization_moves``: with a float32 convolution before the first
# QuantizeLinear they pull the quantization into its NCHWc layout and leave a slow uint8 MaxPool there.
QUANTIZATION_MOVES = ("QDQPropagationTransformer", "ReluQuantFusion")

def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message cut to one line, for a one-line error."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'…' if len(text) > limit else ''}"


def parse_card(text: str | None, origin: str = "the ONNX file") -> OnnxCard | None:
    """The mnistzoo card from an ONNX file's ``mnistzoo.card`` metadata (None: a foreign file); garbled is an error."""
    if text is None:
        return None
    fix = "re-export it with `mnistzoo export`"
    try:
        doc = json.loads(text)
    except ValueError:
        raise InvalidInput(f"{origin}: its embedded '{CARD_KEY}' metadata is not JSON; {fix}") from None
    card = parse_record(doc, OnnxCard, f"{origin}: its embedded card", fix)
    if len(card["class_names"]) != 10:
        raise InvalidInput(f"{origin}: its embedded card lists {len(card['class_names'])} class names, not 10; {fix}")
    return card


def make_session(model: Any, provider: str = "cpu", threads: int | None = None,
                 origin: Path | str | None = None, settings: SessionSettings | None = None,
                 profile: str | None = None) -> ort.InferenceSession:
    """The one onnxruntime session factory: explicit provider, optimisation level, threads and spinning.

    ``model``: a path, serialized bytes, or an ``onnx.ModelProto``; ``origin`` names it in errors;
    ``settings`` (default: all cores, spinning, every optimisation) takes ``threads`` from ``threads`` if unset;
    ``profile``: a file prefix for onnxruntime's profiler (its JSON is written by ``session.end_profiling()``).
    """
    settings = settings or SessionSettings()
    threads = settings.threads or threads
    if provider not in PROVIDERS:
        raise InvalidInput(f"unknown provider {provider!r}; choose cpu or cuda")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0):
        raise InvalidInput(f"--threads must be a positive integer, got {threads!r}")
    if provider == "cuda" and PROVIDERS["cuda"] not in ort.get_available_providers():
        raise MnistZooError("CUDA was asked for but this onnxruntime has no CUDAExecutionProvider (no GPU, or "
                            "onnxruntime-gpu not installed); use --provider cpu")
    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATIONS[settings.optimization]
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors raise; its warnings (unused initializers of a quantized file) are noise
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
    if profile:
        options.enable_profiling, options.profile_file_prefix = True, profile
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    try:
        session = ort.InferenceSession(str(source) if isinstance(source, Path) else source, options,
                                       providers=[PROVIDERS[provider]],
                                       disabled_optimizers=[] if settings.quantization_moves else
                                       list(QUANTIZATION_MOVES))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own load errors (corrupt file, IR version, operator)
        where = origin or (source if isinstance(source, Path) else "the model")
        raise InvalidInput(f"{where}: not a valid ONNX model that onnxruntime {ort.__version__} can load, "
                           f"the file is corrupt, truncated, of another format or too new ({first_line(exc)}); "
                           "re-export it with `mnistzoo export`, or upgrade onnxruntime") from None
    session.mnistzoo_settings = replace(settings, threads=options.intra_op_num_threads)
    return session


def _describe(arg: Any) -> str:
    dims = ",".join("?" if d is None else str(d) for d in arg.shape)
    return f"'{arg.name}' {arg.type} [{dims}]"


def _check_contract(path: Path, sess: ort.InferenceSession) -> None:
    def ok(args: list, name: str, rest: list[int]) -> bool:
        return (len(args) == 1 and args[0].name == name and args[0].type == "tensor(float)"
                and len(args[0].shape) == 1 + len(rest) and not isinstance(args[0].shape[0], int)
                and list(args[0].shape[1:]) == rest)

    if not ok(sess.get_inputs(), INPUT_NAME, [28, 28]):
        raise InvalidInput(f"{path}: wrong input contract: expected one input '{INPUT_NAME}' float32 [batch,28,28], "
                           f"found {', '.join(_describe(i) for i in sess.get_inputs()) or 'none'}")
    if not ok(sess.get_outputs(), OUTPUT_NAME, [10]):
        raise InvalidInput(f"{path}: wrong output contract: expected one output '{OUTPUT_NAME}' float32 "
                           f"[batch,10], found {', '.join(_describe(o) for o in sess.get_outputs()) or 'none'}")


@dataclass
class OnnxModel:
    """An exported file opened in onnxruntime, its contract checked, with its card (None if foreign)."""

    path: Path
    session: ort.InferenceSession
    card: OnnxCard | None

    def predict(self, images: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Probabilities of ``images`` (N,28,28) raw pixels, float32 (N,10)."""
        return predict_onnx(self.session, images, batch)


def open_model(path: Path, provider: str = "cpu", threads: int | None = None) -> OnnxModel:
    """Open an ONNX file in onnxruntime and check the zoo's contract and its embedded card."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory; give the path of an .onnx file inside it")
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file; give the path of an .onnx file (see `mnistzoo export`)")
    sess = make_session(path, provider, threads, origin=path)
    _check_contract(path, sess)
    return OnnxModel(path, sess, parse_card(sess.get_modelmeta().custom_metadata_map.get(CARD_KEY), str(path)))


def infer(sess: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
    """Probabilities of one float32 ``batch`` (N,28,28), in calls of the session's ``chunk`` images."""
    chunk = sess.mnistzoo_settings.chunk or len(batch)
    if len(batch) <= chunk:
        return sess.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    return np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: batch[i:i + chunk]})[0]
                           for i in range(0, len(batch), chunk)])


def predict_onnx(sess: ort.InferenceSession, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Probabilities of ``images`` (N,28,28), in batches."""
    return np.concatenate([infer(sess, images[i:i + batch].astype(np.float32)) for i in range(0, len(images), batch)])


# ----------------------------------------------------------------------------- latency
