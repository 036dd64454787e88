"""Masked training: train state, optimiser and schedule, one jitted `lax.scan` per epoch, evaluation.

Pruned weights are exactly zero and stay zero: gradients are masked before the optimiser (so its
moments of pruned weights stay zero) and params are masked after the update. The mask is an
argument of the compiled epoch, never a constant, so one compiled program serves every level.

The learning rate is a pure function of the global iteration `state.step`, applied outside the
optax transformation, so the optimiser state can be fresh at a rewind point while the schedule
resumes there (weight rewinding) -- Adam's bias correction starts anew with its moments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lth.config import OptimizerConfig, duration_to_steps
from lth.data.device import AUGMENTATIONS, DeviceData, EvalSet, crop_flip, epoch_order
from lth.errors import ConfigError
from lth.masks import Mask, apply_mask
from lth.models.base import Model

OPTIMIZERS = ("adam", "adamw", "sgd")
LOOPS = ("scan", "steps")
SCHEDULES = ("constant", "step", "cosine")


class TrainState(NamedTuple):
    params: Any
    model_state: Any
    opt_state: Any
    step: jax.Array  # int32 scalar: iterations done (the global iteration, also after a rewind)


class ChunkMetrics(NamedTuple):
    """Per-iteration outputs of a compiled chunk, stacked along the first axis."""

    train_loss: jax.Array
    evaluated: jax.Array  # bool: an evaluation ran after this iteration
    val_loss: jax.Array
    val_accuracy: jax.Array
    test_loss: jax.Array
    test_accuracy: jax.Array


def chunk_metrics(loss: jax.Array, due: jax.Array, evals: jax.Array) -> ChunkMetrics:
    """Per-iteration outputs (loss, evaluated flag, [..., 4] val loss/acc, test loss/acc) as ChunkMetrics;
    any axes between the iteration axis and the last (e.g. replicates) are kept."""
    return ChunkMetrics(loss, due, evals[..., 0], evals[..., 1], evals[..., 2], evals[..., 3])


def stack_rows(rows: list[tuple[jax.Array, jax.Array, jax.Array]]) -> ChunkMetrics:
    """The ChunkMetrics of a chunk run one compiled iteration at a time (the "steps" loop)."""
    loss, due, evals = (jnp.stack(column) for column in zip(*rows))
    return chunk_metrics(loss, due, evals)


# --------------------------------------------------------------------------- optimiser, schedule


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """The update *direction* (learning rate not applied): params <- params - lr(step) * direction."""
    if cfg.name == "adam":
        return optax.scale_by_adam(cfg.b1, cfg.b2, cfg.eps)
    if cfg.name == "adamw":
        return optax.chain(optax.scale_by_adam(cfg.b1, cfg.b2, cfg.eps), optax.add_decayed_weights(cfg.weight_decay))
    if cfg.name == "sgd":
        parts = [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else []
        if cfg.momentum:
            parts.append(optax.trace(decay=cfg.momentum, nesterov=cfg.nesterov))
        return optax.chain(*parts) if parts else optax.identity()
    raise ConfigError(f"unknown optimizer {cfg.name!r}: choose one of {', '.join(OPTIMIZERS)}")


def make_schedule(cfg: OptimizerConfig, total_steps: int, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    """Learning rate as a pure function of the global iteration.

    constant: lr. step: lr * gamma ** (milestones passed). cosine: lr * (1 + cos(pi t / T)) / 2.
    A warm-up of w iterations multiplies by min(1, (t + 1) / w).
    """
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.schedule!r}: choose one of {', '.join(SCHEDULES)}")
    lr = cfg.learning_rate
    milestones = jnp.asarray(sorted(duration_to_steps(m, steps_per_epoch) for m in cfg.milestones), jnp.int32)
    warmup = duration_to_steps(cfg.warmup, steps_per_epoch)

    def schedule(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step)
        if cfg.schedule == "constant":
            rate = jnp.asarray(lr, jnp.float32)
        elif cfg.schedule == "step":
            rate = lr * cfg.gamma ** jnp.sum(step >= milestones).astype(jnp.float32)
        else:
            rate = lr * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(step, total_steps) / total_steps))
        if warmup > 0:
            rate = rate * jnp.minimum(1.0, (step + 1) / warmup)
        return rate.astype(jnp.float32)

    return schedule


# --------------------------------------------------------------------------- the compiled programs


def cross_entropy(logits_BxC: jax.Array, labels_B: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B)


def make_evaluate(model: Model) -> Callable[[Any, Any, EvalSet], tuple[jax.Array, jax.Array]]:
    """(params, model_state, eval set) -> (mean loss, accuracy), padding rows ignored."""

    def evaluate(params: Any, model_state: Any, data: EvalSet) -> tuple[jax.Array, jax.Array]:
        def body(carry, batch):
            x, y, w = batch
            logits, _ = model.apply(params, model_state, x, False)
            loss = jnp.sum(cross_entropy(logits, y) * w)
            correct = jnp.sum((jnp.argmax(logits, -1) == y) * w)
            return (carry[0] + loss, carry[1] + correct), None

        (loss, correct), _ = jax.lax.scan(body, (jnp.float32(0), jnp.float32(0)), data)
        n = jnp.sum(data.weight)
        return loss / n, correct / n

    return evaluate


class Trainer(NamedTuple):
    """The compiled functions of one training setup; reused by every level of a run."""

    model: Model
    optimizer: optax.GradientTransformation
    schedule: Callable[[jax.Array], jax.Array]
    total_steps: int
    steps_per_epoch: int
    batch_size: int
    eval_every: int
    augmentation: str
    train_chunk: Any  # jitted (state, mask, data, order, offset, augment_key, *, length) -> (state, ChunkMetrics)
    evaluate: Any  # jitted (params, model_state, EvalSet) -> (loss, accuracy)
    train_step: Any = None  # un-jitted (state, mask, x, y) -> (state, loss): one masked update (lth.replicates vmaps it)
    evaluate_fn: Any = None  # un-jitted `evaluate`
    loop: str = "scan"  # "scan" (a chunk is one compiled lax.scan) or "steps" (one dispatch per iteration)

    def init_state(self, params: Any, model_state: Any, step: int = 0) -> TrainState:
        """A fresh optimiser state at global iteration `step`."""
        return TrainState(params, model_state, self.optimizer.init(params), jnp.asarray(step, jnp.int32))


def make_trainer(
    model: Model,
    optimizer: OptimizerConfig,
    *,
    total_steps: int,
    steps_per_epoch: int,
    batch_size: int,
    eval_every: int,
    augmentation: str = "none",
    loop: str = "scan",
) -> Trainer:
    """Build the jitted chunk-of-epoch trainer for `model` (compiled on first use).

    `augmentation` ("none" or "crop_flip") is applied to every training batch inside the compiled
    epoch, with the key ``fold_in(augment_key, iteration)``: reproducible, and the same at every level.

    `loop`: "scan" compiles a whole chunk (an epoch) as one `lax.scan`; "steps" compiles one
    iteration and dispatches it per iteration. Use "steps" for convolutional models on CPU: XLA:CPU
    runs the gradient of a convolution inside a loop body ~100x slower than outside one (measured
    here; jax-ml/jax#12868), while the per-iteration dispatch costs ~0.1 ms. `choose_loop` picks.
    """
    if loop not in LOOPS:
        raise ConfigError(f"unknown training loop {loop!r}: choose one of {', '.join(LOOPS)}")
    if augmentation not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {augmentation!r}: choose one of {', '.join(AUGMENTATIONS)}")
    tx = make_optimizer(optimizer)
    schedule = make_schedule(optimizer, total_steps, steps_per_epoch)
    evaluate = make_evaluate(model)

    def train_step(state: TrainState, mask: Mask, x: jax.Array, y: jax.Array) -> tuple[TrainState, jax.Array]:
        def loss_fn(params):
            logits, model_state = model.apply(params, state.model_state, x, True)
            return jnp.mean(cross_entropy(logits, y)), model_state

        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = apply_mask(grads, mask)
        # masked params too, so that weight decay never feeds a pruned weight into the moments
        direction, opt_state = tx.update(grads, state.opt_state, apply_mask(state.params, mask))
        lr = schedule(state.step)
        params = jax.tree.map(lambda p, d: p - (lr * d).astype(p.dtype), state.params, direction)
        params = apply_mask(params, mask)
        return TrainState(params, model_state, opt_state, state.step + 1), loss

    def iteration(state: TrainState, mask: Mask, data: DeviceData, idx_B: jax.Array, augment_key: jax.Array):
        """One training step on the examples `idx_B`, then the evaluation if one is due."""
        x = data.x_train[idx_B]
        if augmentation == "crop_flip":
            x = crop_flip(jax.random.fold_in(augment_key, state.step), x, data.pad_value)
        state, loss = train_step(state, mask, x, data.y_train[idx_B])
        due = (state.step % eval_every == 0) | (state.step == total_steps)

        def run_eval():
            vl, va = evaluate(state.params, state.model_state, data.val)
            tl, ta = evaluate(state.params, state.model_state, data.test)
            return jnp.stack([vl, va, tl, ta])

        evals = jax.lax.cond(due, run_eval, lambda: jnp.full((4,), jnp.nan, jnp.float32))
        return state, (loss, due, evals)

    def scan_chunk(
        state: TrainState,
        mask: Mask,
        data: DeviceData,
        order: jax.Array,
        offset: jax.Array,
        augment_key: jax.Array,
        *,
        length: int,
    ) -> tuple[TrainState, ChunkMetrics]:
        batches = jax.lax.dynamic_slice_in_dim(order, offset, length)
        state, (loss, due, evals) = jax.lax.scan(
            lambda st, idx_B: iteration(st, mask, data, idx_B, augment_key), state, batches
        )
        return state, chunk_metrics(loss, due, evals)

    step = jax.jit(lambda st, mask, data, order, i, key: iteration(st, mask, data, order[i], key))

    def steps_chunk(state, mask, data, order, offset, augment_key, *, length):
        rows = []
        for i in range(int(offset), int(offset) + length):
            state, row = step(state, mask, data, order, i, augment_key)
            rows.append(row)
        return state, stack_rows(rows)

    steps_chunk._cache_size = step._cache_size  # compilations, as for the scan version
    steps_chunk.step = step  # the jitted iteration (lth.parallel re-jits it over a mesh)
    return Trainer(
        model=model,
        optimizer=tx,
        schedule=schedule,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        eval_every=eval_every,
        augmentation=augmentation,
        train_chunk=jax.jit(scan_chunk, static_argnames=("length",)) if loop == "scan" else steps_chunk,
        evaluate=jax.jit(evaluate),
        train_step=train_step,
        evaluate_fn=evaluate,
        loop=loop,
    )


def uses_convolution(model: Model, input_shape: tuple[int, ...]) -> bool:
    """Whether the model's training step contains a convolution (from its jaxpr; nothing is run)."""
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda p, s, x: model.apply(p, s, x, True))(params, state, x)
    return "conv_general_dilated" in str(jaxpr)


