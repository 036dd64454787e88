"""The host side of training: cut a level into chunks, run them, turn their metrics into records.

`train` trains one network from `state.step` to the trainer's end and yields after every chunk;
`lth.training.stacked.train_stacked` does the same for N networks side by side through the same
`run_chunks`. The data order of epoch e is a function of (order key, e) only, so rerunning from any
step replays it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lth.data.device import DeviceData, epoch_order
from lth.errors import DIVERGED_HINT, LthError
from lth.sparsity.masks import Mask
from lth.training.iteration import ChunkMetrics, TrainState
from lth.training.trainer import Trainer


class Span(NamedTuple):
    """A chunk of a level: iterations ``offset .. offset + length`` of `epoch`."""

    epoch: int
    offset: int  # first iteration inside the epoch
    length: int  # iterations


def chunk_plan(start: int, end: int, steps_per_epoch: int, breaks: Iterable[int] = ()) -> list[Span]:
    """Cut iterations [start, end) at epoch boundaries and at `breaks` (e.g. the rewind step)."""
    cuts = {start, end}
    cuts.update(e * steps_per_epoch for e in range(start // steps_per_epoch + 1, math.ceil(end / steps_per_epoch)))
    cuts.update(b for b in breaks if start < b < end)
    points = sorted(cuts)
    return [Span(a // steps_per_epoch, a % steps_per_epoch, b - a) for a, b in zip(points, points[1:])]


DIVERGED_LOSS = 1e3
"""A training cross-entropy above this means a logit margin of ~1000 the wrong way: only a diverged
network gets there (chance is log(classes), ~2.3 for 10). A constant, so a resumed level decides
exactly as an uninterrupted one."""


class DivergedError(LthError):
    """Training produced a non-finite loss, or one above `DIVERGED_LOSS` (at `iteration`, the loss as
    text: 'nan', '1.2e+03')."""

    iteration: int | None = None
    loss: str | None = None


def check_divergence(train_loss: np.ndarray, first_step: int) -> None:
    """A one-line DivergedError if a training loss of a chunk is not finite or above DIVERGED_LOSS."""
    losses = np.asarray(train_loss, np.float64).reshape(-1)
    bad = ~np.isfinite(losses) | (losses > DIVERGED_LOSS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        err = DivergedError(f"training diverged at iteration {first_step + i + 1} (training loss {losses[i]:.3g}; "
                            f"above {DIVERGED_LOSS:g} or not finite): {DIVERGED_HINT}")
        err.iteration, err.loss = first_step + i + 1, f"{losses[i]:.3g}"
        raise err


def eval_records(metrics: ChunkMetrics, first_step: int) -> list[dict[str, float]]:
    """The evaluations of one chunk as dicts (host side): iteration, val/test loss and accuracy.
    Its training losses are checked first (`check_divergence`)."""
    m = jax.device_get(metrics)
    check_divergence(m.train_loss, first_step)
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


def val_minimum(evaluations: Iterable[dict[str, float]]) -> float:
    """The minimum of the finite validation losses of `evaluations` (a level's so far), NaN if none:
    the running minimum a chunk of the "validation_minimum" test protocol starts from."""
    finite = [e["val_loss"] for e in evaluations if math.isfinite(e["val_loss"])]
    return min(finite) if finite else math.nan


def chunk_val_minimum(val_min: Any, metrics: ChunkMetrics) -> np.ndarray:
    """`val_min` (one per network) after a chunk: the minimum with its finite validation losses
    (`lth.training.iteration.running_minimum` over the chunk, on the host; a minimum is exact)."""
    losses = np.asarray(jax.device_get(metrics.val_loss), np.float32)
    candidates = np.concatenate([np.asarray(val_min, np.float32)[None], np.where(np.isfinite(losses), losses, np.nan)])
    return np.fmin.reduce(candidates, axis=0)


def run_chunks(chunk: Callable, trainer: Trainer, state: Any, mask: Any, data: DeviceData,
               orders: Callable[[int], jax.Array], augment_key: Any, start: int, breaks: Iterable[int] = (),
               val_min: Any = math.nan) -> Iterator[tuple[Any, int, ChunkMetrics]]:
    """Run `chunk` over the plan from `start` to the end; yields (state, first iteration, metrics).
    `val_min`: the running minimum of the validation loss before `start` (`val_minimum` of the level's
    evaluations so far; one per network, or one for all), carried from chunk to chunk when the
    trainer evaluates test only at new minima (`lth.training.iteration.iteration`).

    The next epoch's order is dispatched right after a chunk, before the caller waits for that
    chunk's metrics (the same order: a function of the epoch alone). The CPU device runs programs in
    the order they are dispatched, so it still runs after the chunk; but it runs while the host
    fetches the metrics and calls the hooks, instead of after them."""
    carried = trainer.parts.test_at != "every_evaluation"
    plan = chunk_plan(start, trainer.total_steps, trainer.steps_per_epoch, breaks)
    order = {plan[0].epoch: orders(plan[0].epoch)} if plan else {}
    for span, after in zip(plan, [*plan[1:], None]):
        first = span.epoch * trainer.steps_per_epoch + span.offset
        state, metrics = chunk(state, mask, data, order[span.epoch], jnp.int32(span.offset), augment_key,
                               length=span.length, val_min=val_min if carried else None)
        if after is not None and after.epoch not in order:
            order = {after.epoch: orders(after.epoch)}
        if carried:
            val_min = chunk_val_minimum(val_min, metrics)
        yield state, first, metrics


def train(
    trainer: Trainer,
    state: TrainState,
    mask: Mask,
    data: DeviceData,
    order_key: jax.Array,
    augment_key: jax.Array | None = None,
    *,
    breaks: Iterable[int] = (),
    val_min: float = math.nan,
) -> Iterator[tuple[TrainState, list[dict[str, float]]]]:
    """Train from `state.step` to the trainer's end, yielding (state, evaluations) after every chunk.

    Chunks are epochs, cut at `breaks` too, so that a caller can save the state at a rewind step.
    `val_min`: the level's running minimum of the validation loss before `state.step` (`val_minimum`
    of its evaluations so far: a level resumed mid-way evaluates test where an uninterrupted one does).
    The data order of epoch e is a function of (order_key, e) only: rerunning from any step replays it.
    A non-finite or blown-up training loss raises a one-line `DivergedError`.
    """
    if augment_key is None:
        augment_key = jax.random.fold_in(order_key, 0x5EED)
    num_examples = int(data.x_train.shape[0])

    def orders(epoch: int) -> jax.Array:
        return epoch_order(order_key, epoch, num_examples, trainer.batch_size)

    for state, first, metrics in run_chunks(trainer.train_chunk, trainer, state, mask, data, orders, augment_key,
                                            int(state.step), breaks, val_min):
        yield state, eval_records(metrics, first)


REACH = 0.95  # the accuracy whose first evaluation at or above it a record gives (`first_test_95_iteration`)


def first_reach(evaluations: list[dict[str, float]], key: str, threshold: float) -> int | None:
    """The iteration of the first evaluation whose `key` is >= `threshold` (None if none is): how
    soon a network generalises (Minegishi et al. 2023 compare the epoch test accuracy first reaches
    95 %). Evaluations are `training.eval_every` apart, so the crossing lies in the period before it."""
    return next((int(e["iteration"]) for e in evaluations if e[key] >= threshold), None)


def summarize(evaluations: list[dict[str, float]], from_iteration: int | None = None
              ) -> dict[str, float | int | None]:
    """Frankle & Carbin's early stopping: the iteration of minimum validation loss (first, if tied),
    the test accuracy there; plus the final and the best test accuracy and the first iteration at
    which test accuracy reaches 95 % (`first_reach`; None if it never does). Without a validation set
    (its losses NaN) there is no early stop: those fields are None and `early_stop` says why.

    Evaluations whose test set was not evaluated (test NaN: the "validation_minimum" protocol,
    `training.test_at`, evaluates it only at new minima of the validation loss and at the end) do not
    count for the best and the 95 % iteration: those are over the test evaluations done. The early
    stop and the final accuracy always have theirs (the early stop is a new minimum).

    `from_iteration` (a run whose mask changes during training: the first iteration under its final
    mask): the early stop and the best test accuracy look only at evaluations at iterations >= it;
    with none there, they are None and `early_stop` says why. The final accuracy is the last one's."""
    if not evaluations:
        raise ValueError("no evaluations to summarize")
    start = -math.inf if from_iteration is None else from_iteration
    window = [i for i, e in enumerate(evaluations) if e["iteration"] >= start]
    final = {"test_accuracy": evaluations[-1]["test_accuracy"],
             "best_test_accuracy": max((evaluations[i]["test_accuracy"] for i in window
                                        if not math.isnan(evaluations[i]["test_accuracy"])), default=None),
             "first_test_95_iteration": first_reach([evaluations[i] for i in window], "test_accuracy", REACH),
             "final_iteration": int(evaluations[-1]["iteration"])}
    with_val = [i for i in window if math.isfinite(evaluations[i]["val_loss"])]
    if not with_val:
        why = ("none: no validation set" if window else
               f"none: no evaluation at or after iteration {from_iteration}, the first under the final mask")
        return {"early_stop": why, "early_stop_iteration": None, "early_stop_val_loss": None,
                "early_stop_val_accuracy": None, "early_stop_test_accuracy": None, **final}
    best = min(with_val, key=lambda i: (evaluations[i]["val_loss"], i))
    return {
        "early_stop_iteration": int(evaluations[best]["iteration"]),
        "early_stop_val_loss": evaluations[best]["val_loss"],
        "early_stop_val_accuracy": evaluations[best]["val_accuracy"],
        "early_stop_test_accuracy": evaluations[best]["test_accuracy"],
        **final,
    }
