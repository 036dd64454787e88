"""Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020): train a network to iteration k,
copy it, train both copies to the end of training with different data orders and augmentation
(fresh optimiser state, schedule resumed at k: exactly a rewind to k), then measure the error
barrier along the linear path between them (`lth.lottery.path`).

Choices:

* The copies' data orders and augmentation keys come from ``rng.stream(seed, "instability", c)``
  for copy indices c (default 0 and 1), never from the main run's ``data_order`` stream: copy c's
  epoch e order is ``epoch_order(fold_in(stream, 0), e)``, its augmentation key
  ``fold_in(stream, 1)``. The remainder of the epoch containing k is taken from the copy's own
  order of that epoch, from the same offset, as `lth.training.train` does after a rewind.
* Both copies are trained side by side by the stacked trainer (`lth.training.stacked`, the one
  that trains replicates) or one after the other with `lth.training.train`; ``vectorize=None``
  picks side by side on accelerators and one after the other on CPU (see `auto_vectorize`). Both
  give the same networks up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax

from lth import rng
from lth.errors import ConfigError
from lth.lottery.path import ALPHA_BATCH, NUM_POINTS, STABLE_BARRIER, error_barrier, evaluate_path
from lth.lottery.setup import Setup, data_keys, init_params
from lth.sparsity.masks import Mask, apply_mask, check_mask, make_mask
from lth.training import TrainState, train
from lth.training.stacked import train_stacked


def copy_keys(seed: int, copy: int) -> tuple[jax.Array, jax.Array]:
    """(data order key, augmentation key) of instability copy `copy`: never the main run's streams."""
    key = rng.stream(seed, "instability", copy)
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)


BN_BATCHES = 20  # batches of the training batch size that BatchNorm statistics are re-estimated on


