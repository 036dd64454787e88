"""The iterative magnitude pruning (IMP) driver.

Level 0 trains the dense network (or a given starting mask). Each next level prunes the previous
level's trained weights, rewinds the survivors to the rewind point (iteration 0 = init, or step k),
starts a fresh optimiser state with the schedule at step k, and retrains to the same end. The data
order is the same at every level (a function of the seed and the epoch), so a level differs from
the dense run only by its mask.

`lottery_levels` is the pure-ish core (a generator of level outcomes, no files); `run_lottery`
adds the run directory, logging, progress bars and the plot.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax

from lth import rng
from lth.config import ExperimentConfig, duration_to_steps, parse_duration, replace
from lth.data import Dataset, check_dataset_name, load_dataset
from lth.data.device import DeviceData, to_device
from lth.errors import ConfigError
from lth.masks import (
    Mask, apply_mask, check_mask, layer_counts, layer_densities, make_mask, mask_digest, overlap, sign_agreement,
)
from lth.models import Model, check_model_name, get_model
from lth.pruning import prune_magnitude, validate_spec
from lth.train import OPTIMIZERS, SCHEDULES, Trainer, TrainState, choose_loop, make_trainer, summarize, train


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


class LevelOutcome(NamedTuple):
    record: dict[str, Any]  # one row of results.json (deterministic: no timings)
    mask: Mask
    state: TrainState  # at the end of training
    evaluations: list[dict[str, float]]
    seconds: float  # wall time of the level (training, evaluation and pruning)


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
            f"batch size {batch} is larger than the {n_train} training examples of {dataset.name}: use --batch-size <= {n_train}"
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


def level_record(level: int, mask: Mask, evaluations: list[dict[str, float]], *, previous_mask: Mask | None = None,
                 params_init: Any = None, params_final: Any = None) -> dict[str, Any]:
    """The results.json row of a level: density, early-stop and final accuracies, per-layer density,
    and (when given) the mask's overlap with the previous level's and the fraction of surviving
    weights whose trained sign equals their sign at initialisation."""
    counts = layer_counts(mask)
    kept = sum(k for k, _ in counts.values())
    total = sum(n for _, n in counts.values())
    return {
        "level": level,
        "density": kept / total,
        "percent_remaining": 100.0 * kept / total,
        "weights_remaining": kept,
        "prunable_weights": total,
        **summarize(evaluations),
        "layer_density": layer_densities(mask),
        **({"overlap_with_previous": overlap(mask, previous_mask)} if previous_mask is not None else {}),
        **({"sign_agreement_with_init": sign_agreement(params_init, params_final, mask)}
           if params_init is not None and params_final is not None else {}),
    }


class Hooks:
    """Callbacks of `lottery_levels` (override what you need); they run outside jit."""

    def level_start(self, level: int, state: TrainState, mask: Mask) -> None:
        """Before training a level: its starting state (pruned and rewound) and its mask."""

    def chunk_done(
        self, level: int, state: TrainState, mask: Mask, new: list[dict[str, float]], evaluations: list[dict[str, float]]
    ) -> None:
        """After every compiled chunk (an epoch, or part of one at the rewind step): the chunk's
        evaluations (`new`) and all of the level's so far."""

    def rewind_captured(self, state: TrainState) -> None:
        """Level 0 reached the rewind step k > 0: `state` holds the weights later levels rewind to."""


class Resume(NamedTuple):
    """Where an interrupted lottery continues (see `lth.runs.find_resume`)."""

    level: int  # the first level not finished
    previous: TrainState | None  # final state of level - 1 (None for level 0)
    previous_mask: Mask | None
    rewind_point: tuple[Any, Any] | None  # (params, model state) at step k > 0, once reached
    state: TrainState | None = None  # a mid-level state of `level` to continue from
    mask: Mask | None = None  # the mask of `level`, with `state`
    evaluations: tuple[dict[str, float], ...] = ()  # the evaluations of `level` before `state`


