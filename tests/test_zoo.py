"""The zoo: every catalogue model builds with the catalogue's parameter counts and the shared contract."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mnistzoo
from mnistzoo.errors import MnistZooError
from mnistzoo.zoo import INPUT_NAME, OUTPUT_NAME, get_model, list_models, studies
from mnistzoo.zoo.specs import all_specs
from mnistzoo.zoo.stats import LayerRow, ModelStats, architecture, hidden_dense_layers, model_stats

# (total, non-trainable) parameters, as ../shared/catalogue.md gives them, one id at a time.
CATALOGUE_PARAMS = {
    "mlp2": (1_333_770, 0),
    "mlp2_dropout_bn": (1_335_818, 1_024),
    "mlp3": (567_434, 0),
    "mlp3_dropout_bn": (568_458, 512),
    "mlp5": (4_396_170, 0),
    "mlp5_dropout_bn": (4_401_802, 2_816),
    "cnn2_k3": (232_650, 0),
    "cnn2_k5": (192_202, 0),
    "cnn2_k3_reg": (233_418, 384),
    "cnn2_k5_reg": (192_970, 384),
    "cnn3_k3": (50_410, 0),
    "cnn3_k5": (149_226, 0),
    "cnn3_k3_reg": (51_178, 384),
    "cnn5_k5_reg_narrow": (168_490, 384),
    "cnn5_k3": (125_034, 384),
    "cnn5_k5": (322_154, 384),
    "cnn5_k3_reg": (125_034, 384),
    "cnn5_k5_reg": (322_154, 384),
    "cnn7_k3_reg": (367_818, 384),
    "cnn7_k5_reg": (646_858, 384),
    "mlp3_sigmoid_sgd": (476_490, 0),
    "mlp3_relu_sgd": (476_490, 0),
    "mlp3_relu_dropout_sgd": (476_490, 0),
    "mlp3_relu_dropout_bn_sgd": (477_002, 256),
    "mlp3_relu_dropout2_bn_sgd": (477_002, 256),
    "mlp3_tanh_dropout_bn_sgd": (477_002, 256),
    "mlp3_sigmoid_dropout_bn_sgd": (477_002, 256),
    "mlp2_relu_dropout_adam": (468_874, 0),
    "mlp2_relu_dropout2_adam": (468_874, 0),
    "fashion_mlp2": (164_013, 0),
    "fashion_mlp3_dropout": (348_860, 0),
    "fashion_mlp2_bn": (164_993, 490),
    "fashion_mlp2_bn_dropout": (164_993, 490),
    "softmax_sgd": (7_850, 0),
    "mlp2_he": (524_922, 0),
    "mlp3_he_bn_dropout": (690_255, 2_060),
    "mlp5_he_bn_dropout": (1_284_547, 4_186),
}


def test_the_zoo_is_the_catalogue() -> None:
    assert list_models() == list(CATALOGUE_PARAMS)
    assert studies() == ["depth", "cnn", "activations", "fashion", "init"]


def test_classes_and_specs_agree() -> None:
    specs = all_specs()
    assert {model_id for model_id, _ in specs} == set(list_models())
    for (model_id, _), spec in specs.items():
        model = get_model(model_id)
        assert (spec.version, spec.study) == (model.version, model.study), model_id


def keras_stats(model: keras.Model) -> ModelStats:
    """What Keras itself reports for a built model: totals, MACs of Dense and Conv2D, and the layer table."""
    def macs(layer: keras.layers.Layer) -> int:
        if isinstance(layer, keras.layers.Dense):
            return int(np.prod(layer.kernel.shape))
        if isinstance(layer, keras.layers.Conv2D):
            return int(np.prod(layer.output.shape[1:3]) * np.prod(layer.kernel.shape))
        return 0

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    rows = tuple(LayerRow(layer.name, type(layer).__name__, tuple(layer.output.shape), layer.count_params())
                 for layer in model.layers)
    total = model.count_params()
    return ModelStats(total, trainable, total - trainable, sum(macs(layer) for layer in model.layers), rows)


def keras_architecture(model: keras.Model) -> dict[str, str]:
    """The cnn notebook's descriptive columns as Keras' built layers say them."""
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    kinds = {type(layer).__name__ for layer in model.layers}
    yes = {True: "yes", False: "no"}
    return {"#ConvNets": str(len(convs)),
            "#Kernels": "x".join(map(str, convs[0].kernel_size)) if convs else "-",
            "Padding": "/".join(sorted({c.padding for c in convs})) or "-",
            "Stride (pool)": "x".join(map(str, pools[0].pool_size)) if pools else "-",
            "Dropout": yes["Dropout" in kinds], "BatchNormalization": yes["BatchNormalization" in kinds],
            "Regularization": yes[any(getattr(layer, "kernel_regularizer", None) is not None
                                      for layer in model.layers)]}


@pytest.mark.parametrize("model_id", list(CATALOGUE_PARAMS))
def test_parameter_counts_match_catalogue(model_id: str) -> None:
    total, non_trainable = CATALOGUE_PARAMS[model_id]
    model = get_model(model_id)
    stats = model_stats(model)
    built = model.build()
    assert stats == keras_stats(built)  # the notation's figures are the built model's
    assert architecture(model) == keras_architecture(built)  # and so are the report's descriptive columns
    assert hidden_dense_layers(model) == sum(isinstance(layer, keras.layers.Dense) for layer in built.layers) - 1
    assert stats.params_total == total
    assert stats.params_non_trainable == non_trainable
    assert stats.params_trainable == total - non_trainable


@pytest.mark.parametrize("model_id", ["mlp2_dropout_bn", "cnn3_k5", "softmax_sgd", "mlp5_he_bn_dropout"])
def test_contract_and_forward_pass_on_raw_pixels(model_id: str) -> None:
    model = get_model(model_id).build()
    assert [t.name for t in model.inputs] == [INPUT_NAME]
    assert tuple(model.inputs[0].shape) == (None, 28, 28) and model.inputs[0].dtype == "float32"
    assert model.output_names == [OUTPUT_NAME]
    assert tuple(model.outputs[0].shape) == (None, 10)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.float32)
    probs = np.asarray(model(images, training=False))
    assert probs.shape == (5, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(probs >= 0)


def test_preprocessing_is_parameter_free_and_inside_the_model() -> None:
    model = get_model("cnn2_k3").build()
    assert [layer.name for layer in model.layers[:3]] == ["image", "rescale", "add_channel"]
    assert all(layer.count_params() == 0 for layer in model.layers[:3])
    assert get_model("mlp3").build().layers[2].name == "flatten_input"


def test_bn_and_dropout_differ_between_training_and_inference() -> None:
    model = get_model("mlp3_dropout_bn").build()
    images = np.random.default_rng(1).integers(0, 256, (16, 28, 28)).astype(np.float32)
    infer_a = np.asarray(model(images, training=False))
    infer_b = np.asarray(model(images, training=False))
    train = np.asarray(model(images, training=True))
    np.testing.assert_array_equal(infer_a, infer_b)
    assert np.abs(train - infer_a).max() > 1e-3


def test_macs_equal_hand_computed_values() -> None:
    # mlp2: 784*1024 + 1024*512 + 512*10
    assert model_stats(get_model("mlp2")).macs == 784 * 1024 + 1024 * 512 + 512 * 10
    # cnn2_k3: conv 26x26x(3*3*1*32), pool -> 13, conv 11x11x(3*3*32*64), pool -> 5, 1600*128 + 128*64 + 64*10
    expected = 26 * 26 * 9 * 32 + 11 * 11 * 9 * 32 * 64 + 1600 * 128 + 128 * 64 + 64 * 10
    assert model_stats(get_model("cnn2_k3")).macs == expected == 2_638_592


def test_layers_follow_the_catalogue_in_detail() -> None:
    import keras

    m = get_model("cnn5_k5_reg_narrow").build()
    pools = [layer.padding for layer in m.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert pools == ["same", "same", "same", "valid", "same"]
    conv = m.get_layer("conv_1")
    assert conv.kernel_size == (5, 5) and conv.padding == "same"
    assert conv.kernel_regularizer.l2 == pytest.approx(1e-5)
    assert m.get_layer(OUTPUT_NAME).kernel_regularizer is None

    he = get_model("mlp3_he_bn_dropout").build()
    assert he.get_layer("dense_2").kernel_initializer.stddev == pytest.approx(0.078)
    depth = get_model("mlp2_dropout_bn").build()
    assert depth.get_layer("dropout_1").rate == pytest.approx(0.3)
    assert type(depth.get_layer(OUTPUT_NAME).kernel_initializer).__name__ == "GlorotUniform"
    assert get_model("mlp2").build().get_layer(OUTPUT_NAME).kernel_initializer.stddev == pytest.approx(0.05)


def test_registry_api() -> None:
    assert mnistzoo.list_models("cnn5*") == ["cnn5_k5_reg_narrow", "cnn5_k3", "cnn5_k5", "cnn5_k3_reg", "cnn5_k5_reg"]
    assert mnistzoo.list_models(study="fashion") == [m for m in CATALOGUE_PARAMS if m.startswith("fashion")]
    assert mnistzoo.list_models("*_he*", study="init") == ["mlp2_he", "mlp3_he_bn_dropout", "mlp5_he_bn_dropout"]
    model = mnistzoo.get_model("mlp3_dropout_bn@1")
    assert (model.id, model.version, model.name) == ("mlp3_dropout_bn", 1, "mlp3_dropout_bn@1")
    assert model.spec.recipe.epochs == 15 and model.spec.provenance.variable == "model_2_b"


def test_registry_errors() -> None:
    with pytest.raises(MnistZooError, match="unknown model 'mlp3_dropot_bn'; closest: mlp3_dropout_bn"):
        get_model("mlp3_dropot_bn")
    with pytest.raises(MnistZooError, match="has no version 7; available: mlp3@1"):
        get_model("mlp3@7")
    with pytest.raises(MnistZooError, match="must be a number"):
        get_model("mlp3@latest")


def test_recipes_follow_the_catalogue() -> None:
    specs = {model_id: spec for (model_id, _), spec in all_specs().items()}
    assert specs["fashion_mlp2"].recipe.validation == "split"
    assert specs["fashion_mlp2"].recipe.validation_images == 10_000
    assert specs["fashion_mlp2"].recipe.batch_size == 8
    assert specs["softmax_sgd"].recipe.optimizer == "sgd" and specs["mlp2_he"].recipe.optimizer == "adam"
    assert specs["mlp2_relu_dropout_adam"].recipe.optimizer == "adam"
    assert specs["mlp3_relu_sgd"].recipe.learning_rate == 0.01
    assert {s.recipe.epochs for s in specs.values() if s.study == "cnn"} == {25}
    assert specs["mlp3_dropout_bn"].reference.train_accuracy is None
