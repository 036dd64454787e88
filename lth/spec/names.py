"""The names a config may use (optimisers, schedules, pruning strategies, models, datasets, ...),
importable without jax so that the command line checks a config before it imports jax
(`lth.spec.checks`). The registries that implement them (`lth.models`, `lth.data`,
`lth.training.optim`, ...) take their names from here; a test checks each registry matches."""

from __future__ import annotations

from lth.spec.catalog import DATASET_REGISTRY, MODEL_REGISTRY
from lth.spec.catalog import MLP_INITS as MLP_INITS  # re-exported
from lth.spec.methods import METHODS as METHODS  # re-exported: the methods' names come from their registry

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "step", "cosine")
PRUNING_STRATEGIES = ("layerwise", "global", "modulewise")
PRUNING_SCHEDULES = ("geometric", "linear")
# what one pruning step removes (`lth.sparsity.structured`): single weights, or whole units
GRANULARITIES = ("weight", "neuron", "channel", "unit", "refill")
STRUCTURED = GRANULARITIES[1:]  # the granularities whose masks remove whole units
UNIT_SCORES = ("l1", "l2")
RETRAINING = ("rewind", "lr_rewind", "finetune")
DATA_ORDERS = ("per_level", "fixed")
TEST_AT = ("every_evaluation", "validation_minimum")  # when the test set is evaluated (`training.test_at`)
DISTRIBUTIONS = ("uniform", "erk")
LAYOUTS = ("sequential", "workers", "vmap", "devices")  # how the replicates of a run are laid out
BN_STATES = ("interpolate", "a", "average", "reestimate")  # BatchNorm statistics along a path (`lth.lottery.path`)
WANDB_MODES = ("online", "offline", "disabled")  # W&B modes (`lth.plans.wandb_mode`)
FILESYSTEMS = ("auto", "shared", "local")  # how a sweep's workers reach the run root (`lth.sweeps.driver`)
MODELS: dict[str, tuple[str, ...]] = {name: m.inits for name, m in MODEL_REGISTRY.items()}  # -> init conventions
DATASETS = tuple(DATASET_REGISTRY)
