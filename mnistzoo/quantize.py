"""Static QDQ int8 quantization of a float32 graph: per-channel 7-bit weights, power-of-two scales, the first
convolution on exact values, BatchNorm folded where that keeps agreement, layers returned to float32 while int8
loses accuracy on training images (never test images), and the file tidied for any runtime.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import onnx

from . import data
from .contract import INPUT_NAME
from .graph import batchnorm_chains, consumers, fold_batchnorm, prune, save
from .runtime import make_session, predict_onnx

CALIBRATION_IMAGES = 1000
CHECK_IMAGES = 2000  # training images that judge an int8 graph
INT8_MIN_AGREEMENT = 0.997  # with float32 on the check images, for BatchNorm to fold
INT8_MAX_CHECK_LOSS = 0.003  # accuracy on the check images int8 may lose before layers return to float32
INT8_FORMAT = ("QDQ, per-channel int8 weights in 7 bits (reduce_range: no int16 saturation in CPU kernels without "
               "VNNI), int8 activations, power-of-two scales (integer kernels round as the specification does); "
               "BatchNorm folded into matmuls where that keeps agreement, else kept in float32 with the head; "
               "layers return to float32 while int8 loses more than "
               f"{100 * INT8_MAX_CHECK_LOSS:g} pp on the check images")
INT8_OPSET = 19  # the first whose QuantizeLinear/DequantizeLinear onnx.reference.ReferenceEvaluator implements


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes that int8 would hurt, kept in float32: the classifier head, and unfolded BatchNorm.

    The head (the matmul feeding Softmax, and the Softmax) is tiny, but one int8 scale across logits
    spanning hundreds merges near-ties and flips predictions. BatchNorm after an activation stays a
    per-channel Mul+Add that cannot fold into the previous matmul; channels with tiny variance get
    large gains, so per-tensor int8 of its input or output loses them. The matmul it feeds stays
    float32 with it.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    chains = {mul.name: (add, fed) for mul, add, fed in batchnorm_chains(model.graph)}
    keep: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type == "Softmax":
            keep += [n for n in (node, producer.get(node.input[0])) if n is not None]
        elif node.name in chains and (src := producer.get(node.input[0])) is not None and src.op_type == "Relu":
            add, fed = chains[node.name]
            keep += [node, *([add] if add else []), *(n for n in fed if n.op_type in ("Gemm", "MatMul"))]
    return list(dict.fromkeys(n.name for n in keep))


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
    readers = consumers(graph)
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
    while len(nxt := readers.get(node.output[0], [])) == 1 and nxt[0].op_type in ("Relu", "MaxPool"):
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
    prune(proto.graph)
    del proto.graph.value_info[:]
    used = {node.domain for node in proto.graph.node} | {""}
    for opset in [o for o in proto.opset_import if o.domain not in used]:
        proto.opset_import.remove(opset)
    save(proto, path)


def calibration_images(ds: data.Dataset, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8's training images, drawn with ``seed``: those that calibrate it, and those that judge the result (with
    their labels)."""
    order = np.random.default_rng(seed).permutation(len(ds.x_train))
    calibration, check = (np.sort(part) for part in np.split(order[:CALIBRATION_IMAGES + CHECK_IMAGES],
                                                              [CALIBRATION_IMAGES]))
    return ds.x_train[calibration], ds.x_train[check], ds.y_train[check]
