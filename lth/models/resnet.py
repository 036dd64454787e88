"""ResNet-20/56 for CIFAR-10 (He et al. 2016) as in OpenLTH's `models/cifar_resnet.py`.

A 3x3 conv of 16 filters + BatchNorm + ReLU, three stages of n BasicBlocks of 16, 32 and 64
filters (depth 6n + 2), stride 2 in the first block of stages 2 and 3, global average pooling and
one dense `output` layer. Convs have no bias. Where a block changes the shape, its shortcut is a
1x1 conv (stride 2) + BatchNorm (OpenLTH's choice, He et al.'s option B), otherwise the identity.
ResNet-20 has 272,474 parameters (as OpenLTH's test), ResNet-56 855,770.

Names: the stem is conv1/bn1; block i (from 1) of stage s (from 1) is `block{s}_{i}` holding
conv1/bn1, conv2/bn2 and, where present, shortcut/shortcut_bn. Every kernel -- the shortcut 1x1
convs included, as in OpenLTH -- is prunable by the default rule `.*kernel`; BatchNorm never is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lth.models.vgg import batch_norm, kaiming_normal


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), two 3x3 convs."""

    features: int
    stride: int = 1
    bn_scale_init: Any = nn.initializers.ones

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        def conv(features: int, size: int, stride: int, name: str) -> nn.Conv:
            pad = (size - 1) // 2
            return nn.Conv(
                features, (size, size), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                use_bias=False, kernel_init=kaiming_normal, name=name,
            )

        h = conv(self.features, 3, self.stride, "conv1")(x_BxHxWxC)
        h = nn.relu(batch_norm(train, "bn1", self.bn_scale_init)(h))
        h = conv(self.features, 3, 1, "conv2")(h)
        h = batch_norm(train, "bn2", self.bn_scale_init)(h)
        shortcut = x_BxHxWxC
        if self.stride != 1 or x_BxHxWxC.shape[-1] != self.features:
            shortcut = conv(self.features, 1, self.stride, "shortcut")(x_BxHxWxC)
            shortcut = batch_norm(train, "shortcut_bn", self.bn_scale_init)(shortcut)
        return nn.relu(h + shortcut)


class ResNet(nn.Module):
    """CIFAR ResNet with `blocks_per_stage` blocks in each stage of `widths` filters.

    `bn_scale_init`: BatchNorm scale at init, 1 by default; OpenLTH's default hparams use its
    "uniform" BatchNorm init instead, i.e. ``nn.initializers.uniform(1.0)`` (scale ~ U[0, 1)).
    """

    blocks_per_stage: int
    num_classes: int
    widths: Sequence[int] = (16, 32, 64)
    bn_scale_init: Any = nn.initializers.ones

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        h = nn.Conv(
            self.widths[0], (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=kaiming_normal, name="conv1"
        )(x_BxHxWxC)
        h = nn.relu(batch_norm(train, "bn1", self.bn_scale_init)(h))
        for s, width in enumerate(self.widths):
            for i in range(self.blocks_per_stage):
                stride = 2 if s > 0 and i == 0 else 1
                h = BasicBlock(width, stride, self.bn_scale_init, name=f"block{s + 1}_{i + 1}")(h, train)
        h_BxC = jnp.mean(h, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=kaiming_normal, name="output")(h_BxC)


def resnet(depth: int, num_classes: int) -> ResNet:
    """ResNet-`depth` for CIFAR; depth = 6n + 2 (20, 32, 44, 56, 110, ...)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2, not {depth}")
    return ResNet((depth - 2) // 6, num_classes)
