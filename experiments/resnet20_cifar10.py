"""ResNet-20 on CIFAR-10: the standard setup of Frankle, Dziugaite, Roy & Carbin (2020).

The schedule OpenLTH ships for cifar_resnet_20 (written by the same authors): SGD 0.1, momentum 0.9,
weight decay 1e-4, batch 128, 160 epochs (62,400 iterations: the paper's "63K"), learning rate x0.1
at epochs 80 and 120; random crop (4-pixel padding) and horizontal flip; trained on all 50,000
training images (no validation split, so the records have no early stop: the accuracy reported is
at the end of training); global magnitude pruning of 20 % per level over every layer, the output
layer included (OpenLTH ignores no layer of its CIFAR ResNets); weights rewound to iteration 500
(IMP tickets of ResNet-20 match only when rewound early, not to 0). Data: CIFAR-10, downloaded on
first use.

    lth run resnet20_cifar10                     # the paper's setup
    lth run resnet20_cifar10 --rewind 0it        # the non-matching control of the paper
    lth run resnet20_cifar10 --variant smoke     # seconds, synthetic data (tests)

Runtime: not measured end to end here (2 CPU cores: many hours per level; run it on a GPU).

Expected outcome (Frankle et al. 2020): the dense network reaches ~91.7 % test accuracy; tickets
rewound to 500it stay within ~0.2 points (matching) down to ~10-20 % of the weights; rewound to 0
they do not match. Instability analysis: ResNet-20 becomes stable around iteration 2000.
"""

from lth.spec.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig
from lth.spec.experiments import smoke_variant

VARIANTS = ("default", "smoke")


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="resnet20_cifar10",
        model="resnet20",
        data=DataConfig(name="cifar10", validation_size=0),
        training=TrainingConfig(batch_size=128, length="160ep", eval_every="1ep"),
        optimizer=OptimizerConfig(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
                                  schedule="step", milestones=("80ep", "120ep"), gamma=0.1),
        pruning=PruningConfig(strategy="global", fraction=0.2),
        levels=20,
        rewind="500it",
    )
    return smoke_variant(config, "synthetic_cifar10", batch_size=16) if variant == "smoke" else config
