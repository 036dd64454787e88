"""ONE masked training iteration (+ the evaluation when it is due), the single definition that every
trainer is built from: the scan chunk and the per-iteration loop (`lth.training.chunks`), the
stacked trainer of replicates and instability copies (`lth.training.stacked`), and the data-parallel
trainer (`lth.training.sharded`).

Pruned weights are exactly zero and stay zero: gradients are masked before the optimiser (so its
moments of pruned weights stay zero) and params are masked after the update. The mask is an
argument, never a constant, so one compiled program serves every level.

An iteration is made of two parts (`Parts`): `update`, the masked optimisation step on one batch
(gather, augmentation, gradient, optimiser), and `evaluate_all`, the validation and test
evaluation (`evaluate_set`, one set: the "validation_minimum" test protocol evaluates test only at
new minima of the validation loss, `iteration`). `iteration` composes them with the schedule of
evaluations. For several networks at once, `stacked_parts` vmaps both parts over a leading axis
and `iteration` composes them the same way: the iteration counter stays one shared scalar, so
"evaluate now?" stays one `lax.cond` (a predicate batched by `vmap` would turn it into a select
and evaluate at every iteration).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lth.data.device import DeviceData, EvalSet, crop_flip
from lth.models.base import Model, cross_entropy
from lth.sparsity.masks import Mask, apply_mask
from lth.training.mask_updates import MaskUpdate, after_update, updated


class TrainState(NamedTuple):
    """Params, model state (BatchNorm statistics), optimiser state and the global iteration; with mask
    updates (gradual, SET, RigL) also the mask in force (`lth.training.mask_updates.SparseState`)."""

    params: Any
    model_state: Any
    opt_state: Any
    step: jax.Array  # int32 scalar: iterations done (the global iteration, also after a rewind)
    sparse: Any = None  # SparseState of a run whose mask changes during training; None: the mask is an argument


STACKED_AXES = TrainState(params=0, model_state=0, opt_state=0, step=None, sparse=0)
"""The vmap axes of a stacked TrainState: everything along axis 0 but the shared iteration counter."""


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


Evaluate = Callable[[Any, Any, EvalSet], tuple[jax.Array, jax.Array]]


def make_evaluate(model: Model) -> Evaluate:
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


class Parts(NamedTuple):
    """The two halves of an iteration, un-jitted (trainers jit, vmap or shard them)."""

    update: Callable  # (state, mask, data, idx_B, augment_key) -> (state, loss)
    evaluate_all: Callable  # (params, model_state, data) -> [val loss, val acc, test loss, test acc]
    eval_every: int
    total_steps: int
    mask_update: MaskUpdate | None = None  # gradual / SET / RigL: the mask changes in the loop (state.sparse)
    evaluate_set: Callable | None = None  # (params, model_state, EvalSet) -> [loss, acc]
    test_at: str = "every_evaluation"  # or "validation_minimum" (`iteration`)
    update_to_stack: Callable | None = None  # `update` as `stacked_parts` vmaps it (`mask_in_force`)


def make_parts(model: Model, tx: optax.GradientTransformation, schedule: Callable[[jax.Array], jax.Array], *,
               augmentation: str, eval_every: int, total_steps: int, mask_update: MaskUpdate | None = None,
               test_at: str = "every_evaluation") -> Parts:
    """The update and the evaluation of one network (see the module docstring); `test_at`: when the
    test set is evaluated (`iteration`).

    `augmentation` ("none" or "crop_flip") is applied to every training batch with the key
    ``fold_in(augment_key, iteration)``: reproducible, and the same at every level. With a
    `mask_update` the mask in force is ``state.sparse.mask`` (the `mask` argument is not used) and it
    changes at the rule's iterations, from the dense gradient of that iteration's batch
    (`lth.training.mask_updates`).
    """
    evaluate = make_evaluate(model)

    def optimiser_step(state: TrainState, mask: Mask, grads: Any, model_state: Any) -> TrainState:
        grads = apply_mask(grads, mask)
        # masked params too, so that weight decay never feeds a pruned weight into the moments
        direction, opt_state = tx.update(grads, state.opt_state, apply_mask(state.params, mask))
        lr = schedule(state.step)
        params = jax.tree.map(lambda p, d: p - (lr * d).astype(p.dtype), state.params, direction)
        params = apply_mask(params, mask)
        return TrainState(params, model_state, opt_state, state.step + 1, state.sparse)

    def train_step(state: TrainState, mask: Mask, x: jax.Array, y: jax.Array, key: jax.Array, stacked: bool
                   ) -> tuple[TrainState, jax.Array]:
        def loss_fn(params):
            logits, model_state = model.apply(params, state.model_state, x, True)
            return jnp.mean(cross_entropy(logits, y)), model_state

        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)  # dense gradient
        if mask_update is not None:
            state, mask = mask_in_force(tx, mask_update, state, grads, key, stacked)
        return optimiser_step(state, mask, grads, model_state), loss

    def update(state: TrainState, mask: Mask, data: DeviceData, idx_B: jax.Array, augment_key: jax.Array,
               stacked: bool = False):
        """One training step on the examples `idx_B`."""
        x = data.x_train[idx_B]
        if augmentation == "crop_flip":
            x = crop_flip(jax.random.fold_in(augment_key, state.step), x, data.pad_value)
        return train_step(state, mask, x, data.y_train[idx_B], augment_key, stacked)

    def evaluate_all(params: Any, model_state: Any, data: DeviceData) -> jax.Array:
        vl, va = evaluate(params, model_state, data.val)
        tl, ta = evaluate(params, model_state, data.test)
        return jnp.stack([vl, va, tl, ta])

    def evaluate_set(params: Any, model_state: Any, split: EvalSet) -> jax.Array:
        return jnp.stack(evaluate(params, model_state, split))

    return Parts(update, evaluate_all, eval_every, total_steps, mask_update, evaluate_set, test_at,
                 functools.partial(update, stacked=True))


def mask_in_force(tx: optax.GradientTransformation, mask_update: MaskUpdate, state: TrainState, grads: Any,
                  key: jax.Array, stacked: bool) -> tuple[TrainState, Mask]:
    """(state, mask) for this iteration's optimiser step in a run whose mask changes: where an update is
    due, the new mask, with the params and moments under it (`after_update`); else the state as it is.

    One network (`stacked` False): the params and moments go through the `lax.cond` with the mask, so
    an iteration without an update is the plain masked iteration, bit for bit. For stacked networks
    only the mask goes through it and `after_update` runs at every iteration (an identity where no
    update is due: the params and moments of pruned weights are zero already). Each is the faster
    where it is used, measured on CPU (benchmarks/README.md, "Mask updates of SET and RigL"): the
    first takes SET's updates in one network's LeNet-300-100 epoch from ~+11 % to ~+4 % of a static
    epoch, and makes 4 vmapped RigL seeds' epoch ~12 % slower."""
    due = mask_update.due(state.step)
    if stacked:
        old = state.sparse.mask
        new = jax.lax.cond(due, lambda: mask_update.new_mask(state.sparse, state.params, grads, state.step, key),
                           lambda: old)
        params, opt_state = after_update(tx, state.params, state.opt_state, old, new)
        sparse = state.sparse._replace(mask=new)
    else:
        params, opt_state, sparse = jax.lax.cond(
            due, lambda: updated(mask_update, tx, state.params, state.opt_state, state.sparse, grads, state.step, key),
            lambda: (state.params, state.opt_state, state.sparse))
    return state._replace(params=params, opt_state=opt_state, sparse=sparse), sparse.mask