def bn_batches(setup: Setup, batches: int = BN_BATCHES) -> jax.Array:
    """The fixed training subset that `bn_state="reestimate"` recomputes BatchNorm statistics on:
    `batches` batches of the training batch size (fewer if the data is small), a seeded permutation's
    first examples, unaugmented: [batches, batch, ...]."""
    x, batch = setup.data.x_train, setup.trainer.batch_size
    count = max(1, min(batches, int(x.shape[0]) // batch))
    order = jax.random.permutation(rng.stream(setup.config.seed, "bn_subset"), int(x.shape[0]))[: count * batch]
    return x[order].reshape(count, batch, *x.shape[1:])


def auto_vectorize() -> bool:
    """vmap the copies on GPU/TPU, train them one after the other on CPU.

    Measured on a 2-core CPU (mlp_tiny on MNIST-1D, LeNet-300-100 on mnist5k): the vmapped copies
    run no faster than two sequential runs once compiled (within noise), and the vmapped program
    is one more compilation per chunk length, while the sequential copies reuse the trainer's
    compiled chunks. On accelerators two small copies side by side should fill the device better
    (not measured here).
    """
    return jax.default_backend() != "cpu"


def train_copies(
    setup: Setup,
    state: Any,
    mask: Mask | None = None,
    *,
    copies: Sequence[int] = (0, 1),
    vectorize: bool | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> list[TrainState]:
    """Train copies of `state` (params, model state, step k) from k to `setup.trainer.total_steps`,
    each with a fresh optimiser state, the schedule resumed at k, and copy c's own data order and
    augmentation (`copy_keys`). Returns the final states in the order of `copies`.

    `vectorize`: True trains all copies side by side in one compiled program (the stacked trainer),
    False one after the other with `lth.training.train`, None chooses (`auto_vectorize`).
    `on_chunk(iterations)` is called after every chunk with the iterations it trained, summed over
    the copies trained in it (a progress bar of ``len(copies) * (T - k)`` iterations).
    """
    trainer, data = setup.trainer, setup.data
    k = int(state.step)
    if not 0 <= k < trainer.total_steps:
        raise ConfigError(f"instability from iteration {k}: it must be in [0, {trainer.total_steps}) "
                          f"(the end of training)")
    if mask is None:
        mask = make_mask(state.params, setup.config.pruning.prunable)
    check_mask(mask, state.params)
    start = trainer.init_state(apply_mask(state.params, mask), state.model_state, k)
    keys = [copy_keys(setup.config.seed, c) for c in copies]
    if vectorize is None:
        vectorize = auto_vectorize()
    advanced = on_chunk or (lambda iterations: None)
    if not vectorize:
        finals = []
        for order_key, augment_key in keys:
            final = start
            for state_c, _ in train(trainer, start, mask, data, order_key, augment_key):
                advanced(int(state_c.step) - int(final.step))
                final = state_c
            finals.append(final)
        return finals
    finals = [start] * len(keys)
    for states, _ in train_stacked(trainer, finals, [mask] * len(keys), data, [o for o, _ in keys],
                                   [a for _, a in keys]):
        advanced(len(keys) * (int(states[0].step) - int(finals[0].step)))
        finals = states
    return finals


# --------------------------------------------------------------------------- instability


def instability(
    setup: Setup,
    state: Any,
    mask: Mask | None = None,
    *,
    copies: tuple[int, int] = (0, 1),
    num_points: int = NUM_POINTS,
    vectorize: bool | None = None,
    bn_state: str = "interpolate",
    alpha_batch: int = ALPHA_BATCH,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Instability of `state` (anything with params, model_state and step k, e.g. a `TrainState`;
    its optimiser state is ignored) under the setup's training: two copies trained from k to the
    end (`train_copies`), then the test error along the linear path between them.

    With a `mask`, the start is masked, both copies train masked and the path is masked. Returns
    {"rewind_step", "barrier", "stable", "errors", "alphas", "end_errors", "copies", "bn_state"}
    (plain Python types, JSON-ready). `bn_state`: how BatchNorm statistics are set along the path
    (`lth.lottery.path`; "reestimate" uses `bn_batches`). `on_chunk`: see `train_copies`.
    """
    if len(copies) != 2 or copies[0] == copies[1]:
        raise ValueError(f"copies must be two different copy indices, got {copies!r}")
    if mask is None:
        mask = make_mask(state.params, setup.config.pruning.prunable)
    final_a, final_b = train_copies(setup, state, mask, copies=copies, vectorize=vectorize,
                                    on_chunk=on_chunk)
    alpha_N, _, acc = evaluate_path(setup.trainer, final_a.params, final_b.params, final_a.model_state,
                                    final_b.model_state, setup.data.test, num_points=num_points, mask=mask,
                                    bn_state=bn_state, alpha_batch=alpha_batch,
                                    bn_batches=bn_batches(setup) if bn_state == "reestimate" else None)
    errors = 1.0 - acc
    barrier = error_barrier(errors)
    return {
        "rewind_step": int(state.step),
        "barrier": barrier,
        "stable": barrier < STABLE_BARRIER,
        "errors": [float(e) for e in errors],
        "alphas": [float(a) for a in alpha_N],
        "end_errors": [float(errors[0]), float(errors[-1])],
        "copies": [int(c) for c in copies],
        "bn_state": bn_state,
    }


def iter_instability(
    setup: Setup,
    rewind_steps: Iterable[int],
    mask: Mask | None = None,
    *,
    rewind_dense: bool = False,
    **kwargs: Any,
) -> Iterator[dict[str, Any]]:
    """Yield `instability` records for every k in `rewind_steps` (ascending), each as soon as it is
    computed. One trajectory from the run's initialisation, with the main run's data order and
    augmentation (as level 0 of a lottery), is trained up to the largest k and paused at each k.

    With a `mask`: the trajectory is masked from init (a sparse network trained from scratch), or,
    with `rewind_dense`, dense, the mask being applied at k (IMP's rewinding of a ticket to the
    dense run's weights at k). `kwargs` go to `instability`.
    """
    trainer = setup.trainer
    steps = sorted({int(k) for k in rewind_steps})
    if not steps:
        return
    if steps[0] < 0 or steps[-1] >= trainer.total_steps:
        raise ConfigError(f"rewind steps must be in [0, {trainer.total_steps}) (the end of training), got {steps}")
    params0, model_state0 = init_params(setup)
    if mask is None:
        mask = make_mask(params0, setup.config.pruning.prunable)
    check_mask(mask, params0)
    path_mask = make_mask(params0, setup.config.pruning.prunable) if rewind_dense else mask
    state = trainer.init_state(apply_mask(params0, path_mask), model_state0, 0)
    pending = list(steps)
    if pending[0] == 0:
        yield instability(setup, state, mask, **kwargs)
        pending.pop(0)
    if not pending:
        return
    order_key, augment_key = data_keys(setup, 0)  # level 0's
    for state, _ in train(trainer, state, path_mask, setup.data, order_key, augment_key, breaks=pending):
        if int(state.step) == pending[0]:
            yield instability(setup, state, mask, **kwargs)
            pending.pop(0)
            if not pending:
                return


def instability_curve(
    setup: Setup,
    rewind_steps: Iterable[int],
    mask: Mask | None = None,
    *,
    rewind_dense: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """The `instability` records of every rewind step k (ascending; see `iter_instability`), e.g.
    for a barrier-vs-k plot. `callback(record)` runs after each k."""
    records = []
    for record in iter_instability(setup, rewind_steps, mask, rewind_dense=rewind_dense, **kwargs):
        if callback is not None:
            callback(record)
        records.append(record)
    return records
