"""The optimiser and the learning-rate schedule.

The optimiser gives the update *direction* only; the learning rate is a pure function of the global
iteration, applied outside the optax transformation, so the optimiser state can be fresh at a rewind
point while the schedule resumes there (weight rewinding) -- Adam's bias correction starts anew with
its moments.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from lth.spec.config import OptimizerConfig
from lth.errors import unknown_name
from lth.spec.names import LR_SCHEDULES, OPTIMIZERS
from lth.spec.parse import duration_to_steps

SCHEDULES = LR_SCHEDULES


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """The update *direction* (learning rate not applied): params <- params - lr(step) * direction."""
    if cfg.name == "adam":
        return optax.scale_by_adam(cfg.b1, cfg.b2, cfg.eps)
    if cfg.name == "adamw":
        return optax.chain(optax.scale_by_adam(cfg.b1, cfg.b2, cfg.eps), optax.add_decayed_weights(cfg.weight_decay))
    if cfg.name == "sgd":
        parts = [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else []
        if cfg.momentum:
            parts.append(optax.trace(decay=cfg.momentum, nesterov=cfg.nesterov))
        return optax.chain(*parts) if parts else optax.identity()
    raise unknown_name("optimizer", cfg.name, OPTIMIZERS)


def make_schedule(cfg: OptimizerConfig, total_steps: int, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    """Learning rate as a pure function of the global iteration.

    constant: lr. step: lr * gamma ** (milestones passed). cosine: lr * (1 + cos(pi t / T)) / 2.
    A warm-up of w iterations multiplies by min(1, (t + 1) / w).
    """
    if cfg.schedule not in SCHEDULES:
        raise unknown_name("schedule", cfg.schedule, SCHEDULES)
    lr = cfg.learning_rate
    milestones = jnp.asarray(sorted(duration_to_steps(m, steps_per_epoch) for m in cfg.milestones), jnp.int32)
    warmup = duration_to_steps(cfg.warmup, steps_per_epoch)

    def schedule(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step)
        if cfg.schedule == "constant":
            rate = jnp.asarray(lr, jnp.float32)
        elif cfg.schedule == "step":
            rate = lr * cfg.gamma ** jnp.sum(step >= milestones).astype(jnp.float32)
        else:
            rate = lr * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(step, total_steps) / total_steps))
        if warmup > 0:
            rate = rate * jnp.minimum(1.0, (step + 1) / warmup)
        return rate.astype(jnp.float32)

    return schedule
