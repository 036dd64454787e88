"""Replicates in worker processes, each pinned to its own CPU core (the CPU default layout).

A worker trains whole replicates with `lth.runs.replicates.run_replicate` into the shared run
directory, exactly as the parent would (byte-identical records); progress bars are the parent's
(one line per finished replicate). Workers are started with "spawn": a process holding XLA's
threads is never forked.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Any

from lth.config import ExperimentConfig, for_replicate, from_dict, replace, to_dict
from lth.lottery import init_params, prepare
from lth.parse import parse_checkpoint_period
from lth.runs.progress import LevelProgress, warn
from lth.runs.replicates import run_replicate
from lth.runs.tracking import WandbTracker
from lth.sparsity.masks import Mask, mask_from_arrays, mask_to_arrays
from lth.store import RunDir


def _pin_worker(cores: Any) -> None:
    os.sched_setaffinity(0, {cores.get()})


def _replicate_worker(config_dict: dict[str, Any], replicate: int, runs_root: Any, data_root: Any,
                      mask_arrays: dict[str, Any] | None, checkpoint_every: str, wandb_mode: str) -> int:
    """One replicate in a worker process (pinned to a core by `_pin_worker`): no progress bars."""
    config = from_dict(config_dict)
    setup = prepare(replace(config, initial_mask=None), data_root).with_config(for_replicate(config, replicate))
    mask = mask_from_arrays(mask_arrays, init_params(setup)[0]) if mask_arrays is not None else None
    run = RunDir(runs_root, config)
    tracker = WandbTracker(run, to_dict(config), wandb_mode, warn=warn)
    reporter = LevelProgress(config.levels, setup.total_steps, enabled=False)
    try:
        every = parse_checkpoint_period(checkpoint_every, setup.trainer.steps_per_epoch)
        records = run_replicate(setup, run.replicate(replicate), mask, replicate, every, reporter, [tracker])
    finally:
        tracker.close()
    return len(records)


def run_replicates_in_workers(run: RunDir, todo: list[int], workers: int, config: ExperimentConfig,
                              data_root: Any, mask: Mask | None, checkpoint_every: str, wandb_mode: str,
                              reporter: LevelProgress) -> None:
    """Train the replicates `todo` in `workers` processes pinned to distinct cores."""
    context = multiprocessing.get_context("spawn")  # never fork a process that holds XLA threads
    cores = context.Queue()
    for core in sorted(os.sched_getaffinity(0))[:workers]:
        cores.put(core)
    reporter.note(f"training {len(todo)} replicates in {workers} worker processes (one core each)")
    arrays = mask_to_arrays(mask) if mask is not None else None
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_pin_worker,
                                                initargs=(cores,)) as pool:
        futures = {pool.submit(_replicate_worker, to_dict(config), r, str(run.path.parent), data_root, arrays,
                               checkpoint_every, wandb_mode): r for r in todo}
        for future in concurrent.futures.as_completed(futures):
            levels = future.result()  # a worker's error is raised here, its finished levels kept
            reporter.note(f"replicate {futures[future]}: {levels} levels done")
