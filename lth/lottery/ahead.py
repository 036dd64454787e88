"""A run's start-up work in background threads, while the data goes to the device (issue 29, item 3).

A cold process used to do, one after the other before its first training step: put the data on the
device, run the model's init (eager ops, each compiled on first use), warm the pruning program up
(`lth.lottery.levels.warm_pruning`), and compile `epoch_order` and the training chunk. None of these
needs another's result: the init needs no data, and the compilations need only the data's shapes
(`lth.data.device.device_shapes`). `start_ahead` starts, as soon as the data is loaded on the host,
two threads (one per core of a small machine: a third, for the pruning warm-up, measured no faster):

* the compiler: `epoch_order`, then the scan chunk of every length that level 0 and level 1 use
  (`lth.training.chunks.Chunk.compile_ahead`, on `jax.ShapeDtypeStruct`s), then the pruning
  warm-up, on zeros of the params' shapes (its program depends on the shapes alone; it is needed
  at the end of level 0 only, so it comes last);
* the initialiser: the seed's initial params and model state (`lth.lottery.setup.fresh_init`, the
  ops `Setup.initial` runs: the same bytes; jitting them would change the bits), then level 0's
  first eager ops once on them (masking, the optimiser's init), so that the main thread finds
  them compiled.

Whoever needs a result waits for it: the first chunk of a length, `Setup.initial` (by seed), and
`warm_pruning` (which then has nothing left to do). XLA compiles with the GIL released, so on
two cores the two threads overlap (and the main thread's data transfer, a plain copy); nothing is
compiled twice, and the levels build no program in the main thread (`tests/test_ahead.py` counts
them). A job that failed is done again where it is needed, which raises its error there as before.
When the run ends, or stops on bad input found after the threads started (a ticket or a mask that
does not fit the model), `Ahead.cancel` drops the jobs not started yet and waits for the running ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp

from lth.data.device import epoch_order
from lth.lottery.levels import prune_level
from lth.lottery.setup import Setup, data_keys, fresh_init, initial_mask, level0_state, start_step
from lth.sparsity.masks import kept_counts
from lth.training.loop import chunk_plan


class Ahead:
    """Named jobs in two single-thread queues, "compile" and "init"; `result` waits for one."""

    def __init__(self) -> None:
        self.queues = {name: ThreadPoolExecutor(1, thread_name_prefix=f"lth-ahead-{name}")
                       for name in ("compile", "init")}
        self._jobs: dict[Hashable, Future] = {}

    def submit(self, queue: str, name: Hashable, job: Callable[[], Any]) -> None:
        """Run `job` in `queue`'s thread after the jobs queued there before it; its result is `name`'s."""
        self._jobs[name] = self.queues[queue].submit(job)

    def result(self, name: Hashable) -> Any:
        """The result of the job `name`, once it is done; None if there is none or it failed."""
        job = self._jobs.get(name)
        if job is None or job.cancelled() or job.exception() is not None:
            return None
        return job.result()

    def cancel_compiles(self) -> None:
        """Drop the compile jobs not started yet (a run found finished needs none of them; one being
        compiled is finished: the process waits for it at exit)."""
        self.queues["compile"].shutdown(wait=False, cancel_futures=True)

    def cancel(self) -> None:
        """Drop every job not started yet, in both queues, and wait for the ones running (XLA cannot
        stop a compile): the run is over, or failed before it trained (a ticket that does not fit),
        and nothing will ask for them. Without this, a failed run went on compiling its levels'
        programs after its error: the process exited seconds later, a caller's next run shared the
        CPU with them."""
        for queue in self.queues.values():
            queue.shutdown(wait=False, cancel_futures=True)
        for queue in self.queues.values():
            queue.shutdown(wait=True)

    def close(self) -> None:
        """Let the threads end once their queues are done (nothing waits for them here)."""
        for queue in self.queues.values():
            queue.shutdown(wait=False)


def start_ahead(setup: Setup) -> Ahead:
    """Start the start-up work of `setup` (whose `data` may still be `device_shapes`: only shapes are
    read) in the background; see the module docstring. Replicate 0's seed is initialised."""
    ahead = Ahead()
    shapes = functools.cache(functools.partial(_initial_shapes, setup))  # traced once, in the compiler's thread
    ahead.submit("compile", "epoch_order", functools.partial(_compile_epoch_order, setup))
    levels = [(setup.trainer, start_step(setup), 0)]
    if setup.config.levels > 0:
        levels.append((setup.retrain_trainer, setup.rewind_step, 1))
    for trainer, first, level in levels:
        arguments = functools.cache(functools.partial(_chunk_arguments, setup, shapes, trainer, first))
        breaks = (setup.rewind_step,) if level == 0 and setup.rewind_step > first else ()
        for span in chunk_plan(first, trainer.total_steps, trainer.steps_per_epoch, breaks):
            trainer.train_chunk.compile_ahead(ahead.queues["compile"], arguments, length=span.length)
    if setup.start is None:
        ahead.submit("init", ("initial", setup.config.seed), functools.partial(_initialise, setup))
    ahead.submit("compile", "pruning", functools.partial(_warm_pruning, setup, shapes))  # needed at level 0's end
    ahead.close()
    return ahead


def _initialise(setup: Setup) -> tuple[Any, Any]:
    """The seed's (params, model state) (`fresh_init`), and level 0's first eager ops run once on them
    (masking, the optimiser's init: compiled here, found in jit's cache by the main thread)."""
    params, model_state = fresh_init(setup.model, setup.config.seed)
    level0_state(setup, params, model_state, initial_mask(setup, params))
    return params, model_state


def _compile_epoch_order(setup: Setup) -> None:
    order_key, _ = jax.eval_shape(lambda: data_keys(setup, 0))
    epoch = jax.ShapeDtypeStruct((), jnp.int32, weak_type=True)  # a Python int, as `lth.training.train` passes
    epoch_order.lower(order_key, epoch, int(setup.data.x_train.shape[0]), setup.trainer.batch_size).compile()


def _initial_shapes(setup: Setup) -> tuple[Any, Any]:
    """The initial (params, model state) as `jax.ShapeDtypeStruct`s (traced, nothing run)."""
    return jax.eval_shape(lambda: fresh_init(setup.model, setup.config.seed))


def _chunk_arguments(setup: Setup, shapes: Callable[[], tuple[Any, Any]], trainer: Any, first: int) -> tuple:
    """Abstract (state, mask, data, order, offset, augment_key) of a chunk of `trainer` from `first`;
    `shapes()`: `_initial_shapes(setup)`."""
    params, model_state = shapes()
    mask = jax.eval_shape(lambda p: initial_mask(setup, p), params)
    state = jax.eval_shape(lambda p, s: trainer.init_state(p, s, first), params, model_state)
    _, augment_key = jax.eval_shape(lambda: data_keys(setup, 0))
    order = jax.ShapeDtypeStruct((trainer.steps_per_epoch, trainer.batch_size), jnp.int32)
    return state, mask, setup.data, order, jax.ShapeDtypeStruct((), jnp.int32), augment_key


def _warm_pruning(setup: Setup, shapes: Callable[[], tuple[Any, Any]]) -> bool:
    """`lth.lottery.levels.warm_pruning` on zeros of the initial params' shapes: the program depends on
    the shapes alone (the keep counts are traced), so it need not wait for the init."""
    if setup.config.levels == 0:
        return False
    params = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shapes()[0])
    mask = initial_mask(setup, params)
    jax.block_until_ready(prune_level(setup, params, mask, 1, kept_counts(mask)))
    return True
