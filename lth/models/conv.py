"""Small convolutional networks: LeNet-5, Conv-2/4/6 (Frankle & Carbin 2019) and the MNIST-1D CNN.

All of them use Gaussian Glorot (Xavier normal) kernels and zero biases, like the MLPs of
`lth.models.mlp`, and have no normalisation layers (no model state). Conv layers are named
conv1, conv2, ...; hidden dense layers fc1, fc2, ...; the last layer is `output`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from lth.models.mlp import glorot_normal


def _max_pool_2x2(x_BxHxWxC: jax.Array) -> jax.Array:
    return nn.max_pool(x_BxHxWxC, (2, 2), strides=(2, 2))


class LeNet5(nn.Module):
    """LeNet-5 in its common modern form: LeCun et al. 1998's layer geometry with ReLU and max pooling.

    conv1 6@5x5 (pad 2) - relu - maxpool 2 - conv2 16@5x5 (valid) - relu - maxpool 2 -
    fc1 120 - relu - fc2 84 - relu - output.

    Not reproduced from the original: tanh/sigmoid units, subsampling layers with trainable
    coefficients, the sparse C3 connection table and RBF outputs (its C5 "conv" is fc1 here, the
    same 48,120 parameters). On 28x28x1 MNIST the padded first conv gives the classic 32x32
    geometry: 61,706 parameters. Not "LeNet-5-Caffe" (20@5x5 - 50@5x5 - 500 - 10, 431K
    parameters) that Han et al. 2015 and SNIP prune under the same name.
    """

    num_classes: int

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        h = nn.Conv(6, (5, 5), padding=((2, 2), (2, 2)), kernel_init=glorot_normal, name="conv1")(x_BxHxWxC)
        h = _max_pool_2x2(nn.relu(h))
        h = nn.Conv(16, (5, 5), padding="VALID", kernel_init=glorot_normal, name="conv2")(h)
        h = _max_pool_2x2(nn.relu(h))
        h = h.reshape((h.shape[0], -1))
        h = nn.relu(nn.Dense(120, kernel_init=glorot_normal, name="fc1")(h))
        h = nn.relu(nn.Dense(84, kernel_init=glorot_normal, name="fc2")(h))
        return nn.Dense(self.num_classes, kernel_init=glorot_normal, name="output")(h)


class ConvNet(nn.Module):
    """Conv-2 / Conv-4 / Conv-6 of Frankle & Carbin 2019 (their VGG-like CIFAR-10 networks).

    One block per entry of `widths`: two 3x3 SAME convs of that width with ReLU, then a 2x2 max
    pool; then dense fc1 256 - fc2 256 (ReLU) - output. Conv-2: widths (64,), Conv-4: (64, 128),
    Conv-6: (64, 128, 256). On 32x32x3 inputs: 4,301,642 / 2,425,930 / 2,262,602 parameters with
    biases. F&C's Figure 2 lists 4.3M, 2.4M and 1.7M: Conv-2 and Conv-4 match, Conv-6 cannot with
    the architecture the same table states (its convs alone have 1.15M weights, and the 4x4x256
    map that reaches fc1 gives 1.05M more); the reimplementations by Zhou et al. 2019
    (uber-research/deconstructing-lottery-tickets) and Ramanujan et al. 2020
    (allenai/hidden-networks) build the same 4x4x256 -> 256 layer, i.e. these 2.26M parameters.
    """

    widths: Sequence[int]
    num_classes: int
    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        h = x_BxHxWxC
        index = 0
        for width in self.widths:
            for _ in range(2):
                index += 1
                h = nn.relu(nn.Conv(width, (3, 3), padding="SAME", kernel_init=glorot_normal, name=f"conv{index}")(h))
            h = _max_pool_2x2(h)
        h = h.reshape((h.shape[0], -1))
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, kernel_init=glorot_normal, name=f"fc{i + 1}")(h))
        return nn.Dense(self.num_classes, kernel_init=glorot_normal, name="output")(h)


class CNN1D(nn.Module):
    """The MNIST-1D CNN (Greydanus & Kobak; `ConvBase` in the mnist1d repository's models.py).

    conv1 25@5 stride 2 pad 1 - relu - conv2 25@3 stride 2 pad 1 - relu - conv3 25@3 stride 2
    pad 1 - relu - flatten - output. A length-40 input gives 19, 10, 5 positions, so `output` sees
    5 * 25 = 125 features: 5,210 parameters. Inputs (B, L) are read as one channel, (B, L, C) as is.
    The flattening is position-major (channels last) where torch's is channel-major: the same
    function class up to a permutation of `output`'s rows. The reference uses torch's default init;
    here kernels are Glorot normal and biases zero like every other lth model.
    """

    num_classes: int
    channels: int = 25

    @nn.compact
    def __call__(self, x_BxL: jax.Array, train: bool = False) -> jax.Array:
        h = x_BxL[..., None] if x_BxL.ndim == 2 else x_BxL  # (B, L, C)
        for i, (kernel, stride) in enumerate(((5, 2), (3, 2), (3, 2))):
            h = nn.Conv(
                self.channels, (kernel,), strides=(stride,), padding=((1, 1),), kernel_init=glorot_normal,
                name=f"conv{i + 1}",
            )(h)
            h = nn.relu(h)
        h = h.reshape((h.shape[0], -1))
        return nn.Dense(self.num_classes, kernel_init=glorot_normal, name="output")(h)
