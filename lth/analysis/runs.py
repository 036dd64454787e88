"""Reading finished runs: a run directory's records, metrics, masks and weights, loaded on demand.

    import lth.analysis as la

    run = la.load_run("mlp_mnist1d-1a2b3c4d")   # a directory name, a hash, a path, an experiment name or a config
    la.level_table(run.aggregate)               # mean (and std) per level over the replicates
    la.training_curves(run, level=3)            # {"iteration": array, "val_loss": array, ...}

Everything here reads files and computes; nothing writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lth.store.queries import check_level, check_replicate
from lth.spec.config import ExperimentConfig, from_dict
from lth.spec.fields import differing_fields
from lth.errors import LthError
from lth.lottery import Setup, init_params, initial_mask
from lth.sparsity.masks import Mask
from lth.store import ReplicateDir, aggregate, load_mask, locate_run, open_run, read_config, read_json_list, \
    replicate_paths
from lth.tickets.start import run_setup


class Run:
    """A run directory's contents, read on demand.

    `config` is config.json (a dict; `experiment_config` the `ExperimentConfig`), `records[r]` the
    level records of replicate r as they were when the run was loaded (load it again to see a
    running run's progress), `aggregate` their mean and std per level. Masks, metrics and
    weights are loaded by the methods; those that need the model (`mask`, `params`, `init_params`)
    rebuild it from the config (and load the data set's shapes) once.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config: dict[str, Any] = read_config(self.path)
        self.replicate_dirs = [ReplicateDir(p, writable=False) for p in replicate_paths(self.path)]
        self.records: list[list[dict[str, Any]]] = [rep.read_results() for rep in self.replicate_dirs]

    name = property(lambda self: self.path.name, doc="the directory name, <experiment>-<hash>")
    experiment = property(lambda self: self.config.get("name", self.path.name))
    hash = property(lambda self: self.path.name.rsplit("-", 1)[-1])
    plot_path = property(lambda self: self.path / "accuracy_vs_sparsity.png")

    def __repr__(self) -> str:
        done = [len(r) for r in self.records]
        return f"Run({self.name!r}, replicates={len(self.records)}, levels done={done})"

    @property
    def aggregate(self) -> list[dict[str, Any]]:
        """Mean and std per level over the replicates that finished it (`lth.store.aggregate`)."""
        return aggregate([r for r in self.records if r])

    @property
    def saved_aggregate(self) -> list[dict[str, Any]]:
        """The run's own results.json (written after every replicate)."""
        return read_json_list(self.path / "results.json")

    @cached_property
    def experiment_config(self) -> ExperimentConfig:
        return from_dict(self.config)

    def replicate(self, replicate: int = 0) -> ReplicateDir:
        check_replicate(self.name, len(self.replicate_dirs), replicate)
        return self.replicate_dirs[replicate]

    def levels_done(self, replicate: int = 0) -> int:
        return len(self.replicate(replicate).read_results())

    def _check_level(self, level: int, replicate: int) -> None:
        check_level(self.name, self.levels_done(replicate), level, replicate)

    def metrics(self, replicate: int = 0) -> list[dict[str, Any]]:
        """The rows of replicate_XX/metrics.jsonl: evaluations (level, iteration, losses, accuracies)
        and ``level_done`` events (with the level's wall time in seconds)."""
        return self.replicate(replicate).read_metrics()

    def mask_arrays(self, level: int, replicate: int = 0) -> dict[str, np.ndarray]:
        """A level's saved mask as {parameter path: bool array}, without building the model."""
        path = self.replicate(replicate).mask_path(level)
        if not path.exists():
            self._check_level(level, replicate)
            raise LthError(f"mask file {path} is missing")
        with np.load(path, allow_pickle=False) as f:
            return {k: np.asarray(f[k], dtype=bool) for k in f.files}

    # the model, for masks and weights as pytrees -------------------------------------------

    @cached_property
    def _setup(self) -> Setup:
        """The run's setup as its jobs build it (`lth.tickets.start.run_setup`: with its ticket, if it had one)."""
        return run_setup(open_run(self.path, writable=False))

    @cached_property
    def _template(self) -> tuple[Any, Any]:
        """(params, model state) level 0 started from: the structure that masks and checkpoints load into."""
        return init_params(self._setup)

    def init_params(self, replicate: int = 0) -> Any:
        """The initial params of a replicate (seed = config seed + replicate), as the run made them: for a
        run started from a ticket (`lth run --ticket`), the ticket's weights."""
        return init_params(self._setup.for_replicate(replicate))[0]

    def mask(self, level: int, replicate: int = 0) -> Mask:
        """A level's mask as a pytree with the params' structure (`None` on unprunable leaves)."""
        path = self.replicate(replicate).mask_path(level)
        if not path.exists():
            self.mask_arrays(level, replicate)  # raises the right error
        return load_mask(path, self._template[0])

    def masks(self, replicate: int = 0) -> list[Mask]:
        """The masks of every finished level of a replicate, in level order."""
        return [self.mask(level, replicate) for level in range(self.levels_done(replicate))]

    def params(self, level: int, replicate: int = 0) -> Any:
        """The trained params at the end of `level` (from its final checkpoint)."""
        self._check_level(level, replicate)
        params0, model_state0 = self._template
        template = self._setup.trainer.init_state(params0, model_state0)
        state, _ = self.replicate(replicate).load_final(level, template, initial_mask(self._setup, params0))
        return state.params

    @property
    def controls(self) -> dict[str, list[list[dict[str, Any]]]]:
        """{control name: [records of each replicate that has it]} from replicate_XX/controls/<name>/
        (see `lth.lottery.controls`); empty when the run has no controls."""
        names = sorted({name for rep in self.replicate_dirs for name in rep.control_names()})
        return {name: [r for rep in self.replicate_dirs if (r := rep.control(name).read_results())]
                for name in names}


def load_run(run: str | os.PathLike | ExperimentConfig | Run, root: str | os.PathLike | None = None) -> Run:
    """A run from its directory (a path), its directory name, its config hash, its experiment name
    (when only one run of that experiment is under the root) or its `ExperimentConfig`.

    `root` is the run root (default: $LTH_RUNS, else ./runs). Raises `LthError` if nothing or more
    than one run matches.
    """
    if isinstance(run, Run):
        return run
    return Run(locate_run(run, root))


def load_runs(runs: Sequence[str | os.PathLike | ExperimentConfig | Run],
              root: str | os.PathLike | None = None) -> list[Run]:
    return [load_run(r, root) for r in runs]


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Legend labels: the experiment name plus the config fields in which the runs differ."""
    return legend_labels([r.config for r in runs])


def legend_labels(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Experiment name plus the config fields that differ between the runs (dotted names)."""
    return [" ".join([config.get("name", "run"), *(f"{k}={v}" for k, v in fields.items())])
            for config, fields in zip(configs, differing_fields(configs))]


CURVE_KEYS = ("iteration", "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


def training_curves(run: Run | str | os.PathLike, level: int, replicate: int = 0) -> dict[str, np.ndarray]:
    """One level's evaluations from metrics.jsonl as arrays: iteration, train_loss, val_loss,
    val_accuracy, test_loss, test_accuracy (sorted by iteration; a repeated iteration keeps its
    last row)."""
    run = load_run(run)
    rows = {int(r["iteration"]): r for r in run.metrics(replicate) if r.get("level") == level and "iteration" in r}
    if not rows:
        raise LthError(f"run {run.name}, replicate {replicate} has no evaluations of level {level} "
                       f"(levels done: {run.levels_done(replicate)})")
    ordered = [rows[i] for i in sorted(rows)]
    return {key: np.asarray([r.get(key, np.nan) for r in ordered], dtype=int if key == "iteration" else float)
            for key in CURVE_KEYS}


def early_stop_index(curves: Mapping[str, np.ndarray]) -> int | None:
    """The index of the early-stop evaluation: the first minimum of the validation loss; None
    without one (a run without a validation set has no early stop)."""
    val_loss = np.asarray(curves["val_loss"], dtype=float)
    return int(np.nanargmin(val_loss)) if np.isfinite(val_loss).any() else None
