"""LeNet-5 on MNIST: the lottery of a small convolutional network, set up as LeNet-300-100's.

LeNet-5 in its modern form (`lth.models.conv.LeNet5`: conv 6@5x5 pad 2 - pool - conv 16@5x5 - pool -
120 - 84 - 10, ReLU, 61,706 parameters), Gaussian Glorot init; Adam 1.2e-3, batch 60; validation and
test every 100 iterations. Layerwise magnitude pruning, 20 % per level, 10 % on the output layer;
survivors rewound to iteration 0. Frankle & Carbin 2019 do not run LeNet-5: this is the base of the
structured sweep `structured_lenet5` (channels vs weights), not a paper reproduction.

Variants (`lth run lenet5_mnist --variant NAME`):
  default  full MNIST (downloaded on first use), 20,000 iterations per level, 12 levels. Not run here.
  quick    the 5,000 embedded MNIST digits (3,500 train / 500 validation / 1,000 test), 1,000
           iterations (~17 epochs) per level, 6 levels (26 % of the weights left).
  smoke    a wiring check for tests: 40 iterations, 2 levels.

    lth run lenet5_mnist --variant quick
    lth sweep structured_lenet5          # weights vs channels vs refill, 3 seeds each

Runtime on 2 CPU cores: the quick variant's levels took 17-23 s each in the sweep
`structured_lenet5` (2026-12-07, two runs side by side, one core each), so ~2.5 minutes for the
7 levels alone. (On CPU, convolutional models train one compiled step per iteration:
`lth.training.choose_loop`.)

Expected outcome: like LeNet-300-100, the tickets keep the dense accuracy down to a fraction of the
weights, and the same masks with random weights fall behind as the weights thin out. Measured (the
sweep above, end-of-training test accuracy, mean +- sample std over seeds 0-2): dense 97.50 +- 0.10 %;
tickets 97.47 +- 0.35 % at 51.5 % of the weights and 97.30 +- 0.26 % at 26.6 %; random masks with the
tickets' per-layer counts 97.07 +- 0.35 % and 96.20 +- 0.56 %.
"""

from lth.spec.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig, replace

VARIANTS = ("default", "quick", "smoke")


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="lenet5_mnist",
        model="lenet5",
        data=DataConfig(name="mnist"),
        training=TrainingConfig(batch_size=60, length="20000it", eval_every="100it"),
        optimizer=OptimizerConfig(name="adam", learning_rate=1.2e-3),
        pruning=PruningConfig(strategy="layerwise", fraction=0.2, layer_fractions=((r"output/kernel", 0.1),)),
        levels=12,
        rewind="0it",
    )
    if variant == "quick":
        config = replace(config, **{"data.name": "mnist5k", "training.length": "1000it", "levels": 6})
    elif variant == "smoke":
        config = replace(config, **{"data.name": "mnist5k", "training.length": "40it", "training.eval_every": "20it",
                                    "levels": 2})
    return config
