"""Terminal output of a run: a progress bar per level and one table row per finished level."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

HEADER = f"{'level':>5}  {'% remaining':>11}  {'early-stop acc':>14}  {'early-stop it':>13}  {'final acc':>9}  {'time':>7}"


def format_row(record: dict[str, Any], seconds: float) -> str:
    return (
        f"{record['level']:>5}  {record['percent_remaining']:>11.2f}  "
        f"{100 * record['early_stop_test_accuracy']:>13.2f}%  {record['early_stop_iteration']:>13}  "
        f"{100 * record['test_accuracy']:>8.2f}%  {seconds:>6.1f}s"
    )


class LevelProgress:
    """tqdm bar per level (iterations, latest validation loss / accuracy) and a results table."""

    def __init__(self, levels: int, total_steps: int, enabled: bool = True, stream: Any = None):
        self.levels = levels
        self.total_steps = total_steps
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.bar: tqdm | None = None
        self._header_done = False

    def start_level(self, level: int, first_step: int, percent_remaining: float) -> None:
        if not self.enabled:
            return
        if not self._header_done:
            print(HEADER, file=self.stream, flush=True)
            self._header_done = True
        self.bar = tqdm(
            total=self.total_steps - first_step,
            desc=f"level {level}/{self.levels} ({percent_remaining:.1f}% left)",
            unit="it",
            leave=False,
            dynamic_ncols=True,
        )

    def advance(self, iterations: int, evaluations: list[dict[str, float]]) -> None:
        if self.bar is None:
            return
        self.bar.update(iterations)
        if evaluations:
            last = evaluations[-1]
            self.bar.set_postfix(val_loss=f"{last['val_loss']:.4f}", val_acc=f"{100 * last['val_accuracy']:.2f}%")

    def end_level(self, record: dict[str, Any], seconds: float) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled:
            print(format_row(record, seconds), file=self.stream, flush=True)