def stacked_parts(parts: Parts) -> Parts:
    """The parts of N networks trained side by side: every array of the state, the mask, the batch
    indices and the augmentation key has a leading axis N; the data and the iteration are shared."""
    update = jax.vmap(parts.update_to_stack or parts.update, in_axes=(STACKED_AXES, 0, None, 0, 0),
                      out_axes=(STACKED_AXES, 0))
    evaluate_all = jax.vmap(parts.evaluate_all, in_axes=(0, 0, None))
    evaluate_set = jax.vmap(parts.evaluate_set, in_axes=(0, 0, None))
    return parts._replace(update=update, evaluate_all=evaluate_all, evaluate_set=evaluate_set, update_to_stack=None)


def new_minimum(val_loss: jax.Array, val_min: jax.Array) -> jax.Array:
    """Whether an evaluation's validation loss is a new minimum of the level: strictly below the
    running minimum `val_min` of the finite ones so far (NaN: none yet), as `lth.training.summarize`
    picks the first of tied minima; a loss that is not finite (no validation set) counts as one, so
    that without a validation set the test set is evaluated every time."""
    return ~jnp.isfinite(val_loss) | jnp.isnan(val_min) | (val_loss < val_min)


def running_minimum(val_loss: jax.Array, val_min: jax.Array) -> jax.Array:
    """`val_min` after an evaluation: the minimum of the finite validation losses (NaN while none)."""
    lower = jnp.isfinite(val_loss) & (jnp.isnan(val_min) | (val_loss < val_min))
    return jnp.where(lower, val_loss, val_min)


