"""Experiment configuration: frozen dataclasses, canonical JSON and a content hash.

A config is the whole description of a run. Every field has a default, so the canonical JSON
(every field, sorted keys) is stable and its hash names the run directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from lth.errors import ConfigError


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
    """

    strategy: str = "layerwise"  # layerwise | global
    fraction: float = 0.2
    layer_fractions: tuple[tuple[str, float], ...] = ()
    exclude: tuple[str, ...] = ()
    prunable: tuple[str, ...] = (r".*kernel",)


@dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = 60
    length: str = "50000it"  # training length of every level: "50000it" or "20ep"
    eval_every: str = "100it"  # validation + test evaluation period


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist5k"
    validation_size: int | None = None  # None: the dataset's default split
    augmentation: str | None = None  # None: the dataset's default ("crop_flip" for CIFAR); or "none"


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
    seed: int = 0
    initial_mask: str | None = None  # SHA-256 of a starting mask (set by run_lottery when one is given)


# --------------------------------------------------------------------------- serialisation


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Every field, defaults included, as plain JSON types (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def canonical_json(config: ExperimentConfig) -> str:
    """Sorted-key, whitespace-free JSON of every field: equal configs give equal strings."""
    return json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))


def config_hash(config: ExperimentConfig, length: int = 8) -> str:
    """Short content hash of the canonical JSON; any field change gives a new hash."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:length]


def _build(cls: type, data: Any, where: str) -> Any:
    if not dataclasses.is_dataclass(cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"config field {where or 'root'} must be an object, got {data!r}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)} in {where or 'config'}")
    kwargs = {}
    for key, value in data.items():
        sub = _SUBCONFIGS.get((cls, key))
        if sub is not None:
            kwargs[key] = _build(sub, value, f"{where}.{key}".strip("."))
        elif isinstance(value, list):
            kwargs[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


_SUBCONFIGS = {
    (ExperimentConfig, "data"): DataConfig,
    (ExperimentConfig, "training"): TrainingConfig,
    (ExperimentConfig, "optimizer"): OptimizerConfig,
    (ExperimentConfig, "pruning"): PruningConfig,
}


def from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Inverse of `to_dict` (lists back to tuples). Unknown fields raise ConfigError."""
    return _build(ExperimentConfig, data, "")


def for_replicate(config: ExperimentConfig, replicate: int) -> ExperimentConfig:
    """The config of replicate r of a run: the same experiment with seed ``config.seed + r``."""
    return dataclasses.replace(config, seed=config.seed + replicate)


def replace(config: Any, **changes: Any) -> Any:
    """`dataclasses.replace` that also accepts dotted names: replace(c, **{'training.length': '2ep'})."""
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        if not hasattr(config, head):
            raise ConfigError(f"unknown config field {head!r}")
        flat[head] = replace(getattr(config, head), **sub)
    known = {f.name for f in dataclasses.fields(config)}
    unknown = set(flat) - known
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)} in {type(config).__name__}")
    return dataclasses.replace(config, **flat)
