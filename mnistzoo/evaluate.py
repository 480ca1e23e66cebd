"""Evaluate an ONNX file with onnxruntime: accuracy, parity with its Keras checkpoint, latency.

The embedded card (see :mod:`mnistzoo.export`) names the dataset and the checkpoint; a foreign
file with the same contract works when the dataset is given. Latency is measured per batch size
after a warm-up, with the session's optimisation level and thread count set explicitly and
recorded beside an environment fingerprint.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import data
from ._checks import output_dir, positive_float, positive_int
from ._env import environment
from ._io import sha256_file
from ._plot import pyplot, save_png
from .contract import INPUT_NAME, OUTPUT_NAME
from .errors import InvalidInput, MnistZooError
from .export import predict_keras
from .parity import ATOL, compare, tie_margin
from .runs import runs_dir
from .runtime import OPT_LEVEL, make_session, open_model, predict_onnx

import keras  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402

DEFAULT_BATCH_SIZES = (1, 32, 256)
INT8_MAX_ACCURACY_DROP = 0.01  # a quantized file is judged by accuracy, not by exact probabilities


@dataclass(frozen=True)
class Latency:
    batch_size: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    provider: str
    threads: int
    runs: int


def accuracy_report(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, mean cross-entropy, per-class accuracy and the confusion matrix (rows: true class)."""
    pred = probs.argmax(1)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)).mean())
    return {"accuracy": float((pred == labels).mean()), "loss": loss,
            "per_class_accuracy": (confusion.diagonal() / confusion.sum(1)).tolist(),
            "confusion_matrix": confusion.tolist()}


def _percentiles(times: list[float], batch: int, provider: str, threads: int) -> Latency:
    ms = np.array(times) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return Latency(batch, float(p50), float(p90), float(p99), batch * len(ms) / (ms.sum() / 1e3),
                   provider, threads, len(ms))


def time_runs(fn, runs: int, warmup: int, seconds: float | None) -> list[float]:
    """Per-call wall times of ``fn`` after ``warmup`` calls: ``runs`` calls, or as many as fit in ``seconds``."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < runs if seconds is None else time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def onnx_latency(sess: ort.InferenceSession, images: np.ndarray, batch_sizes: list[int], *, runs: int = 200,
                 warmup: int = 20, seconds: float | None = None) -> list[Latency]:
    provider = sess.get_providers()[0]
    threads = int(sess.get_session_options().intra_op_num_threads)
    rows = []
    for batch in batch_sizes:
        x = np.ascontiguousarray(images[np.arange(batch) % len(images)], dtype=np.float32)
        feed = {INPUT_NAME: x}
        rows.append(_percentiles(time_runs(lambda: sess.run([OUTPUT_NAME], feed), runs, warmup, seconds),
                                 batch, provider, threads))
    return rows


def keras_latency(model: keras.Model, images: np.ndarray, batch_sizes: list[int], *, runs: int = 200,
                  warmup: int = 20, seconds: float | None = None, with_predict: bool = True) -> list[Latency]:
    """The Keras model on the same batches, under ``tf.function`` and (unless told not to) ``model.predict``."""
    serve = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1
    rows = []
    for batch in batch_sizes:
        x = tf.constant(images[np.arange(batch) % len(images)], dtype=tf.float32)
        rows.append(_percentiles(time_runs(lambda: serve(x).numpy(), runs, warmup, seconds),
                                 batch, "keras tf.function", threads))
        if with_predict:
            rows.append(_percentiles(time_runs(lambda: model.predict(x, verbose=0), max(runs // 4, 5),
                                               max(warmup // 4, 2), seconds), batch, "keras model.predict", threads))
    return rows


def find_checkpoint(onnx_path: Path, card: dict | None) -> Path | None:
    """The Keras checkpoint an exported file came from: beside it, or in the zoo home's runs."""
    if card is None:
        return None
    for candidate in (onnx_path.parent / "model.keras", runs_dir() / card["id"] / "model.keras"):
        if candidate.is_file() and sha256_file(candidate) == card["checkpoint_sha256"]:
            return candidate
    return None