def lottery_levels(
    setup: Setup,
    mask: Mask | None = None,
    *,
    hooks: Hooks | None = None,
    resume: Resume | None = None,
) -> Iterator[LevelOutcome]:
    """Yield one `LevelOutcome` per level, 0 to `config.levels` (from `resume.level` if given).

    No files, no printing: side effects belong to `hooks`. A resumed run computes exactly what an
    uninterrupted one does: chunks are cut at the same iterations and the data order is a function
    of (seed, epoch) only.
    """
    for (outcome,) in lottery_levels_together([setup], [mask], hooks=[hooks or Hooks()], resumes=[resume]):
        yield outcome


TrainMany = Callable[..., Iterator[tuple[list[TrainState], list[list[dict[str, float]]]]]]


def train_each(trainer: Trainer, states: list[TrainState], masks: list[Mask], data: DeviceData,
               order_keys: list[jax.Array], augment_keys: list[jax.Array], *,
               breaks: Iterable[int] = ()) -> Iterator[tuple[list[TrainState], list[list[dict[str, float]]]]]:
    """`lth.train.train` for a single replicate, in the (states, evaluations) per-replicate form of
    `lottery_levels_together` (one replicate only: several are trained by `lth.replicates`)."""
    if len(states) != 1:
        raise ValueError("train_each trains one replicate; use lth.replicates.train_stacked for several")
    for state, evals in train(trainer, states[0], masks[0], data, order_keys[0], augment_keys[0], breaks=breaks):
        yield [state], [evals]


@dataclass
class _Seed:
    """What the IMP driver keeps per replicate between levels."""

    params0: Any
    model_state0: Any
    mask0: Mask
    base_counts: dict[str, int]
    order_key: jax.Array
    augment_key: jax.Array
    rewind_point: tuple[Any, Any] | None
    previous: TrainState | None = None
    previous_mask: Mask | None = None


def _seed(setup: Setup, mask: Mask | None, resume: Resume | None) -> _Seed:
    params0, model_state0 = init_params(setup)
    mask0 = initial_mask(setup, params0, mask)
    seed = _Seed(params0, model_state0, mask0, {name: kept for name, (kept, _) in layer_counts(mask0).items()},
                 rng.stream(setup.config.seed, "data_order"), rng.stream(setup.config.seed, "augmentation"),
                 (params0, model_state0) if setup.rewind_step == 0 else None)
    if resume is not None:
        seed.previous, seed.previous_mask = resume.previous, resume.previous_mask
        seed.rewind_point = resume.rewind_point or seed.rewind_point
    return seed


def _level_start(setup: Setup, seed: _Seed, level: int, resume: Resume | None
                 ) -> tuple[TrainState, Mask, list[dict[str, float]]]:
    """The starting (state, mask, evaluations so far) of `level`: resumed, dense, or pruned and rewound."""
    config, trainer = setup.config, setup.trainer
    if resume is not None and level == resume.level and resume.state is not None:
        return resume.state, resume.mask, list(resume.evaluations)
    if level == 0:
        return trainer.init_state(apply_mask(seed.params0, seed.mask0), seed.model_state0, 0), seed.mask0, []
    assert seed.previous is not None and seed.rewind_point is not None
    mask = prune_magnitude(seed.previous.params, seed.previous_mask, config.pruning, level, seed.base_counts)
    if config.retraining == "rewind":
        params, model_state = seed.rewind_point
    else:  # learning-rate rewinding and fine-tuning keep the trained weights
        params, model_state = seed.previous.params, seed.previous.model_state
    return trainer.init_state(apply_mask(params, mask), model_state, setup.rewind_step), mask, []


def _resume_point(resume: Resume | None) -> tuple[int, int | None]:
    if resume is None:
        return 0, None
    return resume.level, None if resume.state is None else int(resume.state.step)


