"""The 37 catalogue models, one class per id, in the catalogue's notation (see ``base``).

Architecture lives here; recipes, provenance and reference results live in ``zoo_specs/``.
"""

from __future__ import annotations

from .base import ZooModel
from .registry import register_model

PLAIN_HEAD = "F D128 D64"
BN_HEAD = "F D128 BN DO D64 BN DO"


# --- Study `depth` (notebook 000): MLP depth, with and without Dropout+BN; RandomNormal(0.05) --------------

class DepthMLP(ZooModel):
    study = "depth"
    stddev = 0.05
    output_stddev = 0.05


@register_model
class Mlp2(DepthMLP):
    id = "mlp2"
    layers = "D1024 D512"


@register_model
class Mlp2DropoutBn(DepthMLP):
    id = "mlp2_dropout_bn"
    layers = "D1024 DO0.3 D512 BN"
    output_stddev = None  # the notebook left this output layer at Keras' default init


@register_model
class Mlp3(DepthMLP):
    id = "mlp3"
    layers = "D512 D256 D128"


@register_model
class Mlp3DropoutBn(DepthMLP):
    id = "mlp3_dropout_bn"
    layers = "D512 DO D256 BN D128"


@register_model
class Mlp5(DepthMLP):
    id = "mlp5"
    layers = "D2048 D1024 D512 D256 D128"


@register_model
class Mlp5DropoutBn(DepthMLP):
    id = "mlp5_dropout_bn"
    layers = "D2048 DO D1024 BN D512 DO D256 BN D128 DO BN"


# --- Study `cnn` (notebook 001): CNN depth, kernel size and regularisation -------------------------------

class CNN(ZooModel):
    study = "cnn"
    image_input = True


@register_model
class Cnn2K3(CNN):
    id = "cnn2_k3"
    layers = "C32 P C64 P " + PLAIN_HEAD


@register_model
class Cnn2K5(Cnn2K3):
    id = "cnn2_k5"
    kernel = 5


@register_model
class Cnn2K3Reg(CNN):
    id = "cnn2_k3_reg"
    reg = True
    layers = "C32 P DO C64 P DO " + BN_HEAD


@register_model
class Cnn2K5Reg(Cnn2K3Reg):
    id = "cnn2_k5_reg"
    kernel = 5


@register_model
class Cnn3K3(CNN):
    id = "cnn3_k3"
    layers = "C32 P C64 P C32 P " + PLAIN_HEAD


@register_model
class Cnn3K5(Cnn3K3):
    id = "cnn3_k5"
    kernel = 5
    padding = "same"


@register_model
class Cnn3K3Reg(CNN):
    id = "cnn3_k3_reg"
    reg = True
    layers = "C32 P DO C64 P DO C32 P DO " + BN_HEAD


@register_model
class Cnn5K5RegNarrow(CNN):
    id = "cnn5_k5_reg_narrow"  # the notebook's "3 ConvNet" 5x5 model (m34): five convs ran
    kernel = 5
    padding = "same"
    reg = True
    layers = "C32 Ps DO C64 Ps DO C32 Ps DO C32 P DO C32 Ps DO " + BN_HEAD


@register_model
class Cnn5K3(CNN):
    id = "cnn5_k3"
    padding = "same"
    layers = "C32 Ps C64 Ps C64 Ps C64 Ps C32 Ps " + BN_HEAD  # BN+DO head as run, despite the table


@register_model
class Cnn5K5(Cnn5K3):
    id = "cnn5_k5"
    kernel = 5


@register_model
class Cnn5K3Reg(CNN):
    id = "cnn5_k3_reg"
    padding = "same"
    reg = True
    layers = "C32 Ps DO C64 Ps DO C64 Ps DO C64 Ps DO C32 Ps DO " + BN_HEAD


@register_model
class Cnn5K5Reg(Cnn5K3Reg):
    id = "cnn5_k5_reg"
    kernel = 5


