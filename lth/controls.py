"""Controls: branches off a finished lottery run's levels, each trained like a level and recorded
beside the main line (``replicate_XX/controls/<name>/``).

A control is written ``SOURCE[+TRANSFORM...]``:

sources (where the mask of level L comes from)
    imp               the main line's mask of level L (only with a transform)
    oneshot           magnitude pruning of the trained *dense* network straight to level L's counts
    random_layerwise  a uniformly random mask with level L's per-layer counts
    random_global     a uniformly random mask with level L's overall count, spread across layers
    magnitude_init, snip, grasp, synflow
                      pruning at initialisation to level L's density (global), trained from init
transforms (Frankle et al. 2021's sanity checks; Frankle & Carbin 2019's random reinitialisation)
    reinit            the mask kept, fresh initial weights (a new key)
    shuffle           each layer's mask permuted within the layer (per-layer density kept)
    invert            the scores' order reversed: keep the weights the source would prune

Everything trains from the main line's rewind point (or iteration 0 for pruning at init) with the
same data order, schedule and length as the levels, so a control differs only by its mask or its
initial weights.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jax

from lth import rng
from lth.errors import ConfigError
from lth.masks import Mask, apply_mask, layer_counts
from lth.pruning import Group, magnitude_scores, plan_groups, prune_by_scores
from lth.scores import random_scores, shuffle_mask
from lth.train import TrainState, train

SOURCES = ("imp", "oneshot", "random_layerwise", "random_global", "magnitude_init", "snip", "grasp", "synflow")
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
    if source.startswith("random") and "invert" in transforms:
        raise ConfigError(f"{text!r}: inverting random scores is another random mask; drop '+invert'")
    return Control(source, tuple(transforms))


def parse_levels(text: str, max_level: int) -> list[int]:
    """'0-3,7,12' -> [0, 1, 2, 3, 7, 12]; ConfigError if malformed or beyond `max_level`."""
    levels: set[int] = set()
    for part in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ConfigError(f"invalid level list {text!r}: write e.g. 0-3,7,12")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise ConfigError(f"invalid level range {part.strip()!r}: the first level must not exceed the second")
        levels.update(range(lo, hi + 1))
    beyond = sorted(level for level in levels if level > max_level)
    if beyond:
        raise ConfigError(f"level(s) {beyond} beyond the run's last level {max_level}")
    return sorted(levels)


# --------------------------------------------------------------------------- masks


def counts_of(mask: Mask) -> dict[str, int]:
    return {name: kept for name, (kept, _) in layer_counts(mask).items()}


def _layer_groups(counts: dict[str, int]) -> list[Group]:
    return [Group((name,), keep) for name, keep in counts.items()]


def _global_group(counts: dict[str, int]) -> list[Group]:
    return [Group(tuple(counts), sum(counts.values()))]


@dataclass
class LevelInputs:
    """What a control of level L may need from the main line (loaded lazily by the caller)."""

    level: int
    mask: Mask  # the main line's mask of level L
    full_mask: Mask  # the level-0 mask
    dense_final: Any | None = None  # params at the end of level 0 (oneshot)
    previous_final: Any | None = None  # params at the end of level L - 1 (imp+invert)
    previous_mask: Mask | None = None


def control_mask(setup: Any, control: Control, inputs: LevelInputs, params0: Any, model_state0: Any) -> Mask:
    """The mask of `control` at `inputs.level`, before the shuffle transform."""
    config = setup.config
    key = rng.stream(config.seed, f"control:{control.source}", inputs.level)
    target = counts_of(inputs.mask)
    invert = "invert" in control.transforms
    sign = -1.0 if invert else 1.0
    if control.source == "imp":
        if not invert:
            return inputs.mask
        if inputs.level == 0:
            return inputs.mask  # nothing pruned at level 0: inverting changes nothing
        # the main line's pruning step with the order reversed: the smallest trained weights survive
        scores = {k: sign * v for k, v in magnitude_scores(inputs.previous_final, inputs.previous_mask).items()}
        groups = plan_groups(counts_of(inputs.full_mask), config.pruning, inputs.level)
        return prune_by_scores(scores, inputs.previous_mask, groups)
    if control.source == "oneshot":
        scores = {k: sign * v for k, v in magnitude_scores(inputs.dense_final, inputs.full_mask).items()}
        return prune_by_scores(scores, inputs.full_mask, plan_groups(counts_of(inputs.full_mask), config.pruning,
                                                                     inputs.level))
    if control.source == "random_layerwise":
        return prune_by_scores(random_scores(inputs.full_mask, key), inputs.full_mask, _layer_groups(target))
    if control.source == "random_global":
        return prune_by_scores(random_scores(inputs.full_mask, key), inputs.full_mask, _global_group(target))
    # pruning at initialisation, to the level's overall density, one threshold for all layers
    from lth.scores import prune_at_init

    density = sum(target.values()) / sum(counts_of(inputs.full_mask).values())
    if density >= 1.0:
        return inputs.full_mask
    method = "magnitude" if control.source == "magnitude_init" else control.source
    x, y = score_batch(setup)
    return prune_at_init(method, setup.model, params0, model_state0, inputs.full_mask, (x, y),
                         setup.dataset.input_shape, density, strategy="global", key=key, invert=invert)


def score_batch(setup: Any, size: int = 256) -> tuple[jax.Array, jax.Array]:
    """The training examples SNIP / GraSP score on: a fixed random subset of `size` (seeded)."""
    n = int(setup.data.x_train.shape[0])
    idx = jax.random.permutation(rng.stream(setup.config.seed, "score_batch"), n)[: min(size, n)]
    return setup.data.x_train[idx], setup.data.y_train[idx]


# --------------------------------------------------------------------------- training a control level


def control_start(setup: Any, control: Control, level: int, mask: Mask, params0: Any, model_state0: Any,
                  rewind_point: tuple[Any, Any]) -> TrainState:
    """The initial state of a control level: rewind point (or init for pruning at init), or fresh
    weights for `reinit`; masked; fresh optimiser; schedule at the start step."""
    at_init = control.source in AT_INIT
    step = 0 if at_init else setup.rewind_step
    params, model_state = (params0, model_state0) if at_init else rewind_point
    if "reinit" in control.transforms:
        params, model_state = setup.model.init(rng.stream(setup.config.seed, "reinit", level))
    return setup.trainer.init_state(apply_mask(params, mask), model_state, step)


def finalize_mask(setup: Any, control: Control, level: int, mask: Mask) -> Mask:
    if "shuffle" in control.transforms:
        mask = shuffle_mask(mask, rng.stream(setup.config.seed, "shuffle", level))
    return mask


def train_control_level(setup: Any, control: Control, level: int, state: TrainState, mask: Mask,
                        hooks: Any = None) -> tuple[dict[str, Any], TrainState, list[dict[str, float]], float]:
    """Train one control level to the end; returns (record, final state, evaluations, seconds)."""
    from lth.lottery import level_record

    started = time.perf_counter()
    evaluations: list[dict[str, float]] = []
    order_key = rng.stream(setup.config.seed, "data_order")
    augment_key = rng.stream(setup.config.seed, "augmentation")
    for state, evals in train(setup.trainer, state, mask, setup.data, order_key, augment_key):
        evaluations.extend(evals)
        if hooks is not None:
            hooks(state, evals)
    jax.block_until_ready(state.params)
    record = {**level_record(level, mask, evaluations), "control": control.name}
    return record, state, evaluations, time.perf_counter() - started


def parse_controls(texts: Iterable[str] | str) -> list[Control]:
    """'reinit,random_layerwise' or a list -> Controls ('reinit' alone means imp+reinit, etc.)."""
    if isinstance(texts, str):
        texts = [t for t in texts.split(",") if t.strip()]
    shorthand = {"reinit": "imp+reinit", "shuffle": "imp+shuffle", "invert": "imp+invert"}
    controls = [parse_control(shorthand.get(t.strip(), t)) for t in texts]
    if not controls:
        raise ConfigError("no control given: e.g. reinit, random_layerwise, oneshot, snip+shuffle")
    return controls


__all__: Sequence[str] = ("Control", "parse_control", "parse_controls", "parse_levels", "control_mask",
                          "control_start", "train_control_level", "LevelInputs", "SOURCES", "TRANSFORMS")


# --------------------------------------------------------------------------- the run, with its files


def run_controls(
    run: Any,
    controls: Iterable[str] | str,
    levels: str | Iterable[int],
    *,
    runs_root: Any = None,
    data_root: Any = None,
    wandb: str | None = None,
    progress: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Train controls of a finished lottery run for chosen levels; return {control name: records}.

    `run` is a run directory, name or hash. Results go to ``replicate_XX/controls/<name>/`` (records,
    masks, metrics), for every replicate of the run; finished control levels are not recomputed.
    The run's accuracy-vs-sparsity plot is redrawn with one series per control.
    """
    import json

    from lth.config import from_dict, replace
    from lth.lottery import _warn, init_params, prepare
    from lth.plots import plot_run
    from lth.progress import LevelProgress
    from lth.runs import ReplicateDir, RunDir, aggregate, load_mask, resolve_run, write_json
    from lth.tracking import JsonlSink, WandbTracker, resolve_wandb_mode

    path = resolve_run(run, runs_root)
    config = from_dict(json.loads((path / "config.json").read_text()))
    parsed = parse_controls(controls)
    chosen = parse_levels(levels, config.levels) if isinstance(levels, str) else sorted(set(levels))
    wandb_mode = resolve_wandb_mode(wandb)
    setup = prepare(config, data_root)
    run_dir = RunDir(path.parent, config)
    reps = run_dir.replicates()
    if not reps:
        raise ConfigError(f"run {path} has no finished levels: run it first (lth run ...)")
    for rep in reps:
        done = len(rep.read_results())
        missing = [level for level in chosen if level >= done]
        if missing:
            raise ConfigError(f"{rep.path.name} of {path.name} has finished levels 0-{done - 1}, not {missing}: "
                              "finish the main line first (rerun `lth run` with its config)")
    tracker = WandbTracker(path, json.loads((path / "config.json").read_text()), wandb_mode, warn=_warn)
    reporter = LevelProgress(len(chosen) - 1, setup.total_steps, len(reps) * len(parsed), enabled=progress)
    results: dict[str, list[list[dict[str, Any]]]] = {c.name: [] for c in parsed}
    with run_dir.lock():
        try:
            for r, rep in enumerate(reps):
                setup_r = _with_seed(setup, replace(config, seed=config.seed + r))
                params0, model_state0 = init_params(setup_r)
                template = setup_r.trainer.init_state(params0, model_state0)
                full_mask = load_mask(rep.mask_path(0), params0)
                rewind_point = ((params0, model_state0) if setup_r.rewind_step == 0 else rep.load_rewind(template))
                finals: dict[int, Any] = {}

                def final(level: int) -> Any:
                    if level not in finals:
                        finals[level] = rep.load_final(level, template, full_mask)[0].params
                    return finals[level]

                for c, control in enumerate(parsed):
                    branch = ReplicateDir(rep.path / "controls" / control.name)
                    records = {rec["level"]: rec for rec in branch.read_results()}
                    with JsonlSink(branch.metrics_path) as sink:
                        for i, level in enumerate(chosen):
                            if level in records:
                                continue
                            main_mask = load_mask(rep.mask_path(level), params0)
                            inputs = LevelInputs(level, main_mask, full_mask)
                            if control.source == "oneshot":
                                inputs.dense_final = final(0)
                            if control.source == "imp" and "invert" in control.transforms and level > 0:
                                inputs.previous_final = final(level - 1)
                                inputs.previous_mask = load_mask(rep.mask_path(level - 1), params0)
                            mask = finalize_mask(setup_r, control, level,
                                                 control_mask(setup_r, control, inputs, params0, model_state0))
                            state = control_start(setup_r, control, level, mask, params0, model_state0, rewind_point)
                            percent = 100.0 * sum(counts_of(mask).values()) / sum(n for _, n in layer_counts(mask).values())
                            reporter.start_level(r * len(parsed) + c, i, int(state.step), percent)
                            tracker.level_start(r, level, percent, int(state.step), branch=control.name)
                            last = {"step": int(state.step)}

                            def on_chunk(st, evals, level=level, last=last):
                                for e in evals:
                                    sink.log({"level": level, **e})
                                tracker.log_evaluations(r, level, evals)
                                reporter.advance(int(st.step) - last["step"], evals)
                                last["step"] = int(st.step)

                            record, st, evals, seconds = train_control_level(setup_r, control, level, state, mask,
                                                                             on_chunk)
                            records[level] = record
                            branch.save_mask(level, mask)
                            branch.write_results([records[k] for k in sorted(records)])
                            sink.log({"level": level, "event": "level_done", "seconds": round(seconds, 3)})
                            reporter.end_level(record, seconds, r)
                            tracker.level_done(r, record, evals)
                    results[control.name].append([records[k] for k in sorted(records)])
        finally:
            reporter.close()
            tracker.close()
        plot_run(path)
        for name, per_rep in results.items():
            write_json(path / "controls" / name / "results.json", aggregate(per_rep))
    if progress:
        print(f"controls: {', '.join(results)} -> {path / 'controls'}\nplot: {run_dir.plot_path}")
    return {name: (per_rep[0] if len(per_rep) == 1 else aggregate(per_rep)) for name, per_rep in results.items()}


def _with_seed(setup: Any, config: Any) -> Any:
    import dataclasses

    return dataclasses.replace(setup, config=config)
