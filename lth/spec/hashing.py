"""A config's content hash, which names its run directory: the SHA-256 of its canonical JSON.

Fields added after runs were named are left out of the hash while they cannot have changed what a
run trains, so that those runs keep their directories (`canonical_json`)."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from lth.errors import ConfigError
from lth.spec.config import ExperimentConfig, to_dict
from lth.spec.parse import parse_duration

_HASHED_ONLY_WHEN_SET: dict[str, Any] = {"ticket": None, "pruning.granularity": "weight", "pruning.unit_score": "l1",
                                         "pruning.oneshot_early_at": "",
                                         "sparse.eb_epsilon": 0.1, "sparse.eb_window": 5, "sparse.eb_every": "1ep",
                                         "particles": 1, "training.test_at": "every_evaluation"}
# fields added after runs existed that only some methods read: hashed when the run's method reads them
# (its behaviour changed with them) or when not at their default, so other runs keep their directories
_HASHED_WHEN_USED: dict[str, tuple[Any, tuple[str, ...]]] = {
    "sparse.set_drop": ("cosine", ("set",)),
    "sparse.dense": ("reference", ("gradual", "static", "set", "rigl", "snip", "earlybird")),
}
# "auto" hashes as the value it stood for before it existed, the old default "erk", except for the methods
# whose reference default differs (their runs changed)
_AUTO_DISTRIBUTION_HASH = {"gradual": "uniform"}


def canonical_json(config: ExperimentConfig) -> str:
    """Sorted-key, whitespace-free JSON of every field (those of `_HASHED_ONLY_WHEN_SET` only when not
    at their default, those of `_HASHED_WHEN_USED` only when not at their default or read by the
    run's method): equal configs give equal strings."""
    data = to_dict(config)
    for name, default in _HASHED_ONLY_WHEN_SET.items():
        _drop_if(data, name, lambda value, default=default: value == default)
    for name, (default, users) in _HASHED_WHEN_USED.items():
        _drop_if(data, name,
                 lambda value, default=default, users=users: value == default and config.method not in users)
    if data["sparse"]["distribution"] == "auto":
        data["sparse"]["distribution"] = _AUTO_DISTRIBUTION_HASH.get(config.method, "erk")
    for name in _DURATIONS:
        section, leaf = _section(data, name)
        section[leaf] = _canonical_duration(section[leaf])
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


_DURATIONS = ("rewind", "optimizer.warmup", "training.length", "training.eval_every")


def _canonical_duration(text: Any) -> Any:
    """One spelling per training duration, so that equal trainings share a run directory: "0ep" and
    "000it" are "0it" (a zero is zero in any unit), "05ep" is "5ep"; an invalid one is left as it is."""
    try:
        amount, unit = parse_duration(text)
    except ConfigError:
        return text
    return "0it" if amount == 0 else f"{amount}{unit}"


def _section(data: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
    """(the dict that holds dotted field `name`, its last key)."""
    *parents, leaf = name.split(".")
    return functools.reduce(lambda d, key: d[key], parents, data), leaf


def _drop_if(data: dict[str, Any], name: str, drop: Any) -> None:
    section, leaf = _section(data, name)
    if leaf in section and drop(section[leaf]):
        section.pop(leaf)


def config_hash(config: ExperimentConfig, length: int = 8) -> str:
    """Short content hash of the canonical JSON; any field change gives a new hash."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:length]
