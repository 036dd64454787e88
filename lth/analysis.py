"""Exploring lottery runs: load a run directory and turn its files into tables and arrays.

    import lth.analysis as la

    run = la.load_run("mlp_mnist1d-1a2b3c4d")   # a directory name, a hash, a path, an experiment name or a config
    la.level_table(run.aggregate)               # mean (and std) per level over the replicates
    la.training_curves(run, level=3)            # {"iteration": array, "val_loss": array, ...}
    la.layer_density_table(run.records[0])      # levels x layers, from the records' layer_density
    la.mask_overlap_matrix(run.masks())         # Jaccard overlap between every pair of levels

Everything here reads files and computes; nothing writes. The notebooks in `notebooks/` only call
these functions, `lth.plots` and the rest of the public API.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lth.config import ExperimentConfig, from_dict, replace
from lth.errors import LthError
from lth.masks import Mask, layer_counts, mask_leaves, named_leaves, overlap
from lth.plots import legend_labels  # (outside Jupyter, lth.plots selects matplotlib's Agg backend)
from lth.runs import ReplicateDir, RunDir, aggregate, list_runs, load_mask, read_json_list, resolve_run, runs_root

# --------------------------------------------------------------------------- tables


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class Table:
    """Rows of values under named columns; shown as an HTML table in a notebook, as text elsewhere."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Table:
        """A table of `records` (dicts); `columns` defaults to the first record's keys."""
        if columns is None:
            columns = list(records[0]) if records else []
        return cls(tuple(columns), tuple(tuple(r.get(c) for c in columns) for r in records))

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        """The values of one column as a NumPy array."""
        if name not in self.columns:
            raise LthError(f"no column {name!r}: the columns are {', '.join(self.columns)}")
        i = self.columns.index(name)
        return np.asarray([row[i] for row in self.rows])

    def to_records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_text(self) -> str:
        cells = [list(self.columns)] + [[_format(v) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_format(v))}</td>" for v in row) + "</tr>"
                       for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


LEVEL_COLUMNS = ("level", "percent_remaining", "weights_remaining", "early_stop_test_accuracy",
                 "early_stop_iteration", "test_accuracy", "best_test_accuracy")


def level_table(records: Sequence[Mapping[str, Any]], columns: Sequence[str] = LEVEL_COLUMNS) -> Table:
    """One row per level: `columns` of the records (one replicate's, or `aggregate`'s), each followed
    by its `*_std` column where the records have one that is not zero throughout (with layerwise
    pruning the densities are the same in every replicate), and `replicates` where present."""
    first = records[0] if records else {}
    cols: list[str] = []
    for c in columns:
        cols.append(c)
        if f"{c}_std" in first and any(r.get(f"{c}_std") for r in records):
            cols.append(f"{c}_std")
    if "replicates" in first and "replicates" not in cols:
        cols.append("replicates")
    return Table.from_records(records, cols)


def layer_density_table(records: Sequence[Mapping[str, Any]]) -> Table:
    """Levels x layers: the fraction of each prunable layer's weights remaining at every level.

    Columns: ``level``, ``percent_remaining``, then one per layer (its parameter path), from the
    records' ``layer_density``. Pass one replicate's records (`Run.records[r]`): the aggregated
    records have no per-layer densities.
    """
    if not records:
        return Table(("level", "percent_remaining"), ())
    if any("layer_density" not in r for r in records):
        raise LthError("these records have no layer_density (aggregated over replicates?): "
                       "pass one replicate's records, e.g. run.records[0]")
    layers: list[str] = []
    for r in records:
        layers += [name for name in r["layer_density"] if name not in layers]
    rows = tuple((r["level"], r["percent_remaining"], *(r["layer_density"].get(n, np.nan) for n in layers))
                 for r in records)
    return Table(("level", "percent_remaining", *layers), rows)


def mask_table(mask: Mask) -> Table:
    """One row per prunable layer of a mask: weights kept, weights in the layer, density; and a total."""
    counts = layer_counts(mask)
    rows = [(name, kept, size, kept / size) for name, (kept, size) in counts.items()]
    kept = sum(k for k, _ in counts.values())
    size = sum(n for _, n in counts.values())
    rows.append(("total", kept, size, kept / size if size else float("nan")))
    return Table(("layer", "kept", "weights", "density"), tuple(rows))


