"""The settings of the sparse methods checked before anything runs: one-line ConfigErrors for
impossible combinations (`validate_method` needs no data; `check_schedule` the training length).
The methods themselves are in `lth.lottery.methods`."""

from __future__ import annotations

from lth.config import ExperimentConfig
from lth.errors import ConfigError
from lth.sparsity import nm
from lth.sparsity.distributions import DISTRIBUTIONS
from lth.training.mask_updates import resolve_schedule

METHODS = ("imp", "gradual", "static", "set", "rigl")


def validate_method(config: ExperimentConfig) -> None:
    """One-line ConfigErrors for impossible settings that need no data (see also `check_schedule`)."""
    method, s = config.method, config.sparse
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if s.distribution not in DISTRIBUTIONS:
        raise ConfigError(f"unknown layer distribution {s.distribution!r}: choose one of {', '.join(DISTRIBUTIONS)}")
    structure = nm.parse_nm(s.structure)
    if s.dt < 1:
        raise ConfigError(f"the mask update period dt must be at least 1 iteration, got {s.dt}: "
                          "e.g. --set sparse.dt=100")
    if not 0.0 < s.t_end <= 1.0:
        raise ConfigError(f"T_end {s.t_end} is past the end of training (or not after its start): give a fraction "
                          "of training in (0, 1], e.g. --set sparse.t_end=0.75")
    for name, value in (("alpha", s.alpha), ("z", s.z)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"drop fraction {name} must be in (0, 1), got {value}: e.g. 0.3")
    if not 0.0 <= s.s_i < 1.0 or s.t0 < 0 or s.n < 0:
        raise ConfigError(f"gradual pruning needs 0 <= s_i < 1, t0 >= 0 and n >= 0, got s_i={s.s_i}, t0={s.t0}, "
                          f"n={s.n}")
    for d in s.densities:
        if not (isinstance(d, (int, float)) and 0.0 < d <= 1.0):
            raise ConfigError(f"target density must be in (0, 1], got {d!r}: e.g. --densities 0.2,0.05,0.02")
    if method == "imp":
        if s.densities:
            raise ConfigError("--densities are for the other methods (gradual, static, set, rigl): IMP's densities "
                              "are its levels (--levels, --prune-fraction)")
        return
    if structure is not None:
        if method in ("set", "rigl"):
            raise ConfigError(f"{method} with an N:M structure is not supported (its drop-and-grow is unstructured): "
                              "use N:M with imp, gradual or static")
        if s.densities:
            raise ConfigError(f"the N:M structure {s.structure} fixes the density: drop --densities")
    elif not s.densities:
        raise ConfigError(f"method {method} needs target densities, e.g. --densities 0.2,0.05,0.02")


def check_schedule(config: ExperimentConfig, total_steps: int) -> None:
    """One-line ConfigErrors for a schedule that does not fit the training length."""
    s = resolve_schedule(config.sparse, total_steps)
    if config.method in ("set", "rigl") and s.t_end < 1:
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
