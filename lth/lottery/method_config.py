"""The settings of the sparse methods checked before anything runs: one-line ConfigErrors for
impossible combinations (`validate_method` needs no data; `check_schedule` the training length).
The methods themselves are in `lth.lottery.methods`."""

from __future__ import annotations

from lth.spec.config import ExperimentConfig
from lth.spec.checks import validate_method
from lth.errors import ConfigError
from lth.spec.methods import METHODS, REGISTRY
from lth.training.mask_updates import resolve_schedule

__all__ = ["METHODS", "check_schedule", "validate_method"]


def check_schedule(config: ExperimentConfig, total_steps: int) -> None:
    """One-line ConfigErrors for a schedule that does not fit the training length."""
    s = resolve_schedule(config.sparse, total_steps)
    if REGISTRY[config.method].until_t_end and s.t_end < 1:
        raise ConfigError(f"T_end = {config.sparse.t_end} of {total_steps} iterations leaves no mask update: "
                          "raise sparse.t_end")
    if config.method != "gradual":
        return
    end = s.t0 + s.n * s.dt
    if s.n < 1:
        raise ConfigError(f"gradual pruning from t0={s.t0} every dt={s.dt} fits no step before T_end = "
                          f"{s.t_end}: lower t0 or dt, or set sparse.n")
    if end >= total_steps:
        raise ConfigError(f"gradual pruning ends at iteration {end} (t0 + n dt), past the end of training "
                          f"({total_steps} iterations): lower t0, n or dt")
    low = 1.0 - config.sparse.s_i
    for d in config.sparse.densities:
        if d >= low:
            raise ConfigError(f"gradual pruning from s_i={config.sparse.s_i} cannot end at density {d}: "
                              f"the target must be below {low}")
