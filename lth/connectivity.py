"""Instability analysis and linear mode connectivity (Frankle, Dziugaite, Roy & Carbin 2020).

Train a network to iteration k, copy it, train both copies to the end of training with different
data orders and augmentation (fresh optimiser state, schedule resumed at k: exactly a rewind to k),
then evaluate the test error along the straight line between the two trained copies,

    W(α) = (1 − α) W_A + α W_B,   α ∈ linspace(0, 1, 30),

and report the error barrier max_α err(W(α)) − (err(W_A) + err(W_B)) / 2. The network is *stable*
at k when the barrier is below 2 percentage points (`STABLE_BARRIER`).

Choices:

* Non-trainable model state (BatchNorm running statistics) is interpolated leafwise like the
  weights by default (``bn_state="interpolate"``), so that α = 0 and α = 1 are exactly the two
  trained networks and the path is symmetric; ``"a"`` keeps end A's statistics along the whole
  path (then α = 1 is *not* network B) and ``"average"`` uses the mean of the two ends'
  statistics everywhere. Statistics are never recomputed on training data. Models without state
  (the MLPs, LeNet, Conv-2/4/6) are unaffected. Integer leaves (counters) keep end A's value.
* The copies' data orders and augmentation keys come from ``rng.stream(seed, "instability", c)``
  for copy indices c (default 0 and 1), never from the main run's ``data_order`` stream: copy c's
  epoch e order is ``epoch_order(fold_in(stream, 0), e)``, its augmentation key
  ``fold_in(stream, 1)``. The remainder of the epoch containing k is taken from the copy's own
  order of that epoch, from the same offset, as `lth.train.train` does after a rewind.
* Both copies are trained in one compiled program (`jax.vmap` of the trainer's jitted chunk over
  the copy axis) or one after the other with `lth.train.train`; ``vectorize=None`` picks vmap on
  accelerators and sequential runs on CPU (see `auto_vectorize`). Both give the same networks up
  to float rounding.
* The path is evaluated in one jitted program: ``lax.map`` over α, `alpha_batch` points at a time
  with `jax.vmap` (default `ALPHA_BATCH` = 10; on a CPU 1, 5, 10 or 30 at a time ran equally fast
  for LeNet-300-100, and 10 bounds the activation memory of VGG-16-sized nets on a GPU).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth import rng
from lth.data.device import EvalSet, epoch_order
from lth.errors import ConfigError
from lth.masks import Mask, apply_mask, check_mask, make_mask
from lth.models.base import Model
from lth.train import Trainer, TrainState, chunk_plan, make_evaluate, train

NUM_POINTS = 30  # Frankle et al. 2020: 30 evenly spaced α
STABLE_BARRIER = 0.02  # "stable": error barrier below 2 percentage points
BN_STATES = ("interpolate", "a", "average")
ALPHA_BATCH = 10  # α evaluated side by side (vmap) inside the compiled path evaluation


# --------------------------------------------------------------------------- the path


def alphas(num_points: int = NUM_POINTS) -> np.ndarray:
    """`num_points` evenly spaced interpolation coefficients in [0, 1], ends included."""
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2 (both ends of the path), got {num_points}")
    return np.linspace(0.0, 1.0, num_points)


def _mix(a: jax.Array, b: jax.Array, alpha: Any) -> jax.Array:
    dtype = jnp.result_type(a)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return a  # integer / bool leaves (e.g. counters): end A's value
    d = b - a
    # the line (1 - α) a + α b, from the nearer end: exact at both ends and exact along the whole
    # path when a == b (d = 0)
    return jnp.where(alpha < 0.5, a + alpha * d, b - (1 - alpha) * d).astype(dtype)


def interpolate(params_a: Any, params_b: Any, alpha: Any, mask: Mask | None = None) -> Any:
    """(1 − α) a + α b leafwise (pure, jittable), computed from the nearer end so that α = 0 gives
    exactly a, α = 1 exactly b, and a == b gives exactly a everywhere. Two ends pruned with the
    same mask give a path in that mask's subspace already (0 − 0 = 0); `mask` re-applies it
    (zeroes pruned entries) all the same."""
    mixed = jax.tree.map(lambda a, b: _mix(a, b, alpha), params_a, params_b)
    return mixed if mask is None else apply_mask(mixed, mask)


def _path_state(state_a: Any, state_b: Any, alpha: Any, bn_state: str) -> Any:
    if bn_state == "interpolate":
        return interpolate(state_a, state_b, alpha)
    if bn_state == "average":
        return interpolate(state_a, state_b, 0.5)
    return state_a


@functools.partial(jax.jit, static_argnames=("evaluate", "bn_state", "alpha_batch"))
def _path_metrics(params_a, params_b, state_a, state_b, eval_set, alphas_N, mask, *, evaluate, bn_state,
                  alpha_batch):
    def at(alpha):
        params = interpolate(params_a, params_b, alpha, mask)
        return evaluate(params, _path_state(state_a, state_b, alpha, bn_state), eval_set)

    return jax.lax.map(at, alphas_N, batch_size=alpha_batch)


@functools.lru_cache(maxsize=32)
def _model_evaluate(model: Model) -> Callable:
    return make_evaluate(model)


def _evaluate_fn(evaluator: Any) -> Callable:
    """A Trainer (its jitted `evaluate`), a Model, or a function (params, state, EvalSet) -> (loss, acc)."""
    if isinstance(evaluator, Model):
        return _model_evaluate(evaluator)
    if hasattr(evaluator, "evaluate"):
        return evaluator.evaluate
    if callable(evaluator):
        return evaluator
    raise TypeError(f"expected a Trainer, a Model or an evaluate function, got {type(evaluator).__name__}")


def evaluate_path(
    evaluator: Trainer | Model | Callable,
    params_a: Any,
    params_b: Any,
    model_state_a: Any,
    model_state_b: Any,
    eval_set: EvalSet,
    *,
    num_points: int = NUM_POINTS,
    mask: Mask | None = None,
    bn_state: str = "interpolate",
    alpha_batch: int = ALPHA_BATCH,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(α, loss, accuracy) at `num_points` evenly spaced α, all evaluated in one jitted program.

    `model_state_b` None means end A's state. `alpha_batch`: α evaluated side by side (vmap) inside
    the compiled `lax.map` over α. `bn_state`: see the module docstring.
    """
    if bn_state not in BN_STATES:
        raise ValueError(f"unknown bn_state {bn_state!r}: choose one of {', '.join(BN_STATES)}")
    alpha_N = alphas(num_points)
    if model_state_b is None:
        model_state_b = model_state_a
    batch = max(1, min(int(alpha_batch), num_points))
    loss, acc = _path_metrics(params_a, params_b, model_state_a, model_state_b, eval_set,
                              jnp.asarray(alpha_N, jnp.float32), mask, evaluate=_evaluate_fn(evaluator),
                              bn_state=bn_state, alpha_batch=batch)
    return alpha_N, np.asarray(loss, np.float64), np.asarray(acc, np.float64)


