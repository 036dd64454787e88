"""Output of a run: one table row per finished level, an ETA, one-line warnings, and on a terminal a
progress bar per level; in a log (stdout or stderr not a terminal: SLURM, Ray, nohup, a pipe) no bars,
but a heartbeat line every minute of a level instead (iteration, it/s, ETA)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

HEADER = (f"{'rep':>3} {'level':>5}  {'% remaining':>11}  {'early-stop acc':>14}  {'early-stop it':>13}  "
          f"{'final acc':>9}  {'compact MACs':>12}  {'FLOPs to here':>13}  {'time':>7}")
"""The table's header; a table of several branches (the controls) has a `control` column after `rep`."""


def header(branch_width: int = 0) -> str:
    """The table's header, with a column of `branch_width` characters for the branch name if not 0."""
    return HEADER if not branch_width else f"{HEADER[:3]} {'control':<{branch_width}}{HEADER[3:]}"


def warn(message: str) -> None:
    """A one-line warning on stderr (damaged checkpoints, W&B failures, ...)."""
    print(f"lth: warning: {message}", file=sys.stderr, flush=True)


def format_row(replicate: int, record: dict[str, Any], seconds: float, branch: str = "main",
               branch_width: int = 0) -> str:
    """A level's table row (early-stop columns '-' without a validation set); the branch's name in a
    column of `branch_width` characters if not 0 (see `header`)."""
    early = record.get("early_stop_test_accuracy")
    early_text = f"{100 * early:>13.2f}%" if early is not None else f"{'-':>14}"
    iteration = record.get("early_stop_iteration")
    name = f" {branch:<{branch_width}}" if branch_width else ""
    macs = short_count(record["compact_macs"]) if record.get("compact_macs") is not None else "-"
    cost = short_count(record["cumulative_train_flops"]) if record.get("cumulative_train_flops") is not None else "-"
    return (
        f"{replicate:>3}{name} {record['level']:>5}  {record['percent_remaining']:>11.2f}  "
        f"{early_text}  {iteration if iteration is not None else '-':>13}  "
        f"{100 * record['test_accuracy']:>8.2f}%  {macs:>12}  {cost:>13}  {seconds:>6.1f}s"
    )


def short_count(n: int) -> str:
    """A count in 4 significant digits with k / M / G / T / P: 266200 -> '266.2k'."""
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.4g}{suffix}"
    return str(int(n))


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def on_terminal(*streams: Any) -> bool:
    """True when every stream is an interactive terminal (progress bars make sense there, not in a log)."""
    return all(callable(getattr(s, "isatty", None)) and s.isatty() for s in streams)


HEARTBEAT_S = 60.0  # seconds between heartbeat lines of a level when there are no bars