def choose_loop(model: Model, input_shape: tuple[int, ...]) -> str:
    """"steps" for convolutional models on CPU (see `make_trainer`), else "scan"."""
    return "steps" if jax.default_backend() == "cpu" and uses_convolution(model, input_shape) else "scan"


# --------------------------------------------------------------------------- the host-side loop


class Chunk(NamedTuple):
    epoch: int
    offset: int  # first iteration inside the epoch
    length: int  # iterations


def chunk_plan(start: int, end: int, steps_per_epoch: int, breaks: Iterable[int] = ()) -> list[Chunk]:
    """Cut iterations [start, end) at epoch boundaries and at `breaks` (e.g. the rewind step)."""
    cuts = {start, end}
    cuts.update(e * steps_per_epoch for e in range(start // steps_per_epoch + 1, math.ceil(end / steps_per_epoch)))
    cuts.update(b for b in breaks if start < b < end)
    points = sorted(cuts)
    return [Chunk(a // steps_per_epoch, a % steps_per_epoch, b - a) for a, b in zip(points, points[1:])]


def eval_records(metrics: ChunkMetrics, first_step: int) -> list[dict[str, float]]:
    """The evaluations of one chunk as dicts (host side): iteration, val/test loss and accuracy."""
    m = jax.device_get(metrics)
    rows = []
    for i in np.flatnonzero(m.evaluated):
        rows.append(
            {
                "iteration": int(first_step + i + 1),
                "train_loss": float(m.train_loss[i]),
                "val_loss": float(m.val_loss[i]),
                "val_accuracy": float(m.val_accuracy[i]),
                "test_loss": float(m.test_loss[i]),
                "test_accuracy": float(m.test_accuracy[i]),
            }
        )
    return rows


def train(
    trainer: Trainer,
    state: TrainState,
    mask: Mask,
    data: DeviceData,
    order_key: jax.Array,
    augment_key: jax.Array | None = None,
    *,
    breaks: Iterable[int] = (),
) -> Iterator[tuple[TrainState, list[dict[str, float]]]]:
    """Train from `state.step` to the trainer's end, yielding (state, evaluations) after every chunk.

    Chunks are epochs, cut at `breaks` too, so that a caller can save the state at a rewind step.
    The data order of epoch e is a function of (order_key, e) only: rerunning from any step replays it.
    """
    if augment_key is None:
        augment_key = jax.random.fold_in(order_key, 0x5EED)
    start = int(state.step)
    num_examples = int(data.x_train.shape[0])
    for chunk in chunk_plan(start, trainer.total_steps, trainer.steps_per_epoch, breaks):
        order = epoch_order(order_key, chunk.epoch, num_examples, trainer.batch_size)
        first = int(state.step)
        state, metrics = trainer.train_chunk(
            state, mask, data, order, jnp.int32(chunk.offset), augment_key, length=chunk.length
        )
        yield state, eval_records(metrics, first)


def summarize(evaluations: list[dict[str, float]]) -> dict[str, float | int]:
    """Frankle & Carbin's early stopping: the iteration of minimum validation loss (first, if tied),
    the test accuracy there; plus the final and the best test accuracy."""
    if not evaluations:
        raise ValueError("no evaluations to summarize")
    best = min(range(len(evaluations)), key=lambda i: (evaluations[i]["val_loss"], i))
    return {
        "early_stop_iteration": int(evaluations[best]["iteration"]),
        "early_stop_val_loss": evaluations[best]["val_loss"],
        "early_stop_val_accuracy": evaluations[best]["val_accuracy"],
        "early_stop_test_accuracy": evaluations[best]["test_accuracy"],
        "test_accuracy": evaluations[-1]["test_accuracy"],
        "best_test_accuracy": max(e["test_accuracy"] for e in evaluations),
        "final_iteration": int(evaluations[-1]["iteration"]),
    }