def error_along_path(
    evaluator: Trainer | Model | Callable,
    params_a: Any,
    params_b: Any,
    model_state_a: Any,
    model_state_b: Any,
    eval_set: EvalSet,
    *,
    num_points: int = NUM_POINTS,
    mask: Mask | None = None,
    bn_state: str = "interpolate",
    alpha_batch: int = ALPHA_BATCH,
) -> np.ndarray:
    """Error (1 − accuracy) of (1 − α) A + α B at α = linspace(0, 1, num_points); see `evaluate_path`."""
    _, _, acc = evaluate_path(evaluator, params_a, params_b, model_state_a, model_state_b, eval_set,
                              num_points=num_points, mask=mask, bn_state=bn_state, alpha_batch=alpha_batch)
    return 1.0 - acc


def error_barrier(errors: Sequence[float] | np.ndarray) -> float:
    """max over the path of the error minus the mean of the two ends' errors (>= 0)."""
    e = np.asarray(errors, np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"errors must be a 1-D path of at least 2 points, got shape {e.shape}")
    return float(e.max() - 0.5 * (e[0] + e[-1]))


# --------------------------------------------------------------------------- training the copies


def copy_keys(seed: int, copy: int) -> tuple[jax.Array, jax.Array]:
    """(data order key, augmentation key) of instability copy `copy`: never the main run's streams."""
    key = rng.stream(seed, "instability", copy)
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)