class LevelProgress:
    """A tqdm bar per level (iterations, latest validation loss / accuracy, the run's ETA) and a table.

    The ETA assumes the remaining levels take as long per iteration as the finished ones did.
    Replicates trained in lockstep (`together` > 1, see `lth.replicates`) share the bar of the
    first of them; the others report through a `FollowerProgress`. `bars`: tqdm bars (default: when
    stdout and stderr are terminals); without them a level prints a heartbeat line every
    `heartbeat_s` seconds (`clock` is the time source, replaceable in tests). `branches`: the names of
    the branches trained for every replicate (the controls), one after the other: the table then
    has a `control` column, and the bars and the ETA count `replicates` x branches.
    """

    def __init__(self, levels: int, total_steps: int, replicates: int = 1, enabled: bool = True, stream: Any = None,
                 bars: bool | None = None, heartbeat_s: float = HEARTBEAT_S, branches: Sequence[str] = ()):
        self.levels, self.total_steps, self.replicates = levels, total_steps, replicates
        self.branches = tuple(branches)
        self.branch_width = max([len("control"), *map(len, self.branches)]) if self.branches else 0
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.bars = on_terminal(self.stream, sys.stderr) if bars is None else bars
        self.bar: tqdm | None = None
        self.beat: Heartbeat | None = None
        self.heartbeat_s, self.clock = heartbeat_s, time.monotonic
        self._header_done = False
        self._levels_done = 0
        self._seconds_done = 0.0
        self._level_started = time.perf_counter()
        self.together = 1  # replicates advancing in lockstep with the one whose bar is shown

    def note(self, message: str) -> None:
        if self.enabled:
            if self.bar is not None:
                tqdm.write(message, file=self.stream)
            else:
                print(message, file=self.stream, flush=True)

    def _slot(self, replicate: int, branch: str) -> int:
        """The place of (replicate, branch) in the order they train: every branch of a replicate in turn."""
        return replicate * len(self.branches) + self.branches.index(branch) if branch in self.branches else replicate

    def _eta(self, slot: int, position: int) -> str:
        if not self._levels_done:
            return "?"
        remaining = (self.replicates * max(1, len(self.branches)) - slot) * (self.levels + 1) - position
        return format_duration(remaining / self.together * self._seconds_done / self._levels_done)

    def start_level(self, replicate: int, level: int, first_step: int, percent_remaining: float,
                    branch: str = "main", position: int | None = None) -> None:
        """A bar for the level's iterations from `first_step`; the table header before the first.
        `position`: the level's place among the branch's levels to train (default: `level`)."""
        self._level_started = time.perf_counter()
        if not self.enabled:
            return
        self._header()
        rep = f"rep {replicate + 1}/{self.replicates} " if self.replicates > 1 else ""
        if self.together > 1:
            rep = f"reps {replicate + 1}-{replicate + self.together}/{self.replicates} "
        name = f"{branch} " if branch != "main" else ""
        of = f"/{self.levels}" if branch == "main" else ""  # a control trains chosen levels: no "of"
        eta = self._eta(self._slot(replicate, branch), level if position is None else position)
        self.start_bar(f"{name}{rep}level {level}{of} ({percent_remaining:.1f}% left, run ETA {eta})",
                       self.total_steps - first_step)

    def _header(self) -> None:
        if not self._header_done:
            print(header(self.branch_width), file=self.stream, flush=True)
            self._header_done = True

    def start_bar(self, description: str, total: int) -> None:
        """A bar of `total` iterations (closed by `end_level` or `close`); in a log, its heartbeat."""
        if not self.enabled:
            return
        self.close()
        if self.bars:
            self.bar = tqdm(total=total, desc=description, unit="it", leave=False, dynamic_ncols=True)
        else:
            self.beat = Heartbeat(description, total, self.clock(), self.heartbeat_s)

    def advance(self, iterations: int, evaluations: list[dict[str, float]]) -> None:
        last = evaluations[-1] if evaluations else None
        if self.beat is not None:
            line = self.beat.advance(iterations, last, self.clock())
            if line:
                print(line, file=self.stream, flush=True)
        if self.bar is None:
            return
        self.bar.update(iterations)
        if last:
            self.bar.set_postfix(val_loss=f"{last['val_loss']:.4f}", val_acc=f"{100 * last['val_accuracy']:.2f}%")

    def end_level(self, record: dict[str, Any], seconds: float, replicate: int = 0, branch: str = "main") -> None:
        self._levels_done += 1
        self._seconds_done += seconds
        self.close()
        self.print_row(record, seconds, replicate, branch)

    def print_row(self, record: dict[str, Any], seconds: float, replicate: int = 0, branch: str = "main") -> None:
        """The level's table row (after the header): the replicate's own record, of `branch`."""
        if self.enabled:
            self._header()
            print(format_row(replicate, record, seconds, branch, self.branch_width), file=self.stream, flush=True)

    def close(self) -> None:
        self.beat = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Heartbeat:
    """The bar's information as a line every `period` seconds: for logs, where a bar would be noise."""

    def __init__(self, description: str, total: int, now: float, period: float):
        self.description, self.total, self.period = description, total, period
        self.started = self.last = now
        self.done = 0
        self.evaluation: dict[str, float] | None = None

    def advance(self, iterations: int, evaluation: dict[str, float] | None, now: float) -> str | None:
        """Count `iterations`; the heartbeat line when `period` has passed since the last one, else None."""
        self.done += iterations
        self.evaluation = evaluation or self.evaluation
        if now - self.last < self.period:
            return None
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        line = f"{self.description}: iteration {self.done}/{self.total}, {rate:,.0f} it/s, ETA {eta}"
        if self.evaluation:
            line += (f", val_loss {self.evaluation['val_loss']:.4f}, "
                     f"val_acc {100 * self.evaluation['val_accuracy']:.2f}%")
        return line


class FollowerProgress:
    """The progress of a replicate trained in lockstep with the one that `lead` shows: no bar of its
    own, its notes and table rows through the lead (anything with `note` and `print_row`: the
    `LevelProgress`, or in a worker process the queue to its parent's, `lth.execution.workers`)."""

    def __init__(self, lead: Any):
        self.lead = lead

    def note(self, message: str) -> None:
        self.lead.note(message)

    def start_level(self, *args: Any, **kwargs: Any) -> None:
        pass

    def advance(self, *args: Any) -> None:
        pass

    def end_level(self, record: dict[str, Any], seconds: float, replicate: int = 0, branch: str = "main") -> None:
        self.lead.print_row(record, seconds, replicate, branch)
