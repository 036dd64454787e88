"""Replicates (seeds) trained together as one vmapped program, on one device or spread over several.

A small network leaves an accelerator mostly idle; training R seeds of it as *one* program, with a
leading replicate axis on every array of the train state, the mask, the data order and the
augmentation key, runs them for about the price of one. The replicates share the data arrays and
advance in lockstep (the same iteration, the same evaluation schedule); each keeps its own seed,
init, data order, augmentation, mask and pruning, so its records are those of training it alone up
to float summation order (a batched matmul rounds differently from a single one: tested to ~1e-6
per 35 iterations, masks identical).

Layouts (`choose_layout`, `lth run --layout`):

* ``sequential``: one replicate after another in this process;
* ``workers``: replicates in worker processes pinned to CPU cores (`lth.lottery`), the CPU default;
* ``vmap``: all replicates as one vmapped program on the default device;
* ``devices``: the same program with the replicate axis split over the local devices (a `Mesh` with
  axis ``"replicates"``): one seed per device when R equals the device count, R / d per device on d
  devices otherwise; no communication between devices except the scalar iteration counter. The
  accelerator default.

Only the compiled chunk changes: a `lax.scan` over iterations whose body `vmap`s the single-device
training step (`Trainer.train_step`) over replicates. The evaluation stays under one `lax.cond` on
the shared iteration counter, so it runs only when due (a predicate batched by `vmap` would turn the
cond into a select and evaluate at every iteration). Pruning, rewinding, records and files stay per
replicate (`lth.lottery.lottery_levels_together`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lth.data.device import DeviceData, crop_flip, epoch_order
from lth.errors import ConfigError
from lth.masks import Mask
from lth.train import ChunkMetrics, Trainer, TrainState, chunk_metrics, chunk_plan, eval_records, stack_rows

LAYOUTS = ("sequential", "workers", "vmap", "devices")
AXIS = "replicates"


# --------------------------------------------------------------------------- choosing a layout


def default_layout(replicates: int, workers: int) -> str:
    """The layout when the user names none: worker processes on CPU (when there are several cores
    and replicates), the vmapped program spread over the devices on an accelerator."""
    if replicates < 2:
        return "sequential"
    if jax.default_backend() == "cpu":
        return "workers" if workers > 1 else "sequential"
    return "devices" if jax.local_device_count() > 1 else "vmap"


def check_layout(layout: str, *, data_parallel: bool = False) -> None:
    """A one-line `ConfigError` for an unknown layout or one that cannot run here."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown replicate layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if layout in ("vmap", "devices"):
        if data_parallel:
            raise ConfigError(f"--layout {layout} and --data-parallel are two ways to use the devices: choose one")
        if jax.process_count() > 1:
            raise ConfigError(f"--layout {layout} runs in one process: for several hosts use --data-parallel")