def lottery_levels_together(
    setups: list[Setup],
    masks: list[Mask | None] | None = None,
    *,
    hooks: list[Hooks] | None = None,
    resumes: list[Resume | None] | None = None,
    train_many: TrainMany = train_each,
) -> Iterator[list[LevelOutcome]]:
    """`lottery_levels` for replicates that advance in lockstep: yields, per level, one outcome per setup.

    The setups differ only in their seed; `train_many` trains all of them chunk by chunk
    (`train_each`: one replicate; `lth.replicates.train_stacked`: several as one vmapped program).
    The replicates must resume from the same point (level and iteration): group them by
    `_resume_point` first.
    """
    n = len(setups)
    masks = masks if masks is not None else [None] * n
    hooks = hooks if hooks is not None else [Hooks() for _ in range(n)]
    resumes = resumes if resumes is not None else [None] * n
    if len({_resume_point(r) for r in resumes}) > 1:
        raise ValueError("replicates trained together must resume from the same level and iteration")
    config, trainer, k = setups[0].config, setups[0].trainer, setups[0].rewind_step
    seeds = [_seed(setup, mask, resume) for setup, mask, resume in zip(setups, masks, resumes)]
    first_level = _resume_point(resumes[0])[0]

    for level in range(first_level, config.levels + 1):
        started = time.perf_counter()
        states, level_masks, evaluations = map(list, zip(*(
            _level_start(setup, seed, level, resume) for setup, seed, resume in zip(setups, seeds, resumes))))
        for r in range(n):
            hooks[r].level_start(level, states[r], level_masks[r])
        breaks = (k,) if level == 0 and k > 0 else ()
        level_trainer = trainer if level == 0 else setups[0].retrain_trainer
        for states, evals in train_many(level_trainer, states, level_masks, setups[0].data,
                                        [s.order_key for s in seeds], [s.augment_key for s in seeds], breaks=breaks):
            for r, (seed, state) in enumerate(zip(seeds, states)):
                if level == 0 and k > 0 and int(state.step) == k:
                    seed.rewind_point = (state.params, state.model_state)
                    hooks[r].rewind_captured(state)
                evaluations[r].extend(evals[r])
                hooks[r].chunk_done(level, state, level_masks[r], evals[r], evaluations[r])
        jax.block_until_ready([state.params for state in states])
        seconds = time.perf_counter() - started
        outcomes = []
        for seed, state, mask, evals in zip(seeds, states, level_masks, evaluations):
            record = level_record(level, mask, evals, previous_mask=seed.previous_mask, params_init=seed.params0,
                                  params_final=state.params)
            seed.previous, seed.previous_mask = state, mask
            outcomes.append(LevelOutcome(record, mask, state, evals, seconds))
        yield outcomes


# --------------------------------------------------------------------------- the run, with its files


_clock = time.monotonic  # the wall clock of time-based checkpoints (tests replace it)


class CheckpointPeriod(NamedTuple):
    """When to checkpoint inside a level (always at an epoch boundary; level ends are always saved)."""

    steps: int = 0  # > 0: once this many iterations have passed since the last checkpoint
    seconds: float = 0.0  # > 0: once this much wall time has passed since the last checkpoint

    def due(self, steps_since: int, seconds_since: float) -> bool:
        return (self.steps > 0 and steps_since >= self.steps) or (self.seconds > 0 and seconds_since >= self.seconds)


def parse_checkpoint_period(text: str, steps_per_epoch: int) -> CheckpointPeriod:
    """'10min' / '90s' (wall time), '5ep' / '2000it' (training); '0ep' or '0min': level ends only."""
    import re

    match = re.fullmatch(r"\s*(\d+)\s*(min|s)\s*", str(text))
    if match:
        return CheckpointPeriod(seconds=float(match.group(1)) * (60 if match.group(2) == "min" else 1))
    try:
        return CheckpointPeriod(steps=duration_to_steps(text, steps_per_epoch))
    except ConfigError:
        raise ConfigError(f"invalid checkpoint period {text!r}: write e.g. '10min', '90s', '5ep' or '2000it' "
                          "('0ep': at level ends only)") from None