def plot_confusion(confusion: list[list[int]], class_names: list[str], title: str, path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(7, 6))
    matrix = np.array(confusion)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                color="white" if n > matrix.max() / 2 else "black")
    ax.set_xticks(range(10), class_names, rotation=45, ha="right")
    ax.set_yticks(range(10), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    save_png(fig, path)


def evaluate(path: Path, *, dataset: str | None = None, keras_path: Path | None = None, provider: str = "cpu",
             threads: int | None = None, batch_sizes: list[int] | None = None, compare_keras: bool = False,
             plots: Path | None = None, runs: int = 200, seconds: float | None = None, atol: float = ATOL) -> dict:
    """Everything ``mnistzoo eval`` reports for one ONNX file, as the JSON object it writes."""
    path = Path(path)
    batch_sizes = list(DEFAULT_BATCH_SIZES if batch_sizes is None else batch_sizes)
    if not batch_sizes:
        raise InvalidInput("--batch-sizes needs at least one positive integer, like 1,32,256")
    for b in batch_sizes:
        positive_int("--batch-sizes", b)
    positive_int("--runs", runs)
    positive_int("--threads", threads)
    positive_float("--seconds", seconds)
    positive_float("--atol", atol)
    if plots is not None:
        output_dir(Path(plots), "--plots")
    proto, card = open_model(path)
    name = dataset or (card or {}).get("dataset")
    if name is None:
        raise MnistZooError(f"{path} has no mnistzoo card; say which test set to use with --dataset mnist|fashion_mnist")
    ckpt = Path(keras_path) if keras_path is not None else find_checkpoint(path, card)
    if keras_path is not None and not Path(keras_path).is_file():
        raise InvalidInput(f"--keras {keras_path}: {'is a directory' if Path(keras_path).is_dir() else 'no such file'}; "
                           "give the .keras checkpoint file the ONNX file was exported from")
    if compare_keras and ckpt is None:
        raise MnistZooError(f"--compare-keras needs the Keras checkpoint of {path}; give it with --keras PATH")
    ds = data.load(name)
    sess = make_session(proto, provider, threads, origin=path)
    probs = predict_onnx(sess, ds.x_test)
    result: dict = {"model": str(path), "id": (card or {}).get("id"), "dataset": ds.name, "images": len(ds.y_test),
                    **accuracy_report(probs, ds.y_test)}

    keras_model = None
    if ckpt is not None:
        try:
            keras_model = keras.models.load_model(ckpt)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
            raise MnistZooError(f"{ckpt}: cannot load the Keras checkpoint ({type(exc).__name__}); "
                                "give a .keras file saved by mnistzoo with --keras") from None
        parity = asdict(compare(predict_keras(keras_model, ds.x_test), probs, ds.y_test, atol=atol))
        quantized = any(node.op_type == "QuantizeLinear" for node in proto.graph.node)
        if quantized:
            parity["passed"] = parity["accuracy_delta"] >= -INT8_MAX_ACCURACY_DROP
        ckpt_sha = sha256_file(ckpt)
        result["parity"] = {"checkpoint": str(ckpt), "checkpoint_sha256": ckpt_sha,
                            "matches_card": card is not None and ckpt_sha == card["checkpoint_sha256"],
                            "criterion": (f"quantized: accuracy within {INT8_MAX_ACCURACY_DROP:.0%} of Keras"
                                          if quantized else f"max |diff| <= {atol:g} and no flipped prediction "
                                          f"(top-two margin above {tie_margin(atol):g}; closer ones are ties)"),
                            **parity}
    else:
        result["parity"] = None
    result["latency"] = [asdict(r) for r in onnx_latency(sess, ds.x_test, batch_sizes, runs=runs, seconds=seconds)]
    if compare_keras:
        result["keras_latency"] = [asdict(r) for r in keras_latency(keras_model, ds.x_test, batch_sizes, runs=runs,
                                                                    seconds=seconds)]
    result["environment"] = {**environment(), "provider": sess.get_providers()[0],
                             "threads": int(sess.get_session_options().intra_op_num_threads),
                             "graph_optimization_level": str(OPT_LEVEL).split(".")[-1]}
    if plots is not None:
        plots = Path(plots)
        plots.mkdir(parents=True, exist_ok=True)
        stem = (card or {}).get("id", path.stem).replace("@", "_v")
        plot_confusion(result["confusion_matrix"], list(ds.class_names), f"{stem} on {ds.name} test",
                       plots / f"{stem}_confusion.png")
    return result
