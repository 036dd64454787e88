"""lth: the Lottery Ticket Hypothesis in JAX.

    import lth
    config = lth.load_config("lenet300_mnist", "quick")
    records = lth.run_lottery(config)

The names below are loaded on first use, so ``import lth`` (and the CLI's argument parsing) does not
pay for jax, orbax, W&B or matplotlib until something needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    # foundations
    "ExperimentConfig": "lth.spec.config", "DataConfig": "lth.spec.config", "OptimizerConfig": "lth.spec.config",
    "PruningConfig": "lth.spec.config", "TrainingConfig": "lth.spec.config", "replace": "lth.spec.config",
    "ConfigError": "lth.errors", "DataError": "lth.errors", "LthError": "lth.errors", "MaskError": "lth.errors",
    "load_config": "lth.spec.experiments",
    # sparsity
    "apply_mask": "lth.sparsity.masks", "density": "lth.sparsity.masks", "layer_densities": "lth.sparsity.masks",
    "make_mask": "lth.sparsity.masks", "prune_magnitude": "lth.sparsity.pruning",
    # the lottery and its runner
    "prepare": "lth.lottery.setup", "lottery_levels": "lth.lottery.levels", "run_lottery": "lth.jobs.lottery",
    "run_controls": "lth.jobs.controls", "run_instability": "lth.jobs.instability",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'lth' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
