"""Mask updates inside the compiled loop: gradual magnitude pruning, SET and RigL.

A run whose mask changes during training carries it in the train state (`TrainState.sparse`, a
`SparseState`), so the chunk returns it with the weights, checkpoints save it, and the stacked
trainer vmaps it with the rest of the state. The masked iteration (`lth.training.iteration`) asks
`MaskUpdate.due(step)` every iteration; the answer is a `lax.cond` predicate on the shared iteration
counter, so one compiled program serves the whole run (and N vmapped seeds stay one program: the
counter is not batched, so the cond is not turned into a select).

At an update iteration the dense gradient the iteration computed anyway (before masking) is at hand.
The new mask comes from the weights before that iteration's step and its batch's gradient
(``gradual``: magnitude pruning to the schedule's counts; ``set`` / ``rigl``: drop and grow,
`lth.sparsity.dynamic`); the params are masked by it (dropped weights become 0; grown ones are 0
already), the optimiser moments are kept only where a weight is active before *and* after (new
connections start with zero moments, as in both references, and so do dropped ones), and then the
iteration's optimiser step runs under the new mask -- jaxpruner's order for its pruners.

One departure, for speed: at a SET / RigL update iteration the rigl reference
(``cond_mask_update_op(global_step, apply_gradient_op)``) and jaxpruner (``skip_gradients=True``) skip
that iteration's optimiser step; here it runs (the rigl reference's SET optimizer also takes it, before
its update), so grown weights take their first step, from 0 with zero moments, at once. Skipping it
inside the compiled loop needs a select over the whole optimiser state at every iteration, which made
a LeNet-300-100 epoch ~50 % slower on CPU (measured: benchmarks/README.md); the extra step is one
iteration in `dt` (1 % at dt = 100).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lth.spec.config import SparseConfig
from lth.spec.methods import DYNAMIC  # the methods whose mask changes during training
from lth.sparsity import dynamic, gradual, nm
from lth.sparsity.masks import Mask, apply_mask

_SET_KEY = 0x5E7  # the SET regrowth stream: fold_in(fold_in(augment_key, _SET_KEY), step)


class SparseState(NamedTuple):
    """The mask in force, and (gradual pruning) each layer's keep count at the schedule's start and end."""

    mask: Mask
    start_counts: dict[str, jax.Array]
    final_counts: dict[str, jax.Array]


class MaskUpdate(NamedTuple):
    """A mask-update rule: when (`due`) and what (`new_mask`)."""

    method: str
    due: Callable[[jax.Array], jax.Array]  # global iteration -> bool
    new_mask: Callable[..., Mask]  # (sparse, params, grads, step, key) -> mask


class Schedule(NamedTuple):
    """A method's update schedule resolved to iterations."""

    dt: int
    t_end: int  # set / rigl: the last iteration that may update
    t0: int
    n: int  # gradual pruning steps after t0


