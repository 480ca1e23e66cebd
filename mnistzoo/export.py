"""Export a trained run to self-describing ONNX, then prove it matches Keras on the whole test set.

Conversion and validation are separate steps with typed errors, as in Optimum's exporter:
:func:`convert` turns a Keras model into an ``onnx.ModelProto`` through tf2onnx (from a
``tf.function`` with an explicit input signature; ``from_keras`` fails on Keras 3), and
:func:`compare` measures its parity with Keras. :func:`export` ties them together for a run
directory: a file is renamed into place only after it passed, and ``export.json`` records the figures.
The graph surgery is :mod:`mnistzoo.graph`, the int8 quantization :mod:`mnistzoo.quantize`; what the
exporting machine measures (int8 speed) goes into ``export.json`` only, never into a file.

Files written beside the run's weights (or under ``--out DIR/<id>@<version>/``)::

    model.onnx                 the first opset asked for (default 17)
    model.opset<N>.onnx        every further opset of an opset matrix
    model.int8.onnx            with quantize="int8": static QDQ int8
    test_data_set_0/           input_0.pb and output_0.pb, ONNX Model Zoo layout
    export.json                parity per opset, int8 deltas, versions
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import _tf  # noqa: F401 - quiet TensorFlow start-up
from . import data
from ._checks import DEFAULT_OPSET, export_options, output_dir
from ._checks import seed as check_seed
from ._env import cpu_features, cpu_name, environment, int8_features
from ._io import atomic_path, ensure_writable_dir, sha256_file
from .contract import BATCH_AXIS, CONVERSION_ROUTE, INPUT_NAME, OUTPUT_NAME
from .checkpoints import load_trained
from .errors import ExportError, InvalidInput, ParityError
from .parity import ATOL, compare, tie_margin
from .records import SCHEMA, ExportRecord, OnnxCard, TrainCard, checkpoint_sha256, write_record
from .graph import (check_static_shapes, fold_batchnorm, fold_rescale, pin_batchnorm, renumber_generated_names, save,
                    static_reshapes)
from .quantize import CALIBRATION_IMAGES, INT8_FORMAT, calibration_images, quantize_int8
from .reference import reference_max_diff
from .keras_runtime import predict_keras
from .runtime import CARD_KEY, make_session, parse_card, predict_onnx
from .timing import interleaved_throughput, median_ratio, tune
from .runs import DEFAULT_SEED, EXPORT, INT8, ONNX, TEST_INPUT, TEST_OUTPUT, Run, exported, runs_dir, seeds_of
from .zoo import get_model

import keras  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

TEST_VECTOR_IMAGES = 16
INT8_SPEED_BATCH = 256  # int8 is timed against float32 at this batch size on the exporting machine
INT8_SPEED_ROUNDS = 5  # the two files take turns this many times; the ratio is the median of the rounds' ratios


@dataclass
class ExportResult:
    """An export: the model's name (``id@version``), where its files went, the files, and ``export.json``."""

    name: str
    out_dir: Path
    files: list[Path]
    record: ExportRecord

    @property
    def passed(self) -> bool:
        return exported(self.record)


def trained_models(runs: Path | None = None, seed: int = DEFAULT_SEED) -> list[str]:
    """``id@version`` of every model with a finished run of ``seed`` in the runs directory."""
    root = runs_dir(runs)
    names = sorted(p.name for p in root.glob("*@*") if p.is_dir()) if root.is_dir() else []
    return [name for name in names if seed in seeds_of(name, runs)]


def find_run(model_id: str, runs: Path | None = None, seed: int = DEFAULT_SEED) -> tuple[Path, dict]:
    """The finished run directory of ``model_id`` trained with ``seed`` and its card, or how to train it."""
    name = get_model(model_id).name
    run = Run.of(name, check_seed(seed), runs)
    options = ('' if seed == DEFAULT_SEED else f' --seed {seed}') + ('' if runs is None else f' --out {runs}')
    train_cmd = f"mnistzoo train {name.split('@')[0]}{options}"
    if not run.finished:
        state = "is only partly trained" if run.partial else "has not been trained"
        raise ExportError(f"{name} seed {seed} {state} in {run.path.parent.parent}; run `{train_cmd}` first")
    return run.path, run.card(f"retrain with `{train_cmd} --force`")


