"""Parameter counts, multiply-accumulates and the layer table of a built model."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .. import _tf  # noqa: F401 - quiet TensorFlow start-up
import keras
import numpy as np


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


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-accumulates per image of a Dense or Conv2D layer (others count as 0)."""
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(layer.kernel.shape))
    if isinstance(layer, keras.layers.Conv2D):
        _, height, width, _ = layer.output.shape
        return int(height * width * np.prod(layer.kernel.shape))
    return 0


def model_stats(model: keras.Model) -> ModelStats:
    """Totals, MACs per image and a (name, type, output shape, params) row per layer."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = model.count_params()
    rows = tuple(LayerRow(layer.name, type(layer).__name__, tuple(layer.output.shape), layer.count_params())
                 for layer in model.layers)
    return ModelStats(total, trainable, total - trainable, sum(layer_macs(layer) for layer in model.layers), rows)