def _warn(message: str) -> None:
    print(f"lth: warning: {message}", file=sys.stderr, flush=True)


class _ReplicateHooks(Hooks):
    """Checkpoints, metrics.jsonl, trackers and the progress bar of one replicate."""

    def __init__(self, rep: Any, sink: Any, reporter: Any, trackers: list[Any], replicate: int,
                 checkpoint_every: CheckpointPeriod, steps_per_epoch: int, total_steps: int):
        self.rep, self.sink, self.reporter, self.trackers = rep, sink, reporter, trackers
        self.replicate, self.every, self.spe, self.total = replicate, checkpoint_every, steps_per_epoch, total_steps
        self.step = self.last_checkpoint = 0
        self.last_checkpoint_time = _clock()

    def level_start(self, level: int, state: TrainState, mask: Mask) -> None:
        self.step = self.last_checkpoint = int(state.step)
        self.last_checkpoint_time = _clock()
        counts = layer_counts(mask)
        percent = 100.0 * sum(k for k, _ in counts.values()) / sum(n for _, n in counts.values())
        self.reporter.start_level(self.replicate, level, self.step, percent)
        for tracker in self.trackers:
            tracker.level_start(self.replicate, level, percent, self.step)

    def chunk_done(self, level, state, mask, new, evaluations) -> None:
        for e in new:
            self.sink.log({"level": level, **e})
        for tracker in self.trackers:
            tracker.log_evaluations(self.replicate, level, new)
        step = int(state.step)
        self.reporter.advance(step - self.step, new)
        self.step = step
        if step < self.total and step % self.spe == 0 and self.every.due(
                step - self.last_checkpoint, _clock() - self.last_checkpoint_time):
            self.rep.save_level_step(level, state, mask, evaluations)
            self.last_checkpoint, self.last_checkpoint_time = step, _clock()

    def rewind_captured(self, state: TrainState) -> None:
        self.rep.save_rewind(state)


def _open_replicate(setup: Setup, rep: Any, mask: Mask | None, replicate: int,
                    reporter: Any) -> tuple[list[dict[str, Any]], Resume | None] | None:
    """A replicate's finished records and its resume point (None: every level is done already);
    its files are reset or truncated to that point."""
    from lth.parallel import barrier

    config, trainer = setup.config, setup.trainer
    records = rep.read_results()
    if len(records) == config.levels + 1:
        return None
    params0, model_state0 = init_params(setup)
    template = trainer.init_state(params0, model_state0)
    resume = rep.find_resume(template, initial_mask(setup, params0, mask), setup.rewind_step, _warn)
    barrier(f"lth: replicate {replicate} read")  # several processes: all have read before process 0 writes
    if resume is None:
        rep.reset()
        records = []
    else:
        records = rep.read_results()[: resume.level]
        rep.truncate_metrics(resume.level, int(resume.state.step) if resume.state is not None else -1)
        where = f"iteration {int(resume.state.step)}" if resume.state is not None else "its start"
        reporter.note(f"resuming replicate {replicate} at level {resume.level}, {where}")
    rep.mkdir()
    return records, resume


def _level_done(rep: Any, outcome: LevelOutcome, records: list[dict[str, Any]], sink: Any, reporter: Any,
                trackers: list[Any], replicate: int) -> None:
    """Save a finished level of one replicate: checkpoint, mask, results.json, logs."""
    level = outcome.record["level"]
    rep.save_level_final(level, outcome.state, outcome.mask)
    rep.save_mask(level, outcome.mask)
    records.append(outcome.record)
    rep.write_results(records)  # after the final checkpoint: a listed level can always be resumed from
    sink.log({"level": level, "event": "level_done", "seconds": round(outcome.seconds, 3)})
    reporter.end_level(outcome.record, outcome.seconds, replicate)
    for tracker in trackers:
        tracker.level_done(replicate, outcome.record, outcome.evaluations)


