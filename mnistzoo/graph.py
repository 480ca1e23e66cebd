"""ONNX graph surgery on tf2onnx's output: static reshapes, the input's rescale and BatchNorm folded into weights,
BatchNorm's constants pinned to correctly rounded values, tf2onnx's name counters renumbered, and the static-shape
check. Every change is exact in real arithmetic and one rounding apart in float32 (parity judges it); none depends
on the CPU it runs on.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ._io import atomic_path
from .contract import BATCH_AXIS, INPUT_NAME
from .errors import ShapeError, VerificationError

_GENERATED = re.compile(r"__\d+")


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
    readers = consumers(proto.graph)
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
    prune(proto.graph)
    return changed


def batchnorm_constants(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode BatchNorm as ``x * s + t``, computed as TensorFlow does (``s = rsqrt(var + eps) * gamma``,
    ``t = beta - mean * s``) but with every operation correctly rounded, so the same weights give the same bits on
    any CPU (TensorFlow's rsqrt is an approximation whose last bits vary between processors)."""
    gamma, beta, mean, var = (np.asarray(w, np.float32) for w in layer.get_weights())
    inverse = (1.0 / np.sqrt((var + np.float32(layer.epsilon)).astype(np.float64))).astype(np.float32)
    scale = (inverse * gamma).astype(np.float32)
    return scale, (beta - mean * scale).astype(np.float32)


def pin_batchnorm(proto: onnx.ModelProto, model: Any) -> int:
    """Replace the ``Mul``/``Add`` constants that tf2onnx computed for each BatchNorm by
    :func:`batchnorm_constants` of that layer (at most a few ulps apart); return how many layers were pinned.

    Raises :class:`VerificationError` when a BatchNorm layer's constants are not found in the graph: its file would
    then depend on the exporting CPU's arithmetic.
    """
    layers = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]  # a Keras model
    init = {i.name: i for i in proto.graph.initializer}
    chains = batchnorm_chains(proto.graph)
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
    readers = consumers(graph)

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
    prune(graph)
    return True


def prune(graph: onnx.GraphProto) -> None:
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


def renumber_generated_names(graph: onnx.GraphProto) -> None:
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


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def batchnorm_chains(graph: onnx.GraphProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto | None,
                                                             list[onnx.NodeProto]]]:
    """Unfolded BatchNorm as tf2onnx writes it: Mul(x, s) into one Add(., t) (none where t is all zeros), with what
    the chain feeds."""
    readers, constants = consumers(graph), {i.name for i in graph.initializer}
    chains = []
    for mul in graph.node:
        if mul.op_type != "Mul" or mul.input[1] not in constants:
            continue
        add = readers.get(mul.output[0], [])
        add = add[0] if len(add) == 1 and add[0].op_type == "Add" and add[0].input[1] in constants else None
        chains.append((mul, add, readers.get((add or mul).output[0], [])))
    return chains


def fold_batchnorm(model: onnx.ModelProto) -> int:
    """Fold each unfolded BatchNorm that feeds one matmul into it: W' = diag(s) W, b' = b + t W; return how many.

    The matmul is a ``MatMul`` (with the ``Add`` of its bias, as tf2onnx writes a Dense) or a ``Gemm`` (as
    ``quant_pre_process`` fuses them). Exact in real arithmetic, one rounding apart in float32 (parity judges it);
    at batch 1 two elementwise passes fewer. Large gains then sit in the weights, where per-channel int8 may or may
    not absorb them, so int8 quantizes the unfolded graph and decides for itself.
    """
    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    readers = consumers(graph)
    folded = 0
    for mul, add, fed in batchnorm_chains(graph):
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
    prune(graph)
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


def save(proto: onnx.ModelProto, path: Path) -> None:
    with atomic_path(path, suffix=".onnx") as tmp:
        tmp.write_bytes(proto.SerializeToString())
