"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import functools
import time
from pathlib import Path

from mnistzoo import _tf  # noqa: F401 - quiet TensorFlow start-up
from mnistzoo import export as exporter
from mnistzoo.zoo import get_model

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402


def gemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """This CPU's float32 ceiling as TensorFlow reaches it: the best of several large matmuls."""
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()
    best = min(_timed(lambda: tf.linalg.matmul(a, b).numpy()) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def ceiling_gflops(n: int = 2048, repeats: int = 3) -> float:
    """This CPU's float32 ceiling: the faster of TensorFlow's and onnxruntime's n x n matmul (which one is faster
    differs between CPUs)."""
    session, feed = _ort_gemm(n)
    ort_best = min(_timed(lambda: session.run(None, feed)) for _ in range(repeats))
    return max(gemm_gflops(n, repeats), 2 * n**3 / ort_best / 1e9)


@functools.cache
def _ort_gemm(n: int = 2048) -> tuple[ort.InferenceSession, dict[str, np.ndarray]]:
    """A session of one n x n float32 MatMul (all cores, onnxruntime's defaults) and its feed, warmed up."""
    from mnistzoo.runtime import make_session

    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", values[:2], values[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = make_session(model)
    feed = {name: np.random.default_rng(0).standard_normal((n, n), dtype=np.float32) for name in "ab"}
    session.run(None, feed)
    return session, feed


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def random_weights(model_id: str, directory: Path) -> tuple[Path, Path]:
    """``model_id``'s architecture with seeded random weights, as Keras and ONNX files in ``directory`` (converted as
    the export converts); a stand-in for speed, which does not depend on the weights.

    Biases are made non-zero as training makes them: the converter drops an addition of zeros, and the graph timed
    would then lack the bias additions of a trained model's.
    """
    keras.utils.set_random_seed(0)
    model = get_model(model_id).build()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0.0, 0.05, layer.bias.shape).astype(np.float32))
    onnx_path, keras_path = directory / f"{model_id}.onnx", directory / f"{model_id}.keras"
    onnx_path.write_bytes(exporter.convert(model).SerializeToString())
    model.save(keras_path)
    return onnx_path, keras_path


def unfolded(keras_path: Path) -> onnx.ModelProto:
    """The Keras file converted as the export converts it for int8: BatchNorm not folded into the next layer."""
    return exporter.convert(keras.models.load_model(keras_path), fold_bn=False)
