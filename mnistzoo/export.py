"""Export a trained run to self-describing ONNX, then prove it matches Keras on the whole test set.

Conversion and validation are separate steps with typed errors, as in Optimum's exporter:
:func:`convert` turns a Keras model into an ``onnx.ModelProto`` through tf2onnx (from a
``tf.function`` with an explicit input signature; ``from_keras`` fails on Keras 3), and
:func:`compare` measures its parity with Keras. :func:`export` ties them together for a run
directory: a file is renamed into place only after it passed, and ``export.json`` records the figures.

Files written beside the run's ``model.keras`` (or under ``--out DIR/<id>@<version>/``)::

    model.onnx                 the first opset asked for (default 17)
    model.opset<N>.onnx        every further opset of an opset matrix
    model.int8.onnx            with quantize="int8": static QDQ int8
    test_data_set_0/           input_0.pb and output_0.pb, ONNX Model Zoo layout
    export.json                parity per opset, int8 deltas, versions
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import _tf  # noqa: F401 - quiet TensorFlow start-up
from . import data
from ._checks import non_negative_int, output_dir, positive_float
from ._checks import seed as check_seed
from ._env import cpu_features, cpu_name, environment, int8_features
from ._io import atomic_path, ensure_writable_dir, sha256_file
from .contract import BATCH_AXIS, CONVERSION_ROUTE, INPUT_NAME, OUTPUT_NAME
from .checkpoints import load_trained
from .errors import InvalidInput, MnistZooError, VerificationError
from .parity import ATOL, compare, tie_margin
from .records import SCHEMA, ExportRecord, OnnxCard, TrainCard, checkpoint_sha256, read_record, write_record
from .reference import reference_max_diff
from .keras_runtime import predict_keras
from .runtime import (CARD_KEY, interleaved_throughput, make_session, median_ratio, parse_card, predict_onnx,
                      tune)
from .runs import DEFAULT_SEED, run_dir, runs_dir, seeds_of
from .zoo import get_model

import keras  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

DEFAULT_OPSET = 17
OPSETS = range(13, 19)
TEST_VECTOR_IMAGES = 16
CALIBRATION_IMAGES = 1000
CHECK_IMAGES = 2000  # training images that judge an int8 graph
INT8_MIN_AGREEMENT = 0.997  # with float32 on the check images, for BatchNorm to fold
INT8_MAX_CHECK_LOSS = 0.003  # accuracy on the check images int8 may lose before layers return to float32
INT8_SPEED_BATCH = 256  # int8 is timed against float32 at this batch size on the exporting machine
INT8_SPEED_ROUNDS = 5  # the two files take turns this many times; the ratio is the median of the rounds' ratios
INT8_FORMAT = ("QDQ, per-channel int8 weights in 7 bits (reduce_range: no int16 saturation in CPU kernels without "
               "VNNI), int8 activations, power-of-two scales (integer kernels round as the specification does); "
               "BatchNorm folded into matmuls where that keeps agreement, else kept in float32 with the head; "
               "layers return to float32 while int8 loses more than "
               f"{100 * INT8_MAX_CHECK_LOSS:g} pp on the check images")
INT8_OPSET = 19  # the first whose QuantizeLinear/DequantizeLinear onnx.reference.ReferenceEvaluator implements
_GENERATED = re.compile(r"__\d+")


class ExportError(MnistZooError):
    """The run cannot be exported: not trained, corrupt, or bad options (exit code 2)."""


class ParityError(VerificationError):
    """An ONNX file was produced but does not match Keras (or, int8, the specification) within tolerance (exit 1)."""


class ShapeError(VerificationError):
    """The ONNX file's shapes are not all known statically with a symbolic batch (exit code 1)."""


@dataclass
class ExportResult:
    model: str
    out_dir: Path
    files: list[Path]
    record: dict

    @property
    def passed(self) -> bool:
        return record_passed(self.record)


def record_passed(record: dict) -> bool:
    """Whether an ``export.json`` says every opset passed parity (a failed export's record says not)."""
    opsets = record.get("opsets")
    return bool(opsets) and all(isinstance(o, dict) and o.get("passed") is True for o in opsets.values())


