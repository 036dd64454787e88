"""The registry of controls (``SOURCE[+TRANSFORM...]``, see `lth.lottery.controls`): every mask
source and transform with what it does, from which the names, the `lth control` help and the checks
derive. Parsed and checked without jax, so that `lth control` answers a bad name before it imports jax.

Adding a control source: an entry here; one of an existing kind (a pruning-at-init score: kind
"at_init" and its scorer in `lth.sparsity.scores.SCORERS`) needs nothing else, a new kind its mask
rule in `lth.lottery.controls.MASK_RULES`. `tests/test_registries.py` builds every source's mask."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lth.errors import ConfigError, unknown_name
from lth.spec.config import ExperimentConfig
from lth.spec.methods import REGISTRY as METHOD_REGISTRY
from lth.spec.names import STRUCTURED

KINDS = ("main", "oneshot", "oneshot_early", "random_layerwise", "random_global", "random_modulewise", "at_init",
         "sparse_training")


@dataclass(frozen=True)
class Source:
    """Where the mask of a control's level L comes from. `kind` picks its mask rule; `scorer` is the
    pruning-at-init score of an "at_init" source; `invertible`: `+invert` has a meaning for it;
    `structured`: it has a meaning at a structured `pruning.granularity` (whole units)."""

    name: str
    summary: str
    kind: str
    scorer: str = ""
    invertible: bool = True
    structured: bool = False


@dataclass(frozen=True)
class Transform:
    name: str
    summary: str


def _sparse_sources() -> tuple[Source, ...]:
    """One source per sparse-training control of the method registry (static_erk, set, rigl, ...)."""
    def summary(method, control: str) -> str:
        if method.layer_distribution:
            return (f"a random mask fixed during training, level L's overall density spread over the layers by "
                    f"{control.removeprefix(method.name + '_')}")
        return f"{method.summary}, to level L's per-layer counts"

    return tuple(Source(control, summary(method, control), "sparse_training", invertible=False)
                 for method in METHOD_REGISTRY.values() for control in method.controls)


SOURCE_REGISTRY: dict[str, Source] = {s.name: s for s in (
    Source("imp", "the main line's mask of level L (only with a transform)", "main", structured=True),
    Source("oneshot", "magnitude pruning of the trained dense network straight to level L's counts", "oneshot",
           structured=True),
    Source("oneshot_early", "magnitude pruning of the dense network at iteration pruning.oneshot_early_at of level 0 "
           "(e.g. its memorisation phase) straight to level L's counts", "oneshot_early", structured=True),
    Source("random_layerwise", "a uniformly random mask with level L's per-layer counts", "random_layerwise",
           invertible=False, structured=True),
    Source("random_global", "a uniformly random mask with level L's overall count, spread across layers",
           "random_global", invertible=False),
    Source("random_modulewise", "a uniformly random mask with level L's count per module, its kernel and bias "
           "pooled (the MNIST-1D notebook's random pruning)", "random_modulewise", invertible=False),
    Source("magnitude_init", "pruning at initialisation by weight magnitude, to level L's counts", "at_init",
           scorer="magnitude"),
    Source("snip", "pruning at initialisation by SNIP's |g * w| (Lee et al. 2019)", "at_init", scorer="snip"),
    Source("grasp", "pruning at initialisation by GraSP's -w * Hg (Wang et al. 2020)", "at_init", scorer="grasp"),
    Source("synflow", "iterative pruning at initialisation by SynFlow (Tanaka et al. 2020)", "at_init",
           scorer="synflow"),
    *_sparse_sources(),
)}
TRANSFORM_REGISTRY: dict[str, Transform] = {t.name: t for t in (
    Transform("reinit", "the mask kept, fresh initial weights (a new key)"),
    Transform("shuffle", "each layer's mask permuted within the layer (per-layer density kept)"),
    Transform("invert", "the scores' order reversed: keep the weights the source would prune"),
    Transform("signflip", "the start weights' signs flipped, each kept weight with probability 0.3 "
                          "(Gadhikar & Burkholz 2024)"),
)}

SOURCES = tuple(SOURCE_REGISTRY)
AT_INIT = tuple(name for name, s in SOURCE_REGISTRY.items() if s.kind == "at_init")
TRANSFORMS = tuple(TRANSFORM_REGISTRY)


def controls_help() -> str:
    """The list of control sources and transforms (`lth control --help`), from the registry."""
    width = max(map(len, (*SOURCES, *TRANSFORMS))) + 3
    sources = "\n".join(f"  {s.name:<{width}}{s.summary}" for s in SOURCE_REGISTRY.values())
    transforms = "\n".join(f"  +{t.name:<{width - 1}}{t.summary}" for t in TRANSFORM_REGISTRY.values())
    return (f"a control is SOURCE[+TRANSFORM...]; a transform alone (reinit) is imp+reinit\n\n"
            f"sources (where level L's mask comes from):\n{sources}\n\n"
            f"transforms (sparse-training sources take none):\n{transforms}\n")


@dataclass(frozen=True)
class Control:
    source: str
    transforms: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return "+".join((self.source, *self.transforms))

    @property
    def kind(self) -> str:
        """The kind of its source (`KINDS`): which mask rule makes its masks."""
        return SOURCE_REGISTRY[self.source].kind


def parse_control(text: str) -> Control:
    """'imp+reinit' -> Control('imp', ('reinit',)) ('reinit' alone is imp+reinit, and so for every
    transform); ConfigError for unknown or meaningless ones."""
    if text.strip() in TRANSFORMS:
        text = f"imp+{text.strip()}"
    source, *transforms = [p.strip() for p in text.strip().split("+")]
    if source not in SOURCES:
        raise unknown_name("control source", source, (*SOURCES, *TRANSFORMS))
    for t in transforms:
        if t not in TRANSFORMS:
            raise unknown_name("control transform", t, TRANSFORMS, where=f"in {text!r}")
    if len(set(transforms)) != len(transforms):
        raise ConfigError(f"control {text!r} repeats a transform")
    if source == "imp" and not transforms:
        raise ConfigError("'imp' alone is the main line: add a transform, e.g. imp+reinit or imp+shuffle")
    if SOURCE_REGISTRY[source].kind == "sparse_training" and transforms:
        raise ConfigError(f"{text!r}: the sparse-training controls take no transforms; use {source} alone")
    if "signflip" in transforms and ("reinit" in transforms or SOURCE_REGISTRY[source].kind == "at_init"):
        raise ConfigError(f"{text!r}: fresh initial weights have random signs already; flip the signs of "
                          "rewound or trained weights (imp+signflip, oneshot+signflip, random_layerwise+signflip)")
    if "invert" in transforms and not SOURCE_REGISTRY[source].invertible:
        raise ConfigError(f"{text!r}: inverting random scores is another random mask; drop '+invert'")
    return Control(source, tuple(transforms))


def parse_controls(texts: Iterable[str] | str) -> list[Control]:
    """'reinit,random_layerwise' or a list -> Controls."""
    if isinstance(texts, str):
        texts = [t for t in texts.split(",") if t.strip()]
    controls = [parse_control(t) for t in texts]
    if not controls:
        raise ConfigError("no control given: e.g. reinit, random_layerwise, oneshot, snip+shuffle")
    return controls


def check_granularity(control: Control, granularity: str) -> None:
    """A one-line ConfigError for a control that has no meaning at the run's structured granularity
    (`lth.spec.names.STRUCTURED`): sources other than imp, oneshot and random_layerwise choose single
    weights; inverting refill (a count of surviving weights, not a score) is not defined."""
    if granularity not in STRUCTURED:
        return
    if not SOURCE_REGISTRY[control.source].structured:
        usable = ", ".join(name for name, s in SOURCE_REGISTRY.items() if s.structured)
        raise ConfigError(f"control {control.name} chooses single weights, but this run prunes whole units "
                          f"(pruning.granularity {granularity}): use one of {usable} (with transforms)")
    if granularity == "refill" and "invert" in control.transforms:
        raise ConfigError(f"control {control.name}: refill ranks units by their surviving weights, which has no "
                          "inverse order; drop '+invert'")


def check_control(control: Control, config: ExperimentConfig) -> None:
    """One-line ConfigErrors, before anything trains, for a control that has no meaning in a run of
    `config`: its retraining (`check_retraining`), its granularity (`check_granularity`), or an
    oneshot_early control without the iteration it prunes at."""
    check_retraining(control, config.retraining)
    check_granularity(control, config.pruning.granularity)
    if control.kind == "oneshot_early" and not config.pruning.oneshot_early_at:
        raise ConfigError(f"control {control.name} prunes the dense network at an iteration of level 0: set it, "
                          "e.g. --set pruning.oneshot_early_at=2000it")


def check_retraining(control: Control, retraining: str) -> None:
    """A one-line ConfigError for a control that has no meaning under the run's retraining."""
    if retraining == "rewind":
        return
    if control.kind in ("at_init", "sparse_training", "oneshot_early") or "reinit" in control.transforms:
        what = ("trains from initialisation" if control.kind == "at_init" else
                "prunes level 0 part-way and rewinds" if control.kind == "oneshot_early" else
                "trains a sparse network with its own mask schedule" if control.kind == "sparse_training" else
                "draws fresh weights")
        raise ConfigError(f"control {control.name} {what}, but this run retrains with {retraining} (trained "
                          "weights kept): run it on a run with weight rewinding (--retraining rewind)")