def evaluate_at_minima(parts: Parts, state: TrainState, data: DeviceData, val_min: jax.Array
                       ) -> tuple[jax.Array, jax.Array]:
    """The "validation_minimum" evaluation: validation, then test only where the validation loss is a
    new minimum (`new_minimum`) or at the last iteration, NaN elsewhere; returns ([..., 4], new
    running minimum). Stacked networks share one `lax.cond` (a vmapped predicate would be a select
    that evaluates always): the test set is evaluated when any network needs it, and its results kept
    only for those that do, so each network's rows are those of training it alone."""
    val = parts.evaluate_set(state.params, state.model_state, data.val)
    needs_test = new_minimum(val[..., 0], val_min) | (state.step == parts.total_steps)
    test = jax.lax.cond(jnp.any(needs_test), lambda: parts.evaluate_set(state.params, state.model_state, data.test),
                        lambda: jnp.full(val.shape, jnp.nan, jnp.float32))
    test = jnp.where(needs_test[..., None], test, jnp.nan)
    return jnp.concatenate([val, test], axis=-1), running_minimum(val[..., 0], val_min)


def iteration(parts: Parts) -> Callable:
    """The masked iteration: ``((state, val_min), mask, data, idx, augment_key) -> ((state, val_min),
    (loss, due, evals))``: one update, then the evaluation if one is due (every `eval_every`
    iterations and at the end); `evals` is NaN where none ran.

    `parts.test_at` "every_evaluation" (the default; lth's protocol before the option existed, as
    Frankle & Carbin describe it: validation and test every `eval_every` iterations) evaluates both
    at every evaluation; "validation_minimum" evaluates the
    test set only where the validation loss reaches a new minimum of the level and at the last
    iteration (`evaluate_at_minima`), carrying the running minimum `val_min` (shape of the loss; NaN:
    no evaluation yet) from iteration to iteration: the early stop (the first minimum of the
    validation loss) and the final test accuracy are the same, the test curve is thinner."""

    def one_iteration(carry: tuple[TrainState, jax.Array], mask: Mask, data: DeviceData, idx: jax.Array,
                      augment_key: jax.Array):
        state, val_min = carry
        state, loss = parts.update(state, mask, data, idx, augment_key)
        due = (state.step % parts.eval_every == 0) | (state.step == parts.total_steps)
        skipped = jnp.full((*jnp.shape(loss), 4), jnp.nan, jnp.float32)
        if parts.test_at == "every_evaluation":
            evals = jax.lax.cond(due, lambda: parts.evaluate_all(state.params, state.model_state, data),
                                 lambda: skipped)
        else:
            evals, val_min = jax.lax.cond(due, lambda: evaluate_at_minima(parts, state, data, val_min),
                                          lambda: (skipped, val_min))
        return (state, val_min), (loss, due, evals)

    return one_iteration