def resolve_schedule(cfg: SparseConfig, total_steps: int) -> Schedule:
    """Iterations of `cfg`'s schedule for a run of `total_steps` (T_end = floor(t_end * T); gradual
    n = 0 means as many steps of dt as fit between t0 and T_end)."""
    t_end = int(cfg.t_end * total_steps)
    n = cfg.n or max(0, (t_end - cfg.t0) // max(cfg.dt, 1))
    return Schedule(cfg.dt, t_end, cfg.t0, n)


def _rigl(cfg: SparseConfig, s: Schedule, exclude: tuple[str, ...]) -> MaskUpdate:
    def periodic(step):
        return (step % s.dt == 0) & (step <= s.t_end)

    def rigl(sparse, params, grads, step, key):
        return dynamic.rigl_update(sparse.mask, params, grads, dynamic.cosine_drop_fraction(step, cfg.alpha, s.t_end))
    return MaskUpdate("rigl", periodic, rigl)


def _set(cfg: SparseConfig, s: Schedule, exclude: tuple[str, ...]) -> MaskUpdate:
    def periodic(step):
        return (step % s.dt == 0) & (step <= s.t_end)

    def set_(sparse, params, grads, step, key):
        fraction = dynamic.cosine_drop_fraction(step, cfg.z, s.t_end) if cfg.set_drop == "cosine" else cfg.z
        return dynamic.set_update(sparse.mask, params, jax.random.fold_in(jax.random.fold_in(key, _SET_KEY), step),
                                  fraction)
    return MaskUpdate("set", periodic, set_)


def _gradual(cfg: SparseConfig, s: Schedule, exclude: tuple[str, ...]) -> MaskUpdate:
    structure = nm.parse_nm(cfg.structure)

    def due(step):
        return gradual.is_update_step(step, s.t0, s.n, s.dt)

    def prune(sparse, params, grads, step, key):
        if structure is None:
            return gradual.gradual_prune(params, sparse.mask, step, sparse.start_counts, sparse.final_counts, s.t0,
                                         s.n, s.dt)
        n, m = structure
        start = max(n, int(round(m * (1.0 - cfg.s_i))))
        keep = n + jnp.round((start - n) * gradual.ramp(step, s.t0, s.n, s.dt)).astype(jnp.int32)
        return nm.nm_magnitude(params, sparse.mask, keep, m, exclude)
    return MaskUpdate("gradual", due, prune)


# the mask update of every method whose mask changes during training (`lth.spec.methods`: dynamic=True)
UPDATES: dict[str, Callable[[SparseConfig, Schedule, tuple[str, ...]], MaskUpdate]] = {
    "gradual": _gradual, "set": _set, "rigl": _rigl,
}


def make_mask_update(method: str, cfg: SparseConfig, total_steps: int, exclude: tuple[str, ...] = ()) -> MaskUpdate:
    """The `MaskUpdate` of `method` (one of `UPDATES`) under `cfg`."""
    if method not in UPDATES:
        raise ValueError(f"no mask updates for method {method!r}")
    return UPDATES[method](cfg, resolve_schedule(cfg, total_steps), exclude)


def sparse_state(mask: Mask, start_counts: dict[str, int] | None = None,
                 final_counts: dict[str, int] | None = None) -> SparseState:
    """A `SparseState` (counts as int32 arrays, so that other targets reuse the compiled program)."""
    as_arrays = lambda counts: {k: jnp.asarray(v, jnp.int32) for k, v in (counts or {}).items()}
    return SparseState(mask, as_arrays(start_counts), as_arrays(final_counts))


def _keep_tree(params: Any, old: Mask, new: Mask) -> Any:
    """The params' structure: True where optimiser moments survive an update (active before and after)."""
    return jax.tree.map(lambda p, a, b: True if a is None else a & b, params, old, new,
                        is_leaf=lambda x: x is None)


def after_update(tx: optax.GradientTransformation, params: Any, opt_state: Any, old: Mask, new: Mask
                 ) -> tuple[Any, Any]:
    """(params, opt_state) after the mask went from `old` to `new`: params masked by `new` (dropped
    weights 0; grown ones are 0 already), optimiser moments kept only where a weight is active in both."""
    keep = _keep_tree(params, old, new)
    opt_state = optax.tree_utils.tree_map_params(tx, lambda v, k: jnp.where(k, v, jnp.zeros_like(v)), opt_state, keep,
                                                 transform_non_params=lambda x: x)
    return apply_mask(params, new), opt_state


def updated(rule: MaskUpdate, tx: optax.GradientTransformation, params: Any, opt_state: Any, sparse: SparseState,
            grads: Any, step: jax.Array, key: jax.Array) -> tuple[Any, Any, SparseState]:
    """(params, opt_state, sparse) after the mask update of iteration `step` (see the module docstring)."""
    mask = rule.new_mask(sparse, params, grads, step, key)
    params, opt_state = after_update(tx, params, opt_state, sparse.mask, mask)
    return params, opt_state, sparse._replace(mask=mask)


def current_mask(state: Any, mask: Mask) -> Mask:
    """The mask in force: the state's for a run with mask updates, else the given one."""
    return mask if getattr(state, "sparse", None) is None else state.sparse.mask


def count_updates(rule: MaskUpdate, start: int, end: int) -> int:
    """How many iterations in [start, end) update the mask (host side, for records)."""
    return int(jnp.sum(rule.due(jnp.arange(start, end, dtype=jnp.int32)))) if end > start else 0


__all__ = ["DYNAMIC", "UPDATES", "MaskUpdate", "Schedule", "SparseState", "after_update", "count_updates",
           "current_mask", "make_mask_update", "resolve_schedule", "sparse_state", "updated"]