def _run_replicate(setup: Setup, rep: Any, mask: Mask | None, replicate: int, checkpoint_every: CheckpointPeriod,
                   reporter: Any, trackers: list[Any]) -> list[dict[str, Any]]:
    from lth.tracking import JsonlSink

    opened = _open_replicate(setup, rep, mask, replicate, reporter)
    if opened is None:
        return rep.read_results()
    records, resume = opened
    with JsonlSink(rep.metrics_path, enabled=rep.writable) as sink:
        hooks = _ReplicateHooks(rep, sink, reporter, trackers, replicate, checkpoint_every,
                                setup.trainer.steps_per_epoch, setup.trainer.total_steps)
        for outcome in lottery_levels(setup, mask, hooks=hooks, resume=resume):
            _level_done(rep, outcome, records, sink, reporter, trackers, replicate)
    return records


class _WholeLevels:
    """Feeds a tracker that holds one open run at a time (W&B: one run per replicate and level) the
    replicates of a lockstep group one after another: each replicate's level is logged whole when it
    ends, with all its evaluations (those before a resume too; the tracker skips steps it has)."""

    def __init__(self, tracker: Any):
        self.tracker, self.starts = tracker, {}

    def level_start(self, replicate: int, *args: Any) -> None:
        self.starts[replicate] = args

    def log_evaluations(self, *args: Any) -> None:
        pass

    def level_done(self, replicate: int, record: dict[str, Any], evaluations: list[dict[str, float]]) -> None:
        self.tracker.level_start(replicate, *self.starts.pop(replicate))
        self.tracker.log_evaluations(replicate, record["level"], evaluations)
        self.tracker.level_done(replicate, record, evaluations)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)


def _run_replicates_together(setup: Setup, reps: list[Any], todo: list[int], mask: Mask | None, layout: str,
                             checkpoint_every: CheckpointPeriod, reporter: Any, trackers: list[Any]) -> None:
    """Train the replicates `todo` as one vmapped program (`lth.replicates`), each group of those that
    resume from the same point together (normally all of them); their files as in `_run_replicate`."""
    import contextlib

    from lth.progress import FollowerProgress
    from lth.replicates import stacked_training
    from lth.tracking import JsonlSink

    setups = {r: dataclasses.replace(setup, config=replace(setup.config, seed=setup.config.seed + r)) for r in todo}
    trackers = [_WholeLevels(t) if getattr(t, "one_run_at_a_time", False) else t for t in trackers]
    opened = {r: _open_replicate(setups[r], reps[r], mask, r, reporter) for r in todo}
    groups: dict[tuple[int, int | None], list[int]] = {}
    for r in todo:
        if opened[r] is not None:
            groups.setdefault(_resume_point(opened[r][1]), []).append(r)
    for members in groups.values():
        group_setup, train_many = stacked_training(setup, len(members), layout)
        reporter.note(f"training replicates {', '.join(map(str, members))} together ({layout})")
        reporter.together = len(members)
        with contextlib.ExitStack() as files:
            sinks = [files.enter_context(JsonlSink(reps[r].metrics_path, enabled=reps[r].writable)) for r in members]
            hooks = [_ReplicateHooks(reps[r], sink, reporter if i == 0 else FollowerProgress(reporter), trackers, r,
                                     checkpoint_every, setup.trainer.steps_per_epoch, setup.trainer.total_steps)
                     for i, (r, sink) in enumerate(zip(members, sinks))]
            for outcomes in lottery_levels_together(
                    [dataclasses.replace(group_setup, config=setups[r].config) for r in members],
                    [mask] * len(members), hooks=hooks, resumes=[opened[r][1] for r in members],
                    train_many=train_many):
                for hook, outcome, sink, r in zip(hooks, outcomes, sinks, members):
                    _level_done(reps[r], outcome, opened[r][0], sink, hook.reporter, trackers, r)
        reporter.together = 1


