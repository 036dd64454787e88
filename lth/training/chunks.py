"""The ONE chunk driver: a run of consecutive iterations of `lth.training.iteration`, compiled.

``chunk(state, mask, data, order, offset, augment_key, *, length) -> (state, ChunkMetrics)`` trains
the iterations ``offset .. offset + length`` of an epoch whose batch order is `order` ([steps, batch],
or [N, steps, batch] for stacked networks: `order_axis` 1).

Two loops:

* ``"scan"``: the whole chunk is one compiled `lax.scan` (a Python loop per step is 1.6x slower on
  this CPU);
* ``"steps"``: one compiled iteration dispatched per iteration. For convolutional models on CPU:
  XLA:CPU runs the gradient of a convolution inside a loop body ~100x slower than outside one
  (measured here; jax-ml/jax#12868), while the per-iteration dispatch costs ~0.1 ms.

`shardings` (in, out) partition the program over a device mesh (data-parallel training, replicates
split over devices); `place` (of all arguments) and `place_index` (of the iteration index of the
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

        def scan_chunk(state, mask, data, order, offset, augment_key, length):
            batches = jax.lax.dynamic_slice_in_dim(order, offset, length, axis=order_axis)
            if order_axis:
                batches = jnp.moveaxis(batches, order_axis, 0)
            state, (loss, due, evals) = jax.lax.scan(
                lambda st, idx: iteration(st, mask, data, idx, augment_key), state, batches)
            return state, chunk_metrics(loss, due, evals)

        def one_step(state, mask, data, order, i, augment_key):
            return iteration(state, mask, data, order[(slice(None),) * order_axis + (i,)], augment_key)

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
            self._ahead[length] = executor.submit(lambda: self._compiled.lower(*arguments(), length).compile())

    def __call__(self, state, mask, data, order, offset, augment_key, *, length: int):
        ahead = self._ahead.pop(length, None)
        if ahead is not None:
            ahead.exception()  # wait; had it failed, the call below compiles (and raises) as usual
        args = self._place(state, mask, data, order, offset, augment_key)
        if self.loop == "scan":
            return self._compiled(*args, length)
        state, mask, data, order, offset, augment_key = args
        rows = []
        for i in range(int(offset), int(offset) + length):
            state, row = self._compiled(state, mask, data, order, self._place_index(i), augment_key)
            if self.sharded:
                jax.block_until_ready(state)  # never queue sharded steps unawaited (see the module docstring)
            rows.append(row)
        return state, stack_rows(rows)

    def lower(self, state, mask, data, order, offset, augment_key, *, length: int) -> Any:
        """The lowered (partitioned, with shardings) program of a scan chunk, for inspection."""
        if self.loop != "scan":
            raise ConfigError("only a scan chunk is one program to lower; this one runs one step at a time")
        return self._compiled.lower(*self._place(state, mask, data, order, offset, augment_key), length)