def auto_vectorize() -> bool:
    """vmap the copies on GPU/TPU, train them one after the other on CPU.

    Measured on a 2-core CPU (mlp_tiny on MNIST-1D, LeNet-300-100 on mnist5k): the vmapped copies
    run no faster than two sequential runs once compiled (within noise), and the vmapped program
    is one more compilation per chunk length, while the sequential copies reuse the trainer's
    compiled chunks. On accelerators two small copies side by side should fill the device better
    (not measured here).
    """
    return jax.default_backend() != "cpu"


_STATE_AXES = TrainState(params=0, model_state=0, opt_state=0, step=None)


@functools.lru_cache(maxsize=8)
def _vmapped_chunk(train_chunk: Callable) -> Callable:
    """The trainer's jitted chunk, vmapped over (state, order, augment key) of the copies.

    The global step is shared (not batched), so the chunk's "evaluate now?" `lax.cond` stays a
    branch instead of becoming a select that would evaluate at every iteration.
    """

    @functools.partial(jax.jit, static_argnames=("length",))
    def chunk(states, mask, data, orders, offset, augment_keys, *, length):
        run = functools.partial(train_chunk, length=length)
        return jax.vmap(run, in_axes=(_STATE_AXES, None, None, 0, None, 0),
                        out_axes=(_STATE_AXES, 0))(states, mask, data, orders, offset, augment_keys)

    return chunk


@functools.partial(jax.jit, static_argnums=1)
def _broadcast(tree: Any, n: int) -> Any:
    """`n` copies of every leaf along a new first axis (one dispatch)."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), tree)


@functools.partial(jax.jit, static_argnums=1)
def _unstack(tree: Any, n: int) -> list[Any]:
    """The `n` slices of every leaf's first axis, as `n` trees (one dispatch)."""
    return [jax.tree.map(lambda x: x[i], tree) for i in range(n)]


