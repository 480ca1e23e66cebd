"""Evaluate an ONNX file with onnxruntime: accuracy, parity with its Keras checkpoint, latency.

The embedded card (see :mod:`mnistzoo.export`) names the dataset and the checkpoint; a foreign
file with the same contract works when the dataset is given. Latency is measured per batch size
after a warm-up, with the session's optimisation level and thread count set explicitly and
recorded beside an environment fingerprint.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import data
from ._checks import output_dir, positive_float, positive_int
from ._env import environment
from ._extras import has_extra, require_extra
from ._io import sha256_file
from ._plot import pyplot, save_png
from .errors import InvalidInput, MnistZooError
from .parity import ATOL, compare, tie_margin
from .records import SCHEMA, EvalRecord
from .runs import KERAS, WEIGHTS, run_dir
from .runtime import open_model
from .timing import onnx_latency, tune

DEFAULT_BATCH_SIZES = (1, 32, 256)
INT8_MAX_ACCURACY_DROP = 0.01  # a quantized file is judged by accuracy, not by exact probabilities


def accuracy_report(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, mean cross-entropy, per-class accuracy and the confusion matrix (rows: true class)."""
    pred = probs.argmax(1)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)).mean())
    return {"accuracy": float((pred == labels).mean()), "loss": loss,
            "per_class_accuracy": (confusion.diagonal() / confusion.sum(1)).tolist(),
            "confusion_matrix": confusion.tolist()}


def find_checkpoint(onnx_path: Path, card: dict | None) -> Path | None:
    """The Keras checkpoint (weights file or ``model.keras``) an exported file came from: beside it, or in the zoo
    home's runs (only where the card names a run: a crafted name never becomes a path)."""
    if card is None:
        return None
    places = [onnx_path.parent]
    with contextlib.suppress(InvalidInput):
        places.append(run_dir(card["name"], card["seed"]))
    for where in places:
        for candidate in (where / WEIGHTS, where / KERAS):
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
             plots: Path | None = None, runs: int = 200, seconds: float | None = None, atol: float = ATOL,
             tuned: bool = True, timed: bool = True) -> EvalRecord:
    """Everything ``mnistzoo eval`` reports for one ONNX file, as the JSON object it writes.

    ``tuned``: time each batch size with the fastest onnxruntime settings for it (:func:`timing.tune`:
    threads unless ``threads`` fixes them, spinning, optimisation level, images per call), recorded in each latency row.
    ``timed=False`` measures no latency (``latency`` is empty): accuracy and parity only.
    """
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
    model = open_model(path, provider, threads)
    card = model.card
    name = dataset or (card or {}).get("dataset")
    if name is None:
        raise MnistZooError(f"{path} has no mnistzoo card; say which test set to use with --dataset mnist|fashion_mnist")
    if keras_path is not None or compare_keras:
        require_extra("train", "Keras parity and --compare-keras")
    # Parity with a checkpoint found on its own is checked only where Keras is installed.
    ckpt = Path(keras_path) if keras_path is not None else \
        find_checkpoint(path, card) if has_extra("train") else None
    if keras_path is not None and not Path(keras_path).is_file():
        raise InvalidInput(f"--keras {keras_path}: {'is a directory' if Path(keras_path).is_dir() else 'no such file'}; "
                           "give the .keras checkpoint file the ONNX file was exported from")
    if compare_keras and ckpt is None:
        raise MnistZooError(f"--compare-keras needs the Keras checkpoint of {path}; give it with --keras PATH")
    ds = data.load(name)
    sess = model.session
    probs = model.predict(ds.x_test)
    result: EvalRecord = {"schema": SCHEMA, "path": str(path), "id": card and card["id"], "name": card and card["name"],
                          "dataset": ds.name, "images": len(ds.y_test), **accuracy_report(probs, ds.y_test)}

    keras_model = None
    if ckpt is not None:  # only now is TensorFlow imported (the training extra)
        from .keras_runtime import load_keras, predict_keras

        keras_model = load_keras(ckpt, card and card["name"])
        parity = asdict(compare(predict_keras(keras_model, ds.x_test), probs, ds.y_test, atol=atol))
        quantized = _quantized(path)
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
    result["latency"] = []
    if timed:
        sessions = (tune(path, ds.x_test, batch_sizes, provider=provider, threads=threads,
                         quantized="int8" in (card or {})) if tuned else sess)  # an int8 file's card says so
        result["latency"] = [asdict(r) for r in onnx_latency(sessions, ds.x_test, batch_sizes, runs=runs,
                                                             seconds=seconds, tuned=tuned)]
    if compare_keras:
        from .keras_runtime import keras_latency

        result["keras_latency"] = [asdict(r) for r in keras_latency(keras_model, ds.x_test, batch_sizes, runs=runs,
                                                                    seconds=seconds)]
    result["environment"] = {**environment(), "provider": sess.get_providers()[0]}
    if plots is not None:
        plots = Path(plots)
        plots.mkdir(parents=True, exist_ok=True)
        stem = (card["name"] if card else path.stem).replace("@", "_v")
        plot_confusion(result["confusion_matrix"], list(ds.class_names), f"{stem} on {ds.name} test",
                       plots / f"{stem}_confusion.png")
    return result


def _quantized(path: Path) -> bool:
    """Whether an ONNX file holds QDQ int8 (judged by accuracy rather than exact probabilities)."""
    import onnx

    return any(node.op_type == "QuantizeLinear" for node in onnx.load(path, load_external_data=False).graph.node)
