"""Listing the runs under a run root, as they are: finished, running or interrupted (levels done per
replicate), stopped by a divergence, or damaged (what is wrong), with the best ticket of each and
what tells it apart from the other runs of its experiment; and the one resolver of a run's name
(`resolve_run`) that every command and the Python API use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lth.errors import LthError, closest
from lth.spec.config import ExperimentConfig, from_dict
from lth.spec.fields import differing_fields, records_planned, short_text
from lth.store.queries import divergence
from lth.store.records import aggregate, best_ticket
from lth.store.replicate import DamagedFileError, ReplicateDir
from lth.store.run_dir import CONFIG_FILE, read_config, replicate_paths, run_name, runs_root, stray_replicates


def _run_paths(root: Path) -> list[Path]:
    """Directories under `root` that hold a run (a config.json or replicate directories)."""
    if root.exists() and not root.is_dir():
        raise LthError(f"the run root {root} is not a directory: give the directory that holds the runs (--runs)")
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and ((p / CONFIG_FILE).exists() or replicate_paths(p)))


def describe_run(path: Path) -> dict[str, Any]:
    """One run's row: name, hash, config (None if unreadable), records planned per replicate (levels
    0..L, or one per density of a method run), records done per replicate (None: damaged), records
    every replicate has done, the divergences that stopped replicates ({replicate: record}), the best
    ticket of their aggregate, and any problem found."""
    row: dict[str, Any] = {"name": path.name.rsplit("-", 1)[0], "hash": path.name.rsplit("-", 1)[-1],
                           "path": str(path), "config": None, "levels_planned": None, "replicate_levels": [],
                           "diverged": {}, "problems": []}
    try:
        row["config"] = read_config(path)
        config = from_dict(row["config"])
        row["name"], row["levels_planned"] = config.name, records_planned(config)
        if run_name(config) != path.name:
            row["problems"].append(f"its config.json names run {run_name(config)}, not this directory (copied or "
                                   "moved here, or named by an older lth): `lth run` of that config trains in "
                                   f"{run_name(config)}, not here")
    except (LthError, TypeError, ValueError) as err:
        row["problems"].append(str(err))
    for stray in stray_replicates(path):
        row["problems"].append(f"{stray.name} is not a directory (a file, or a symlink that leads nowhere or "
                               "loops): remove it")
    per_replicate = []
    for r, rep_path in enumerate(replicate_paths(path)):
        rep = ReplicateDir(rep_path, writable=False)
        try:
            records = rep.read_results()
        except DamagedFileError:
            row["problems"].append(f"{rep_path.name}/results.json is damaged")
            row["replicate_levels"].append(None)
            continue
        row["replicate_levels"].append(len(records))
        per_replicate.append(records)
        if (stopped := divergence(rep, len(records))) is not None:
            row["diverged"][r] = stopped
    done = [n for n in row["replicate_levels"] if n is not None]
    row["replicates"] = len(row["replicate_levels"])
    row["levels_done"] = min(done) if done else 0
    row["best_ticket"] = best_ticket(aggregate([r for r in per_replicate if r]))
    return row


def list_runs(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every run under the root (see `describe_run`), damaged ones included, each with `differs`: the
    config fields that tell it apart from the other runs of its experiment ('seed=1 rewind=500it'),
    and the method of a method run."""
    rows = [describe_run(path) for path in _run_paths(runs_root(root))]
    for row, text in zip(rows, _differences([row["config"] for row in rows])):
        row["differs"] = text
    return rows


def _differences(configs: list[dict[str, Any] | None]) -> list[str]:
    """Per config (None: unreadable), what tells it apart from the others of the same experiment name."""
    groups: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        if config is not None:
            groups.setdefault(str(config.get("name")), []).append(i)
    texts = [""] * len(configs)
    for members in groups.values():
        for i, fields in zip(members, differing_fields([configs[i] for i in members])):
            method = configs[i].get("method", "imp")
            if method != "imp" and "method" not in fields:
                fields = {"method": str(method), **fields}
            top_first = sorted(fields, key=lambda k: "." in k)  # seed, levels, method, rewind ... before nested ones
            texts[i] = short_text({k: fields[k] for k in top_first})
    return texts


def resolve_run(name: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """The run directory `name` names: a path to one; or, under the run root, a directory name, a
    config hash, a unique prefix of either (4+ characters of the hash), or an experiment name with
    one run. Anything else is a one-line LthError: no such run (with a did-you-mean), or several
    (a few of them listed with the fields that tell them apart)."""
    if (Path(name) / CONFIG_FILE).is_file():
        return Path(name)
    text, base = os.fspath(name), runs_root(root)
    paths = sorted(p.parent for p in base.glob(f"*/{CONFIG_FILE}")) if base.is_dir() else []
    for match in (_exact, _experiment, _prefix):
        found = [p for p in paths if match(p.name, text)]
        if len(found) == 1:
            return found[0]
        if found:
            raise LthError(f"{len(found)} runs match {text!r} under {base}: {_candidates(found)}: name one by its "
                           "hash (its first 4+ characters will do; see `lth ls`)")
    experiments = sorted({p.name.rsplit("-", 1)[0] for p in paths})
    close = closest(text, experiments)
    hint = f"did you mean {close}? " if close else ""
    raise LthError(f"no run {text!r} under {base}: {hint}give a run directory, an experiment name, a config hash "
                   "or its first 4+ characters (see `lth ls`)")


def _exact(directory: str, text: str) -> bool:
    return directory == text or directory.rsplit("-", 1)[-1] == text


def _experiment(directory: str, text: str) -> bool:
    return directory.rsplit("-", 1)[0] == text


def _prefix(directory: str, text: str) -> bool:
    """A prefix of the hash (4+ characters), or of the directory name reaching 4+ characters into the hash."""
    name, _, digest = directory.rpartition("-")
    return (len(text) >= 4 and digest.startswith(text)) or \
        (text.startswith(f"{name}-") and len(text) >= len(name) + 5 and directory.startswith(text))


def _candidates(paths: list[Path], shown: int = 3) -> str:
    """'a-1234abcd (seed=1), a-5678ef01 (seed=2) and 13 more': a few runs with what tells them apart."""
    configs = []
    for path in paths:
        try:
            configs.append(read_config(path))
        except LthError:
            configs.append({"name": path.name.rsplit("-", 1)[0]})
    texts = _differences(configs)
    listed = ", ".join(f"{p.name} ({t})" if t else p.name for p, t in zip(paths[:shown], texts))
    return listed + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def locate_run(run: Any, root: str | os.PathLike | None = None) -> Path:
    """A run directory from anything that names one: a path, a directory name, a config hash, an
    experiment name (`resolve_run`), an `ExperimentConfig` (the directory its hash names; an error if
    that run was never started) or an object with a `path` (e.g. `lth.analysis.Run`)."""
    if isinstance(run, ExperimentConfig):
        path = runs_root(root) / run_name(run)
        if not (path / CONFIG_FILE).is_file():
            raise LthError(f"no run of this config under {runs_root(root)} (expected {path}): "
                           "run it first with lth.run_lottery(config)")
        return path
    if not isinstance(run, (str, os.PathLike)) and hasattr(run, "path"):
        return Path(run.path)
    return resolve_run(run, root)