def trained_models(runs: Path | None = None, seed: int = DEFAULT_SEED) -> list[str]:
    """``id@version`` of every model with a finished run of ``seed`` in the runs directory."""
    root = runs_dir(runs)
    names = sorted(p.name for p in root.glob("*@*") if p.is_dir()) if root.is_dir() else []
    return [name for name in names if seed in seeds_of(name, runs)]


def parse_opsets(text: str) -> list[int]:
    """``"13,15,17"`` -> ``[13, 15, 17]``, each checked against the supported range."""
    try:
        return check_opsets([int(part) for part in text.split(",") if part.strip()])
    except ValueError:
        raise ExportError(f"unsupported opset list {text!r}; give numbers like 17 or 13,15,17,18") from None


def find_run(model_id: str, runs: Path | None = None, seed: int = DEFAULT_SEED) -> tuple[Path, dict]:
    """The finished run directory of ``model_id`` trained with ``seed`` and its card, or how to train it."""
    name = get_model(model_id).name
    run = run_dir(name, check_seed(seed), runs)
    card_path = run / "card.json"
    options = ('' if seed == DEFAULT_SEED else f' --seed {seed}') + ('' if runs is None else f' --out {runs}')
    train_cmd = f"mnistzoo train {name.split('@')[0]}{options}"
    if not card_path.exists():
        state = "is only partly trained" if (run / "state.json").exists() else "has not been trained"
        raise ExportError(f"{name} seed {seed} {state} in {run.parent.parent}; run `{train_cmd}` first")
    return run, read_record(card_path, TrainCard, f"retrain with `{train_cmd} --force`")


def load_checkpoint(run: Path, card: TrainCard) -> keras.Model:
    """The run's trained Keras model (its weights file, else ``model.keras``), after its SHA-256 matched the card's."""
    try:
        return load_trained(run, card, f"retrain with `mnistzoo train {card['id']} --force`")
    except InvalidInput as exc:
        raise ExportError(str(exc)) from None


def check_opsets(opsets: list[int]) -> list[int]:
    bad = [o for o in opsets if isinstance(o, bool) or not isinstance(o, int) or o not in OPSETS]
    if bad or not opsets:
        raise ExportError(f"unsupported opset {bad[0] if bad else '(none)'}; "
                          f"choose from {OPSETS.start}-{OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    return list(dict.fromkeys(opsets))


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
    _renumber_generated_names(proto.graph)
    return proto


def static_reshapes(proto: onnx.ModelProto) -> int:
    """Give each Reshape whose target is computed at run time a constant ``[-1, d, ...]``; return how many.

    tf2onnx turns some Flattens into Shape -> Gather -> Cast -> Slice -> Concat -> Cast -> Reshape, which a
    runtime that propagates shapes statically cannot resolve with a symbolic batch. Shape inference knows
    every dimension after the batch, so the target becomes a constant and the chain that fed it goes. A target
    tf2onnx already made constant (it does so for some traces and not others, in one process) is written the same
    way, so a checkpoint always gives the same bytes.
    """
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    shapes = {v.name: v.type.tensor_type.shape for v in (*inferred.graph.value_info, *inferred.graph.output)}
    constants = {i.name for i in proto.graph.initializer}
    readers = _consumers(proto.graph)
    changed = 0
    for node in proto.graph.node:
        if node.op_type != "Reshape" or node.output[0] not in shapes:
            continue
        rest = [d.dim_value if d.HasField("dim_value") else None for d in shapes[node.output[0]].dim[1:]]
        given = node.input[1] in constants
        if None in rest or (given and len(readers[node.input[1]]) > 1):
            continue
        target = f"{node.name}/static_shape"
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1, *rest], np.int64), target))
        node.input[1] = target
        changed += not given
    _prune(proto.graph)
    return changed


