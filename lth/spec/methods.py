"""The registry of routes to a sparse network (`ExperimentConfig.method`): one entry per method, from
which the method names, the sparse-training controls, the CLI's help and the checks derive.

Adding a method: an entry here (its name, a one-line summary, what it does with the mask), the rule
in `lth.sparsity` and, for a mask that changes during training, its update in
`lth.training.mask_updates.UPDATES`; `tests/test_method_registry.py` runs every entry through the
compiled loop. Jax-free: the command line checks a method before it imports jax."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """A route to a sparse network and what the rest of lth needs to know about it."""

    name: str
    summary: str
    dynamic: bool = False  # its mask changes during training (a mask update in lth.training.mask_updates)
    until_t_end: bool = False  # it updates the mask until sparse.t_end: T_end must leave at least one update
    structured: bool = True  # it can keep an N:M structure (sparse.structure)
    controls: tuple[str, ...] = ()  # its names as a control of a lottery run (`lth control RUN NAME`)
    layer_distribution: bool = False  # its control name ends in the layer distribution (static_erk)


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("imp", "iterative magnitude pruning: the lottery (--levels, --prune-fraction)"),
    Method("gradual", "gradual magnitude pruning during training (Zhu & Gupta 2017)", dynamic=True,
           controls=("gradual",)),
    Method("static", "a random mask fixed through training, per-layer densities by sparse.distribution",
           controls=("static_erk", "static_uniform"), layer_distribution=True),
    Method("set", "SET: drop the smallest weights, regrow at random (Mocanu et al. 2018)", dynamic=True,
           until_t_end=True, structured=False, controls=("set",)),
    Method("rigl", "RigL: drop the smallest weights, regrow by gradient magnitude (Evci et al. 2020)", dynamic=True,
           until_t_end=True, structured=False, controls=("rigl",)),
)}

METHODS = tuple(REGISTRY)
DYNAMIC = tuple(name for name, m in REGISTRY.items() if m.dynamic)  # masks that change during training
SPARSE_TRAINING = tuple(control for m in REGISTRY.values() for control in m.controls)  # as controls


def method_of_control(control: str) -> str:
    """The method a sparse-training control trains ('static_erk' -> 'static', 'rigl' -> 'rigl')."""
    return next(m.name for m in REGISTRY.values() if control in m.controls)


def methods_help() -> str:
    """The `--method` help: every method with its summary."""
    return "; ".join(f"{m.name}: {m.summary}" for m in REGISTRY.values())
