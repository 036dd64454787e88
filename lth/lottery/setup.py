"""A run's setup: its config validated and resolved into data on the device, the model and the
compiled trainers, before anything is written; the initial params and mask of a replicate; and the
variants of a setup for other layouts (replicate r, data-parallel, replicates split over devices).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from lth import rng
from lth.spec.config import ExperimentConfig, for_replicate, replace
from lth.spec.checks import validate_config
from lth.data import Dataset, load_dataset
from lth.data.device import DeviceData, device_shapes, to_device
from lth.errors import ConfigError, MaskError
from lth.lottery.method_config import check_schedule
from lth.models import Model, get_model
from lth.spec.names import RETRAINING as RETRAINING  # re-exported (lth.lottery)
from lth.spec.parse import duration_to_steps, parse_nm
from lth.sparsity.masks import (Mask, apply_mask, check_mask, connections, layer_counts, make_mask,
                                prunable_shapes)
from lth.sparsity.pruning import first_empty_level, layer_fraction
from lth.sparsity.structured import check_unit_levels, is_structured, structured_mask, structured_spaces
from lth.training.compile_cache import enable_compile_cache
from lth.training import Trainer, choose_loop, make_trainer
from lth.training.sharded import data_parallel
from lth.training.stacked import place, replicate_mesh, train_stacked



class Start(NamedTuple):
    """Where level 0 starts when it is not the seed's fresh init: a ticket's weights (e.g. a level of
    another run, `lth.tickets`), at iteration `step` (0, or the rewind step k), trained with the
    retraining schedule (`retrained`: the ticket was a pruned level) or the first level's, with the
    data order of level `data_level` (the ticket's own level) and of the levels after it."""

    params: Any
    model_state: Any
    step: int = 0
    retrained: bool = False
    data_level: int = 0


@dataclass(frozen=True)
class Setup:
    """Everything a run needs, resolved and validated from its config; nothing written yet."""

    @functools.cached_property
    def initial(self) -> tuple[Any, Any]:
        """The initial (params, model state): see `init_params` (made ahead in a thread when the run
        started its start-up work there: `lth.lottery.ahead`)."""
        if self.start is not None:
            return self.start.params, self.start.model_state
        made = self.ahead.result(("initial", self.config.seed)) if self.ahead is not None else None
        return made if made is not None else fresh_init(self.model, self.config.seed)

    config: ExperimentConfig
    dataset: Dataset
    data: DeviceData
    model: Model
    trainer: Trainer
    total_steps: int
    rewind_step: int
    retrain_trainer: Trainer  # levels >= 1: `trainer`, or a constant final-LR one for fine-tuning
    start: Start | None = None  # level 0 from given weights (a ticket) instead of the seed's init
    structure: tuple[int, int] | None = None  # `config.sparse.structure` parsed: (N, M), or None (unstructured)
    ahead: Any = dataclasses.field(default=None, compare=False)  # start-up work in threads (`lth.lottery.ahead.Ahead`)

    def for_replicate(self, replicate: int) -> Setup:
        """The setup of replicate r: the same programs and data, seed ``config.seed + r``."""
        return dataclasses.replace(self, config=for_replicate(self.config, replicate))

    def with_config(self, config: ExperimentConfig) -> Setup:
        """The same programs and data under another config of the same shapes (e.g. a seed)."""
        return dataclasses.replace(self, config=config)


def fresh_init(model: Model, seed: int) -> tuple[Any, Any]:
    """The (params, model state) the seed initialises `model` to (eager ops: `jax.jit` of the same init
    gives other bits, so it is not jitted)."""
    return model.init(rng.stream(seed, "init"))


def check_levels(config: ExperimentConfig, base_counts: dict[str, int], kernels: set[str]) -> None:
    """A one-line ConfigError if a kernel (or a pool of layers pruned together) would keep no weight
    by the last level: which layer, at which level, and how many levels are possible. (A bias or
    norm scale pruned away is only zero: `kernels` are the leaves that count.)"""
    counts = {name: n for name, n in base_counts.items() if name in kernels}
    empty = first_empty_level(counts, config.pruning, config.levels) if counts else None
    if empty is not None:
        group, level = empty
        names = ", ".join(group.names)
        raise ConfigError(f"{names} would keep no weight at level {level} ({base_counts[group.names[0]]:,} "
                          f"at level 0, pruned by {100 * layer_fraction(group.names[0], config.pruning):g} % a "
                          f"level): use --levels {level - 1} or fewer, or a smaller prune fraction")


def check_structured_levels(config: ExperimentConfig, params: Any) -> None:
    """At a structured granularity: a one-line ConfigError if a space would keep no unit by the last
    level (refill keeps at least one unit per space at every level: nothing to check)."""
    if config.pruning.granularity != "refill":
        check_unit_levels(structured_spaces(config.model, params, config.pruning), config.pruning, config.levels)


def prepare(config: ExperimentConfig, data_root: str | Path | None = None) -> Setup:
    """Validate `config` (`lth.spec.checks.validate_config`), then `build_setup`."""
    validate_config(config)
    return build_setup(config, data_root)


def build_setup(config: ExperimentConfig, data_root: str | Path | None = None,
                ahead: Callable[[Setup], Any] | None = None) -> Setup:
    """Load the data and build the model and the compiled trainer of a validated `config` (a plan's:
    `lth.plans`), its programs from the persistent compilation cache when an earlier process compiled
    them (`enable_compile_cache`); the checks that need the data (lengths, the rewind point, batch size).
    `ahead` (`lth.lottery.ahead.start_ahead`) starts the start-up work in threads as soon as the data's
    shapes are known, before the data goes to the device."""
    enable_compile_cache()
    dataset = load_dataset(config.data.name, config.data.validation_size, data_root,
                           random_labels_fraction=config.data.random_labels_fraction,
                           subsample_fraction=config.data.subsample_fraction,
                           transformation_seed=config.data.transformation_seed)
    n_train = len(dataset.y_train)
    batch = config.training.batch_size
    if batch > n_train:
        raise ConfigError(
            f"batch size {batch} is larger than the {n_train} training examples of {dataset.name}: "
            f"use --batch-size <= {n_train}"
        )
    steps_per_epoch = n_train // batch
    total = duration_to_steps(config.training.length, steps_per_epoch)
    if total < 1:
        raise ConfigError(f"training length {config.training.length!r} is zero iterations: train for at least 1")
    rewind = duration_to_steps(config.rewind, steps_per_epoch)
    if rewind >= total:
        raise ConfigError(
            f"rewind point {config.rewind!r} (iteration {rewind}) is not before the end of training "
            f"(iteration {total}): rewind to an earlier point, e.g. '0it'"
        )
    check_schedule(config, total)
    eval_every = duration_to_steps(config.training.eval_every, steps_per_epoch)
    if eval_every < 1:
        raise ConfigError(f"eval_every must be at least 1 iteration, got {config.training.eval_every!r}")
    model = get_model(config.model, dataset.input_shape, dataset.num_classes, config.init)
    param_shapes = jax.eval_shape(model.init, jax.random.key(0))[0]
    shapes = prunable_shapes(param_shapes, config.pruning.prunable)
    if is_structured(config.pruning):
        check_structured_levels(config, param_shapes)
    else:
        check_levels(config, {name: math.prod(shape) for name, shape in shapes.items()}, connections(shapes))
    build = functools.partial(make_trainer, model, total_steps=total, steps_per_epoch=steps_per_epoch,
                              batch_size=batch, eval_every=eval_every,
                              augmentation=config.data.augmentation or dataset.augmentation,
                              loop=choose_loop(model, dataset.input_shape), test_at=config.training.test_at)
    trainer = build(config.optimizer)
    retrain_trainer = trainer
    if config.retraining == "finetune":
        final_lr = float(trainer.schedule(total - 1))
        retrain_trainer = build(replace(config.optimizer, schedule="constant", learning_rate=final_lr,
                                        warmup="0it", milestones=()))
    setup = Setup(config, dataset, device_shapes(dataset), model, trainer, total, rewind, retrain_trainer,
                  structure=parse_nm(config.sparse.structure))
    if ahead is not None:
        setup = dataclasses.replace(setup, ahead=ahead(setup))
    return dataclasses.replace(setup, data=to_device(dataset))


def init_params(setup: Setup) -> tuple[Any, Any]:
    """The initial (params, model state) of the run: a function of the seed alone, or the start's.
    Made once per setup (nothing donates or changes these arrays), however many jobs ask."""
    return setup.initial


def start_step(setup: Setup) -> int:
    """The iteration level 0 starts at: 0, or a start's (its rewind step)."""
    return 0 if setup.start is None else setup.start.step


def level0_state(setup: Setup, params: Any, model_state: Any, mask: Mask) -> Any:
    """Level 0's starting train state: the seed's init (or a start's weights) masked, at `start_step`."""
    return setup.trainer.init_state(apply_mask(params, mask), model_state, start_step(setup))


def level_first_iteration(setup: Setup, level: int) -> int:
    """The iteration a level's training starts at: level 0 at `start_step`, later levels (and their
    controls) at the rewind step."""
    return start_step(setup) if level == 0 else setup.rewind_step


def retrained(setup: Setup, level: int) -> bool:
    """Whether `level` trains with the retraining schedule: every pruned level, and level 0 of a
    start that was a pruned level (`Setup.retrain_trainer`, not `Setup.trainer`)."""
    return level > 0 or (setup.start is not None and setup.start.retrained)


def data_level(setup: Setup, level: int) -> int:
    """The level whose data order `level` trains with: itself, counted from a start's `data_level`
    (a ticket of level L retrains with level L's data order, and IMP from it continues with L + 1's,
    as the run it came from did)."""
    return level + (0 if setup.start is None else setup.start.data_level)


def data_keys(setup: Setup, level: int) -> tuple[jax.Array, jax.Array]:
    """(data order key, augmentation key) of `level`: `rng.level_keys` of the run's seed at `data_level`."""
    return rng.level_keys(setup.config.seed, setup.config.data_order, data_level(setup, level))


def score_batch(setup: Setup) -> tuple[jax.Array, jax.Array]:
    """The training examples SNIP / GraSP score on (the snip method, the pruning-at-init controls): a
    class-balanced batch, the first `pruning.score_samples_per_class` examples of every class in a
    seeded permutation (GraSP's reference: 10 per class), in class order."""
    per_class = setup.config.pruning.score_samples_per_class
    order = np.asarray(jax.random.permutation(rng.stream(setup.config.seed, "score_batch"),
                                              int(setup.data.x_train.shape[0])))
    labels = np.asarray(setup.data.y_train)[order]
    picked = np.concatenate([order[labels == c][:per_class] for c in range(setup.dataset.num_classes)])
    return setup.data.x_train[picked], setup.data.y_train[picked]


def with_start(setup: Setup, start: Start) -> Setup:
    """`setup` whose level 0 starts from `start`; ConfigError if its iteration does not fit the run:
    it must be 0 (then level 0 reaches the rewind step k as usual) or k (then it is the rewind point)."""
    if start.step not in (0, setup.rewind_step):
        raise ConfigError(f"the ticket starts training at iteration {start.step}, but this run rewinds to iteration "
                          f"{setup.rewind_step}: pass --rewind {start.step}it (the ticket's rewind point)")
    return dataclasses.replace(setup, start=start)


def initial_mask(setup: Setup, params: Any, mask: Mask | None = None) -> Mask:
    """The level-0 mask: the given one (checked against the params, every layer keeping a weight,
    and enough of them for the run's levels) or a full one. At a structured granularity it also
    covers the prunable units' members (biases, norms) and their readers' kernels
    (`lth.sparsity.structured.structured_mask`), kept where a given mask has no entry."""
    spec = setup.config.pruning
    if mask is None:
        if is_structured(spec):
            return structured_mask(params, spec, structured_spaces(setup.config.model, params, spec))
        return make_mask(params, spec.prunable)
    check_mask(mask, params)
    if is_structured(spec):
        mask = structured_mask(params, spec, structured_spaces(setup.config.model, params, spec), mask)
    counts, kernels = layer_counts(mask), connections(prunable_shapes(params, setup.config.pruning.prunable))
    empty = [name for name, (kept, size) in counts.items() if size and not kept and name in kernels]
    if empty:
        raise MaskError(f"the starting mask keeps no weight of {', '.join(empty)}: every kernel needs at least "
                        "one (a kernel without weights cuts the network)")
    if not is_structured(spec):
        check_levels(setup.config, {name: kept for name, (kept, _) in counts.items()}, kernels)
    return mask


def data_parallel_setup(setup: Setup, mesh: Any = None) -> Setup:
    """A setup whose trainers and data are data-parallel over `mesh` (default: all devices;
    `lth.training.sharded`); `lottery_levels` runs it as is."""
    trainer, data = data_parallel(setup.trainer, setup.data, mesh)
    retrain = trainer
    if setup.retrain_trainer is not setup.trainer:
        retrain, _ = data_parallel(setup.retrain_trainer, setup.data, mesh)
    return dataclasses.replace(setup, trainer=trainer, retrain_trainer=retrain, data=data)


def stacked_training(setup: Setup, replicates: int, layout: str) -> tuple[Setup, Callable]:
    """(setup, train_many) for `lth.lottery.levels.lottery_levels_together` in the "vmap" or
    "devices" layout: the data placed on the replicate mesh once (replicated), and
    `lth.training.stacked.train_stacked` bound to that mesh."""
    mesh = replicate_mesh(replicates) if layout == "devices" else None
    if mesh is not None:
        setup = dataclasses.replace(setup, data=place(setup.data, mesh, split=False))
    return setup, functools.partial(train_stacked, mesh=mesh)
