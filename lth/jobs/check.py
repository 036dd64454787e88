"""`lth ls --check`: verify every finished level of every run (checkpoint digests, mask files against
the checkpoints) and repair what the redundant copies allow; what cannot be repaired is dropped from
the records with a warning, for the next `lth run` to recompute. A method run (no level checkpoints)
is checked against what it keeps, its masks and their digests; what does not verify is reported,
never dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lth.errors import LthError
from lth.lottery import init_params
from lth.execution.progress import warn
from lth.sparsity.masks import make_mask
from lth.store import DamagedFileError, load_mask, open_run
from lth.store.resume import check_finished, method_level_problem, warn_damaged_manifest
from lth.tickets import run_setup


def check_run(path: Path, data_root: Any = None) -> tuple[int, int]:
    """(sound levels, levels checked) of one run, under its lock; repairs as `check_finished`."""
    run = open_run(path)
    if run.config.method != "imp":
        return check_method_run(run)
    setup = run_setup(run, data_root)
    params0, model_state0 = init_params(setup)
    template = setup.trainer.init_state(params0, model_state0)
    sound = checked = 0
    with run.lock():
        per_replicate = []
        for rep in run.replicates():
            try:
                mask_template = load_mask(rep.mask_path(0), params0)
            except LthError:
                mask_template = make_mask(params0, setup.config.pruning.prunable)
            try:
                checked += len(rep.read_results())
            except DamagedFileError:
                pass
            records = check_finished(rep, template, mask_template, warn, full=True)
            sound += len(records)
            per_replicate.append(records)
        run.write_aggregate(per_replicate)
    return sound, checked


def check_method_run(run: Any) -> tuple[int, int]:
    """(densities that verify, densities checked) of a method run: every finished density's mask files
    against their digests (`method_level_problem`), each problem one warning; no record is touched."""
    sound = checked = 0
    with run.lock():
        for rep in run.replicates():
            warn_damaged_manifest(rep, warn)
            try:
                records = rep.read_results()
            except DamagedFileError as err:
                warn(f"{err}: rerun `lth run` to train {rep.path.name} again")
                continue
            checked += len(records)
            for record in records:
                problem = method_level_problem(rep, int(record["level"]))
                if problem is None:
                    sound += 1
                else:
                    warn(f"{problem}: density {record['level']} of {rep.path.name} cannot be verified (its record is "
                         "kept; delete the run directory's replicate to train it again)")
    return sound, checked


def check_runs(rows: list[dict[str, Any]], data_root: Any = None) -> None:
    """`check_run` for every listed run whose config is readable; one line per run."""
    for row in rows:
        if row["levels_planned"] is None:
            print(f"{row['path']}: not checked ({'; '.join(row['problems'])})")
            continue
        try:
            sound, checked = check_run(Path(row["path"]), data_root)
        except LthError as err:
            print(f"{row['path']}: not checked ({err})")
            continue
        if open_run(Path(row["path"])).config.method != "imp":
            print(f"{row['path']}: {sound} finished densit{'y' if sound == 1 else 'ies'} verified" +
                  (f", {checked - sound} could not be verified (kept; see the warnings)" if checked > sound else ""))
            continue
        print(f"{row['path']}: {sound} finished level(s) sound" +
              (f", {checked - sound} to recompute (rerun `lth run`)" if checked > sound else ""))