def load_checkpoint(run: Path, card: TrainCard) -> keras.Model:
    """The run's trained Keras model (its weights file, else ``model.keras``), after its SHA-256 matched the card's."""
    try:
        return load_trained(run, card, f"retrain with `mnistzoo train {card['id']} --force`")
    except InvalidInput as exc:
        raise ExportError(str(exc)) from None


def convert(model: keras.Model, opset: int = DEFAULT_OPSET, *, fold_bn: bool = True) -> onnx.ModelProto:
    """Keras model -> ONNX with the zoo's contract: ``image`` [batch,28,28] -> ``probabilities`` [batch,10].

    The input's 1/255 rescale is folded into the first layer, and (unless ``fold_bn`` is off, as int8 needs)
    each BatchNorm that feeds a dense layer into that layer's weights.
    """
    signature = [tf.TensorSpec([None, 28, 28], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=signature)
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(image, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS
    del proto.graph.value_info[:]  # tf2onnx's intermediate shapes carry arbitrary unk__N names
    static_reshapes(proto)
    pin_batchnorm(proto, model)
    fold_rescale(proto)
    if fold_bn:
        fold_batchnorm(proto)
    proto.graph.doc_string = "converted by tf2onnx from a tf.function"  # tf2onnx's names a per-process counter
    renumber_generated_names(proto.graph)
    return proto


def describe(proto: onnx.ModelProto, card: dict) -> None:
    """Embed the model card (sorted JSON, so the bytes are reproducible) and producer fields."""
    from . import __version__

    proto.producer_name, proto.producer_version = "mnistzoo", __version__
    proto.graph.name = card["name"].replace("@", "_v")
    proto.doc_string = (f"mnistzoo {card['name']}: {card['dataset']} classifier. Input '{INPUT_NAME}' float32 "
                        f"[{BATCH_AXIS},28,28] raw 0-255 pixels; output '{OUTPUT_NAME}' float32 [{BATCH_AXIS},10] "
                        f"softmax over {', '.join(card['class_names'])}. The full card is metadata '{CARD_KEY}'.")
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {CARD_KEY: json.dumps(card, sort_keys=True)})


def write_test_vectors(out_dir: Path, images: np.ndarray, probabilities: np.ndarray) -> list[Path]:
    """ONNX Model Zoo test vectors in ``out_dir/test_data_set_0/``: serialized TensorProtos named after the graph's
    input and output; their paths."""
    paths = []
    for name, array, tensor_name in ((TEST_INPUT, images.astype(np.float32), INPUT_NAME),
                                     (TEST_OUTPUT, probabilities.astype(np.float32), OUTPUT_NAME)):
        with atomic_path(out_dir / name) as tmp:
            tmp.write_bytes(onnx.numpy_helper.from_array(array, tensor_name).SerializeToString())
        paths.append(out_dir / name)
    return paths


def read_card(proto: onnx.ModelProto, origin: str = "the ONNX file") -> dict | None:
    """The embedded mnistzoo card of a loaded ONNX model (None for a foreign file)."""
    return parse_card({p.key: p.value for p in proto.metadata_props}.get(CARD_KEY), origin)


def _onnx_card(card: TrainCard, ds: data.Dataset, ckpt_sha: str, opset: int) -> OnnxCard:
    from . import __version__

    return {
        "schema": SCHEMA, "id": card["id"], "name": card["name"], "version": card["version"],
        "study": card["study"], "dataset": ds.name, "class_names": list(ds.class_names),
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [BATCH_AXIS, 28, 28], "range": [0, 255]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [BATCH_AXIS, 10], "meaning": "softmax"},
        "preprocessing": "none: feed raw 0-255 pixels (white digit on black, as in the dataset); "
                         "the 1/255 rescale is folded into the first layer's weights",
        "recipe": card["recipe"], "recipe_is_original": card["recipe_is_original"], "seed": card["seed"],
        "keras_test_accuracy": card["results"]["test_accuracy"], "keras_test_loss": card["results"]["test_loss"],
        "reference": card["reference"], "checkpoint_sha256": ckpt_sha, "dataset_sha256": card["dataset"]["sha256"],
        "conversion": {"route": CONVERSION_ROUTE, "opset": opset, "tf2onnx": tf2onnx.__version__,
                       "tensorflow": tf.__version__, "keras": keras.__version__, "onnx": onnx.__version__},
        "mnistzoo": __version__,
    }


