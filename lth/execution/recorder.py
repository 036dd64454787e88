"""The ONE runner hook: what training a replicate leaves behind, for the main line's levels, the
controls and the instability analysis alike.

A `Recorder` is the `lth.lottery.Hooks` of one replicate on one branch (the main line, or a control
in ``replicate_XX/controls/<name>/``): every evaluation goes to metrics.jsonl, to the trackers (W&B)
and to the progress bar; inside a main-line level a checkpoint is saved at the first epoch boundary
after the checkpoint period; when a level ends its files (final checkpoint on the main line, mask,
results.json) are written and its table row printed. Instability analysis reports through the same
object: a progress bar per rewind step and its records file.

Checkpoints, masks and records are written through a `lth.store.writer.BackgroundWriter`: the
arrays are copied to the host here, the files are written on the writer's thread while training
goes on, a level's results.json after its checkpoint. A failed background save is raised here at
the next chunk or level end (without a writer given: every save at once, in this thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from lth.lottery import Hooks, LevelOutcome
from lth.lottery.cost import cumulative, main_line_base
from lth.spec.parse import CheckpointPeriod
from lth.sparsity.masks import Mask, layer_counts
from lth.store import JsonlSink, ReplicateDir, write_json
from lth.store.writer import BackgroundWriter, host_copy
from lth.training import TrainState

CostBase = Callable[[dict[int, dict[str, Any]], dict[str, Any]], "dict[str, Any] | None"]
clock = time.monotonic  # the wall clock of time-based checkpoints (tests replace it)


class Recorder(Hooks):
    """Files, trackers and progress of one replicate on one branch (see the module docstring).

    `checkpoint_every` None: no checkpoints (controls). `positions` place the branch's levels among
    those it trains, for the progress bar's ETA (default: the level itself); `records` are the branch's
    finished records, to which each level's is added. `writer`: where the files are written (default:
    at once, in this thread). `cost_base` gives the record a level's cumulative cost builds on
    (`lth.lottery.cost`; default: the main line's previous level).
    """

    def __init__(self, files: ReplicateDir, sink: JsonlSink, reporter: Any, trackers: Sequence[Any], replicate: int,
                 *, branch: str = "main", checkpoint_every: CheckpointPeriod | None = None,
                 steps_per_epoch: int = 1, total_steps: int = 0, records: Sequence[dict[str, Any]] = (),
                 positions: dict[int, int] | None = None,
                 writer: BackgroundWriter | None = None, cost_base: CostBase = main_line_base):
        self.files, self.sink, self.reporter, self.trackers = files, sink, reporter, list(trackers)
        self.writer = writer if writer is not None else BackgroundWriter(background=False)
        self.replicate, self.branch, self.every = replicate, branch, checkpoint_every
        self.spe, self.total = steps_per_epoch, total_steps
        self.records = {int(r["level"]): r for r in records}
        self.cost_base = cost_base
        self.seconds: dict[int, float] | None = None  # wall seconds per level (`_wall_seconds`)
        self.positions = positions or {}
        self.step = self.last_checkpoint = 0
        self.level: int | None = None  # the level being trained
        self.last_checkpoint_time = clock()

    # the lottery's hooks -------------------------------------------------------------------

    def level_start(self, level: int, state: TrainState, mask: Mask) -> None:
        self.level = level
        self.step = self.last_checkpoint = int(state.step)
        self.last_checkpoint_time = clock()
        counts = layer_counts(mask).values()
        percent = 100.0 * sum(k for k, _ in counts) / sum(n for _, n in counts)
        self.reporter.start_level(self.replicate, level, self.step, percent, branch=self.branch,
                                  position=self.positions.get(level))
        branch = {} if self.branch == "main" else {"branch": self.branch}
        for tracker in self.trackers:
            tracker.level_start(self.replicate, level, percent, self.step, **branch)

    def chunk_done(self, level: int, state: TrainState, mask: Mask, new: list[dict[str, float]],
                   evaluations: list[dict[str, float]]) -> None:
        self.writer.check()  # a failed background save ends the run here, one chunk after it failed at most
        for e in new:
            self.sink.log({"level": level, **e})
        for tracker in self.trackers:
            tracker.log_evaluations(self.replicate, level, new)
        step = int(state.step)
        self.reporter.advance(step - self.step, new)
        self.step = step
        if self.every is not None and step < self.total and step % self.spe == 0 and self.every.due(
                step - self.last_checkpoint, clock() - self.last_checkpoint_time):
            if self.files.writable:
                state, mask = host_copy((state, mask))
                self.writer.submit(partial(self.files.save_level_step, level, state, mask, list(evaluations)))
            self.last_checkpoint, self.last_checkpoint_time = step, clock()

    def rewind_captured(self, state: TrainState) -> None:
        if self.files.writable:
            self.writer.submit(partial(self.files.save_rewind, host_copy(state)))

    # the end of a level --------------------------------------------------------------------

    def level_done(self, outcome: LevelOutcome) -> list[dict[str, Any]]:
        """Save a finished level: final checkpoint (main line), mask, results.json (through the writer),
        logs; returns the branch's records so far, in level order."""
        outcome = outcome._replace(record=cumulative(outcome.record, self.cost_base(self.records, outcome.record)))
        level = outcome.record["level"]
        self.records[level] = outcome.record
        records = self.sorted_records()
        if self.files.writable:
            state, mask = host_copy((outcome.state, outcome.mask))
            self.writer.submit(partial(self._write_level, level, state, mask, outcome.record, records))
        self.sink.log({"level": level, "event": "level_done", "seconds": round(outcome.seconds, 3)})
        self.reporter.end_level(outcome.record, outcome.seconds, self.replicate, self.branch)
        shown = {**outcome.record, **self._wall_seconds(outcome.record, outcome.seconds)}
        for tracker in self.trackers:
            tracker.level_done(self.replicate, shown, outcome.evaluations)
        return records

    def _wall_seconds(self, record: dict[str, Any], seconds: float) -> dict[str, float]:
        """The level's wall seconds and, where the branch's earlier levels are part of what it cost (a
        lottery's main line), the cumulative seconds of levels 0..L (from metrics.jsonl's ``level_done``
        events; absent when one is missing). Shown in W&B, never in results.json (which is a function of
        the config and seed alone)."""
        if self.seconds is None:
            self.seconds = {int(row["level"]): float(row["seconds"]) for row in self.files.read_metrics()
                            if row.get("event") == "level_done" and "seconds" in row}
        level = int(record["level"])
        self.seconds[level] = seconds
        wall = {"seconds": round(seconds, 3)}
        if self.cost_base(self.records, record) is None:
            wall["cumulative_seconds"] = round(seconds, 3)
        elif self.branch == "main" and all(earlier in self.seconds for earlier in range(level + 1)):
            wall["cumulative_seconds"] = round(sum(self.seconds[earlier] for earlier in range(level + 1)), 3)
        return wall

    def _write_level(self, level: int, state: TrainState, mask: Mask, record: dict[str, Any],
                     records: list[dict[str, Any]]) -> None:
        """A finished level's files (a writer job), results.json last: a listed level can always be
        resumed from."""
        if self.every is not None:
            self.files.save_level_final(level, state, mask, record)
        self.files.save_mask(level, mask)
        self.files.write_results(records)

    def sorted_records(self) -> list[dict[str, Any]]:
        return [self.records[level] for level in sorted(self.records)]

    # instability analysis ------------------------------------------------------------------

    def rewind_step_start(self, level: int, rewind_step: int, iterations: int) -> None:
        """A progress bar for the copies trained from `rewind_step` (`iterations` in all)."""
        self.reporter.start_bar(f"level {level}, k = {rewind_step}: copies", iterations)

    def advance(self, iterations: int) -> None:
        self.reporter.advance(iterations, [])

    def instability_done(self, level: int, records: dict[int, dict[str, Any]], record: dict[str, Any]) -> None:
        """Add `record` to the level's instability records, write them, print the line."""
        records[record["rewind_step"]] = record
        if self.files.writable:
            write_json(self.files.instability_path(level, record.get("bn_state", "interpolate")),
                       [records[k] for k in sorted(records)])
        self.reporter.close()
        self.reporter.note(f"level {level}  k={record['rewind_step']:>6}  barrier {100 * record['barrier']:6.2f} points"
                           f"  {'stable' if record['stable'] else 'unstable'}")
