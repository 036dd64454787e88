"""Conv-2 on CIFAR-10: Frankle & Carbin (2019), Figure 5 setup.

3x3 conv blocks 64-64-pool, then FC 256-256-10,
Glorot normal init; Adam 2e-4, batch 60, 20K iterations; layerwise magnitude pruning per level
of 10 % of the conv weights, 20 % of the FC weights, 10 % of the output layer; rewind to
init. No data augmentation (the paper describes none for these networks; check it before relying
on this). Data: CIFAR-10 (downloaded on first use into
$LTH_DATA, 5,000 training images held out for validation).

    lth run conv2_cifar10                    # the paper's setup
    lth run conv2_cifar10 --variant smoke    # seconds, synthetic CIFAR-shaped data (tests)

Runtime: not measured end to end here (2 CPU cores: hours per level; a GPU is the place for it).

Expected outcome (Frankle & Carbin, Fig. 5): winning tickets learn faster and reach higher test
accuracy than the dense network down to a few % of the weights (Conv-2 dense ~65 %
at early stop, tickets a few points higher); randomly reinitialised tickets lose accuracy early.
"""

from lth.spec.config import ExperimentConfig
from lth.spec.experiments import frankle_carbin_conv, smoke_variant

VARIANTS = ("default", "smoke")


def get_config(variant: str = "default") -> ExperimentConfig:
    config = frankle_carbin_conv(2, learning_rate=2e-4, iterations=20000, conv_fraction=0.1)
    return smoke_variant(config, "synthetic_cifar10", batch_size=16) if variant == "smoke" else config
