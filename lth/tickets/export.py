"""A finished level of a run as a ticket file: its mask, the weights its training started from, the
model state there, optionally its trained weights, and where it came from."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lth.errors import LthError
from lth.spec.methods import DYNAMIC, REGISTRY
from lth.lottery import Setup, data_level, init_params, initial_mask, retrained, start_step
from lth.store import ReplicateDir, load_mask, locate_run, open_run, read_config
from lth.store.run_dir import check_output_file
from lth.store.queries import check_level, check_replicate
from lth.tickets.file import load, save
from lth.tickets.start import run_setup


def level_start(setup: Setup, rep: ReplicateDir, level: int) -> tuple[Any, Any, int]:
    """(params, model state, iteration) that `level`'s training started from, read from the run's files:
    level 0 its init (or its own start); a pruned level the rewind point (weight rewinding) or the
    previous level's trained state (learning-rate rewinding, fine-tuning), at the rewind step k."""
    params0, model_state0 = init_params(setup)
    if level == 0:
        return params0, model_state0, start_step(setup)
    k = setup.rewind_step
    template = setup.trainer.init_state(params0, model_state0)
    if setup.config.retraining != "rewind":
        state, _ = rep.load_final(level - 1, template, initial_mask(setup, params0))
        return state.params, state.model_state, k
    if k == start_step(setup):
        return params0, model_state0, k
    params, model_state = rep.load_rewind(template)
    return params, model_state, k


def check_method_export(method: str, level: int, trained: bool) -> None:
    """A one-line LthError for a density of a method run that has no ticket: its mask changed during
    training (no mask and start weights retrain to its record), or trained weights asked for (a
    method run keeps no level checkpoints)."""
    if method in DYNAMIC:
        fixed = ", ".join(name for name in REGISTRY if name not in (*DYNAMIC, "imp"))
        raise LthError(f"density {level} of a {method} run has no ticket to export: its mask changed during training, "
                       f"so no mask and start weights retrain to its record; export an IMP level or a density of a "
                       f"fixed-mask method ({fixed})")
    if trained:
        raise LthError(f"a {method} run keeps no trained weights (no level checkpoints): export without --trained")


def export_from_run(run_ref: Any, level: int, replicate: int = 0, out: str | os.PathLike | None = None,
                    root: str | os.PathLike | None = None, *, trained: bool = False,
                    data_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write the ticket of a finished level of a run; return {"path", "level", "replicate", "density",
    "weights_remaining", "bytes", "digest"}.

    `run_ref` is anything `lth.analysis.load_run` takes (a path, a directory name, a hash, an
    experiment name, an `ExperimentConfig`, a `Run`); `root` the run root. The file (`lth.tickets.save`)
    holds the level's mask, the weights and model state its training started from (`level_start`),
    with `trained` also the weights at its end, and a header with the run's config, the level's
    record and the iteration training starts at. Default `out`: ``<run>/replicate_XX/tickets/level_XX.safetensors``.
    """
    run = open_run(locate_run(run_ref, root), writable=False)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise LthError(f"level must be an integer, got {level!r}")
    level = int(level)
    reps = run.replicates()
    check_replicate(run.path.name, len(reps), replicate)
    rep = reps[replicate]
    records = rep.read_results()
    check_level(run.path.name, len(records), level, replicate)
    config = run.config
    path = check_output_file(out) if out is not None else rep.ticket_path(level)
    if config.method != "imp":
        check_method_export(config.method, level, trained)
    setup = run_setup(run, data_root).for_replicate(replicate)
    params0, model_state0 = init_params(setup)
    if config.method == "imp":
        params, model_state, step = level_start(setup, rep, level)
        retrains, order = retrained(setup, level), data_level(setup, level)
    else:  # a fixed-mask method trains every density from init, with the training schedule and level 0's data order
        params, model_state, step, retrains, order = params0, model_state0, start_step(setup), False, 0
    mask = load_mask(rep.mask_path(level), params0)
    final = None
    if trained:
        template = setup.trainer.init_state(params0, model_state0)
        final = rep.load_final(level, template, initial_mask(setup, params0))[0].params
    metadata = {
        "run": run.path.name, "experiment": config.name, "config": read_config(run.path),
        "config_hash": run.path.name.rsplit("-", 1)[-1],
        "model": config.model, "dataset": config.data.name, "input_shape": list(setup.dataset.input_shape),
        "num_classes": setup.dataset.num_classes, "level": level, "replicate": replicate,
        "seed": setup.config.seed, "retraining": config.retraining, "rewind": config.rewind, "start_step": step,
        "retrained": retrains, "data_level": order, "record": records[level],
    }
    save(path, mask, params, model_state, metadata=metadata, trained=final)
    header = load(path).metadata
    return {"path": path, "level": level, "replicate": replicate, "density": header["density"],
            "weights_remaining": header["weights_remaining"], "bytes": path.stat().st_size,
            "digest": header["sha256"]["ticket"]}
