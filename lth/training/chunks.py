"""The ONE chunk driver: a run of consecutive iterations of `lth.training.iteration`, compiled.

``chunk(state, mask, data, order, offset, augment_key, *, length, val_min=None) -> (state,
ChunkMetrics)`` trains the iterations ``offset .. offset + length`` of an epoch whose batch order is
`order` ([steps, batch], or [N, steps, batch] for stacked networks: `order_axis` 1). `val_min` is
the level's running minimum of the validation loss before the chunk (NaN, the default: none yet), an
argument so that a chunk resumed mid-level evaluates exactly as an uninterrupted one; only the
"validation_minimum" test protocol reads it (`lth.training.iteration.iteration`).

Two loops:

* ``"scan"``: the whole chunk is one compiled `lax.scan` (a Python loop per step is 1.6x slower on
  this CPU);
* ``"steps"``: one compiled iteration dispatched per iteration. For convolutional models on CPU:
  XLA:CPU runs the gradient of a convolution inside a loop body ~100x slower than outside one
  (measured here; jax-ml/jax#12868), while the per-iteration dispatch costs ~0.1 ms.

`shardings` (in, out) partition the program over a device mesh (data-parallel training, replicates
split over devices); `place` (of all arguments, `val_min` last) and `place_index` (of the iteration index of the
"steps" loop) put them there first. With a mesh, the "steps" loop waits
for every step before dispatching the next: on virtual CPU devices un-awaited collective steps
deadlock in the all-reduce rendezvous (measured here; a whole-chunk scan does not).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import jax
import jax.numpy as jnp

from lth.errors import ConfigError, unknown_name
from lth.training.iteration import ChunkMetrics, chunk_metrics

LOOPS = ("scan", "steps")


def stack_rows(rows: list[tuple[jax.Array, jax.Array, jax.Array]]) -> ChunkMetrics:
    """The ChunkMetrics of a chunk run one compiled iteration at a time (the "steps" loop)."""
    loss, due, evals = (jnp.stack(column) for column in zip(*rows))
    return chunk_metrics(loss, due, evals)


class Chunk:
    """A compiled chunk (see the module docstring); `lower` gives the partitioned program (scan loop)."""

    def __init__(self, iteration: Callable, loop: str, *, order_axis: int = 0,
                 shardings: tuple[Any, Any] | None = None, place: Callable | None = None,
                 place_index: Callable[[int], Any] | None = None):
        if loop not in LOOPS:
            raise unknown_name("training loop", loop, LOOPS)
        self.loop, self.order_axis, self.sharded = loop, order_axis, shardings is not None
        self._place = place or (lambda *args: args)
        self._place_index = place_index or (lambda i: i)
        jit_options = {name: value for name, value in zip(("in_shardings", "out_shardings"), shardings or ())
                       if value is not None}

        def scan_chunk(state, mask, data, order, offset, augment_key, length, val_min):
            batches = jax.lax.dynamic_slice_in_dim(order, offset, length, axis=order_axis)
            if order_axis:
                batches = jnp.moveaxis(batches, order_axis, 0)
            (state, _), (loss, due, evals) = jax.lax.scan(
                lambda carry, idx: iteration(carry, mask, data, idx, augment_key), (state, val_min), batches)
            return state, chunk_metrics(loss, due, evals)

        def one_step(state, mask, data, order, i, augment_key, val_min):
            return iteration((state, val_min), mask, data, order[(slice(None),) * order_axis + (i,)], augment_key)

        if loop == "scan":
            self._compiled = jax.jit(scan_chunk, static_argnums=6, **jit_options)
        else:
            self._compiled = jax.jit(one_step, **jit_options)
        self._ahead: dict[int, Future] = {}

    def compile_ahead(self, executor: Executor, arguments: Callable[[], tuple], *, length: int) -> None:
        """Compile the scan chunk of `length` iterations in `executor`'s thread, for the arguments
        (state, mask, data, order, offset, augment_key) that `arguments()` gives there
        (`jax.ShapeDtypeStruct`s will do). The first call of that length waits for it and runs the
        program it built (jit's cache holds it) instead of compiling it a second time. The "steps"
        loop and sharded chunks compile on first use, as before."""
        if self.loop == "scan" and not self.sharded and length not in self._ahead:
            self._ahead[length] = executor.submit(lambda: self._lower_ahead(arguments(), length).compile())

    def _lower_ahead(self, arguments: tuple, length: int) -> Any:
        """The scan chunk lowered for `arguments` and an abstract running validation minimum."""
        order = arguments[3]
        val_min = jax.ShapeDtypeStruct(tuple(order.shape[:self.order_axis]), jnp.float32)
        return self._compiled.lower(*arguments, length, val_min)

    def _val_min(self, order: Any, val_min: Any) -> jax.Array:
        """The running validation minimum as one float32 per network (NaN: none yet)."""
        shape = jnp.shape(order)[:self.order_axis]
        return jnp.broadcast_to(jnp.asarray(jnp.nan if val_min is None else val_min, jnp.float32), shape)

    def __call__(self, state, mask, data, order, offset, augment_key, *, length: int, val_min: Any = None):
        ahead = self._ahead.pop(length, None)
        if ahead is not None and not ahead.cancelled():  # cancelled (`Ahead.cancel_compiles`): compiled below
            ahead.exception()  # wait; had it failed, the call below compiles (and raises) as usual
        args = self._place(state, mask, data, order, offset, augment_key, self._val_min(order, val_min))
        if self.loop == "scan":
            return self._compiled(*args[:6], length, args[6])
        state, mask, data, order, offset, augment_key, val_min = args
        rows = []
        for i in range(int(offset), int(offset) + length):
            (state, val_min), row = self._compiled(state, mask, data, order, self._place_index(i), augment_key,
                                                   val_min)
            if self.sharded:
                jax.block_until_ready(state)  # never queue sharded steps unawaited (see the module docstring)
            rows.append(row)
        return state, stack_rows(rows)

    def lower(self, state, mask, data, order, offset, augment_key, *, length: int) -> Any:
        """The lowered (partitioned, with shardings) program of a scan chunk, for inspection."""
        if self.loop != "scan":
            raise ConfigError("only a scan chunk is one program to lower; this one runs one step at a time")
        args = self._place(state, mask, data, order, offset, augment_key, self._val_min(order, None))
        return self._compiled.lower(*args[:6], length, args[6])
