"""Fully connected networks: LeNet-300-100 (Frankle & Carbin 2019) and the MNIST-1D MLP."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

# Gaussian Glorot (Xavier normal): N(0, 2 / (fan_in + fan_out)), untruncated, as torch's
# xavier_normal_ that OpenLTH uses for LeNet. Biases start at zero.
glorot_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")


class MLP(nn.Module):
    """ReLU MLP. Hidden layers are named fc1, fc2, ...; the last layer is `output`.

    With `residual`, every hidden layer after the first whose width equals its input's adds its
    input (h <- h + relu(W h + b)), as in the MNIST-1D lottery notebook.
    """

    hidden: Sequence[int]
    num_classes: int
    residual: bool = False

    @nn.compact
    def __call__(self, x_BxD: jax.Array, train: bool = False) -> jax.Array:
        h = x_BxD.reshape((x_BxD.shape[0], -1))
        for i, width in enumerate(self.hidden):
            out = nn.relu(nn.Dense(width, kernel_init=glorot_normal, name=f"fc{i + 1}")(h))
            h = h + out if self.residual and i > 0 and h.shape[-1] == width else out
        return nn.Dense(self.num_classes, kernel_init=glorot_normal, name="output")(h)
