"""Experiment configuration: frozen dataclasses and their JSON.

A config is the whole description of a run. Every field has a default, so the JSON (every field,
sorted keys) is stable and its hash (`lth.spec.hashing`) names the run directory.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from lth.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser and learning-rate schedule. The schedule is a function of the global iteration."""

    name: str = "adam"  # adam | adamw | sgd
    learning_rate: float = 1.2e-3
    momentum: float = 0.0  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0  # sgd: L2 added to the gradient; adamw: decoupled
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    schedule: str = "constant"  # constant | step | cosine
    warmup: str = "0it"  # linear warm-up from 0, as a duration ("500it", "2ep")
    milestones: tuple[str, ...] = ()  # step schedule: durations at which lr *= gamma
    gamma: float = 0.1


@dataclass(frozen=True)
class PruningConfig:
    """Which weights may be pruned, and how many go at each level.

    `prunable`: regexes over flattened parameter paths ("Dense_0/kernel"); a leaf whose path fully
    matches one is prunable (in the mask), all others (biases, norms) are never masked.
    `layer_fractions`: (regex, fraction) overrides, first match wins; `exclude`: prunable layers that
    are counted in the density but never pruned.

    `granularity`: what one pruning step removes (`lth.sparsity.structured`): "weight" (single
    weights, the default), "neuron" (units of dense layers: a kernel column, its bias, its BatchNorm
    entries, and the rows reading it), "channel" (the same for conv layers' output channels), "unit"
    (both), "refill" (Chen et al. 2022: unstructured magnitude pruning, then the units with the most
    surviving weights made dense). At a structured granularity layers of the other kind are not
    pruned at all, the output layer's units (the classes) never; `unit_score` ranks units by the
    "l1" or "l2" norm of their parameters. Structured granularities prune layerwise, with IMP only.
    """

    strategy: str = "layerwise"  # layerwise | global | modulewise (a module's kernel and bias together)
    schedule: str = "geometric"  # geometric: `fraction` of what remains per level; linear: of the level-0 count
    fraction: float = 0.2
    layer_fractions: tuple[tuple[str, float], ...] = ()
    exclude: tuple[str, ...] = ()
    prunable: tuple[str, ...] = (r".*kernel",)
    # pruning at initialisation (the snip / grasp controls): the class-balanced batch they score on
    # (GraSP's reference configs: 10 per class) and the temperature of GraSP's logits (both reference codes: 200)
    score_samples_per_class: int = 10
    grasp_temperature: float = 200.0
    granularity: str = "weight"  # weight | neuron | channel | unit | refill
    unit_score: str = "l1"  # l1 | l2: the norm ranking units at a structured granularity
    # the oneshot_early control (`lth.spec.controls`): the iteration of level 0 whose dense weights it
    # prunes, a duration ("2000it"); "" when the run has no such control
    oneshot_early_at: str = ""


@dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = 60
    length: str = "50000it"  # training length of every level: "50000it" or "20ep"
    eval_every: str = "100it"  # validation + test evaluation period
    test_at: str = "every_evaluation"  # or "validation_minimum": test only at new validation-loss minima + the end


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist5k"
    validation_size: int | None = None  # None: the dataset's default split; 0: no validation set
    augmentation: str | None = None  # None: the dataset's default ("crop_flip" for CIFAR); or "none"
    # OpenLTH's dataset modifiers, applied to the training split with `transformation_seed`:
    random_labels_fraction: float = 0.0  # this fraction of training labels replaced by uniformly random ones
    subsample_fraction: float = 1.0  # train on this fraction of the training examples
    transformation_seed: int = 0


