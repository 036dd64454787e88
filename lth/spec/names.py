"""The names a config may use (optimisers, schedules, pruning strategies, models, datasets, ...),
importable without jax so that the command line checks a config before it imports jax
(`lth.spec.checks`). The registries that implement them (`lth.models`, `lth.data`,
`lth.training.optim`, ...) take their names from here; a test checks each registry matches."""

from __future__ import annotations

from lth.spec.methods import METHODS as METHODS  # re-exported: the methods' names come from their registry

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "step", "cosine")
PRUNING_STRATEGIES = ("layerwise", "global", "modulewise")
PRUNING_SCHEDULES = ("geometric", "linear")
RETRAINING = ("rewind", "lr_rewind", "finetune")
DATA_ORDERS = ("per_level", "fixed")
DISTRIBUTIONS = ("uniform", "erk")
LAYOUTS = ("sequential", "workers", "vmap", "devices")  # how the replicates of a run are laid out
BN_STATES = ("interpolate", "a", "average", "reestimate")  # BatchNorm statistics along a path (`lth.lottery.path`)
WANDB_MODES = ("online", "offline", "disabled")  # W&B modes (`lth.plans.wandb_mode`)
FILESYSTEMS = ("auto", "shared", "local")  # how a sweep's workers reach the run root (`lth.sweeps.driver`)
MLP_INITS = ("default", "pytorch")  # the MLPs' initialisation conventions (`lth.models.mlp`)

MODELS: dict[str, tuple[str, ...]] = {  # model name -> its initialisation conventions
    "lenet300_100": MLP_INITS, "mlp_mnist1d": MLP_INITS, "mlp_tiny": MLP_INITS,
    **{name: ("default",) for name in ("lenet300_100_bn", "lenet5", "conv2", "conv4", "conv6", "vgg11", "vgg13",
                                      "vgg16", "vgg19", "resnet20", "resnet56", "cnn_mnist1d")},
}
DATASETS = ("mnist5k", "mnist1d", "mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic_mnist",
            "synthetic_cifar10", "random_mnist")
