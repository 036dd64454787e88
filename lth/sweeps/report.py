"""`lth sweep` behind its argument parser: a dry run's list of cells, or the sweep and at the end
the summary table, where the sweep's files are, and every failed cell with its one-line error."""

from __future__ import annotations

import os
import sys
from typing import Any

from lth.plans.run import controls_beyond_note
from lth.sweeps.driver import SweepOutcome, cell_finished, run_sweep
from lth.sweeps.file import SweepPlan, load_sweep
from lth.store import runs_root


def print_dry_run(plan: SweepPlan, root: str | os.PathLike | None = None) -> None:
    """The cells of `plan`, whether each is finished, its seed and its run directory; starts nothing."""
    root = runs_root(root)
    print(f"sweep {plan.dir_name}: {len(plan.cells)} cells, axes {', '.join(plan.axes) or '(none)'}")
    for cell in plan.cells:
        done = "done" if cell_finished(root, plan, cell) else "todo"
        print(f"{cell.index:>4}  {done}  {cell.label or 'base'}  seed {cell.config.seed}  {root / cell.run_name}")


def print_outcome(outcome: SweepOutcome, cells: int) -> None:
    """The summary and the sweep's files on stdout; the failed cells (of `cells`) on stderr."""
    if outcome.state.summary:
        print(outcome.state.summary)
    files = outcome.state.sweep_dir
    written = {"sweep": files.state_path, "summary": files.summary_path, "plot": files.plot_path}
    for label, path in written.items():  # only what is there: a sweep whose cells all failed has no summary
        if path.exists():
            print(f"{label}: {path}")
    if (outcome.path / "accuracy_vs_cost.png").exists():
        print(f"      {outcome.path / 'accuracy_vs_cost.png'}")
    missing = [path.name for path in written.values() if not path.exists()]
    if missing:
        why = " (no cell finished)" if outcome.state.table is None else ""
        print(f"lth: sweep: not written: {', '.join(missing)}{why}", file=sys.stderr)
    for cell in outcome.failed:
        print(f"lth: sweep: cell {cell['index']} ({cell['cell'] or 'base'}, seed {cell['seed']}) failed: "
              f"{cell['error']}", file=sys.stderr)
    if outcome.failed:
        print(f"lth: sweep: {len(outcome.failed)} of {cells} cells failed; rerun the same command to retry them "
              "(finished cells are kept)", file=sys.stderr)


def sweep_command(sweep: str, variant: str = "default", *, dry_run: bool = False, progress: bool = True,
                  runs_root: str | os.PathLike | None = None, **options: Any) -> int:
    """`lth sweep`: load the sweep file, list its cells (`dry_run`) or run them (`run_sweep` with
    `options`) and print the outcome; the exit code (1 if a cell failed)."""
    plan = load_sweep(sweep, variant)
    note = controls_beyond_note(plan.controls, plan.control_levels, [c.config.levels for c in plan.cells],
                                "the sweep's")
    if note:  # once per sweep, not once per cell
        print(f"lth: note: {note}", file=sys.stderr)
    if dry_run:
        print_dry_run(plan, runs_root)
        return 0
    outcome = run_sweep(plan, runs_root=runs_root, progress=progress, **options)
    print_outcome(outcome, len(plan.cells))
    return 1 if outcome.failed else 0
