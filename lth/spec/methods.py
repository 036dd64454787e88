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
    distribution: str = "erk"  # its layer distribution under sparse.distribution "auto"
    dense: str = "rigl"  # the layers it keeps dense under sparse.dense "reference" (`dense_layers`)


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("imp", "iterative magnitude pruning: the lottery (--levels, --prune-fraction)"),
    Method("gradual", "gradual magnitude pruning during training (Zhu & Gupta 2017)", dynamic=True,
           controls=("gradual",), distribution="uniform", dense="none"),
    Method("static", "a random mask fixed through training, per-layer densities by sparse.distribution",
           controls=("static_erk", "static_uniform"), layer_distribution=True),
    Method("snip", "SNIP (Lee et al. 2019): prune at initialisation by |g * w| on one class-balanced batch, "
           "per-layer counts from sparse.distribution, then train the fixed mask", structured=False),
    Method("set", "SET: drop the smallest weights, regrow at random (Mocanu et al. 2018)", dynamic=True,
           until_t_end=True, structured=False, controls=("set",)),
    Method("rigl", "RigL: drop the smallest weights, regrow by gradient magnitude (Evci et al. 2020)", dynamic=True,
           until_t_end=True, structured=False, controls=("rigl",)),
    Method("earlybird", "Early-Bird tickets: the magnitude mask of dense training once it stops changing, "
           "retrained from init (You et al. 2020)", structured=False),
)}

METHODS = tuple(REGISTRY)
DYNAMIC = tuple(name for name, m in REGISTRY.items() if m.dynamic)  # masks that change during training
SPARSE_TRAINING = tuple(control for m in REGISTRY.values() for control in m.controls)  # as controls


def method_of_control(control: str) -> str:
    """The method a sparse-training control trains ('static_erk' -> 'static', 'rigl' -> 'rigl')."""
    return next(m.name for m in REGISTRY.values() if control in m.controls)


DENSE_CHOICES = ("reference", "none", "first", "output", "first+output")
SET_DROPS = ("cosine", "constant")  # sparse.set_drop: how SET's drop fraction decays


def layer_distribution(distribution: str, method: str) -> str:
    """The layer distribution a method run uses: `distribution`, or under "auto" the method's reference
    default (gradual: uniform, as Zhu & Gupta and jaxpruner prune every layer alike; the others: ERK)."""
    return REGISTRY[method].distribution if distribution == "auto" else distribution


def dense_layers(dense: str, method: str, layers: list[str], conv: bool) -> list[str]:
    """Which of `layers` (the model's weighted layers in forward order) a method run keeps dense.

    `dense` "reference" is the method's references: gradual none (Zhu & Gupta and jaxpruner prune every
    layer); the others as the RigL code: the first layer of a convolutional network (rigl's CIFAR-10 and
    ImageNet trainers keep it dense: "sparsifying this layer has a disproportional effect on the
    performance and almost no effect on the total size", Evci et al. 2020), the output layer of an MLP
    (rigl's MNIST trainer, ``'layer3': end_sparsity * 0``). Else "none", "first", "output" or "first+output"."""
    if dense == "reference":
        rule = REGISTRY[method].dense
        dense = ("first" if conv else "output") if rule == "rigl" else rule
    if dense == "none" or not layers:
        return []
    chosen = {"first": [layers[0]], "output": [layers[-1]], "first+output": [layers[0], layers[-1]]}[dense]
    return list(dict.fromkeys(chosen))


def methods_help() -> str:
    """The `--method` help: every method with its summary."""
    return "; ".join(f"{m.name}: {m.summary}" for m in REGISTRY.values())
