"""onnxruntime in one place: opening and checking a file, its embedded card, sessions, batched prediction.

Nothing here imports TensorFlow: loading and running exported files needs only onnx,
onnxruntime and numpy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from .errors import InvalidInput, MnistZooError
from .contract import INPUT_NAME, OUTPUT_NAME

CARD_KEY = "mnistzoo.card"
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
OPT_LEVEL = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
CARD_KEYS = {"id": str, "dataset": str, "class_names": list, "checkpoint_sha256": str}


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message cut to one line, for a one-line error."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'…' if len(text) > limit else ''}"


def read_card(proto: onnx.ModelProto, origin: str = "the ONNX file") -> dict | None:
    """The embedded mnistzoo card of an ONNX model, None for a foreign file; a garbled card is an error."""
    props = {p.key: p.value for p in proto.metadata_props}
    if CARD_KEY not in props:
        return None
    try:
        card = json.loads(props[CARD_KEY])
    except ValueError:
        card = None
    bad = not isinstance(card, dict) or [k for k, kind in CARD_KEYS.items() if not isinstance(card.get(k), kind)]
    if bad:
        raise InvalidInput(f"{origin}: its embedded '{CARD_KEY}' metadata is not a valid mnistzoo card"
                           f"{'' if bad is True else ' (missing or mistyped: ' + ', '.join(bad) + ')'}; "
                           "re-export it with `mnistzoo export`")
    if len(card["class_names"]) != 10:
        raise InvalidInput(f"{origin}: its embedded card lists {len(card['class_names'])} class names, not 10; "
                           "re-export it with `mnistzoo export`")
    return card


def open_model(path: Path) -> tuple[onnx.ModelProto, dict | None]:
    """Load and check an ONNX file and its contract; return it with its mnistzoo card (None if foreign)."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory; give the path of an .onnx file inside it")
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file; give the path of an .onnx file (see `mnistzoo export`)")
    try:
        proto = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - protobuf errors of every kind mean "not an ONNX file"
        raise InvalidInput(f"{path}: not a valid ONNX model, the file is corrupt, truncated or of another format "
                           f"({type(exc).__name__}); give an .onnx file written by `mnistzoo export`") from None
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001 - every checker failure means the same to the user
        raise InvalidInput(f"{path}: not a valid ONNX model ({first_line(exc)}); re-export it, or convert it "
                           f"with the ONNX version this mnistzoo uses ({onnx.__version__})") from None
    _check_contract(path, proto)
    return proto, read_card(proto, str(path))


def _describe(value: onnx.ValueInfoProto) -> str:
    t = value.type.tensor_type
    dims = ",".join(d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in t.shape.dim)
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type) if t.elem_type else "?"
    except (KeyError, ValueError):
        dtype = f"type {t.elem_type}"
    return f"'{value.name}' {dtype} [{dims}]"


def _check_contract(path: Path, proto: onnx.ModelProto) -> None:
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]

    def ok(values: list, name: str, rest: list[int]) -> bool:
        if len(values) != 1 or values[0].name != name:
            return False
        t = values[0].type.tensor_type
        dims = t.shape.dim
        return (t.elem_type == onnx.TensorProto.FLOAT and len(dims) == 1 + len(rest)
                and not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == rest)

    if not ok(inputs, INPUT_NAME, [28, 28]):
        raise InvalidInput(f"{path}: wrong input contract: expected one input '{INPUT_NAME}' float32 [batch,28,28], "
                           f"found {', '.join(_describe(i) for i in inputs) or 'none'}")
    if not ok(list(proto.graph.output), OUTPUT_NAME, [10]):
        raise InvalidInput(f"{path}: wrong output contract: expected one output '{OUTPUT_NAME}' float32 "
                           f"[batch,10], found {', '.join(_describe(o) for o in proto.graph.output) or 'none'}")


def make_session(model: onnx.ModelProto | Path | bytes, provider: str = "cpu", threads: int | None = None,
                 origin: Path | str | None = None) -> ort.InferenceSession:
    """The one onnxruntime session factory: explicit provider, optimisation level and threads.

    ``origin`` names the file in errors when ``model`` is already loaded.
    """
    if provider not in PROVIDERS:
        raise InvalidInput(f"unknown provider {provider!r}; choose cpu or cuda")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0):
        raise InvalidInput(f"--threads must be a positive integer, got {threads!r}")
    if provider == "cuda" and PROVIDERS["cuda"] not in ort.get_available_providers():
        raise MnistZooError("CUDA was asked for but this onnxruntime has no CUDAExecutionProvider (no GPU, or "
                            "onnxruntime-gpu not installed); use --provider cpu")
    options = ort.SessionOptions()
    options.graph_optimization_level = OPT_LEVEL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    try:
        return ort.InferenceSession(str(source) if isinstance(source, Path) else source, options,
                                    providers=[PROVIDERS[provider]])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own load errors (IR version, unsupported op, ...)
        where = origin or (source if isinstance(source, Path) else "the model")
        raise InvalidInput(f"{where}: onnxruntime {ort.__version__} cannot load it ({first_line(exc)}); "
                           "re-export it with this mnistzoo, or upgrade onnxruntime") from None


def predict_onnx(sess: ort.InferenceSession, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Probabilities of ``images`` (N,28,28), in batches."""
    return np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: images[i:i + batch].astype(np.float32)})[0]
                           for i in range(0, len(images), batch)])
