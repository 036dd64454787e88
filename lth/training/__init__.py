"""Masked training: the optimiser and schedule, ONE masked iteration (+ evaluation when due), the
chunk driver (scan or one dispatch per step), the host loop, and the stacked (N networks as one
vmapped program) and sharded (data-parallel) trainers built on that same iteration."""

from lth.training.iteration import ChunkMetrics, TrainState, make_evaluate
from lth.training.loop import chunk_plan, eval_records, summarize, train
from lth.training.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from lth.training.trainer import Trainer, choose_loop, make_trainer, uses_convolution

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "ChunkMetrics", "TrainState", "Trainer", "chunk_plan", "choose_loop", "eval_records",
    "make_evaluate", "make_optimizer", "make_schedule", "make_trainer", "summarize", "train", "uses_convolution",
]