@dataclass(frozen=True)
class SparseConfig:
    """Sparse networks other than IMP's (`method` of an ExperimentConfig; `lth.lottery.methods`).

    `densities`: the target densities of a method run, one record each (empty for IMP; none with an
    N:M structure, which fixes the density). `distribution`: how a target density is spread over the
    layers ("uniform" | "erk" | "auto": the method's reference default, `lth.spec.methods`). `dense`:
    the layers a method run keeps dense ("reference" | "none" | "first" | "output" | "first+output";
    reference: the method's, see `lth.spec.methods.dense_layers`). `structure`: "" (unstructured) or
    "N:M" (imp, gradual, static). Mask updates (set, rigl, gradual) every `dt` iterations; set / rigl
    update until `t_end` (a fraction of training), rigl dropping alpha/2 (1 + cos(pi t / T_end)), set
    `z` under the same cosine decay (`set_drop` "cosine", the rigl reference's default) or constant;
    gradual prunes from sparsity `s_i` at iteration `t0` in `n` steps (0: as many as fit before T_end).
    earlybird (You et al. 2020) checks the magnitude mask every `eb_every` (a duration, "1ep") of dense
    training and stops when the newest of the last `eb_window` masks is within `eb_epsilon` (normalised
    Hamming distance) of each of the others.
    """

    densities: tuple[float, ...] = ()
    distribution: str = "auto"  # auto | uniform | erk
    dense: str = "reference"  # reference | none | first | output | first+output
    structure: str = ""  # "" or "N:M", e.g. "2:4"
    dt: int = 100  # iterations between mask updates
    t_end: float = 0.75  # set / rigl: no updates after this fraction of training
    alpha: float = 0.3  # rigl: initial drop fraction
    z: float = 0.3  # set: (initial) drop fraction
    set_drop: str = "cosine"  # set: cosine | constant
    s_i: float = 0.0  # gradual: initial sparsity
    t0: int = 0  # gradual: first pruning iteration
    n: int = 0  # gradual: pruning steps after t0 (0: floor((t_end * T - t0) / dt))
    eb_epsilon: float = 0.1  # earlybird: the largest mask distance in the window that stops the search
    eb_window: int = 5  # earlybird: masks compared (the newest with each of the window - 1 before it)
    eb_every: str = "1ep"  # earlybird: a check every this long ("1ep", "200it"), from iteration 0


@dataclass(frozen=True)
class ExperimentConfig:
    """A lottery-ticket experiment: level 0 trains dense, each next level prunes and rewinds."""

    name: str = "experiment"
    model: str = "lenet300_100"
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    levels: int = 15  # pruning levels after the dense level 0
    rewind: str = "0it"  # rewind point: "0it" (init), "500it", "2ep"
    # how a pruned network is retrained (Renda, Frankle & Carbin 2020), from iteration `rewind` to the end:
    # "rewind": weights and schedule rewound to `rewind`; "lr_rewind": final weights kept, the
    # schedule replayed from `rewind`; "finetune": final weights kept, the final learning rate.
    retraining: str = "rewind"
    # SWAMP (Choi et al. 2024, `lth.lottery.swamp`): every level trains this many particles from the
    # same start and mask with different data orders and prunes from their average; 1 = plain IMP
    particles: int = 1
    # "per_level": every level (and every control of it) draws its own data order and augmentation,
    # fold_in(seed stream, level), as both reference codes do; "fixed": one order for all levels
    data_order: str = "per_level"
    seed: int = 0
    # the initialisation convention of the model's layers: "default" (the paper's, e.g. Gaussian
    # Glorot for Frankle & Carbin's LeNet) or "pytorch" (torch.nn's defaults, U(+-1/sqrt(fan_in)) for
    # the weights and biases of Linear layers, as the MNIST-1D notebook); see lth.models
    init: str = "default"
    initial_mask: str | None = None  # SHA-256 of a starting mask (set by run_lottery when one is given)
    ticket: str | None = None  # SHA-256 of the ticket level 0 starts from (set by run_lottery: --ticket)
    method: str = "imp"  # imp | gradual | static | snip | set | rigl | earlybird (`sparse` holds the others' settings)
    sparse: SparseConfig = field(default_factory=SparseConfig)


