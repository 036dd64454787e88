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

Drop fractions: RigL alpha / 2 (1 + cos(pi t / T_end)); SET z under the same cosine (``sparse.set_drop``
"cosine", the rigl reference's default ``drop_fraction_anneal='cosine'``, which its SET optimizer
shares) or a constant z (``set_drop`` "constant", Mocanu et al.). A due update need not move a weight:
near T_end ``floor(n f)`` can be 0 in every layer, and gradual pruning's first step (t0) prunes nothing
from a dense start at s_i = 0. `effective_updates` (host side, the rule's own arithmetic) gives the
iterations whose update changes the mask; records count those (`count_updates`) and early-stop only
over evaluations after the last one (`lth.lottery.methods.sparse_record`).

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
import numpy as np
import optax

from lth.spec.config import SparseConfig
from lth.spec.methods import DYNAMIC  # the methods whose mask changes during training
from lth.sparsity import dynamic, gradual, nm
from lth.sparsity.masks import Mask, apply_mask, layer_counts

_SET_KEY = 0x5E7  # the SET regrowth stream: fold_in(fold_in(augment_key, _SET_KEY), step)


class SparseState(NamedTuple):
    """The mask in force, and (gradual pruning) each layer's keep count at the schedule's start and end."""

    mask: Mask
    start_counts: dict[str, jax.Array]
    final_counts: dict[str, jax.Array]


class MaskUpdate(NamedTuple):
    """A mask-update rule: when (`due`), what (`new_mask`), and which due updates move a weight
    (`changes`, host side: the due iterations in order and the start `SparseState` -> one bool each)."""

    method: str
    due: Callable[[jax.Array], jax.Array]  # global iteration -> bool
    new_mask: Callable[..., Mask]  # (sparse, params, grads, step, key) -> mask
    changes: Callable[[list[int], SparseState], list[bool]]


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


def _active(sparse: SparseState, movable: bool = False) -> dict[str, int]:
    """Per-layer active counts of the sparse state's mask (host side); `movable`: only the layers that
    are not full (a full layer regrows whatever it drops: a layer kept dense never moves)."""
    return {name: kept for name, (kept, size) in layer_counts(sparse.mask).items() if not (movable and kept == size)}


def _drop_and_grow(method: str, s: Schedule, fraction: Callable[[Any], jax.Array], update: Callable) -> MaskUpdate:
    """A SET / RigL rule: due every dt iterations up to T_end, dropping ``floor(n fraction(t))`` per
    layer; an update moves weights iff that is >= 1 in some layer that is not full (the counts never
    change; a full layer's drop is regrown at once)."""
    def periodic(step):
        return (step % s.dt == 0) & (step <= s.t_end)

    def changes(steps: list[int], sparse: SparseState) -> list[bool]:
        f = fraction(jnp.asarray(steps, jnp.int32))
        moved = [np.asarray(dynamic.drop_count(n, f)) >= 1 for n in _active(sparse, movable=True).values()]
        return [bool(x) for x in np.any(moved, axis=0)] if moved and steps else [False] * len(steps)
    return MaskUpdate(method, periodic, update, changes)


def _rigl(cfg: SparseConfig, s: Schedule, exclude: tuple[str, ...]) -> MaskUpdate:
    def fraction(step):
        return dynamic.cosine_drop_fraction(step, cfg.alpha, s.t_end)

    def rigl(sparse, params, grads, step, key):
        return dynamic.rigl_update(sparse.mask, params, grads, fraction(step))
    return _drop_and_grow("rigl", s, fraction, rigl)


def _set(cfg: SparseConfig, s: Schedule, exclude: tuple[str, ...]) -> MaskUpdate:
    def fraction(step):
        if cfg.set_drop == "cosine":
            return dynamic.cosine_drop_fraction(step, cfg.z, s.t_end)
        return jnp.full(jnp.shape(step), cfg.z, jnp.float32)

    def set_(sparse, params, grads, step, key):
        return dynamic.set_update(sparse.mask, params, jax.random.fold_in(jax.random.fold_in(key, _SET_KEY), step),
                                  fraction(step))
    return _drop_and_grow("set", s, fraction, set_)


def _gradual(cfg: SparseConfig, s: Schedule, exclude: tuple[str, ...]) -> MaskUpdate:
    structure = nm.parse_nm(cfg.structure)

    def due(step):
        return gradual.is_update_step(step, s.t0, s.n, s.dt)

    def nm_keep(step):  # N:M: the weights each group of M keeps after the update at `step`
        n, m = structure
        start = max(n, int(round(m * (1.0 - cfg.s_i))))
        return n + jnp.round((start - n) * gradual.ramp(step, s.t0, s.n, s.dt)).astype(jnp.int32)

    def prune(sparse, params, grads, step, key):
        if structure is None:
            return gradual.gradual_prune(params, sparse.mask, step, sparse.start_counts, sparse.final_counts, s.t0,
                                         s.n, s.dt)
        return nm.nm_magnitude(params, sparse.mask, nm_keep(step), structure[1], exclude)

    def changes(steps: list[int], sparse: SparseState) -> list[bool]:
        """Whether each update prunes >= 1 weight: a layer (N:M: a group) keeps min(what it has, the
        schedule's count), so an update moves weights iff that is below what it had."""
        if structure is not None:  # gradual starts full: every group keeps M
            kept = [structure[1], *(int(nm_keep(t)) for t in steps)]
            return [new < min(kept[:i + 1]) for i, new in enumerate(kept[1:])]
        have, out = _active(sparse), []
        for t in steps:
            target = gradual.counts_at(t, sparse.start_counts, sparse.final_counts, s.t0, s.n, s.dt)
            new = {name: min(have[name], int(target[name])) for name in target}
            out.append(any(new[name] < have[name] for name in new))
            have.update(new)
        return out
    return MaskUpdate("gradual", due, prune, changes)


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


def due_steps(rule: MaskUpdate, start: int, end: int) -> list[int]:
    """The iterations in [start, end) at which `rule` is due (host side)."""
    if end <= start:
        return []
    due = np.asarray(rule.due(jnp.arange(start, end, dtype=jnp.int32)))
    return [start + int(i) for i in np.flatnonzero(due)]


def effective_updates(rule: MaskUpdate, start: int, end: int, sparse: SparseState) -> list[int]:
    """The iterations in [start, end) whose update changes the mask, for a run that starts at `start`
    from `sparse` (host side, with the rule's own arithmetic: SET / RigL `dynamic.drop_count` >= 1 in
    some layer, gradual pruning >= 1 weight)."""
    steps = due_steps(rule, start, end)
    return [step for step, moved in zip(steps, rule.changes(steps, sparse)) if moved]


def count_updates(rule: MaskUpdate, start: int, end: int, sparse: SparseState) -> int:
    """How many iterations in [start, end) change the mask (`effective_updates`; host side, for records)."""
    return len(effective_updates(rule, start, end, sparse))


def final_mask_from(rule: MaskUpdate, start: int, end: int, sparse: SparseState) -> int:
    """The first evaluation iteration under the final mask: u + 1 for the last effective update u (an
    update at step u applies before step u's optimiser step; the evaluation at iteration i follows step
    i - 1), or `start` when no update changes the mask."""
    updates = effective_updates(rule, start, end, sparse)
    return updates[-1] + 1 if updates else start


__all__ = ["DYNAMIC", "UPDATES", "MaskUpdate", "Schedule", "SparseState", "after_update", "count_updates",
           "current_mask", "due_steps", "effective_updates", "final_mask_from", "make_mask_update",
           "resolve_schedule", "sparse_state", "updated"]