def out_dir_name(name: str, seed: int) -> str:
    """The directory an export of ``name``'s ``seed`` run gets under ``--out``: ``id@v`` (seed 0) or ``id@v-seed<k>``."""
    return name if seed == DEFAULT_SEED else f"{name}-seed{seed}"


def export(model_id: str, *, opsets: list[int] | None = None, runs: Path | None = None, out: Path | None = None,
           atol: float = ATOL, max_flips: int = 0, quantize: str | None = None, seed: int = DEFAULT_SEED,
           calibration_seed: int = 0, measure_speed: bool = True) -> ExportResult:
    """Export the finished run of ``model_id`` trained with ``seed`` to ONNX, verify every file on the whole
    test set, record the figures.

    Raises :class:`ExportError` for unusable input and :class:`ParityError` when a file fails
    parity; a failing file is not left behind. ``calibration_seed`` picks int8's calibration images;
    ``measure_speed`` times the int8 file against float32 on this machine for ``export.json`` (no file changes).
    """
    opsets = export_options(opsets_asked=opsets, atol=atol, max_flips=max_flips, quantize=quantize, seed=seed,
                            calibration_seed=calibration_seed)
    run, card = find_run(model_id, runs, seed)
    if out is not None:
        output_dir(Path(out), "--out")
    out_dir = ensure_writable_dir(run if out is None else Path(out) / out_dir_name(card["name"], seed),
                                  "output directory")
    model = load_checkpoint(run, card)
    ckpt_sha = checkpoint_sha256(card)
    ds = data.load(card["dataset"]["name"])
    keras_probs = predict_keras(model, ds.x_test)

    files, results, failures = [], {}, []
    for i, opset in enumerate(opsets):
        proto = convert(model, opset)
        describe(proto, _onnx_card(card, ds, ckpt_sha, opset))
        onnx.checker.check_model(proto, full_check=True)
        check_static_shapes(proto)
        path = out_dir / (ONNX if i == 0 else f"model.opset{opset}.onnx")
        parity = compare(keras_probs, predict_onnx(make_session(proto), ds.x_test), ds.y_test,
                         atol=atol, max_flips=max_flips)
        results[str(opset)] = {"file": path.name, **asdict(parity)}
        if parity.passed:
            save(proto, path)
            results[str(opset)]["sha256"] = sha256_file(path)
            files.append(path)
        else:
            path.unlink(missing_ok=True)
            failures.append(f"opset {opset}: {parity.flipped} flipped ({parity.ties} ties), "
                            f"max |diff| {parity.max_abs_diff:.2e}")

    record: ExportRecord = {
        "schema": SCHEMA, "id": card["id"], "name": card["name"], "checkpoint_sha256": ckpt_sha, "dataset": ds.name,
        "test_images": len(ds.y_test),
        "tolerance": {"atol": atol, "max_flips": max_flips, "tie_margin": tie_margin(atol)}, "opsets": results,
        "conversion": {"route": CONVERSION_ROUTE, "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                       "onnxruntime": ort.__version__, "tensorflow": tf.__version__},
        "environment": environment()}
    if not failures and opsets:
        files += write_test_vectors(out_dir, ds.x_test[:TEST_VECTOR_IMAGES], keras_probs[:TEST_VECTOR_IMAGES])
        if quantize == "int8":
            unfolded = convert(model, opsets[0], fold_bn=False)
            describe(unfolded, _onnx_card(card, ds, ckpt_sha, opsets[0]))
            int8 = record["int8"] = _int8(files[0], unfolded, out_dir / INT8, ds, calibration_seed,
                                          measure_speed)
            if int8["file"] and not int8["reference"]["passed"]:
                (out_dir / int8["file"]).unlink()
                int8["file"] = None
                failures.append(f"int8: onnxruntime differs from the ONNX reference implementation by "
                                f"{int8['reference']['max_abs_diff']:.2e}")
            files += [out_dir / INT8] if int8["file"] else []
    write_record(out_dir / EXPORT, record)
    if failures:
        raise ParityError(f"{card['name']} seed {seed}: ONNX does not match Keras within max |diff| <= {atol:g} and "
                          f"<= {max_flips} flips outside ties, or int8 its specification within {ATOL:g} "
                          f"({'; '.join(failures)}); see {out_dir / 'export.json'}")
    return ExportResult(card["name"], out_dir, files, record)


def _int8(fp32: Path, unfolded: onnx.ModelProto, int8: Path, ds: data.Dataset, seed: int,
          measure_speed: bool) -> dict:
    """Quantize ``unfolded`` (unless there is nothing to gain), then measure int8 against the float32 file ``fp32``:
    test accuracy, size and (``measure_speed``) throughput on this machine, for ``export.json`` only: the int8 file
    itself says how it was made, nothing this machine measured, so it is the same on every CPU."""
    how = quantize_int8(unfolded, int8, *calibration_images(ds, seed))
    if "skipped" in how:
        int8.unlink(missing_ok=True)
        return {"file": None, **how}
    made = {"format": INT8_FORMAT, "calibration_images": CALIBRATION_IMAGES, "calibration_seed": seed,
            **{key: how[key] for key in ("batchnorm_folded", "fp32_nodes", "returned_to_fp32")}}
    proto = onnx.load(str(int8))
    describe(proto, {**read_card(proto), "int8": made})
    save(proto, int8)
    reference = reference_max_diff(int8, ds.x_test[:TEST_VECTOR_IMAGES])
    acc = {name: float((predict_onnx(make_session(path), ds.x_test).argmax(1) == ds.y_test).mean())
           for name, path in (("fp32", fp32), ("int8", int8))}
    return {"file": int8.name, "sha256": sha256_file(int8), **made, **how,
            "reference": {"evaluator": f"onnx.reference.ReferenceEvaluator (onnx {onnx.__version__})",
                          "images": TEST_VECTOR_IMAGES, "max_abs_diff": reference, "atol": ATOL,
                          "passed": reference <= ATOL},
            "fp32_accuracy": acc["fp32"], "int8_accuracy": acc["int8"], "accuracy_delta": acc["int8"] - acc["fp32"],
            "size_ratio": int8.stat().st_size / fp32.stat().st_size,
            **(int8_speed(fp32, int8, ds.x_test) if measure_speed else {})}


def int8_speed(fp32: Path, int8: Path, images: np.ndarray) -> dict:
    """int8 throughput against float32 at :data:`INT8_SPEED_BATCH` on this machine, each file at its fastest
    settings, the two taking turns in :data:`INT8_SPEED_ROUNDS` rounds (the ratio is the median of the rounds')."""
    sessions = {name: tune(path, images, [INT8_SPEED_BATCH], quantized=name == "int8")[INT8_SPEED_BATCH]
                for name, path in (("fp32", fp32), ("int8", int8))}
    rounds = interleaved_throughput(sessions, images, INT8_SPEED_BATCH, rounds=INT8_SPEED_ROUNDS)
    ips = {name: float(np.median(values)) for name, values in rounds.items()}
    return {"fp32_images_per_s": ips["fp32"], "int8_images_per_s": ips["int8"], "batch_size": INT8_SPEED_BATCH,
            "rounds": INT8_SPEED_ROUNDS, "throughput_ratio": median_ratio(rounds["int8"], rounds["fp32"]),
            "cpu": cpu_name(), "cpu_int8_features": int8_features(cpu_features()),
            "settings": {name: asdict(session.mnistzoo_settings) for name, session in sessions.items()}}