def train_copies(
    setup: Any,
    state: Any,
    mask: Mask | None = None,
    *,
    copies: Sequence[int] = (0, 1),
    vectorize: bool | None = None,
) -> list[TrainState]:
    """Train copies of `state` (params, model state, step k) from k to `setup.trainer.total_steps`,
    each with a fresh optimiser state, the schedule resumed at k, and copy c's own data order and
    augmentation (`copy_keys`). Returns the final states in the order of `copies`.

    `vectorize`: True trains all copies in one compiled program (vmap over the copy axis), False one
    after the other with `lth.train.train`, None chooses (`auto_vectorize`).
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
    if not vectorize:
        finals = []
        for order_key, augment_key in keys:
            final = start
            for final, _ in train(trainer, start, mask, data, order_key, augment_key):
                pass
            finals.append(final)
        return finals

    n = len(keys)
    chunk_fn = _vmapped_chunk(trainer.train_chunk)
    states = TrainState(*_broadcast(tuple(start[:3]), n), start.step)
    augment_keys = jnp.stack([a for _, a in keys])
    num_examples = int(data.x_train.shape[0])
    for chunk in chunk_plan(k, trainer.total_steps, trainer.steps_per_epoch):
        orders = jnp.stack([epoch_order(o, chunk.epoch, num_examples, trainer.batch_size) for o, _ in keys])
        states, _ = chunk_fn(states, mask, data, orders, jnp.int32(chunk.offset), augment_keys, length=chunk.length)
    return [TrainState(*part, states.step) for part in _unstack(tuple(states[:3]), n)]


# --------------------------------------------------------------------------- instability


def instability(
    setup: Any,
    state: Any,
    mask: Mask | None = None,
    *,
    copies: tuple[int, int] = (0, 1),
    num_points: int = NUM_POINTS,
    vectorize: bool | None = None,
    bn_state: str = "interpolate",
    alpha_batch: int = ALPHA_BATCH,
) -> dict[str, Any]:
    """Instability of `state` (anything with params, model_state and step k, e.g. a `TrainState`;
    its optimiser state is ignored) under the setup's training: two copies trained from k to the
    end (`train_copies`), then the test error along the linear path between them.

    With a `mask`, the start is masked, both copies train masked and the path is masked. Returns
    {"rewind_step", "barrier", "stable", "errors", "alphas", "end_errors", "copies"} (plain
    Python types, JSON-ready).
    """
    if len(copies) != 2 or copies[0] == copies[1]:
        raise ValueError(f"copies must be two different copy indices, got {copies!r}")
    if mask is None:
        mask = make_mask(state.params, setup.config.pruning.prunable)
    final_a, final_b = train_copies(setup, state, mask, copies=copies, vectorize=vectorize)
    alpha_N, _, acc = evaluate_path(setup.trainer, final_a.params, final_b.params, final_a.model_state,
                                    final_b.model_state, setup.data.test, num_points=num_points, mask=mask,
                                    bn_state=bn_state, alpha_batch=alpha_batch)
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
    }


def iter_instability(
    setup: Any,
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
    from lth.lottery import init_params

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
    order_key, augment_key = rng.stream(setup.config.seed, "data_order"), rng.stream(setup.config.seed, "augmentation")
    for state, _ in train(trainer, state, path_mask, setup.data, order_key, augment_key, breaks=pending):
        if int(state.step) == pending[0]:
            yield instability(setup, state, mask, **kwargs)
            pending.pop(0)
            if not pending:
                return


def instability_curve(
    setup: Any,
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


# --------------------------------------------------------------------------- the run, with its files


def parse_steps(text: str, steps_per_epoch: int) -> list[int]:
    """'0,100,500it,2ep' -> iterations (a bare number is iterations)."""
    from lth.config import duration_to_steps

    steps = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        steps.append(duration_to_steps(part + "it" if part.isdigit() else part, steps_per_epoch))
    if not steps:
        raise ConfigError(f"no rewind step in {text!r}: write e.g. 0,100,500it,2ep")
    return sorted(set(steps))


def run_instability(
    run: Any,
    rewind_steps: str,
    levels: str = "0",
    *,
    replicate: int = 0,
    runs_root: Any = None,
    data_root: Any = None,
    progress: bool = True,
) -> dict[int, list[dict[str, Any]]]:
    """Instability analysis of a finished run: for each chosen level (0 = the dense network; L = the
    level's ticket, trained dense to k and masked there, as an IMP ticket rewound to k) and each
    rewind step k, two copies trained to the end with different data orders, and the error barrier
    along the linear path between them. Records go to ``replicate_XX/instability/level_XX.json`` and
    a plot beside them; finished (level, k) pairs are not recomputed. Returns {level: records}."""
    import dataclasses
    import json

    from lth.config import from_dict, replace
    from lth.connectivity_plots import plot_instability
    from lth.controls import parse_levels
    from lth.lottery import init_params, prepare
    from lth.runs import RunDir, load_mask, resolve_run, write_json

    path = resolve_run(run, runs_root)
    config = from_dict(json.loads((path / "config.json").read_text()))
    chosen = parse_levels(levels, config.levels)
    setup = prepare(config, data_root)
    steps = parse_steps(rewind_steps, setup.trainer.steps_per_epoch)
    beyond = [k for k in steps if k >= setup.total_steps]
    if beyond:
        raise ConfigError(f"rewind step(s) {beyond} not before the end of training ({setup.total_steps} iterations)")
    run_dir = RunDir(path.parent, config)
    rep = run_dir.replicate(replicate)
    done_levels = len(rep.read_results())
    missing = [level for level in chosen if level >= done_levels]
    if missing:
        raise ConfigError(f"replicate {replicate} of {path.name} has not finished level(s) {missing}: run it first")
    setup = dataclasses.replace(setup, config=replace(config, seed=config.seed + replicate))
    params0, _ = init_params(setup)
    out: dict[int, list[dict[str, Any]]] = {}
    with run_dir.lock():
        for level in chosen:
            file = rep.path / "instability" / f"level_{level:02d}.json"
            records = {r["rewind_step"]: r for r in (json.loads(file.read_text()) if file.exists() else [])}
            todo = [k for k in steps if k not in records]
            mask = load_mask(rep.mask_path(level), params0) if level > 0 else None

            def save(record: dict[str, Any], level: int = level, records: dict = records, file=file) -> None:
                records[record["rewind_step"]] = record
                write_json(file, [records[k] for k in sorted(records)])
                if progress:
                    print(f"level {level}  k={record['rewind_step']:>6}  barrier {100 * record['barrier']:6.2f} points"
                          f"  {'stable' if record['stable'] else 'unstable'}", flush=True)

            if todo:
                instability_curve(setup, todo, mask, rewind_dense=level > 0, callback=save)
            out[level] = [records[k] for k in sorted(records)]
            plot_instability(out[level], file.with_suffix(".png"),
                             title=f"{config.name} level {level}: instability (replicate {replicate})")
    return out
