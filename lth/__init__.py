"""lth: the Lottery Ticket Hypothesis in JAX.

    import lth
    config = lth.load_config("lenet300_mnist", "quick")
    records = lth.run_lottery(config)
"""

from lth.config import ExperimentConfig, DataConfig, OptimizerConfig, PruningConfig, TrainingConfig, replace
from lth.errors import ConfigError, DataError, LthError, MaskError
from lth.experiments import load_config
from lth.lottery import lottery_levels, prepare, run_lottery
from lth.masks import apply_mask, density, layer_densities, make_mask
from lth.pruning import prune_magnitude

__all__ = [
    "ConfigError", "DataConfig", "DataError", "ExperimentConfig", "LthError", "MaskError", "OptimizerConfig",
    "PruningConfig", "TrainingConfig", "apply_mask", "density", "layer_densities", "load_config", "lottery_levels",
    "make_mask", "prepare", "prune_magnitude", "replace", "run_lottery",
]
