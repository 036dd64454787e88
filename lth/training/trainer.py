"""A `Trainer`: the compiled programs of one training setup (model, optimiser, schedule, lengths),
reused by every level of a run. Its chunk is `lth.training.chunks.Chunk` over the one iteration of
`lth.training.iteration`; the stacked and data-parallel trainers are built from its `parts`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lth.spec.config import OptimizerConfig
from lth.spec.names import TEST_AT
from lth.data.device import AUGMENTATIONS
from lth.errors import unknown_name
from lth.models.base import Model
from lth.training.chunks import LOOPS, Chunk
from lth.training.iteration import Parts, TrainState, iteration, make_evaluate, make_parts
from lth.training.mask_updates import MaskUpdate
from lth.training.optim import make_optimizer, make_schedule


class Trainer(NamedTuple):
    """The compiled functions of one training setup; reused by every level of a run."""

    model: Model
    optimizer: optax.GradientTransformation
    schedule: Callable[[jax.Array], jax.Array]
    total_steps: int
    steps_per_epoch: int
    batch_size: int
    eval_every: int
    augmentation: str
    train_chunk: Chunk  # (state, mask, data, order, offset, augment_key, *, length) -> (state, ChunkMetrics)
    evaluate: Any  # jitted (params, model_state, EvalSet) -> (loss, accuracy)
    parts: Parts  # the un-jitted iteration (lth.training.stacked and .sharded build on it)
    loop: str = "scan"  # "scan" (a chunk is one compiled lax.scan) or "steps" (one dispatch per iteration)

    def init_state(self, params: Any, model_state: Any, step: int = 0) -> TrainState:
        """A fresh optimiser state at global iteration `step`."""
        return TrainState(params, model_state, self.optimizer.init(params), jnp.asarray(step, jnp.int32))


def make_trainer(
    model: Model,
    optimizer: OptimizerConfig,
    *,
    total_steps: int,
    steps_per_epoch: int,
    batch_size: int,
    eval_every: int,
    augmentation: str = "none",
    loop: str = "scan",
    mask_update: MaskUpdate | None = None,
    test_at: str = "every_evaluation",
) -> Trainer:
    """Build the trainer for `model` (its programs compile on first use).

    `augmentation` ("none" or "crop_flip") is applied to every training batch inside the compiled
    chunk. `loop`: "scan" (a chunk is one `lax.scan`) or "steps" (one dispatch per iteration, for
    convolutional models on CPU); `choose_loop` picks. `mask_update`: the mask changes inside the
    loop (gradual, SET, RigL; `lth.training.mask_updates`), carried in the state's `sparse`.
    `test_at`: "every_evaluation" or "validation_minimum" (`lth.training.iteration.iteration`).
    """
    if loop not in LOOPS:
        raise unknown_name("training loop", loop, LOOPS)
    if test_at not in TEST_AT:
        raise unknown_name("test_at", test_at, TEST_AT)
    if augmentation not in AUGMENTATIONS:
        raise unknown_name("augmentation", augmentation, AUGMENTATIONS)
    tx = make_optimizer(optimizer)
    schedule = make_schedule(optimizer, total_steps, steps_per_epoch)
    parts = make_parts(model, tx, schedule, augmentation=augmentation, eval_every=eval_every,
                       total_steps=total_steps, mask_update=mask_update, test_at=test_at)
    return Trainer(
        model=model, optimizer=tx, schedule=schedule, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
        batch_size=batch_size, eval_every=eval_every, augmentation=augmentation,
        train_chunk=Chunk(iteration(parts), loop), evaluate=jax.jit(make_evaluate(model)), parts=parts, loop=loop,
    )


def with_mask_update(trainer: Trainer, mask_update: MaskUpdate) -> Trainer:
    """The same training setup (optimiser, schedule, lengths, loop) with `mask_update` in its iteration,
    evaluating test at every evaluation: a changing mask early-stops under its final mask only
    (`lth.training.summarize`'s `from_iteration`), whose minima need not be minima of the level, so
    the "validation_minimum" protocol would miss them (a method run refuses it; a control of a
    dynamic method, e.g. in an IMP run, falls back to the full protocol here)."""
    parts = make_parts(trainer.model, trainer.optimizer, trainer.schedule, augmentation=trainer.augmentation,
                       eval_every=trainer.eval_every, total_steps=trainer.total_steps, mask_update=mask_update)
    return trainer._replace(parts=parts, train_chunk=Chunk(iteration(parts), trainer.loop))


def uses_convolution(model: Model, input_shape: tuple[int, ...]) -> bool:
    """Whether the model's training step contains a convolution (from its jaxpr; nothing is run)."""
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda p, s, x: model.apply(p, s, x, True))(params, state, x)
    return "conv_general_dilated" in str(jaxpr)


def choose_loop(model: Model, input_shape: tuple[int, ...]) -> str:
    """"steps" for convolutional models on CPU (see `lth.training.chunks`), else "scan"."""
    return "steps" if jax.default_backend() == "cpu" and uses_convolution(model, input_shape) else "scan"