def run_lottery(
    config: ExperimentConfig,
    *,
    runs_root: str | Path | None = None,
    data_root: str | Path | None = None,
    mask: Mask | str | Path | None = None,
    replicates: int = 1,
    checkpoint_every: str = "10min",
    progress: bool = True,
    wandb: str | None = None,
    trackers: list[Any] | None = None,
    controls: tuple[str, ...] = (),
    control_levels: str | list[int] | None = None,
    data_parallel: bool = False,
    workers: int | None = None,
    layout: str | None = None,
) -> list[dict[str, Any]]:
    """Run, resume or finish a lottery experiment; return its per-level records.

    With one replicate the records are that replicate's; with several, the mean (and `*_std`) over
    replicates per level (each replicate's own records are in ``replicate_XX/results.json``).
    Replicate r uses seed ``config.seed + r``. Finished levels are never recomputed; an interrupted
    level resumes from its latest checkpoint and ends bit-identical to an uninterrupted run. Inside a
    level a checkpoint is saved at the first epoch boundary after `checkpoint_every` has passed:
    wall time ("10min", the default; "90s") or training ("5ep", "2000it"); "0ep" = level ends only.

    Everything is validated before the run directory is created, so bad input raises a
    `ConfigError` / `MaskError` (both `ValueError`) and leaves nothing behind. `mask` is an optional
    starting mask (a mask pytree or a saved `.npz`); its digest becomes part of the config.

    `wandb`: "offline" (default, or $WANDB_MODE), "online" or "disabled"; offline files are written
    inside the run directory. Local files (results, metrics.jsonl, plots) are written in every mode.

    `controls` (e.g. ("imp+reinit", "random_layerwise")) are trained afterwards for `control_levels`
    (default: every level) by `lth.controls.run_controls`; finished ones are not recomputed.

    `data_parallel`: shard every batch over all devices (`lth.parallel`; params and masks
    replicated). In a multi-process launch (`lth.parallel.initialize_distributed`, docs/multihost.md)
    it is required, and the devices are those of all processes: every process computes everything,
    process 0 alone writes the run directory, checkpoints, logs and W&B (extra `trackers` are called
    in every process). Results equal single-device training to float tolerance, not bit for bit: resume a
    run on the device count it started with.

    `layout`: how several replicates run (`lth.replicates`): "sequential" (one after another),
    "workers" (worker processes, each pinned to its own CPU core; `workers` of them, default as many
    as there are cores and replicates to train; byte-identical to sequential), "vmap" (one vmapped
    program on the default device) or "devices" (that program with the replicates split over the
    local devices). vmap and devices equal sequential up to float summation order. Default: workers
    on CPU, devices (one device: vmap) on accelerators, sequential with data-parallel training.
    """
    from lth.plots import plot_run
    from lth.progress import LevelProgress
    from lth.runs import RunDir, load_mask

    from lth.config import to_dict
    from lth.tracking import WandbTracker, resolve_wandb_mode, wandb_credentials_present

    processes, main = jax.process_count(), jax.process_index() == 0
    if processes > 1 and not data_parallel:
        raise ConfigError(f"this run has {processes} processes: add --data-parallel to train one network over all "
                          "of their devices (see docs/multihost.md)")
    if processes > 1 and controls:
        raise ConfigError("controls run in one process: use --no-controls here and `lth control` afterwards")
    wandb_mode = resolve_wandb_mode(wandb) if main else "disabled"
    if wandb_mode == "online" and not wandb_credentials_present():
        raise ConfigError("W&B online mode needs credentials: run `wandb login` or set WANDB_API_KEY, "
                          "or use --wandb offline (sync later)")
    setup = prepare(config, data_root)
    if data_parallel:
        from lth.parallel import data_parallel_setup

        setup = data_parallel_setup(setup)
    if replicates < 1:
        raise ConfigError(f"replicates must be >= 1, got {replicates}")
    choose_layout(layout, workers, replicates, data_parallel)  # validate before anything is written
    every = parse_checkpoint_period(checkpoint_every, setup.trainer.steps_per_epoch)
    if mask is not None:
        params0, _ = init_params(setup)
        mask = initial_mask(setup, params0, load_mask(mask, params0) if isinstance(mask, (str, Path)) else mask)
        setup = dataclasses.replace(setup, config=replace(config, initial_mask=mask_digest(mask)))
        config = setup.config
    run = RunDir(runs_root, config, writable=main)  # several processes: all compute, process 0 writes
    reps = [run.replicate(r) for r in range(replicates)]
    if controls:
        from lth.controls import parse_controls, parse_levels

        parse_controls(controls)
        # an experiment's control levels beyond a shortened run (--levels) are left out
        wanted = control_levels if control_levels is not None else f"0-{config.levels}"
        if isinstance(wanted, str):
            wanted = parse_levels(wanted, 10**6)
        control_levels = [lv for lv in wanted if lv <= config.levels]
    if run.results_path.exists() and all(len(rep.read_results()) == config.levels + 1 for rep in reps):
        if progress and main:
            print(f"{run.path}: all {config.levels + 1} levels of {replicates} replicate(s) done")
        _run_controls(run, controls, control_levels, data_root, wandb, progress)
        return _records(run, reps)

    run.create()
    wandb_tracker = WandbTracker(run.path, to_dict(config), wandb_mode, warn=_warn)
    trackers = [*(trackers or []), wandb_tracker]
    reporter = LevelProgress(config.levels, setup.total_steps, replicates, enabled=progress and main)
    reporter.note(f"run directory: {run.path}")
    todo = [r for r, rep in enumerate(reps) if len(rep.read_results()) < config.levels + 1]
    layout, workers = choose_layout(layout, workers, len(todo), data_parallel)
    with run.lock():
        per_replicate = []
        try:
            if layout == "workers" and workers > 1:
                _run_replicates_in_workers(run, todo, workers, config, runs_root, data_root, mask,
                                           checkpoint_every, wandb_mode, reporter)
            elif layout in ("vmap", "devices"):
                _run_replicates_together(setup, reps, todo, mask, layout, every, reporter, trackers)
            for r, rep in enumerate(reps):  # after workers or vmap, this only reads the finished records
                setup_r = dataclasses.replace(setup, config=replace(config, seed=config.seed + r))
                per_replicate.append(_run_replicate(setup_r, rep, mask, r, every, reporter, trackers))
                run.write_aggregate(per_replicate)
            if main:
                plot_run(run.path)
                for tracker in trackers:
                    tracker.run_done(run, _records(run, reps))
        finally:
            reporter.close()
            for tracker in trackers:
                tracker.close()
    _run_controls(run, controls, control_levels, data_root, wandb, progress)
    if progress and main:
        print(f"results: {run.results_path}\nplot:    {run.plot_path}")
        if wandb_tracker.sync_command() and wandb_tracker.active:
            print(f"W&B (offline): upload with  {wandb_tracker.sync_command()}")
    if not main:  # process 0 may still be writing the files: the same records, from memory
        from lth.runs import aggregate

        return per_replicate[0] if replicates == 1 else aggregate(per_replicate)
    return _records(run, reps)


