"""Models by name. `get_model(name, input_shape, num_classes)` returns a `Model`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lth.spec.checks import check_model_name
from lth.models.base import Model, from_functions, from_linen, from_nnx
from lth.models.conv import CNN1D, ConvNet, LeNet5
from lth.models.mlp import MLP
from lth.models.modular import EmbedMLP
from lth.models.resnet import resnet
from lth.models.vgg import vgg

# The builder of every model in `lth.spec.catalog.MODEL_REGISTRY` (what each is: its summary there).
_REGISTRY: dict[str, Callable[[Sequence[int], int], Model]] = {
    "lenet300_100": lambda shape, k, init="default": from_linen(
        "lenet300_100", MLP((300, 100), k, init_scheme=init), shape),
    "lenet300_100_bn": lambda shape, k: from_linen("lenet300_100_bn", MLP((300, 100), k, batch_norm=True), shape),
    "mlp_mnist1d": lambda shape, k, init="default": from_linen(
        "mlp_mnist1d", MLP((500, 500), k, residual=True, init_scheme=init), shape),
    "mlp_tiny": lambda shape, k, init="default": from_linen("mlp_tiny", MLP((32, 16), k, init_scheme=init), shape),
    "lenet5": lambda shape, k: from_linen("lenet5", LeNet5(k), shape),
    "conv2": lambda shape, k: from_linen("conv2", ConvNet((64,), k), shape),
    "conv4": lambda shape, k: from_linen("conv4", ConvNet((64, 128), k), shape),
    "conv6": lambda shape, k: from_linen("conv6", ConvNet((64, 128, 256), k), shape),
    "vgg11": lambda shape, k: from_linen("vgg11", vgg(11, k), shape),
    "vgg13": lambda shape, k: from_linen("vgg13", vgg(13, k), shape),
    "vgg16": lambda shape, k: from_linen("vgg16", vgg(16, k), shape),
    "vgg19": lambda shape, k: from_linen("vgg19", vgg(19, k), shape),
    "resnet20": lambda shape, k: from_linen("resnet20", resnet(20, k), shape),
    "resnet56": lambda shape, k: from_linen("resnet56", resnet(56, k), shape),
    "cnn_mnist1d": lambda shape, k: from_linen("cnn_mnist1d", CNN1D(k), shape),
    "embed_mlp": lambda shape, k: from_linen("embed_mlp", EmbedMLP(k), shape),
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
