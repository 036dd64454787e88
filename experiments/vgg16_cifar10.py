"""VGG-16 on CIFAR-10: the standard setup of Frankle, Dziugaite, Roy & Carbin (2020).

VGG-16 with BatchNorm and one FC output layer (OpenLTH's cifar_vgg); SGD 0.1, momentum 0.9, weight
decay 1e-4, batch 128, 63K iterations, learning rate x0.1 at 32K and 48K; random crop and flip;
trained on all 50,000 training images (no validation split: the records report the accuracy at the
end of training, no early stop); global magnitude pruning of 20 % per level, the output layer not
pruned (OpenLTH ignores `fc.weight` of its VGGs); weights rewound to iteration 1000 (VGG-16 becomes
stable around iteration 1000 -- our choice of default, from that finding). Data: CIFAR-10,
downloaded on first use.

    lth run vgg16_cifar10
    lth run vgg16_cifar10 --variant smoke        # ~2 minutes on 2 CPU cores, synthetic data (slow tests)

Runtime: not measured end to end here (2 CPU cores: days; run it on a GPU).

Expected outcome (Frankle et al. 2020): dense ~93.7 % test accuracy; tickets rewound early stay
matching down to a few % of the weights, tickets rewound to 0 do not.
"""

from lth.spec.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig
from lth.spec.experiments import smoke_variant

VARIANTS = ("default", "smoke")


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="vgg16_cifar10",
        model="vgg16",
        data=DataConfig(name="cifar10", validation_size=0),
        training=TrainingConfig(batch_size=128, length="63000it", eval_every="1000it"),
        optimizer=OptimizerConfig(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
                                  schedule="step", milestones=("32000it", "48000it"), gamma=0.1),
        pruning=PruningConfig(strategy="global", fraction=0.2, exclude=(r"output/kernel",)),
        levels=20,
        rewind="1000it",
    )
    return smoke_variant(config, "synthetic_cifar10", batch_size=16) if variant == "smoke" else config
