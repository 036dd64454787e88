"""Terminal output of a sweep: a line per cell that finishes, fails or is retried, with the counts
(done / running / failed) and an ETA; on a terminal also a bar of cells. When stdout is not a
terminal (a log file, a SLURM job) there is no bar and no carriage return: plain lines only."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

from lth.execution.progress import format_duration


class SweepProgress:
    """Counts and lines of a sweep of `total` cells (`skipped` of them already finished)."""

    def __init__(self, total: int, enabled: bool = True, stream: Any = None):
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stdout
        self.done = self.failed = 0
        self.seconds: list[float] = []  # of the cells trained by this sweep
        self.running: set[int] = set()
        self.slots = 1  # the most cells seen running at once
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = tqdm(total=total, desc="cells", unit="cell", file=self.stream, dynamic_ncols=True,
                        leave=False) if enabled and tty else None

    def _line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def eta(self) -> str:
        """The cells left times the mean time of a trained cell, over the cells that run at once."""
        left = self.total - self.done - self.failed
        if left == 0:
            return "0m00s"
        if not self.seconds:
            return "?"
        return format_duration(left * sum(self.seconds) / len(self.seconds) / self.slots)

    def counts(self) -> str:
        return (f"{self.done}/{self.total} done, {len(self.running)} running, {self.failed} failed, "
                f"ETA {self.eta()}")

    def _refresh(self) -> None:
        if self.bar is not None:
            self.bar.n = self.done + self.failed
            self.bar.set_postfix_str(f"{len(self.running)} running, {self.failed} failed, ETA {self.eta()}")

    def note(self, text: str) -> None:
        self._line(text)

    def skipped(self, count: int) -> None:
        """`count` cells were finished before this sweep started."""
        self.done += count
        if count:
            self._line(f"{count} of {self.total} cells already finished: skipped")
        self._refresh()

    def cell_started(self, index: int) -> None:
        self.running.add(index)
        self.slots = max(self.slots, len(self.running))
        self._refresh()

    def cell_done(self, index: int, label: str, seconds: float, where: str) -> None:
        self.running.discard(index)
        self.done += 1
        self.seconds.append(seconds)
        self._line(f"[{self.done + self.failed}/{self.total}] done    {label} on {where} in {seconds:.1f}s "
                   f"| {self.counts()}")
        self._refresh()

    def cell_retried(self, index: int, label: str, error: str, attempt: int, attempts: int) -> None:
        self.running.discard(index)
        self._line(f"        retry   {label} (attempt {attempt + 1} of {attempts} failed: {error})")
        self._refresh()

    def cell_failed(self, index: int, label: str, error: str) -> None:
        self.running.discard(index)
        self.failed += 1
        self._line(f"[{self.done + self.failed}/{self.total}] FAILED  {label}: {error} | {self.counts()}")
        self._refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