@register_model
class Cnn7K3Reg(CNN):
    id = "cnn7_k3_reg"
    padding = "same"
    reg = True
    layers = "C32 DO C64 DO C64 Ps DO C64 DO C64 DO C32 DO Ps C32 DO " + BN_HEAD


@register_model
class Cnn7K5Reg(Cnn7K3Reg):
    id = "cnn7_k5_reg"
    kernel = 5


# --- Study `activations` (notebook 002): activation and optimiser; glorot init ---------------------------

class ActivationsMLP(ZooModel):
    study = "activations"


@register_model
class Mlp3SigmoidSgd(ActivationsMLP):
    id = "mlp3_sigmoid_sgd"
    activation = "sigmoid"
    layers = "D512 D128 D64"


@register_model
class Mlp3ReluSgd(ActivationsMLP):
    id = "mlp3_relu_sgd"
    layers = "D512 D128 D64"


@register_model
class Mlp3ReluDropoutSgd(ActivationsMLP):
    id = "mlp3_relu_dropout_sgd"
    layers = "D512 DO0.25 D128 D64 DO0.25"


@register_model
class Mlp3ReluDropoutBnSgd(ActivationsMLP):
    id = "mlp3_relu_dropout_bn_sgd"
    layers = "D512 DO0.25 D128 BN D64"


@register_model
class Mlp3ReluDropout2BnSgd(ActivationsMLP):
    id = "mlp3_relu_dropout2_bn_sgd"
    layers = "D512 DO0.25 D128 DO0.5 BN D64"


@register_model
class Mlp3TanhDropoutBnSgd(Mlp3ReluDropoutBnSgd):
    id = "mlp3_tanh_dropout_bn_sgd"
    activation = "tanh"


@register_model
class Mlp3SigmoidDropoutBnSgd(Mlp3ReluDropoutBnSgd):
    id = "mlp3_sigmoid_dropout_bn_sgd"
    activation = "sigmoid"


@register_model
class Mlp2ReluDropoutAdam(ActivationsMLP):
    id = "mlp2_relu_dropout_adam"
    layers = "D512 DO0.25 D128"


@register_model
class Mlp2ReluDropout2Adam(ActivationsMLP):
    id = "mlp2_relu_dropout2_adam"
    layers = "D512 DO0.25 D128 DO0.5"


# --- Study `fashion` (notebook 003): vanilla MLP vs dropout vs BN on Fashion-MNIST -----------------------

class FashionMLP(ZooModel):
    study = "fashion"


@register_model
class FashionMlp2(FashionMLP):
    id = "fashion_mlp2"
    layers = "D196 D49"


@register_model
class FashionMlp3Dropout(FashionMLP):
    id = "fashion_mlp3_dropout"
    layers = "D392 DO D98 DO D24 DO"


@register_model
class FashionMlp2Bn(FashionMLP):
    id = "fashion_mlp2_bn"
    layers = "D196 BN D49 BN"


@register_model
class FashionMlp2BnDropout(FashionMLP):
    id = "fashion_mlp2_bn_dropout"
    layers = "D196 DO BN D49 DO BN"


# --- Study `init` (notebook 004): softmax baseline and He-style RandomNormal initialisation -------------

class InitMLP(ZooModel):
    study = "init"


@register_model
class SoftmaxSgd(InitMLP):
    id = "softmax_sgd"
    layers = ""


@register_model
class Mlp2He(InitMLP):
    id = "mlp2_he"
    layers = "D556@0.1 D156@0.1"


@register_model
class Mlp3HeBnDropout(InitMLP):
    id = "mlp3_he_bn_dropout"
    layers = "D580@0.058 BN DO D325@0.078 BN DO D125@0.126 BN DO"


@register_model
class Mlp5HeBnDropout(InitMLP):
    id = "mlp5_he_bn_dropout"
    layers = "D658@0.055 BN DO D525@0.061 BN DO D410@0.069 BN DO D350@0.075 BN DO D150@0.115 BN DO"
