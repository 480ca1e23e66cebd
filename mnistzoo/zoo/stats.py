"""Parameter counts, multiply-accumulates and the layer table of a zoo model, computed from its notation.

No model is built (nothing here imports TensorFlow); the tests check every figure against the built
Keras models, so the two cannot drift.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .base import OUTPUT_NAME, Token, ZooModel, parse


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    output_shape: tuple
    params: int


@dataclass(frozen=True)
class ModelStats:
    params_total: int
    params_trainable: int
    params_non_trainable: int
    macs: int
    layers: tuple[LayerRow, ...]

    def to_dict(self, with_layers: bool = False) -> dict:
        d = asdict(self)
        if not with_layers:
            d.pop("layers")
        return d


def _layer(t: Token, shape: tuple[int, ...], model: ZooModel) -> tuple[str, tuple[int, ...], int, int, int]:
    """(Keras type, output shape, trainable params, non-trainable params, MACs) of one token after ``shape``."""
    if t.kind == "dense":
        (n_in,) = shape
        return "Dense", (t.units,), n_in * t.units + t.units, 0, n_in * t.units
    if t.kind == "conv":
        h, w, c = shape
        k = model.kernel
        oh, ow = (h, w) if model.padding == "same" else (h - k + 1, w - k + 1)
        return "Conv2D", (oh, ow, t.units), k * k * c * t.units + t.units, 0, oh * ow * k * k * c * t.units
    if t.kind == "pool":
        h, w, c = shape
        return "MaxPooling2D", ((-(-h // 2), -(-w // 2)) if t.same else (h // 2, w // 2)) + (c,), 0, 0, 0
    if t.kind == "batchnorm":
        return "BatchNormalization", shape, 2 * shape[-1], 2 * shape[-1], 0  # gamma, beta | moving mean, var
    if t.kind == "flatten":
        return "Flatten", (math.prod(shape),), 0, 0, 0
    return "Dropout", shape, 0, 0, 0


def model_stats(model: ZooModel) -> ModelStats:
    """Totals, MACs per image and a (name, type, output shape, params) row per layer, as Keras reports them."""
    shape: tuple[int, ...] = (28, 28, 1) if model.image_input else (784,)
    rows = [LayerRow("image", "InputLayer", (None, 28, 28), 0), LayerRow("rescale", "Rescaling", (None, 28, 28), 0),
            LayerRow("add_channel", "Reshape", (None, *shape), 0) if model.image_input
            else LayerRow("flatten_input", "Flatten", (None, *shape), 0)]
    trainable = frozen = macs = 0
    for t in [*parse(model.layers), Token("dense", OUTPUT_NAME, units=10)]:
        kind, shape, n_train, n_frozen, n_macs = _layer(t, shape, model)
        rows.append(LayerRow(t.name, kind, (None, *shape), n_train + n_frozen))
        trainable, frozen, macs = trainable + n_train, frozen + n_frozen, macs + n_macs
    return ModelStats(trainable + frozen, trainable, frozen, macs, tuple(rows))


def hidden_dense_layers(model: ZooModel) -> int:
    """How many hidden Dense layers the model has (its depth in the depth study)."""
    return sum(t.kind == "dense" for t in parse(model.layers))


def has_layers(model: ZooModel, *kinds: str) -> bool:
    """Whether any hidden layer is of one of ``kinds`` (the notation's: dense, conv, pool, dropout, batchnorm)."""
    return any(t.kind in kinds for t in parse(model.layers))


def architecture(model: ZooModel) -> dict[str, str]:
    """The cnn notebook's descriptive columns, read off the notation."""
    tokens = parse(model.layers)
    convs = [t for t in tokens if t.kind == "conv"]
    pools = [t for t in tokens if t.kind == "pool"]
    yes = {True: "yes", False: "no"}
    return {"#ConvNets": str(len(convs)),
            "#Kernels": f"{model.kernel}x{model.kernel}" if convs else "-",
            "Padding": model.padding if convs else "-",
            "Stride (pool)": "2x2" if pools else "-",
            "Dropout": yes[has_layers(model, "dropout")],
            "BatchNormalization": yes[has_layers(model, "batchnorm")],
            "Regularization": yes[model.reg]}
