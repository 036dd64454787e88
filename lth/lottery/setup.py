"""A run's setup: its config validated and resolved into data on the device, the model and the
compiled trainers, before anything is written; the initial params and mask of a replicate; and the
variants of a setup for other layouts (replicate r, data-parallel, replicates split over devices).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lth import rng
from lth.config import ExperimentConfig, for_replicate, replace
from lth.data import Dataset, check_dataset_name, load_dataset
from lth.data.device import DeviceData, to_device
from lth.errors import ConfigError
from lth.models import Model, check_model_name, get_model
from lth.parse import duration_to_steps, parse_duration
from lth.sparsity.masks import Mask, check_mask, make_mask
from lth.sparsity.pruning import validate_spec
from lth.training import OPTIMIZERS, SCHEDULES, Trainer, choose_loop, make_trainer
from lth.training.sharded import data_parallel
from lth.training.stacked import place, replicate_mesh, train_stacked

RETRAINING = ("rewind", "lr_rewind", "finetune")


@dataclass(frozen=True)
class Setup:
    """Everything a run needs, resolved and validated from its config; nothing written yet."""

    config: ExperimentConfig
    dataset: Dataset
    data: DeviceData
    model: Model
    trainer: Trainer
    total_steps: int
    rewind_step: int
    retrain_trainer: Trainer  # levels >= 1: `trainer`, or a constant final-LR one for fine-tuning

    def for_replicate(self, replicate: int) -> Setup:
        """The setup of replicate r: the same programs and data, seed ``config.seed + r``."""
        return dataclasses.replace(self, config=for_replicate(self.config, replicate))

    def with_config(self, config: ExperimentConfig) -> Setup:
        """The same programs and data under another config of the same shapes (e.g. a seed)."""
        return dataclasses.replace(self, config=config)


def validate_config(config: ExperimentConfig) -> None:
    """Checks that need no data: names, fractions, counts, duration syntax."""
    if config.levels < 0:
        raise ConfigError(f"levels must be >= 0, got {config.levels}: level 0 trains dense, each further level prunes")
    validate_spec(config.pruning)
    if config.optimizer.name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {config.optimizer.name!r}: choose one of {', '.join(OPTIMIZERS)}")
    if config.optimizer.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {config.optimizer.schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if config.optimizer.learning_rate <= 0:
        raise ConfigError(f"learning rate must be > 0, got {config.optimizer.learning_rate}")
    if config.training.batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {config.training.batch_size}")
    if config.retraining not in RETRAINING:
        raise ConfigError(f"unknown retraining {config.retraining!r}: choose one of {', '.join(RETRAINING)}")
    if config.seed < 0:
        raise ConfigError(f"seed must be >= 0, got {config.seed}")
    check_model_name(config.model)
    check_dataset_name(config.data.name)
    for text in (config.training.length, config.training.eval_every, config.rewind, config.optimizer.warmup,
                 *config.optimizer.milestones):
        parse_duration(text)


def prepare(config: ExperimentConfig, data_root: str | Path | None = None) -> Setup:
    """Validate `config`, load the data and build the model and the compiled trainer."""
    validate_config(config)
    dataset = load_dataset(config.data.name, config.data.validation_size, data_root)
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
    eval_every = duration_to_steps(config.training.eval_every, steps_per_epoch)
    if eval_every < 1:
        raise ConfigError(f"eval_every must be at least 1 iteration, got {config.training.eval_every!r}")
    model = get_model(config.model, dataset.input_shape, dataset.num_classes)
    build = functools.partial(make_trainer, model, total_steps=total, steps_per_epoch=steps_per_epoch,
                              batch_size=batch, eval_every=eval_every,
                              augmentation=config.data.augmentation or dataset.augmentation,
                              loop=choose_loop(model, dataset.input_shape))
    trainer = build(config.optimizer)
    retrain_trainer = trainer
    if config.retraining == "finetune":
        final_lr = float(trainer.schedule(total - 1))
        retrain_trainer = build(replace(config.optimizer, schedule="constant", learning_rate=final_lr,
                                        warmup="0it", milestones=()))
    return Setup(config, dataset, to_device(dataset), model, trainer, total, rewind, retrain_trainer)


def init_params(setup: Setup) -> tuple[Any, Any]:
    """The initial (params, model state) of the run: a function of the seed alone."""
    return setup.model.init(rng.stream(setup.config.seed, "init"))


def initial_mask(setup: Setup, params: Any, mask: Mask | None = None) -> Mask:
    """The level-0 mask: the given one (checked against the params) or a full one."""
    if mask is None:
        return make_mask(params, setup.config.pruning.prunable)
    check_mask(mask, params)
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
