"""VGG-11/13/16/19 for CIFAR-10 as in OpenLTH's `models/cifar_vgg.py` (Frankle et al. 2020).

Each number of the plan is a 3x3 SAME conv (with bias) + BatchNorm + ReLU, each "M" a 2x2 max
pool; the plans have no final max pool: the last 2x2x512 map of a 32x32 input is average-pooled
(OpenLTH's AvgPool2d(2); here a global mean, the same on CIFAR) to 512 features and one dense
`output` layer. Counts on CIFAR-10 (as OpenLTH's tests): VGG-11 9,231,114; VGG-13 9,416,010;
VGG-16 14,728,266; VGG-19 20,040,522 (BatchNorm scale and bias included, running statistics not).

Conv layers are conv1, conv2, ... with BatchNorms bn1, bn2, ...; the default prunable rule
`.*kernel` prunes every conv and `output`, never a BatchNorm. (OpenLTH's default VGG pruning
ignores `fc.weight`: exclude `output/kernel` in the pruning config to match it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# torch.nn.init.kaiming_normal_ defaults (mode fan_in, gain sqrt(2)): N(0, 2 / fan_in), untruncated.
# OpenLTH applies it to every conv and linear weight. Biases here start at zero; OpenLTH leaves
# torch's default uniform(+-1/sqrt(fan_in)) biases (which BatchNorm cancels for the convs).
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")

VGG_PLANS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
}


def batch_norm(train: bool, name: str, scale_init: Any = nn.initializers.ones) -> nn.BatchNorm:
    """BatchNorm with torch's defaults (momentum 0.1 in torch = 0.9 here, eps 1e-5); bias starts at 0.

    Its statistics live in the `batch_stats` collection (the model state). Flax updates the running
    variance with the biased batch variance, torch with the unbiased one.
    """
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, scale_init=scale_init, name=name)


class VGG(nn.Module):
    """A CIFAR VGG: `plan` entries are conv widths or "M" (2x2 max pool).

    `bn_scale_init`: BatchNorm scale at init, 1 by default; OpenLTH's default hparams use its
    "uniform" BatchNorm init instead, i.e. ``nn.initializers.uniform(1.0)`` (scale ~ U[0, 1)).
    """

    plan: Sequence[int | str]
    num_classes: int
    bn_scale_init: Any = nn.initializers.ones

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        h = x_BxHxWxC
        index = 0
        for spec in self.plan:
            if spec == "M":
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
                continue
            index += 1
            h = nn.Conv(int(spec), (3, 3), padding="SAME", kernel_init=kaiming_normal, name=f"conv{index}")(h)
            h = nn.relu(batch_norm(train, f"bn{index}", self.bn_scale_init)(h))
        h_BxC = jnp.mean(h, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=kaiming_normal, name="output")(h_BxC)


def vgg(depth: int, num_classes: int) -> VGG:
    """VGG-`depth` (11, 13, 16 or 19) for CIFAR."""
    return VGG(VGG_PLANS[depth], num_classes)
