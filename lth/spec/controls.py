"""Control names (``SOURCE[+TRANSFORM...]``, see `lth.lottery.controls`) parsed and checked without
jax, so that `lth control` answers a bad name before it imports jax."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lth.errors import ConfigError
from lth.spec.methods import SPARSE_TRAINING

SOURCES = ("imp", "oneshot", "random_layerwise", "random_global", "magnitude_init", "snip", "grasp", "synflow",
           *SPARSE_TRAINING)
AT_INIT = ("magnitude_init", "snip", "grasp", "synflow")
TRANSFORMS = ("reinit", "shuffle", "invert")


@dataclass(frozen=True)
class Control:
    source: str
    transforms: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return "+".join((self.source, *self.transforms))


def parse_control(text: str) -> Control:
    """'imp+reinit' -> Control('imp', ('reinit',)); ConfigError for unknown or meaningless ones."""
    source, *transforms = [p.strip() for p in text.strip().split("+")]
    if source not in SOURCES:
        raise ConfigError(f"unknown control source {source!r}: choose one of {', '.join(SOURCES)}")
    for t in transforms:
        if t not in TRANSFORMS:
            raise ConfigError(f"unknown control transform {t!r} in {text!r}: choose from {', '.join(TRANSFORMS)}")
    if len(set(transforms)) != len(transforms):
        raise ConfigError(f"control {text!r} repeats a transform")
    if source == "imp" and not transforms:
        raise ConfigError("'imp' alone is the main line: add a transform, e.g. imp+reinit or imp+shuffle")
    if source in SPARSE_TRAINING and transforms:
        raise ConfigError(f"{text!r}: the sparse-training controls take no transforms; use {source} alone")
    if source.startswith("random") and "invert" in transforms:
        raise ConfigError(f"{text!r}: inverting random scores is another random mask; drop '+invert'")
    return Control(source, tuple(transforms))


def parse_controls(texts: Iterable[str] | str) -> list[Control]:
    """'reinit,random_layerwise' or a list -> Controls ('reinit' alone means imp+reinit, etc.)."""
    if isinstance(texts, str):
        texts = [t for t in texts.split(",") if t.strip()]
    shorthand = {"reinit": "imp+reinit", "shuffle": "imp+shuffle", "invert": "imp+invert"}
    controls = [parse_control(shorthand.get(t.strip(), t)) for t in texts]
    if not controls:
        raise ConfigError("no control given: e.g. reinit, random_layerwise, oneshot, snip+shuffle")
    return controls


def check_retraining(control: Control, retraining: str) -> None:
    """A one-line ConfigError for a control that has no meaning under the run's retraining."""
    if retraining == "rewind":
        return
    if control.source in AT_INIT or control.source in SPARSE_TRAINING or "reinit" in control.transforms:
        what = ("trains from initialisation" if control.source in AT_INIT else
                "trains a sparse network with its own mask schedule" if control.source in SPARSE_TRAINING else
                "draws fresh weights")
        raise ConfigError(f"control {control.name} {what}, but this run retrains with {retraining} (trained "
                          "weights kept): run it on a run with weight rewinding (--retraining rewind)")
