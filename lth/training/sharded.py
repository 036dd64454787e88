"""Data-parallel training over a 1-D device mesh: the batch is split over devices, all else replicated.

`data_parallel(trainer, data)` returns a `Trainer` whose `train_chunk` runs the *same* iteration
(`lth.training.iteration`) through the same chunk driver as the single-device one, partitioned by
XLA over a `Mesh` of all devices along one axis, ``"data"``:

* params, model state, optimiser state, mask, step, keys: replicated on every device;
* the training arrays (`x_train`, `y_train`): replicated, so that each device gathers its own slice
  of a batch (`x_train[idx_B]` inside the scan) with no communication. This costs one copy of the
  training set per device -- 600 MB for CIFAR-10 in float32, nothing next to an accelerator's memory;
* the epoch's batch order [steps, batch]: sharded along the batch axis, so iteration i's indices
  `idx_B` live 1/n on each device; XLA propagates that sharding through the gather, the forward and
  backward pass, and inserts one all-reduce of the gradients (and of BatchNorm statistics: they
  are those of the whole batch, as on one device);
* the evaluation sets [batches, batch]: sharded along the batch axis (padded with weight-0 rows to a
  multiple of the device count), so evaluation is data-parallel too.

The numbers are those of single-device training up to float summation order (tested: 100 steps
agree to ~1e-6). The global batch size must divide by the device count. One compilation per chunk
length, as on one device; the mask stays an argument. `lth.training.loop.train` drives it unchanged.

The "steps" loop (one dispatch per iteration, for convolutional models on CPU) is supported by
waiting for every step before dispatching the next: on virtual CPU devices
(``--xla_force_host_platform_device_count``) un-awaited collective steps deadlock in the all-reduce
rendezvous (measured here; a whole-epoch scan does not).

Multi-host: call `lth.training.processes.initialize_distributed()` first in every process (one per
host, or one per accelerator); `make_mesh()` then spans the devices of all processes, and every
process runs the same program on the same data, params and seeds. Only process 0 writes files
(`lth.training.processes.is_main_process()`). See docs/multihost.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lth.data.device import DeviceData, EvalSet
from lth.errors import ConfigError, LthError
from lth.training.chunks import Chunk
from lth.training.iteration import iteration, make_evaluate
from lth.training.trainer import Trainer

AXIS = "data"


# --------------------------------------------------------------------------- mesh, shardings


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def num_devices(mesh: Mesh) -> int:
    return int(mesh.devices.size)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def order_sharding(mesh: Mesh) -> NamedSharding:
    """For an epoch's batch order [steps, batch] and the evaluation sets [batches, batch, ...]."""
    return NamedSharding(mesh, P(None, AXIS))


def data_shardings(mesh: Mesh) -> DeviceData:
    """The sharding of every field of a `DeviceData` (a pytree prefix of it)."""
    rep, split = replicated(mesh), order_sharding(mesh)
    evals = EvalSet(split, split, split)
    return DeviceData(rep, rep, evals, evals, rep)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """ConfigError unless the global batch splits evenly over the mesh."""
    n = num_devices(mesh)
    if batch_size % n:
        lower = batch_size - batch_size % n
        hint = f"{lower} or {lower + n}" if lower else f"{n}"
        raise ConfigError(
            f"batch size {batch_size} does not divide over the {n} devices of data-parallel training: "
            f"use a multiple of {n} (e.g. {hint})"
        )


# --------------------------------------------------------------------------- placing arrays


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def place(x: Any, sharding: NamedSharding) -> Any:
    """`x` laid out as `sharding` (a no-op when it already is), also across processes.

    Across processes every process must pass the same value (same data, seed and step): each one
    contributes the shards of its own devices.
    """
    if x is None:
        return None
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    if _is_key(x):
        return jax.random.wrap_key_data(place(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array of `tree` (params, a TrainState, a mask with `None` leaves) on every device."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: place(x, sharding), tree)


def _pad_batch_axis(evals: EvalSet, n: int) -> EvalSet:
    """Pad each evaluation batch with weight-0 rows to a multiple of `n` (results unchanged)."""
    pad = -evals.x.shape[1] % n
    if not pad:
        return evals

    def grow(a):
        return jnp.pad(jnp.asarray(a), [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))

    return EvalSet(grow(evals.x), grow(evals.y), grow(evals.weight))


def shard_eval_set(evals: EvalSet, mesh: Mesh) -> EvalSet:
    split = order_sharding(mesh)
    return jax.tree.map(lambda a: place(a, split), _pad_batch_axis(evals, num_devices(mesh)))


def shard_data(data: DeviceData, mesh: Mesh) -> DeviceData:
    """Training arrays replicated, evaluation sets split along their batch axis (idempotent)."""
    rep = replicated(mesh)
    return DeviceData(
        place(data.x_train, rep),
        place(data.y_train, rep),
        shard_eval_set(data.val, mesh),
        shard_eval_set(data.test, mesh),
        place(data.pad_value, rep),
    )


# --------------------------------------------------------------------------- the trainer


def data_parallel(trainer: Trainer, data: DeviceData, mesh: Mesh | None = None) -> tuple[Trainer, DeviceData]:
    """`trainer` and `data` made data-parallel over `mesh` (default: all devices), see the module doc.

    The returned trainer accepts arrays on any device (it places them: state, mask and key
    replicated, the batch order and evaluation sets split); its outputs are replicated.
    """
    if trainer.train_chunk.sharded:
        raise LthError("this trainer is data-parallel already: pass the single-device one")
    mesh = make_mesh() if mesh is None else mesh
    check_batch_size(trainer.batch_size, mesh)
    rep, split = replicated(mesh), order_sharding(mesh)

    def inputs(state, mask, data, order, position, key, val_min):
        return (replicate(state, mesh), replicate(mask, mesh), shard_data(data, mesh),
                place(order, split), place(position, rep), place(key, rep), place(val_min, rep))

    chunk = Chunk(iteration(trainer.parts), trainer.loop,
                  shardings=((rep, rep, data_shardings(mesh), split, rep, rep, rep), rep),
                  place=inputs, place_index=lambda i: place(np.int32(i), rep))
    evaluate_compiled = jax.jit(make_evaluate(trainer.model), out_shardings=rep)

    def evaluate(params, model_state, evals):
        return evaluate_compiled(replicate(params, mesh), replicate(model_state, mesh), shard_eval_set(evals, mesh))

    return trainer._replace(train_chunk=chunk, evaluate=evaluate), shard_data(data, mesh)


