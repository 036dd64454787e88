"""Models by name. `get_model(name, input_shape, num_classes)` returns a `Model`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lth.spec.checks import check_model_name
from lth.models.base import Model, from_functions, from_linen, from_nnx
from lth.models.conv import CNN1D, ConvNet, LeNet5
from lth.models.mlp import MLP
from lth.models.resnet import resnet
from lth.models.vgg import vgg

_REGISTRY: dict[str, Callable[[Sequence[int], int], Model]] = {
    # 784-300-100-10 (Frankle & Carbin 2019): 266,200 weights, 266,610 with biases.
    "lenet300_100": lambda shape, k, init="default": from_linen(
        "lenet300_100", MLP((300, 100), k, init_scheme=init), shape),
    # LeNet-300-100 with BatchNorm before each hidden ReLU: a BatchNorm model small enough for notebooks
    # (the BatchNorm treatments of the instability analysis); 266,610 parameters + 800 BatchNorm.
    "lenet300_100_bn": lambda shape, k: from_linen("lenet300_100_bn", MLP((300, 100), k, batch_norm=True), shape),
    # MNIST-1D lottery notebook: 40-500-500-10, the middle layer residual.
    "mlp_mnist1d": lambda shape, k, init="default": from_linen(
        "mlp_mnist1d", MLP((500, 500), k, residual=True, init_scheme=init), shape),
    # A tiny MLP for tests and smoke runs.
    "mlp_tiny": lambda shape, k, init="default": from_linen("mlp_tiny", MLP((32, 16), k, init_scheme=init), shape),
    # LeNet-5 (conv 6@5x5 pad 2, pool, conv 16@5x5, pool, 120-84-10): 61,706 parameters on MNIST.
    "lenet5": lambda shape, k: from_linen("lenet5", LeNet5(k), shape),
    # Frankle & Carbin 2019 CIFAR-10 convnets; 4,301,642 / 2,425,930 / 2,262,602 parameters.
    "conv2": lambda shape, k: from_linen("conv2", ConvNet((64,), k), shape),
    "conv4": lambda shape, k: from_linen("conv4", ConvNet((64, 128), k), shape),
    "conv6": lambda shape, k: from_linen("conv6", ConvNet((64, 128, 256), k), shape),
    # OpenLTH's cifar_vgg (BatchNorm; state = batch_stats): VGG-16 14,728,266 parameters.
    "vgg11": lambda shape, k: from_linen("vgg11", vgg(11, k), shape),
    "vgg13": lambda shape, k: from_linen("vgg13", vgg(13, k), shape),
    "vgg16": lambda shape, k: from_linen("vgg16", vgg(16, k), shape),
    "vgg19": lambda shape, k: from_linen("vgg19", vgg(19, k), shape),
    # OpenLTH's cifar_resnet (BatchNorm, 1x1-conv shortcuts): 272,474 / 855,770 parameters.
    "resnet20": lambda shape, k: from_linen("resnet20", resnet(20, k), shape),
    "resnet56": lambda shape, k: from_linen("resnet56", resnet(56, k), shape),
    # The MNIST-1D paper's CNN (three 1-D convs of 25 channels, stride 2): 5,210 parameters.
    "cnn_mnist1d": lambda shape, k: from_linen("cnn_mnist1d", CNN1D(k), shape),
}


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str, input_shape: Sequence[int], num_classes: int, init: str = "default") -> Model:
    """Build a registered model for inputs of `input_shape` (without the batch axis), initialised
    by convention `init` (see `lth.models.mlp`)."""
    check_model_name(name, init)
    if init == "default":
        return _REGISTRY[name](tuple(input_shape), num_classes)
    return _REGISTRY[name](tuple(input_shape), num_classes, init)


__all__ = ["Model", "check_model_name", "from_functions", "from_linen", "from_nnx", "get_model", "model_names"]
