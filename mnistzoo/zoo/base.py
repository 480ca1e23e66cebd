"""The zoo's model base class and the small builder that turns catalogue notation into Keras layers.

A model's hidden stack is written in the catalogue's own notation, one token per layer:

    D<n>[@<s>]  Dense(n) with the model's activation; ``@s`` = RandomNormal(0, s) for this layer
    C<n>        Conv2D(n, kernel x kernel, stride 1, relu, the model's padding)
    P  | Ps     MaxPooling2D(2x2, stride 2), padding valid | same
    DO[<r>]     Dropout(r), r = 0.5 when omitted
    BN          BatchNormalization() with default arguments
    F           Flatten

Every model shares one input contract: ``image`` float32 (batch, 28, 28) of raw 0-255 pixels,
rescaled and reshaped inside the model by parameter-free layers, and ``probabilities``
float32 (batch, 10) out of a final Dense(10, softmax).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..contract import INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    import keras

L2_REG = 1e-5


@dataclass(frozen=True)
class Token:
    """One layer of the notation: its kind and Keras layer name, with what that kind needs."""

    kind: str  # dense, conv, pool, dropout, batchnorm or flatten
    name: str  # dense_1, conv_2, ...: the Keras layer's name
    units: int = 0  # Dense units or Conv2D filters
    stddev: float | None = None  # D<n>@<s>: this Dense layer's RandomNormal stddev
    rate: float = 0.0  # Dropout rate
    same: bool = False  # Ps: pooling with 'same' padding


def parse(spec: str) -> list[Token]:
    """The tokens of a layer string (see the module docstring), each named as its Keras layer is."""
    counts: Counter[str] = Counter()

    def name(kind: str) -> str:
        counts[kind] += 1
        return "flatten" if kind == "flatten" else f"{kind}_{counts[kind]}"

    tokens = []
    for token in spec.split():
        if token.startswith("DO"):
            tokens.append(Token("dropout", name("dropout"), rate=float(token[2:] or 0.5)))
        elif token == "BN":
            tokens.append(Token("batchnorm", name("batchnorm")))
        elif token in ("P", "Ps"):
            tokens.append(Token("pool", name("pool"), same=token == "Ps"))
        elif token == "F":
            tokens.append(Token("flatten", name("flatten")))
        elif token[0] == "C" and token[1:].isdigit():
            tokens.append(Token("conv", name("conv"), units=int(token[1:])))
        elif token[0] == "D" and token[1:].split("@")[0].isdigit():
            units, _, own_std = token[1:].partition("@")
            tokens.append(Token("dense", name("dense"), units=int(units), stddev=float(own_std) if own_std else None))
        else:
            raise ValueError(f"unknown layer token {token!r} in {spec!r}")
    return tokens


def _init(stddev: float | None, reg: bool) -> str | keras.initializers.Initializer:
    import keras

    if reg:
        return "he_normal"
    return "glorot_uniform" if stddev is None else keras.initializers.RandomNormal(0.0, stddev)


def stack(spec: str, *, activation: str = "relu", kernel: int = 3, padding: str = "valid",
          reg: bool = False, stddev: float | None = None) -> list[keras.layers.Layer]:
    """Keras layers for a token string (see the module docstring); ``reg`` applies REG to C and D."""
    from .. import _tf  # noqa: F401 - quiet TensorFlow start-up
    import keras

    regularizer = keras.regularizers.L2(L2_REG) if reg else None
    layers: list[keras.layers.Layer] = []
    for t in parse(spec):
        if t.kind == "dropout":
            layers.append(keras.layers.Dropout(t.rate, name=t.name))
        elif t.kind == "batchnorm":
            layers.append(keras.layers.BatchNormalization(name=t.name))
        elif t.kind == "pool":
            layers.append(keras.layers.MaxPooling2D(2, 2, padding="same" if t.same else "valid", name=t.name))
        elif t.kind == "flatten":
            layers.append(keras.layers.Flatten(name=t.name))
        elif t.kind == "conv":
            layers.append(keras.layers.Conv2D(t.units, kernel, padding=padding, activation="relu",
                                              kernel_initializer=_init(None, reg),
                                              kernel_regularizer=regularizer, name=t.name))
        else:
            layers.append(keras.layers.Dense(t.units, activation=activation,
                                             kernel_initializer=_init(stddev if t.stddev is None else t.stddev, reg),
                                             kernel_regularizer=regularizer, name=t.name))
    return layers


class ZooModel:
    """One catalogue model: its id, version, study and architecture. ``build()`` makes the Keras model."""

    id: ClassVar[str]
    study: ClassVar[str]
    version: ClassVar[int] = 1
    layers: ClassVar[str] = ""  # the hidden stack, in the notation above
    image_input: ClassVar[bool] = False  # True: (28, 28, 1) for convolutions; False: 784 flattened
    activation: ClassVar[str] = "relu"
    kernel: ClassVar[int] = 3
    padding: ClassVar[str] = "valid"
    reg: ClassVar[bool] = False
    stddev: ClassVar[float | None] = None  # hidden Dense init: None = glorot_uniform, else RandomNormal(0, s)
    output_stddev: ClassVar[float | None] = None  # the output layer's init, likewise (never REG)

    @property
    def name(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def spec(self):  # noqa: ANN201 - avoids an import cycle with specs
        """This model's recipe, provenance and reference results from zoo_specs/."""
        from .specs import get_spec

        return get_spec(self.id, self.version)

    def build(self) -> keras.Model:
        """A fresh, untrained Keras model with the zoo's input contract (imports TensorFlow)."""
        from .. import _tf  # noqa: F401 - quiet TensorFlow start-up
        import keras

        image = keras.Input((28, 28), dtype="float32", name=INPUT_NAME)
        x = keras.layers.Rescaling(1.0 / 255, name="rescale")(image)
        shape = keras.layers.Reshape((28, 28, 1), name="add_channel") if self.image_input \
            else keras.layers.Flatten(name="flatten_input")
        x = shape(x)
        for layer in stack(self.layers, activation=self.activation, kernel=self.kernel,
                           padding=self.padding, reg=self.reg, stddev=self.stddev):
            x = layer(x)
        probabilities = keras.layers.Dense(10, activation="softmax", name=OUTPUT_NAME,
                                           kernel_initializer=_init(self.output_stddev, False))(x)
        return keras.Model(image, probabilities, name=f"{self.id}_v{self.version}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.study})>"