def replicate_mesh(replicates: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh (axis ``"replicates"``) over the most local devices that divide `replicates` evenly."""
    devices = list(jax.local_devices() if devices is None else devices)
    count = max(d for d in range(1, min(len(devices), replicates) + 1) if replicates % d == 0)
    return Mesh(np.asarray(devices[:count]), (AXIS,))


# --------------------------------------------------------------------------- stacking


def stack(trees: Sequence[Any]) -> Any:
    """Pytrees of equal structure -> one pytree with a leading replicate axis (None leaves stay None)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


@jax.jit
def unstack(tree: Any) -> list[Any]:
    """The inverse of `stack`, as one compiled call."""
    count = jax.tree.leaves(tree)[0].shape[0]
    return [jax.tree.map(lambda a: a[r], tree) for r in range(count)]


_epoch_orders = jax.jit(jax.vmap(epoch_order, in_axes=(0, None, None, None)), static_argnums=(2, 3))


def epoch_orders(keys: jax.Array, epoch: int, num_examples: int, batch_size: int) -> jax.Array:
    """`epoch_order` of every replicate's key, [R, steps, batch] (integer maths: equal to the single ones)."""
    return _epoch_orders(keys, epoch, num_examples, batch_size)


# --------------------------------------------------------------------------- the compiled chunk


def make_stacked_chunk(trainer: Trainer, mesh: Mesh | None = None) -> Any:
    """The training chunk of R replicates at once:
    ``(states, masks, data, orders [R, steps, B], offset, keys [R], first_step, *, length)
    -> (states, ChunkMetrics with [length, R] fields, `evaluated` [length])``.

    `mesh`: split the replicate axis over its devices (data and scalars replicated). The trainer's
    loop is kept: one `lax.scan` per chunk, or one dispatch per iteration ("steps", for
    convolutional models on CPU).
    """
    if trainer.train_step is None or trainer.evaluate_fn is None:
        raise ConfigError("vmapped replicates need a trainer from lth.train.make_trainer")
    step_fn, evaluate = trainer.train_step, trainer.evaluate_fn

    def iteration(states: TrainState, masks: Mask, data: DeviceData, idx_RxB: jax.Array, keys: jax.Array,
                  step: jax.Array):
        x, y = data.x_train[idx_RxB], data.y_train[idx_RxB]
        if trainer.augmentation == "crop_flip":
            x = jax.vmap(lambda key, x_B: crop_flip(jax.random.fold_in(key, step), x_B, data.pad_value))(keys, x)
        states, loss_R = jax.vmap(step_fn)(states, masks, x, y)
        done = step + 1
        due = (done % trainer.eval_every == 0) | (done == trainer.total_steps)

        def run_eval():
            def one(params, model_state):
                vl, va = evaluate(params, model_state, data.val)
                tl, ta = evaluate(params, model_state, data.test)
                return jnp.stack([vl, va, tl, ta])

            return jax.vmap(one)(states.params, states.model_state)

        evals = jax.lax.cond(due, run_eval, lambda: jnp.full((loss_R.shape[0], 4), jnp.nan, jnp.float32))
        return states, (loss_R, due, evals)

    def scan_chunk(states, masks, data, orders, offset, keys, first_step, length):
        batches = jnp.moveaxis(jax.lax.dynamic_slice_in_dim(orders, offset, length, axis=1), 1, 0)
        steps = first_step + jnp.arange(length, dtype=jnp.int32)
        states, (loss, due, evals) = jax.lax.scan(
            lambda st, xs: iteration(st, masks, data, xs[0], keys, xs[1]), states, (batches, steps))
        return states, chunk_metrics(loss, due, evals)

    def one_step(states, masks, data, orders, i, keys, step):
        return iteration(states, masks, data, orders[:, i], keys, step)

    jit = jax.jit
    if mesh is not None:
        split, rep = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
        shardings = (split, split, rep, split, rep, split, rep)
        jit = functools.partial(jax.jit, in_shardings=shardings)

    if trainer.loop == "scan":
        compiled = jit(scan_chunk, static_argnums=7)

        def chunk(states, masks, data, orders, offset, keys, first_step, *, length):
            return compiled(states, masks, data, orders, offset, keys, first_step, length)

    else:
        compiled = jit(one_step)

        def chunk(states, masks, data, orders, offset, keys, first_step, *, length):
            rows = []
            for i in range(length):
                states, row = compiled(states, masks, data, orders, jnp.int32(int(offset) + i), keys,
                                       jnp.int32(int(first_step) + i))
                if mesh is not None:
                    jax.block_until_ready(states)  # as in lth.parallel: never queue sharded steps unawaited
                rows.append(row)
            return states, stack_rows(rows)

    chunk._cache_size = compiled._cache_size  # compilations, as for lth.train's trainers
    chunk.mesh = mesh
    return chunk


_CHUNKS: dict[tuple[int, Any], tuple[Trainer, Any]] = {}
_CHUNKS_KEPT = 8  # the most recently used; a run needs at most two (training and retraining)


def _cached_chunk(trainer: Trainer, mesh: Mesh | None) -> Any:
    """One stacked chunk per (trainer, mesh), so that every level reuses its compilation."""
    key = (id(trainer.train_chunk), mesh)
    entry = _CHUNKS.pop(key, None)
    if entry is None:  # the trainer is kept with it, so that its id stays taken
        entry = (trainer, make_stacked_chunk(trainer, mesh))
    _CHUNKS[key] = entry  # now the most recent
    while len(_CHUNKS) > _CHUNKS_KEPT:
        _CHUNKS.pop(next(iter(_CHUNKS)))
    return entry[1]


def place(tree: Any, mesh: Mesh | None, split: bool = True) -> Any:
    """Put `tree` on the mesh: leading axis split over the devices, or replicated; as is without a mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, P(AXIS) if split else P()))


def split_metrics(metrics: ChunkMetrics) -> list[ChunkMetrics]:
    """Per-replicate host copies of a stacked chunk's metrics."""
    m = jax.device_get(metrics)
    return [ChunkMetrics(m.train_loss[:, r], m.evaluated, m.val_loss[:, r], m.val_accuracy[:, r],
                         m.test_loss[:, r], m.test_accuracy[:, r]) for r in range(m.train_loss.shape[1])]


# --------------------------------------------------------------------------- the host-side loop


def train_stacked(
    trainer: Trainer,
    states: list[TrainState],
    masks: list[Mask],
    data: DeviceData,
    order_keys: list[jax.Array],
    augment_keys: list[jax.Array],
    *,
    breaks: Iterable[int] = (),
    mesh: Mesh | None = None,
) -> Iterator[tuple[list[TrainState], list[list[dict[str, float]]]]]:
    """`lth.train.train` for R replicates at once (all at the same iteration): yields, after every
    chunk, each replicate's state and evaluations. `mesh` spreads the replicates over its devices
    (`replicate_mesh`; `data` already placed there, replicated, as `stacked_training` does once per
    run); None keeps them on the default device."""
    steps = {int(state.step) for state in states}
    if len(steps) != 1:
        raise ValueError(f"replicates trained together must be at the same iteration, got {sorted(steps)}")
    start = steps.pop()
    chunk_fn = _cached_chunk(trainer, mesh)
    stacked, stacked_masks = place(stack(states), mesh), place(stack(masks), mesh)
    augment = place(stack(augment_keys), mesh)
    order_keys_R = stack(order_keys)
    num_examples = int(data.x_train.shape[0])
    for chunk in chunk_plan(start, trainer.total_steps, trainer.steps_per_epoch, breaks):
        orders = place(epoch_orders(order_keys_R, chunk.epoch, num_examples, trainer.batch_size), mesh)
        first = chunk.epoch * trainer.steps_per_epoch + chunk.offset
        stacked, metrics = chunk_fn(stacked, stacked_masks, data, orders, jnp.int32(chunk.offset), augment,
                                    jnp.int32(first), length=chunk.length)
        yield unstack(stacked), [eval_records(m, first) for m in split_metrics(metrics)]


def stacked_training(setup: Any, replicates: int, layout: str) -> tuple[Any, Any]:
    """(setup, train_many) for `lth.lottery.lottery_levels_together` in the "vmap" or "devices"
    layout: the data placed on the replicate mesh once (replicated), and `train_stacked` bound to it."""
    mesh = replicate_mesh(replicates) if layout == "devices" else None
    if mesh is not None:
        setup = dataclasses.replace(setup, data=place(setup.data, mesh, split=False))
    return setup, functools.partial(train_stacked, mesh=mesh)