def batchnorm_constants(layer: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode BatchNorm as ``x * s + t``, computed as TensorFlow does (``s = rsqrt(var + eps) * gamma``,
    ``t = beta - mean * s``) but with every operation correctly rounded, so the same weights give the same bits on
    any CPU (TensorFlow's rsqrt is an approximation whose last bits vary between processors)."""
    gamma, beta, mean, var = (np.asarray(w, np.float32) for w in layer.get_weights())
    inverse = (1.0 / np.sqrt((var + np.float32(layer.epsilon)).astype(np.float64))).astype(np.float32)
    scale = (inverse * gamma).astype(np.float32)
    return scale, (beta - mean * scale).astype(np.float32)


def pin_batchnorm(proto: onnx.ModelProto, model: keras.Model) -> int:
    """Replace the ``Mul``/``Add`` constants that tf2onnx computed for each BatchNorm by
    :func:`batchnorm_constants` of that layer (at most a few ulps apart); return how many layers were pinned.

    Raises :class:`VerificationError` when a BatchNorm layer's constants are not found in the graph: its file would
    then depend on the exporting CPU's arithmetic.
    """
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    init = {i.name: i for i in proto.graph.initializer}
    chains = _batchnorm_chains(proto.graph)
    pinned = 0
    for layer in layers:
        scale, shift = batchnorm_constants(layer)
        for mul, add, _ in chains:
            found = onnx.numpy_helper.to_array(init[mul.input[1]])
            if found.size != scale.size or not np.allclose(found.reshape(-1), scale, rtol=1e-4, atol=0):
                continue
            _set_constant(init[mul.input[1]], scale.reshape(found.shape))
            if add is not None:
                _set_constant(init[add.input[1]], shift.reshape(onnx.numpy_helper.to_array(init[add.input[1]]).shape))
            elif np.any(shift != 0):
                continue  # not this layer: it shifts
            pinned += 1
            break
        else:
            raise VerificationError(f"BatchNorm layer {layer.name}: its constants are not in the converted graph, so "
                                    "the file would depend on this CPU's arithmetic; report this")
    return pinned


def _set_constant(tensor: onnx.TensorProto, value: np.ndarray) -> None:
    tensor.CopyFrom(onnx.numpy_helper.from_array(value.astype(np.float32), tensor.name))


def fold_rescale(proto: onnx.ModelProto) -> bool:
    """Move the input's rescale (``Mul`` by 1/255, then ``Add`` of 0) into the first layer's weights; True if done.

    ``x * c`` then ``W`` becomes ``x`` then ``c * W``: equal in real arithmetic, one rounding apart in float32
    (parity judges it), and one pass over the input fewer (at batch 1 on the 2-core EPYC the CNNs took 1.00-1.06x
    longer without it: ``benchmarks/inference.md``). Done only where the chain is exactly image -> Mul -> [Add 0] -> Reshape ->
    Conv/MatMul with constant, unshared scale and weights; any other graph is left as it is.
    """
    graph = proto.graph
    init = {i.name: i for i in graph.initializer}
    readers = _consumers(graph)

    def only_reader(name: str, *ops: str) -> onnx.NodeProto | None:
        nodes = readers.get(name, [])
        return nodes[0] if len(nodes) == 1 and nodes[0].op_type in ops else None

    def constant(name: str) -> np.ndarray | None:
        return onnx.numpy_helper.to_array(init[name]) if name in init else None

    mul = only_reader(INPUT_NAME, "Mul")
    scale = None if mul is None else constant(mul.input[1])
    if scale is None or scale.size != 1:
        return False
    rescaled, chain = mul.output[0], [mul]
    if (add := only_reader(rescaled, "Add")) is not None:
        if add.input[0] != rescaled or (offset := constant(add.input[1])) is None or np.any(offset != 0):
            return False
        rescaled, chain = add.output[0], [mul, add]
    reshape = only_reader(rescaled, "Reshape")
    layer = reshape and only_reader(reshape.output[0], "Conv", "MatMul")
    if layer is None or reshape.input[0] != rescaled or layer.input[1] not in init or len(readers[layer.input[1]]) > 1:
        return False
    weight = init[layer.input[1]]
    weight.CopyFrom(onnx.numpy_helper.from_array((constant(weight.name) * scale).astype(np.float32), weight.name))
    reshape.input[0] = INPUT_NAME
    for node in chain:
        graph.node.remove(node)
    _prune(graph)
    return True


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nothing uses (repeatedly), then initializers nothing reads."""
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(out in used for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)


def check_static_shapes(proto: onnx.ModelProto) -> None:
    """Raise :class:`ShapeError` unless every shape is inferable with a symbolic batch, statically."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for one meaning
        raise ShapeError(f"shape inference fails with a symbolic batch ({type(exc).__name__}: {exc})") from None
    producer = {out: node.op_type for node in proto.graph.node for out in node.output}
    constants = {i.name for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Reshape" and node.input[1] not in constants:
            raise ShapeError(f"Reshape {node.name} takes its shape from a {producer.get(node.input[1], '?')} node "
                             "computed at run time, not a constant")
    out = inferred.graph.output[0].type.tensor_type.shape.dim
    if len(out) != 2 or out[0].dim_param != BATCH_AXIS or out[1].dim_value != 10:
        raise ShapeError("the output's shape does not infer to [batch, 10]")


def _renumber_generated_names(graph: onnx.GraphProto) -> None:
    """Replace tf2onnx's process-wide ``__N`` name counters by numbers in graph order.

    Without this, a second export in the same process names its nodes differently and the
    bytes differ; with it, the same checkpoint always gives the same file.
    """
    mapping: dict[str, str] = {}

    def canon(name: str) -> str:
        if name not in mapping:
            mapping[name] = _GENERATED.sub(f"__{len(mapping)}", name)
        return mapping[name]

    for tensor in graph.initializer:
        tensor.name = canon(tensor.name)
    for node in graph.node:
        node.name = canon(node.name)
        node.input[:] = [canon(n) for n in node.input]
        node.output[:] = [canon(n) for n in node.output]


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


def write_test_vectors(directory: Path, images: np.ndarray, probabilities: np.ndarray) -> None:
    """ONNX Model Zoo test vectors: serialized TensorProtos named after the graph's input and output."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, array, tensor_name in (("input_0.pb", images.astype(np.float32), INPUT_NAME),
                                     ("output_0.pb", probabilities.astype(np.float32), OUTPUT_NAME)):
        with atomic_path(directory / name) as tmp:
            tmp.write_bytes(onnx.numpy_helper.from_array(array, tensor_name).SerializeToString())


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _batchnorm_chains(graph: onnx.GraphProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto | None,
                                                             list[onnx.NodeProto]]]:
    """Unfolded BatchNorm as tf2onnx writes it: Mul(x, s) into one Add(., t) (none where t is all zeros), with what
    the chain feeds."""
    consumers, constants = _consumers(graph), {i.name for i in graph.initializer}
    chains = []
    for mul in graph.node:
        if mul.op_type != "Mul" or mul.input[1] not in constants:
            continue
        add = consumers.get(mul.output[0], [])
        add = add[0] if len(add) == 1 and add[0].op_type == "Add" and add[0].input[1] in constants else None
        chains.append((mul, add, consumers.get((add or mul).output[0], [])))
    return chains


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes that int8 would hurt, kept in float32: the classifier head, and unfolded BatchNorm.

    The head (the matmul feeding Softmax, and the Softmax) is tiny, but one int8 scale across logits
    spanning hundreds merges near-ties and flips predictions. BatchNorm after an activation stays a
    per-channel Mul+Add that cannot fold into the previous matmul; channels with tiny variance get
    large gains, so per-tensor int8 of its input or output loses them. The matmul it feeds stays
    float32 with it.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    chains = {mul.name: (add, fed) for mul, add, fed in _batchnorm_chains(model.graph)}
    keep: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type == "Softmax":
            keep += [n for n in (node, producer.get(node.input[0])) if n is not None]
        elif node.name in chains and (src := producer.get(node.input[0])) is not None and src.op_type == "Relu":
            add, fed = chains[node.name]
            keep += [node, *([add] if add else []), *(n for n in fed if n.op_type in ("Gemm", "MatMul"))]
    return list(dict.fromkeys(n.name for n in keep))


def fold_batchnorm(model: onnx.ModelProto) -> int:
    """Fold each unfolded BatchNorm that feeds one matmul into it: W' = diag(s) W, b' = b + t W; return how many.

    The matmul is a ``MatMul`` (with the ``Add`` of its bias, as tf2onnx writes a Dense) or a ``Gemm`` (as
    ``quant_pre_process`` fuses them). Exact in real arithmetic, one rounding apart in float32 (parity judges it);
    at batch 1 two elementwise passes fewer. Large gains then sit in the weights, where per-channel int8 may or may
    not absorb them, so int8 quantizes the unfolded graph and decides for itself.
    """
    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    readers = _consumers(graph)
    folded = 0
    for mul, add, fed in _batchnorm_chains(graph):
        matmul = fed[0] if len(fed) == 1 else None
        names = matmul and matmul.input[0] == (add or mul).output[0] and _weight_and_bias(matmul, readers, init)
        if not names or (add is not None and names[1] is None):
            continue  # not a matmul's input, or a shift with no bias to go to
        weight = onnx.numpy_helper.to_array(init[names[0]])
        scale, shift = (np.broadcast_to(onnx.numpy_helper.to_array(init[n.input[1]]).reshape(-1), weight.shape[:1])
                        if n else np.zeros(weight.shape[:1], np.float32) for n in (mul, add))
        init[names[0]].CopyFrom(onnx.numpy_helper.from_array((scale[:, None] * weight).astype(np.float32), names[0]))
        if add is not None:
            bias = onnx.numpy_helper.to_array(init[names[1]]) + exact_dot(shift, weight)
            init[names[1]].CopyFrom(onnx.numpy_helper.from_array(bias.astype(np.float32), names[1]))
            graph.node.remove(add)
        matmul.input[0] = mul.input[0]
        graph.node.remove(mul)
        folded += 1
    _prune(graph)
    return folded


def exact_dot(vector: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``vector @ matrix`` of float32 values, each sum exact (float32 products are exact in float64, ``math.fsum``
    adds them without rounding) and rounded once: the same bits on any CPU, whatever its BLAS adds first."""
    products = vector.astype(np.float64)[:, None] * matrix.astype(np.float64)
    return np.array([math.fsum(column) for column in products.T], np.float64)


def _weight_and_bias(node: onnx.NodeProto, readers: dict[str, list[onnx.NodeProto]],
                     init: dict[str, onnx.TensorProto]) -> tuple[str, str | None] | None:
    """The constant, unshared 2-D weight and bias (None if it has none) of a ``Gemm`` (not transposed or scaled) or
    of a ``MatMul`` (whose bias is its only reader's ``Add``); None for any other node."""
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    bias = readers.get(node.output[0], [])
    if node.op_type == "Gemm" and not attributes.get("transA") and not attributes.get("transB") \
            and attributes.get("alpha", 1.0) == attributes.get("beta", 1.0) == 1.0:
        names = (node.input[1], node.input[2] if len(node.input) > 2 and node.input[2] else None)
    elif node.op_type == "MatMul":
        has_bias = len(bias) == 1 and bias[0].op_type == "Add" and bias[0].input[0] == node.output[0]
        names = (node.input[1], bias[0].input[1] if has_bias else None)
    else:
        return None
    known = [n for n in names if n is not None]
    if not all(n in init and len(readers[n]) == 1 for n in known) or len(init[names[0]].dims) != 2:
        return None
    return names


def int8_candidates(model: onnx.ModelProto) -> list[str]:
    """The matmuls and convolutions int8 would run: those not kept in float32 by :func:`fp32_nodes`."""
    keep = set(fp32_nodes(model))
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv") and n.name not in keep]


def power_of_two_scales(quantized: onnx.ModelProto) -> dict:
    """``TensorQuantOverrides`` that round every scale of a calibrated QDQ model up to a power of two.

    With power-of-two scales every dequantized value, product and partial sum is exact in float32, so
    the specification's float QDQ arithmetic (and ``onnx.reference``) and a CPU's integer kernels round
    each requantization alike, in any summation order; other scales leave one-step differences at ties
    that grow through a CNN's layers. Rounding up keeps the calibrated range; zero points follow it.
    """
    init = {i.name: onnx.numpy_helper.to_array(i) for i in quantized.graph.initializer}
    overrides: dict[str, list[dict]] = {}
    for node in (n for n in quantized.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")):
        scale, zero = init[node.input[1]], init[node.input[2]]
        if node.op_type == "QuantizeLinear" and node.input[0] not in init:  # an activation
            lo, hi = np.iinfo(zero.dtype).min, np.iinfo(zero.dtype).max
            new = _power_of_two(float(scale))
            shifted = int(np.clip(lo + round((int(zero) - lo) * float(scale) / new), lo, hi))
            overrides[node.input[0]] = [{"scale": np.array(new, np.float32),
                                         "zero_point": np.array(shifted, zero.dtype)}]
        elif node.input[0].endswith("_quantized") and init[node.input[0]].dtype == np.int8:  # a weight
            channels = [{"scale": np.array(_power_of_two(float(v)), np.float32), "zero_point": np.array(0, np.int8)}
                        for v in np.atleast_1d(scale)]
            if len(channels) > 1:
                channels[0]["axis"] = next((a.i for a in node.attribute if a.name == "axis"), 1)
            overrides[node.input[0].removesuffix("_quantized")] = channels
    return overrides


def exact_first_conv(model: onnx.ModelProto) -> list[str]:
    """Run a CNN's first convolution (one input channel) in float32 on exact values; the names of the nodes to
    keep float32, up to its pooling.

    int8 cannot speed up a convolution over one channel (9 or 25 multiply-adds per output: measured slower
    than float32 on AVX2), yet it cost the small CNNs more than all their other layers. Kept float32 but
    on exact values it means the same everywhere: its weights, which already hold the x/255 rescale
    (:func:`fold_rescale`), are rounded to 7-bit multiples of a power of two per channel (bias to the same
    grid), so on raw integer pixels every product and sum is exact in float32, in any summation order. Changes
    ``model`` in place; returns [] (changing nothing) for any other graph.
    """
    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    consumers = _consumers(graph)
    nodes = list(graph.node)
    if len(nodes) < 2 or [n.op_type for n in nodes[:2]] != ["Reshape", "Conv"] or \
            nodes[0].input[0] != INPUT_NAME or nodes[1].input[1] not in init:
        return []
    reshape, conv = nodes[:2]
    weight = onnx.numpy_helper.to_array(init[conv.input[1]])
    if weight.shape[1] != 1 or conv.input[0] != reshape.output[0]:
        return []
    step = np.array([_power_of_two(float(np.abs(w).max()) / 63) or 1.0 for w in weight], np.float32)
    grid = step.reshape(-1, 1, 1, 1)
    init[conv.input[1]].CopyFrom(onnx.numpy_helper.from_array(
        (np.clip(np.round(weight / grid), -64, 63) * grid).astype(np.float32), conv.input[1]))
    if len(conv.input) > 2:
        bias = onnx.numpy_helper.to_array(init[conv.input[2]])
        init[conv.input[2]].CopyFrom(onnx.numpy_helper.from_array((np.round(bias / step) * step).astype(np.float32),
                                                                  conv.input[2]))
    head, node = [reshape, conv], conv
    while len(nxt := consumers.get(node.output[0], [])) == 1 and nxt[0].op_type in ("Relu", "MaxPool"):
        head.append(node := nxt[0])
    return [n.name for n in head]


def _power_of_two(scale: float) -> float:
    return float(2.0 ** np.ceil(np.log2(scale))) if scale > 0 else scale


def quantize_int8(fp32: Path | onnx.ModelProto, int8: Path, calibration: np.ndarray, check: np.ndarray,
                  check_labels: np.ndarray | None = None, *, float_first_conv: bool = True) -> dict:
    """Static QDQ int8 (per-channel 7-bit weights, power-of-two scales) of the float32 graph ``fp32`` as
    :func:`convert` makes it with ``fold_bn=False``, calibrated on ``calibration`` training images.

    BatchNorm is first folded into the matmuls; if the result agrees with float32 on fewer than
    ``INT8_MIN_AGREEMENT`` of the ``check`` training images (never test images), it is quantized
    again unfolded, with :func:`fp32_nodes` kept in float32. A CNN's first convolution stays float32
    (:func:`exact_first_conv`) unless ``float_first_conv`` is off. With ``check_labels``, while int8 is more
    than ``INT8_MAX_CHECK_LOSS`` less accurate than float32 on the check images, the layer whose return to
    float32 helps most returns to float32. Returns how it was done, or ``{"skipped": why}`` (writing nothing)
    when no layer is left for int8: a file would only add conversions.
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(np.array_split(calibration.astype(np.float32), max(1, len(calibration) // 100)))

        def get_next(self) -> dict | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    prepared = int8.with_name(f".{int8.stem}.prep.onnx")
    candidates: list[Path] = []  # every attempt's file, so that the best is kept rather than made again
    reference = predict_onnx(make_session(fp32), check).argmax(1)
    given = isinstance(fp32, onnx.ModelProto)  # quant_pre_process reads a file: a graph is written to one first
    source = int8.with_name(f".{int8.stem}.fp32.onnx") if given else Path(fp32)

    def attempt(model: onnx.ModelProto, folded: int, returned: list[str]) -> dict:
        candidate = int8.with_name(f".{int8.stem}.candidate{len(candidates)}.onnx")
        candidates.append(candidate)
        model = copy.deepcopy(model)
        keep = (exact_first_conv(model) if float_first_conv else []) + fp32_nodes(model) + returned

        def quantize(overrides: dict) -> None:
            quantize_static(copy.deepcopy(model), str(candidate), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=keep,
                            extra_options={"QDQDisableWeightAdjustForInt32Bias": True,
                                           "TensorQuantOverrides": overrides})

        quantize({})  # calibrates
        quantize(power_of_two_scales(onnx.load(str(candidate))))
        _tidy(candidate)
        predicted = predict_onnx(make_session(candidate), check).argmax(1)
        how = {"file": candidate, "batchnorm_folded": folded, "fp32_nodes": keep, "returned_to_fp32": returned,
               "check_images": len(check), "check_agreement": float((predicted == reference).mean())}
        if check_labels is not None:
            how["check_accuracy_delta"] = float((predicted == check_labels).mean() - (reference == check_labels).mean())
        return how

    def too_lossy(how: dict) -> bool:
        return how.get("check_accuracy_delta", 0.0) < -INT8_MAX_CHECK_LOSS

    try:
        if given:
            source.write_bytes(fp32.SerializeToString())
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        if not int8_candidates(model):
            return {"skipped": "the only matmul is the classifier head, which stays float32; "
                               "an int8 file would only add conversions"}
        how = attempt(model, folded, []) if (folded := fold_batchnorm(model)) else None
        if how is None or how["check_agreement"] < INT8_MIN_AGREEMENT:
            model = onnx.load(str(prepared))
            how = attempt(model, 0, [])
        while too_lossy(how):
            left = [n for n in int8_candidates(model) if n not in how["fp32_nodes"]]
            if len(left) <= 1:
                return {"skipped": f"int8 lost more than {100 * INT8_MAX_CHECK_LOSS:g} pp of accuracy on the check "
                                   "images unless every layer stayed float32"}
            trials = [attempt(model, how["batchnorm_folded"], how["returned_to_fp32"] + [name]) for name in left]
            how = max(trials, key=lambda trial: (trial["check_accuracy_delta"], trial["check_agreement"]))
        os.replace(how.pop("file"), int8)
        return how
    finally:
        for temporary in (source, prepared) if given else (prepared,):
            temporary.unlink(missing_ok=True)
        for candidate in candidates:
            candidate.unlink(missing_ok=True)


def _tidy(path: Path) -> None:
    """Make a quantized file portable: opset :data:`INT8_OPSET`, no unused initializers, no ``value_info`` shapes
    (their batch dimension conflicts with the input's), no opset-domain imports that no node uses."""
    proto = onnx.version_converter.convert_version(onnx.load(str(path)), INT8_OPSET)
    _prune(proto.graph)
    del proto.graph.value_info[:]
    used = {node.domain for node in proto.graph.node} | {""}
    for opset in [o for o in proto.opset_import if o.domain not in used]:
        proto.opset_import.remove(opset)
    _save(proto, path)


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


def _save(proto: onnx.ModelProto, path: Path) -> None:
    with atomic_path(path, suffix=".onnx") as tmp:
        tmp.write_bytes(proto.SerializeToString())


def check_options(*, opsets: list[int] | None = None, atol: float = ATOL, max_flips: int = 0,
                  quantize: str | None = None, seed: int = DEFAULT_SEED, calibration_seed: int = 0) -> list[int]:
    """Check export's options before any work; return the opsets to export (default: ``DEFAULT_OPSET``)."""
    opsets = check_opsets(opsets or [DEFAULT_OPSET])
    if quantize not in (None, "int8"):
        raise ExportError(f"unsupported --quantize {quantize!r}; the only choice is int8")
    positive_float("--atol", atol)
    non_negative_int("--max-flips", max_flips)
    check_seed(seed)
    check_seed(calibration_seed)
    return opsets


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
    opsets = check_options(opsets=opsets, atol=atol, max_flips=max_flips, quantize=quantize, seed=seed,
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
        path = out_dir / ("model.onnx" if i == 0 else f"model.opset{opset}.onnx")
        parity = compare(keras_probs, predict_onnx(make_session(proto), ds.x_test), ds.y_test,
                         atol=atol, max_flips=max_flips)
        results[str(opset)] = {"file": path.name, **asdict(parity)}
        if parity.passed:
            _save(proto, path)
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
        vectors = out_dir / "test_data_set_0"
        write_test_vectors(vectors, ds.x_test[:TEST_VECTOR_IMAGES], keras_probs[:TEST_VECTOR_IMAGES])
        files += [vectors / "input_0.pb", vectors / "output_0.pb"]
        if quantize == "int8":
            unfolded = convert(model, opsets[0], fold_bn=False)
            describe(unfolded, _onnx_card(card, ds, ckpt_sha, opsets[0]))
            int8 = record["int8"] = _int8(files[0], unfolded, out_dir / "model.int8.onnx", ds, calibration_seed,
                                          measure_speed)
            if int8["file"] and not int8["reference"]["passed"]:
                (out_dir / int8["file"]).unlink()
                int8["file"] = None
                failures.append(f"int8: onnxruntime differs from the ONNX reference implementation by "
                                f"{int8['reference']['max_abs_diff']:.2e}")
            files += [out_dir / "model.int8.onnx"] if int8["file"] else []
    write_record(out_dir / "export.json", record)
    if failures:
        raise ParityError(f"{card['name']} seed {seed}: ONNX does not match Keras within max |diff| <= {atol:g} and "
                          f"<= {max_flips} flips outside ties, or int8 its specification within {ATOL:g} "
                          f"({'; '.join(failures)}); see {out_dir / 'export.json'}")
    return ExportResult(card["name"], out_dir, files, record)


def calibration_images(ds: data.Dataset, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8's training images, drawn with ``seed``: those that calibrate it, and those that judge the result (with
    their labels)."""
    order = np.random.default_rng(seed).permutation(len(ds.x_train))
    calibration, check = (np.sort(part) for part in np.split(order[:CALIBRATION_IMAGES + CHECK_IMAGES],
                                                              [CALIBRATION_IMAGES]))
    return ds.x_train[calibration], ds.x_train[check], ds.y_train[check]


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
    _save(proto, int8)
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
