"""What `lth ls` prints: one line per run (experiment, hash, levels done, replicates, best ticket, and
what tells it apart from the other runs of its experiment), then a line for each replicate that is
unfinished, stopped by a divergence, or damaged, saying what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lth.store.queries import RESUME_HINT, divergence_text
from lth.store.records import accuracy

INDENT = " " * 22


def print_runs(rows: list[dict[str, Any]], root: Path) -> None:
    """The listing of `lth.store.list_runs` rows under `root` (a run's directory: <experiment>-<hash>)."""
    print(f"runs under {root} (directories <experiment>-<hash>)")
    print(f"{'experiment':<22} {'hash':<8} {'levels':>7} {'reps':>4}  {'best ticket (% left, acc)':<26} what differs")
    for row in rows:
        best = row["best_ticket"]
        best_text = f"{best['percent_remaining']:6.2f}%  {100 * accuracy(best):.2f}%" if best else "-"
        planned = row["levels_planned"] if row["levels_planned"] is not None else "?"
        levels = f"{row['levels_done']}/{planned}"
        print(f"{row['name']:<22} {row['hash']:<8} {levels:>7} {row['replicates']:>4}  {best_text:<26} "
              f"{row.get('differs') or '-'}".rstrip())
        for line in _replicate_lines(row):
            print(f"{INDENT} {line}")
        for problem in row["problems"]:
            print(f"{INDENT} damaged: {problem}")


def _replicate_lines(row: dict[str, Any]) -> list[str]:
    """'r1: diverged at level 3, iteration 120 ...' / 'levels done r0: 4, r1: 2 (unfinished: rerun ...)'."""
    if row["levels_planned"] is None:
        return []
    lines = [f"r{r}: {divergence_text(stopped)}" for r, stopped in row["diverged"].items()]
    unfinished = {r: n for r, n in enumerate(row["replicate_levels"])
                  if n != row["levels_planned"] and r not in row["diverged"]}
    if unfinished:
        done = ", ".join(f"r{r}: {n if n is not None else 'damaged'}" for r, n in unfinished.items())
        lines.append(f"levels done per replicate: {done} (unfinished: {RESUME_HINT})")
    return lines