def runs_table(root: str | os.PathLike | None = None) -> Table:
    """Every run under the run root (`lth.runs.list_runs`): name, hash, levels, replicates, best ticket."""
    rows = []
    for row in list_runs(root):
        best = row["best_ticket"]
        rows.append({
            "directory": Path(row["path"]).name,
            "experiment": row["name"],
            "hash": row["hash"],
            "levels": f"{row['levels_done']}/{row['levels_planned']}",
            "replicates": row["replicates"],
            "best_ticket_percent": None if best is None else best["percent_remaining"],
            "best_ticket_accuracy": None if best is None else best["early_stop_test_accuracy"],
        })
    columns = ("directory", "experiment", "hash", "levels", "replicates", "best_ticket_percent",
               "best_ticket_accuracy")
    return Table.from_records(rows, columns)


# --------------------------------------------------------------------------- runs


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
        try:
            self.config: dict[str, Any] = json.loads((self.path / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            raise LthError(f"{self.path} is not a run directory (no readable config.json)") from None
        self.replicate_dirs = [ReplicateDir(p) for p in sorted(self.path.glob("replicate_[0-9][0-9]")) if p.is_dir()]
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
        """Mean and std per level over the replicates that finished it (`lth.runs.aggregate`)."""
        return aggregate([r for r in self.records if r])

    @property
    def saved_aggregate(self) -> list[dict[str, Any]]:
        """The run's own results.json (written after every replicate)."""
        return read_json_list(self.path / "results.json")

    @cached_property
    def experiment_config(self) -> ExperimentConfig:
        return from_dict(self.config)

    def replicate(self, replicate: int = 0) -> ReplicateDir:
        if not 0 <= replicate < len(self.replicate_dirs):
            raise LthError(f"run {self.name} has {len(self.replicate_dirs)} replicate(s): no replicate {replicate}")
        return self.replicate_dirs[replicate]

    def levels_done(self, replicate: int = 0) -> int:
        return len(self.replicate(replicate).read_results())

    def _check_level(self, level: int, replicate: int) -> None:
        done = self.levels_done(replicate)
        if not 0 <= level < done:
            raise LthError(f"run {self.name}, replicate {replicate} has finished levels 0-{done - 1}: no level {level}"
                           if done else f"run {self.name}, replicate {replicate} has no finished level yet")

    def metrics(self, replicate: int = 0) -> list[dict[str, Any]]:
        """The rows of replicate_XX/metrics.jsonl: evaluations (level, iteration, losses, accuracies)
        and ``level_done`` events (with the level's wall time in seconds)."""
        from lth.tracking import read_jsonl

        path = self.replicate(replicate).metrics_path
        return read_jsonl(path) if path.exists() else []

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
    def _setup(self) -> Any:
        from lth.lottery import prepare

        return prepare(self.experiment_config)

    @cached_property
    def _template(self) -> tuple[Any, Any]:
        """(params, model state) of the config's seed: the structure that masks and checkpoints load into."""
        from lth.lottery import init_params

        return init_params(self._setup)

    def init_params(self, replicate: int = 0) -> Any:
        """The initial params of a replicate (seed = config seed + replicate), as the run made them."""
        import dataclasses

        from lth.lottery import init_params

        setup = self._setup
        config = replace(setup.config, seed=setup.config.seed + replicate)
        return init_params(dataclasses.replace(setup, config=config))[0]

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
        from lth.lottery import initial_mask

        self._check_level(level, replicate)
        params0, model_state0 = self._template
        template = self._setup.trainer.init_state(params0, model_state0)
        state, _ = self.replicate(replicate).load_final(level, template, initial_mask(self._setup, params0))
        return state.params

    @property
    def controls(self) -> dict[str, list[list[dict[str, Any]]]]:
        """{control name: [records of each replicate that has it]} from replicate_XX/controls/<name>/
        (see `lth.controls`); empty when the run has no controls."""
        names = sorted({c.name for rep in self.replicate_dirs for c in (rep.path / "controls").glob("*") if c.is_dir()})
        return {name: [r for rep in self.replicate_dirs
                       if (r := ReplicateDir(rep.path / "controls" / name).read_results())]
                for name in names}


def load_run(run: str | os.PathLike | ExperimentConfig | Run, root: str | os.PathLike | None = None) -> Run:
    """A run from its directory (a path), its directory name, its config hash, its experiment name
    (when only one run of that experiment is under the root) or its `ExperimentConfig`.

    `root` is the run root (default: $LTH_RUNS, else ./runs). Raises `LthError` if nothing or more
    than one run matches.
    """
    if isinstance(run, Run):
        return run
    if isinstance(run, ExperimentConfig):
        path = RunDir(root, run).path
        if not (path / "config.json").is_file():
            raise LthError(f"no run of this config under {runs_root(root)} (expected {path}): "
                           "run it first with lth.run_lottery(config)")
        return Run(path)
    name = os.fspath(run)
    try:
        return Run(resolve_run(name, root))
    except LthError as err:
        same = [row for row in list_runs(root) if row["name"] == name]
        if len(same) == 1:
            return Run(same[0]["path"])
        if len(same) > 1:
            names = ", ".join(Path(row["path"]).name for row in same)
            raise LthError(f"{len(same)} runs of experiment {name!r} under {runs_root(root)} ({names}): "
                           "give a directory name or hash") from None
        raise err


def load_runs(runs: Sequence[str | os.PathLike | ExperimentConfig | Run],
              root: str | os.PathLike | None = None) -> list[Run]:
    return [load_run(r, root) for r in runs]


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Legend labels: the experiment name plus the config fields in which the runs differ."""
    return legend_labels([r.config for r in runs])


# --------------------------------------------------------------------------- curves, masks, weights

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


def early_stop_index(curves: Mapping[str, np.ndarray]) -> int:
    """The index of the early-stop evaluation: the first minimum of the validation loss."""
    return int(np.argmin(np.asarray(curves["val_loss"])))


def _mask_list(masks: Sequence[Mask] | Mapping[Any, Mask]) -> list[Mask]:
    return list(masks.values()) if isinstance(masks, Mapping) else list(masks)


def mask_overlap_matrix(masks: Sequence[Mask] | Mapping[Any, Mask]) -> np.ndarray:
    """n x n Jaccard overlaps |a AND b| / |a OR b| of the kept weights (`lth.masks.overlap`) between
    every pair of masks (a list, e.g. `Run.masks()`, or a mapping label -> mask: its values)."""
    items = _mask_list(masks)
    n = len(items)
    matrix = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = overlap(items[i], items[j])
    return matrix


def random_overlap(a: Mask, b: Mask | None = None) -> float:
    """The expected overlap (Jaccard, as `lth.masks.overlap`) of two independent uniformly random
    masks with the per-layer counts of `a` and `b` (default: `a`'s): the chance level against which
    the overlap of two tickets (e.g. of two seeds) can be read. Per layer of n weights keeping k_a
    and k_b, the expected intersection is k_a k_b / n; the union is k_a + k_b minus it (the ratio
    of the expected sizes, which is exact up to O(1 / weights))."""
    counts_a = layer_counts(a)
    counts_b = layer_counts(b) if b is not None else counts_a
    inter = union = 0.0
    for name, (ka, n) in counts_a.items():
        kb = counts_b[name][0]
        i = ka * kb / n if n else 0.0
        inter += i
        union += ka + kb - i
    return inter / union if union else 1.0


def _prunable_pairs(params: Any, mask: Mask) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    values = named_leaves(params)
    out = {}
    for name, m in mask_leaves(mask).items():
        if name not in values:
            raise LthError(f"the mask names {name!r}, which the params do not have: use a mask of this model")
        w, m = np.asarray(values[name]), np.asarray(m, dtype=bool)
        if w.shape != m.shape:
            raise LthError(f"{name}: params of shape {w.shape} but mask of shape {m.shape}")
        out[name] = (w, m)
    return out


def split_by_mask(params: Any, mask: Mask, alive: Mask | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (kept values, pruned values)} of the prunable weights of `params` under `mask`.

    `alive` (e.g. the previous level's mask) restricts both to the weights it keeps, so that weights
    pruned at earlier levels (exactly zero) are left out: with the trained params of level L, the
    mask of level L+1 and alive = the mask of level L, this is what pruning level L+1 kept and removed.
    Masks may be pytrees or {path: bool array} dicts.
    """
    alive_leaves = mask_leaves(alive) if alive is not None else {}
    out = {}
    for name, (w, m) in _prunable_pairs(params, mask).items():
        live = np.asarray(alive_leaves[name], dtype=bool) if name in alive_leaves else np.ones_like(m)
        out[name] = (w[m & live], w[~m & live])
    return out


def sign_agreement(params_init: Any, params_final: Any, mask: Mask, per_layer: bool = False) -> Any:
    """The fraction of the weights kept by `mask` whose sign is the same in both params (e.g. at
    initialisation and after training). A float, or {layer: fraction} with `per_layer`.
    Masks may be pytrees or {path: bool array} dicts."""
    from lth.masks import sign_agreement as _sign_agreement

    _prunable_pairs(params_init, mask)  # one-line errors for a mask of another model
    return _sign_agreement(params_init, params_final, mask, per_layer)


__all__ = [
    "CURVE_KEYS", "LEVEL_COLUMNS", "Run", "Table", "early_stop_index", "layer_density_table", "level_table",
    "load_run", "load_runs", "mask_overlap_matrix", "mask_table", "random_overlap", "run_labels", "runs_table",
    "sign_agreement", "split_by_mask", "training_curves",
]
