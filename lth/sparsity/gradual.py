"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune").

The sparsity follows the cubic schedule

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt)) ** 3,   t in {t0, t0 + dt, ..., t0 + n dt},

and at each of those n + 1 iterations the smallest-magnitude weights still kept are pruned so that
the network has sparsity s_t. The network is dense before t0 (the mask starts full), is pruned to s_i
at t0 -- with s_i = 0 that first step prunes nothing -- and has s_f from t0 + n dt on. Pruned weights
never come back.

Per layer, in counts: layer l keeps ``k_l(t) = k_f + round((k_i - k_f) * (1 - (t - t0)/(n dt))**3)``
weights, where k_i and k_f are its counts at s_i and s_f (from a layer distribution, e.g.
`lth.sparsity.distributions.keep_counts`, or a lottery level's per-layer counts). So every layer
follows the cubic between its own start and end, as in the reference implementations (TensorFlow
model_pruning's per-layer targets; jaxpruner's ``PolynomialSchedule`` applied to each layer's target
sparsity), the count at t0 + n dt is k_f exactly, and the overall sparsity at each update is s_t to
within half a weight per layer.

jaxpruner prunes at iteration t before that iteration's optimiser step (the step then runs under the
new mask); the compiled loop here does the same (`lth.training.iteration`). The functions below are
pure and work on traced values (the iteration number is traced inside the compiled loop).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lth.errors import ConfigError
from lth.sparsity.masks import Mask, Params
from lth.sparsity.pruning import Group, magnitude_scores, prune_by_scores


def check_schedule(t0: int, n: int, dt: int) -> None:
    """ConfigError for a schedule that cannot run: dt < 1, t0 < 0 or n < 1."""
    if dt < 1:
        raise ConfigError(f"the mask update period dt must be at least 1 iteration, got {dt}: e.g. dt=100")
    if t0 < 0:
        raise ConfigError(f"gradual pruning start t0 must be >= 0, got {t0}")
    if n < 1:
        raise ConfigError(f"gradual pruning needs n >= 1 pruning steps, got {n}")


def progress(t: Any, t0: int, n: int, dt: int) -> Any:
    """(t - t0) / (n dt), clipped to [0, 1]."""
    return jnp.clip((jnp.asarray(t, jnp.float32) - t0) / float(n * dt), 0.0, 1.0)


def ramp(t: Any, t0: int, n: int, dt: int) -> Any:
    """(1 - progress) ** 3: 1 up to t0, 0 from t0 + n dt on."""
    return (1.0 - progress(t, t0, n, dt)) ** 3


def sparsity_at(t: Any, s_i: float, s_f: float, t0: int, n: int, dt: int) -> Any:
    """Zhu & Gupta's s_t: s_i up to t0 (the target of the pruning step at t0; the network is dense before
    it), s_f from t0 + n dt on."""
    return s_f + (s_i - s_f) * ramp(t, t0, n, dt)


def is_update_step(t: Any, t0: int, n: int, dt: int) -> Any:
    """Whether iteration t is one of the n + 1 pruning steps t0, t0 + dt, ..., t0 + n dt."""
    t = jnp.asarray(t)
    return (t >= t0) & (t <= t0 + n * dt) & ((t - t0) % dt == 0)


def update_steps(t0: int, n: int, dt: int) -> list[int]:
    """The pruning steps, in order."""
    return [t0 + i * dt for i in range(n + 1)]


def counts_at(t: Any, start: dict[str, Any], final: dict[str, Any], t0: int, n: int, dt: int) -> dict[str, Any]:
    """Per-layer keep counts at iteration t (int32; see the module docstring)."""
    r = ramp(t, t0, n, dt)
    return {name: (jnp.asarray(final[name], jnp.int32)
                   + jnp.round((jnp.asarray(start[name], jnp.float32) - final[name]) * r).astype(jnp.int32))
            for name in final}


def prune_to_counts(params: Params, mask: Mask, counts: dict[str, Any]) -> Mask:
    """Keep the `counts[layer]` largest |w| among each layer's kept weights (ties to the lower index);
    layers not in `counts` keep their mask."""
    return prune_by_scores(magnitude_scores(params, mask), mask, [Group((name,), k) for name, k in counts.items()])


def gradual_prune(params: Params, mask: Mask, t: Any, start: dict[str, Any], final: dict[str, Any], t0: int, n: int,
                  dt: int) -> Mask:
    """The mask after the pruning step at iteration t."""
    return prune_to_counts(params, mask, counts_at(t, start, final, t0, n, dt))


def overall_sparsity(counts: dict[str, Any], sizes: dict[str, int]) -> jax.Array:
    """1 - (kept / prunable weights) of per-layer counts."""
    return 1.0 - sum(jnp.asarray(c, jnp.float32) for c in counts.values()) / float(sum(sizes.values()))


__all__ = ["check_schedule", "counts_at", "gradual_prune", "is_update_step", "overall_sparsity", "progress",
           "prune_to_counts", "ramp", "sparsity_at", "update_steps"]
