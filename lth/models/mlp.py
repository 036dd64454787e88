"""Fully connected networks: LeNet-300-100 (Frankle & Carbin 2019), with BatchNorm, and the MNIST-1D MLP."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lth.models.vgg import batch_norm
from lth.spec.names import MLP_INITS

# Gaussian Glorot (Xavier normal): N(0, 2 / (fan_in + fan_out)), untruncated, as torch's
# xavier_normal_: the initialisation Frankle & Carbin 2019 give for LeNet (OpenLTH's LeNet uses
# Kaiming normal instead). Biases start at zero.
glorot_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")

# torch.nn.Linear's default: kaiming_uniform(a=sqrt(5)) for the weight, i.e. U(+-1/sqrt(fan_in)),
# and U(+-1/sqrt(fan_in)) for the bias (the MNIST-1D lottery notebook's MLP)
torch_linear_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
INITS = MLP_INITS


def torch_linear_bias(fan_in: int) -> Callable:
    """U(+-1/sqrt(fan_in)) for the bias of a Linear layer with `fan_in` inputs (torch's default)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def dense(width: int, fan_in: int, init: str, name: str) -> nn.Dense:
    """A Dense layer initialised by convention `init` ("default": Glorot normal, zero bias)."""
    if init == "pytorch":
        return nn.Dense(width, kernel_init=torch_linear_kernel, bias_init=torch_linear_bias(fan_in), name=name)
    return nn.Dense(width, kernel_init=glorot_normal, name=name)


class MLP(nn.Module):
    """ReLU MLP. Hidden layers are named fc1, fc2, ...; the last layer is `output`.

    With `residual`, every hidden layer after the first whose width equals its input's adds its
    input (h <- h + relu(W h + b)), as in the MNIST-1D lottery notebook. With `batch_norm`, every
    hidden layer normalises before its ReLU (relu(bn(W h + b))), its statistics in the model state.
    """

    hidden: Sequence[int]
    num_classes: int
    residual: bool = False
    init_scheme: str = "default"  # "default" (Glorot normal, zero biases) or "pytorch" (see `dense`)
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x_BxD: jax.Array, train: bool = False) -> jax.Array:
        h = x_BxD.reshape((x_BxD.shape[0], -1))
        for i, width in enumerate(self.hidden):
            out = dense(width, h.shape[-1], self.init_scheme, f"fc{i + 1}")(h)
            if self.batch_norm:
                out = batch_norm(train, f"bn{i + 1}")(out)
            out = nn.relu(out)
            h = h + out if self.residual and i > 0 and h.shape[-1] == width else out
        return dense(self.num_classes, h.shape[-1], self.init_scheme, "output")(h)