def choose_layout(layout: str | None, workers: int | None, replicates: int,
                  data_parallel: bool = False) -> tuple[str, int]:
    """(layout, worker processes) of a run with `replicates` replicates to train (see `run_lottery`)."""
    from lth.replicates import check_layout, default_layout

    if layout is None:
        if data_parallel:
            return "sequential", 1
        count = choose_workers(workers, replicates)
        layout = ("workers" if count > 1 else "sequential") if workers is not None else default_layout(replicates, count)
        return layout, count if layout == "workers" else 1
    check_layout(layout, data_parallel=data_parallel)
    if layout == "workers":
        return layout, choose_workers(workers, replicates, data_parallel)
    if workers is not None and workers != 1:
        raise ConfigError(f"--workers applies to --layout workers, not {layout}: drop --workers or change the layout")
    return layout, 1


def choose_workers(workers: int | None, replicates: int, data_parallel: bool = False) -> int:
    """How many replicate worker processes: the argument (>= 1), else on CPU one per core and
    replicate to train, else 1. Data-parallel runs use every device in one process."""
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        return 1 if data_parallel else min(workers, max(replicates, 1))
    if data_parallel or replicates < 2 or jax.default_backend() != "cpu":
        return 1
    return max(1, min(replicates, len(os.sched_getaffinity(0))))


