"""Training the replicates of a run into their directories: one at a time (`run_replicate`, also what
a worker process runs) or several in lockstep as one vmapped program (`run_replicates_together`).

Each replicate resumes from its own files: its finished records are kept, its directory reset or
truncated to its resume point (`lth.store.resume`), and every level it trains is recorded through a
`lth.runs.recorder.Recorder`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lth.lottery import Resume, Setup, init_params, initial_mask, lottery_levels, lottery_levels_together
from lth.lottery.levels import resume_point
from lth.lottery.setup import stacked_training
from lth.parse import CheckpointPeriod
from lth.runs.progress import FollowerProgress, warn
from lth.runs.recorder import Recorder
from lth.runs.tracking import one_run_at_a_time
from lth.sparsity.masks import Mask
from lth.store import JsonlSink, ReplicateDir
from lth.store.resume import find_resume
from lth.training.processes import barrier


def open_replicate(setup: Setup, rep: ReplicateDir, mask: Mask | None, replicate: int,
                   reporter: Any) -> tuple[list[dict[str, Any]], Resume | None] | None:
    """A replicate's finished records and its resume point (None: every level is done already);
    its files are reset or truncated to that point."""
    records = rep.read_results()
    if len(records) == setup.config.levels + 1:
        return None
    params0, model_state0 = init_params(setup)
    template = setup.trainer.init_state(params0, model_state0)
    resume = find_resume(rep, template, initial_mask(setup, params0, mask), setup.rewind_step, warn)
    barrier(f"lth: replicate {replicate} read")  # several processes: all have read before process 0 writes
    if resume is None:
        rep.reset()
        records = []
    else:
        records = rep.read_results()[: resume.level]
        rep.truncate_metrics(resume.level, int(resume.state.step) if resume.state is not None else -1)
        where = f"iteration {int(resume.state.step)}" if resume.state is not None else "its start"
        reporter.note(f"resuming replicate {replicate} at level {resume.level}, {where}")
    rep.mkdir()
    return records, resume


def _recorder(setup: Setup, rep: ReplicateDir, sink: JsonlSink, reporter: Any, trackers: list[Any], replicate: int,
              every: CheckpointPeriod, records: list[dict[str, Any]]) -> Recorder:
    return Recorder(rep, sink, reporter, trackers, replicate, checkpoint_every=every,
                    steps_per_epoch=setup.trainer.steps_per_epoch, total_steps=setup.trainer.total_steps,
                    records=records)


def run_replicate(setup: Setup, rep: ReplicateDir, mask: Mask | None, replicate: int, every: CheckpointPeriod,
                  reporter: Any, trackers: list[Any]) -> list[dict[str, Any]]:
    """Train (or finish) replicate `replicate` of a run (`setup` has its seed); returns its records."""
    opened = open_replicate(setup, rep, mask, replicate, reporter)
    if opened is None:
        return rep.read_results()
    records, resume = opened
    with JsonlSink(rep.metrics_path, enabled=rep.writable) as sink:
        recorder = _recorder(setup, rep, sink, reporter, trackers, replicate, every, records)
        for outcome in lottery_levels(setup, mask, hooks=recorder, resume=resume):
            records = recorder.level_done(outcome)
    return records


def run_replicates_together(setup: Setup, reps: list[ReplicateDir], todo: list[int], mask: Mask | None, layout: str,
                            every: CheckpointPeriod, reporter: Any, trackers: list[Any]) -> None:
    """Train the replicates `todo` as one vmapped program (`lth.training.stacked`), each group of those
    that resume from the same point together (normally all of them); their files as in `run_replicate`."""
    setups = {r: setup.for_replicate(r) for r in todo}
    trackers = one_run_at_a_time(trackers)
    opened = {r: open_replicate(setups[r], reps[r], mask, r, reporter) for r in todo}
    groups: dict[tuple[int, int | None], list[int]] = {}
    for r in todo:
        if opened[r] is not None:
            groups.setdefault(resume_point(opened[r][1]), []).append(r)
    for members in groups.values():
        group_setup, train_many = stacked_training(setup, len(members), layout)
        reporter.note(f"training replicates {', '.join(map(str, members))} together ({layout})")
        reporter.together = len(members)
        with contextlib.ExitStack() as files:
            sinks = [files.enter_context(JsonlSink(reps[r].metrics_path, enabled=reps[r].writable)) for r in members]
            recorders = [_recorder(setup, reps[r], sink, reporter if i == 0 else FollowerProgress(reporter), trackers,
                                   r, every, opened[r][0]) for i, (r, sink) in enumerate(zip(members, sinks))]
            for outcomes in lottery_levels_together(
                    [group_setup.with_config(setups[r].config) for r in members], [mask] * len(members),
                    hooks=recorders, resumes=[opened[r][1] for r in members], train_many=train_many):
                for recorder, outcome in zip(recorders, outcomes):
                    recorder.level_done(outcome)
        reporter.together = 1
