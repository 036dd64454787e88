"""Models by name. `get_model(name, input_shape, num_classes)` returns a `Model`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lth.errors import ConfigError
from lth.models.base import Model, from_functions, from_linen, from_nnx
from lth.models.mlp import MLP

_REGISTRY: dict[str, Callable[[Sequence[int], int], Model]] = {
    # 784-300-100-10 (Frankle & Carbin 2019): 266,200 weights, 266,610 with biases.
    "lenet300_100": lambda shape, k: from_linen("lenet300_100", MLP((300, 100), k), shape),
    # MNIST-1D lottery notebook: 40-500-500-10, the middle layer residual.
    "mlp_mnist1d": lambda shape, k: from_linen("mlp_mnist1d", MLP((500, 500), k, residual=True), shape),
    # A tiny MLP for tests and smoke runs.
    "mlp_tiny": lambda shape, k: from_linen("mlp_tiny", MLP((32, 16), k), shape),
}


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def check_model_name(name: str) -> None:
    """Raise ConfigError, listing the registered names, if `name` is not one of them."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(model_names())}")


def get_model(name: str, input_shape: Sequence[int], num_classes: int) -> Model:
    """Build a registered model for inputs of `input_shape` (without the batch axis)."""
    check_model_name(name)
    return _REGISTRY[name](tuple(input_shape), num_classes)


__all__ = ["Model", "check_model_name", "from_functions", "from_linen", "from_nnx", "get_model", "model_names"]