def _pin_worker(cores: Any) -> None:
    core = cores.get()
    os.sched_setaffinity(0, {core})


def _replicate_worker(config_dict: dict[str, Any], replicate: int, runs_root: Any, data_root: Any,
                      mask_arrays: dict[str, Any] | None, checkpoint_every: str, wandb_mode: str) -> int:
    """One replicate in a worker process (pinned to a core by `_pin_worker`): no progress bars."""
    from lth.config import from_dict, to_dict
    from lth.masks import mask_from_arrays
    from lth.progress import LevelProgress
    from lth.runs import RunDir
    from lth.tracking import WandbTracker

    config = from_dict(config_dict)
    setup = prepare(replace(config, initial_mask=None), data_root)
    setup = dataclasses.replace(setup, config=replace(config, seed=config.seed + replicate))
    mask = mask_from_arrays(mask_arrays, init_params(setup)[0]) if mask_arrays is not None else None
    run = RunDir(runs_root, config)
    tracker = WandbTracker(run.path, to_dict(config), wandb_mode, warn=_warn)
    reporter = LevelProgress(config.levels, setup.total_steps, enabled=False)
    try:
        every = parse_checkpoint_period(checkpoint_every, setup.trainer.steps_per_epoch)
        records = _run_replicate(setup, run.replicate(replicate), mask, replicate, every, reporter, [tracker])
    finally:
        tracker.close()
    return len(records)


def _run_replicates_in_workers(run: Any, todo: list[int], workers: int, config: ExperimentConfig, runs_root: Any,
                               data_root: Any, mask: Mask | None, checkpoint_every: str, wandb_mode: str,
                               reporter: Any) -> None:
    """Train the replicates `todo` in `workers` processes pinned to distinct cores."""
    import concurrent.futures
    import multiprocessing

    from lth.config import to_dict
    from lth.masks import mask_to_arrays

    context = multiprocessing.get_context("spawn")  # never fork a process that holds XLA threads
    cores = context.Queue()
    for core in sorted(os.sched_getaffinity(0))[:workers]:
        cores.put(core)
    reporter.note(f"training {len(todo)} replicates in {workers} worker processes (one core each)")
    arrays = mask_to_arrays(mask) if mask is not None else None
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_pin_worker,
                                                initargs=(cores,)) as pool:
        futures = {pool.submit(_replicate_worker, to_dict(config), r, str(run.path.parent), data_root, arrays,
                               checkpoint_every, wandb_mode): r for r in todo}
        for future in concurrent.futures.as_completed(futures):
            levels = future.result()  # a worker's error is raised here, its finished levels kept
            reporter.note(f"replicate {futures[future]}: {levels} levels done")


def _run_controls(run: Any, controls: tuple[str, ...], levels: Any, data_root: Any, wandb: Any,
                  progress: bool) -> None:
    if not controls or not levels:
        return
    from lth.controls import run_controls

    run_controls(run.path, controls, levels, data_root=data_root, wandb=wandb, progress=progress)


def _records(run: Any, reps: list[Any]) -> list[dict[str, Any]]:
    from lth.runs import read_json_list

    return reps[0].read_results() if len(reps) == 1 else read_json_list(run.results_path)
