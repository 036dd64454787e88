"""N networks trained side by side as one vmapped program, on one device or split over several:
the replicates (seeds) of a run, and the copies of an instability analysis.

A small network leaves an accelerator mostly idle; training N of them as *one* program, with a
leading axis on every array of the train state, the mask, the data order and the augmentation key,
runs them for about the price of one. They share the data arrays and the iteration counter (the
same iteration, the same evaluation schedule); each keeps its own init, data order, augmentation
and mask, so its records are those of training it alone up to float summation order (a batched
matmul rounds differently from a single one: tested to ~1e-6 per 35 iterations, masks identical).

The program is the one iteration of `lth.training.iteration` with its parts vmapped
(`stacked_parts`), driven by the one chunk driver (`lth.training.chunks.Chunk`, the trainer's loop
kept). `mesh` (`replicate_mesh`) splits the leading axis over the local devices: one network per
device when N equals the device count, N / d per device on d devices otherwise; no communication
between devices.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lth.data.device import DeviceData, epoch_order
from lth.sparsity.masks import Mask
from lth.training.chunks import Chunk
from lth.training.iteration import ChunkMetrics, TrainState, iteration, stacked_parts
from lth.training.loop import eval_records, run_chunks
from lth.training.trainer import Trainer

AXIS = "replicates"


def replicate_mesh(replicates: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh (axis ``"replicates"``) over the most local devices that divide `replicates` evenly."""
    devices = list(jax.local_devices() if devices is None else devices)
    count = max(d for d in range(1, min(len(devices), replicates) + 1) if replicates % d == 0)
    return Mesh(np.asarray(devices[:count]), (AXIS,))


# --------------------------------------------------------------------------- stacking


def stack(trees: Sequence[Any]) -> Any:
    """Pytrees of equal structure -> one pytree with a leading axis (None leaves stay None)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


@jax.jit
def unstack(tree: Any) -> list[Any]:
    """The inverse of `stack`, as one compiled call."""
    count = jax.tree.leaves(tree)[0].shape[0]
    return [jax.tree.map(lambda a: a[r], tree) for r in range(count)]


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """N train states at the same iteration -> one stacked state whose `step` is the shared counter."""
    steps = {int(state.step) for state in states}
    if len(steps) != 1:
        raise ValueError(f"networks trained together must be at the same iteration, got {sorted(steps)}")
    params, model_state, opt_state, sparse = stack([(s.params, s.model_state, s.opt_state, s.sparse) for s in states])
    return TrainState(params, model_state, opt_state, states[0].step, sparse)


def unstack_states(stacked: TrainState) -> list[TrainState]:
    """The N train states of a stacked one."""
    parts = unstack((stacked.params, stacked.model_state, stacked.opt_state, stacked.sparse))
    return [TrainState(p, m, o, stacked.step, sp) for p, m, o, sp in parts]


_epoch_orders = jax.jit(jax.vmap(epoch_order, in_axes=(0, None, None, None)), static_argnums=(2, 3))


def epoch_orders(keys: jax.Array, epoch: int, num_examples: int, batch_size: int) -> jax.Array:
    """`epoch_order` of every network's key, [N, steps, batch] (integer maths: equal to the single ones)."""
    return _epoch_orders(keys, epoch, num_examples, batch_size)


def place(tree: Any, mesh: Mesh | None, split: bool = True) -> Any:
    """Put `tree` on the mesh: leading axis split over the devices, or replicated; as is without a mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, P(AXIS) if split else P()))


def place_state(stacked: TrainState, mesh: Mesh | None) -> TrainState:
    """A stacked state on the mesh: its arrays split along the leading axis, the shared step replicated."""
    params, model_state, opt_state, sparse = place((stacked.params, stacked.model_state, stacked.opt_state,
                                                    stacked.sparse), mesh)
    return TrainState(params, model_state, opt_state, place(stacked.step, mesh, split=False), sparse)


def split_metrics(metrics: ChunkMetrics) -> list[ChunkMetrics]:
    """Per-network host copies of a stacked chunk's metrics ([length, N] fields)."""
    m = jax.device_get(metrics)
    return [ChunkMetrics(m.train_loss[:, r], m.evaluated, m.val_loss[:, r], m.val_accuracy[:, r],
                         m.test_loss[:, r], m.test_accuracy[:, r]) for r in range(m.train_loss.shape[1])]


# --------------------------------------------------------------------------- the compiled chunk


@functools.lru_cache(maxsize=8)
def stacked_chunk(trainer: Trainer, mesh: Mesh | None = None) -> Chunk:
    """The chunk of N networks at once (cached per trainer and mesh, so every level reuses it):
    ``(stacked state, stacked masks, data, orders [N, steps, B], offset, keys [N], *, length)
    -> (stacked state, ChunkMetrics with [length, N] fields, `evaluated` [length])``."""
    shardings = None
    if mesh is not None:
        split, rep = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
        state = TrainState(split, split, split, rep, split)
        shardings = ((state, split, rep, split, rep, split, split), None)  # the last: the running val minima [N]
    return Chunk(iteration(stacked_parts(trainer.parts)), trainer.loop, order_axis=1, shardings=shardings)


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
    val_mins: Sequence[float] | None = None,
) -> Iterator[tuple[list[TrainState], list[list[dict[str, float]]]]]:
    """`lth.training.loop.train` for N networks at once (all at the same iteration): yields, after
    every chunk, each network's state and evaluations. `mesh` spreads them over its devices (`data`
    placed there already, replicated, as `lth.lottery` does once per run); None keeps them on the
    default device. `val_mins`: each network's running validation minimum before its state
    (`lth.training.loop.val_minimum`; default none yet)."""
    stacked = stack_states(states)
    chunk = stacked_chunk(trainer, mesh)
    order_keys_N = stack(order_keys)
    num_examples = int(data.x_train.shape[0])

    def orders(epoch: int) -> jax.Array:
        return place(epoch_orders(order_keys_N, epoch, num_examples, trainer.batch_size), mesh)

    stacked = place_state(stacked, mesh)
    for stacked, first, metrics in run_chunks(chunk, trainer, stacked, place(stack(masks), mesh), data, orders,
                                              place(stack(augment_keys), mesh), int(stacked.step), breaks,
                                              np.asarray(val_mins if val_mins is not None else [np.nan] * len(states),
                                                         np.float32)):
        yield unstack_states(stacked), [eval_records(m, first) for m in split_metrics(metrics)]