# --------------------------------------------------------------------------- serialisation


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Every field, defaults included, as plain JSON types (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


# fields added after runs were named by their hash, {dotted name: default}: left out of the hash while
# at their default, so that those runs keep their directories
def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config field {where or 'root'} must be an object of fields, got {data!r}")
    hints = field_types(cls)
    unknown = set(data) - set(hints)
    if unknown:
        raise unknown_name("config field", ".".join(filter(None, (where, sorted(unknown)[0]))),
                           [".".join(filter(None, (where, f))) for f in hints])
    kwargs = {}
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _build(hints[key], value, f"{where}.{key}".strip("."))
        elif isinstance(value, list):
            kwargs[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Inverse of `to_dict` (lists back to tuples). Unknown fields or values of the wrong type raise
    a one-line ConfigError."""
    config = _build(ExperimentConfig, data, "")
    check_types(config)
    return config


def for_replicate(config: ExperimentConfig, replicate: int) -> ExperimentConfig:
    """The config of replicate r of a run: the same experiment with seed ``config.seed + r``."""
    return dataclasses.replace(config, seed=config.seed + replicate)


def replace(config: Any, **changes: Any) -> Any:
    """`dataclasses.replace` that also accepts dotted names: replace(c, **{'training.length': '2ep'}).
    Unknown fields or values of the wrong type raise a one-line ConfigError."""
    new = _replace(config, **changes)
    check_types(new)
    return new


def _replace(config: Any, prefix: str = "", **changes: Any) -> Any:
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    fields = {f.name: f for f in dataclasses.fields(config)}
    for key in [*nested, *flat]:
        if key in nested and key in fields and not dataclasses.is_dataclass(getattr(config, key)):
            raise ConfigError(f"config field {prefix}{key} has no fields: set it as {prefix}{key}=VALUE")
        if key not in fields:
            raise unknown_name("config field", prefix + key, [prefix + f for f in fields])
    for head, sub in nested.items():
        flat[head] = _replace(getattr(config, head), f"{prefix}{head}.", **sub)
    return dataclasses.replace(config, **flat)


# --------------------------------------------------------------------------- types

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """{field name: resolved type annotation} of a config dataclass."""
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " or null"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return "a [" + ", ".join(_describe(a).removeprefix("a ").removeprefix("an ") for a in args) + "] pair"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        tp, f"an object of {getattr(tp, '__name__', tp)} fields")


def _fits(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    return isinstance(value, tp)


def check_types(config: Any, where: str = "") -> None:
    """A one-line ConfigError unless every field of `config` (recursively) has its annotated type:
    integers are not booleans, numbers are finite, lists hold what they should, names are one safe
    path component."""
    hints = field_types(type(config))
    for f in dataclasses.fields(config):
        name, value, tp = f"{where}{f.name}", getattr(config, f.name), hints[f.name]
        if dataclasses.is_dataclass(tp) and not isinstance(value, tp):
            fields = ", ".join(f"{name}.{sub}" for sub in field_types(tp))
            raise ConfigError(f"config field {name} is a section of fields, not a value ({value!r}): set one of "
                              f"them, e.g. {name}.{next(iter(field_types(tp)))}=VALUE (fields: {fields})")
        if not _fits(value, tp):
            default = f.default if f.default is not dataclasses.MISSING else None
            hint = f" (default: {json.dumps(default)})" if default not in (None, ()) else ""
            raise ConfigError(f"config field {name} must be {_describe(tp)}, got {value!r}{hint}")
        if dataclasses.is_dataclass(tp):
            check_types(value, f"{name}.")
    if isinstance(config, ExperimentConfig) and not _SAFE_NAME.fullmatch(config.name):
        raise ConfigError(f"experiment name {config.name!r} is not a plain name (letters, digits, '.', '_', '-', "
                          "'+'): it names the run directory, e.g. --set name=lenet300_mnist")
