"""ResNet-20 on CIFAR-10: the standard setup of Frankle, Dziugaite, Roy & Carbin (2020).

SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, 30K iterations, learning rate x0.1 at 20K and
25K; random crop (4-pixel padding) and horizontal flip; global magnitude pruning of 20 % per level;
weights rewound to iteration 500 (IMP tickets of ResNet-20 match only when rewound early, not to 0).
The output layer is not pruned (OpenLTH's convention for its CIFAR ResNets; it is 640 of 272,474
weights and counted as kept). Data: CIFAR-10, downloaded on first use, 5,000 held out for validation.

    lth run resnet20_cifar10                     # the paper's setup
    lth run resnet20_cifar10 --rewind 0it        # the non-matching control of the paper
    lth run resnet20_cifar10 --variant smoke     # seconds, synthetic data (tests)

Runtime: not measured end to end here (2 CPU cores: many hours per level; run it on a GPU).

Expected outcome (Frankle et al. 2020): the dense network reaches ~91.7 % test accuracy; tickets
rewound to 500it stay within ~0.2 points (matching) down to ~10-20 % of the weights; rewound to 0
they do not match. Instability analysis: ResNet-20 becomes stable around iteration 2000.
"""

from lth.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig
from lth.experiments import smoke_variant

VARIANTS = ("default", "smoke")


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="resnet20_cifar10",
        model="resnet20",
        data=DataConfig(name="cifar10"),
        training=TrainingConfig(batch_size=128, length="30000it", eval_every="500it"),
        optimizer=OptimizerConfig(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
                                  schedule="step", milestones=("20000it", "25000it"), gamma=0.1),
        pruning=PruningConfig(strategy="global", fraction=0.2, exclude=(r"output/kernel",)),
        levels=20,
        rewind="500it",
    )
    return smoke_variant(config, "synthetic_cifar10", batch_size=32) if variant == "smoke" else config
