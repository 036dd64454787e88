"""Training the replicates of a run into their directories: one at a time (`run_replicate`, also what
a worker process runs) or several in lockstep as one vmapped program (`run_replicates_together`).

Each replicate resumes from its own files: its finished records are kept, its directory reset or
truncated to its resume point (`lth.store.resume`), and every level it trains is recorded through a
`lth.execution.recorder.Recorder`. Its checkpoints and records are written by a background writer
(`lth.store.writer`) while the next chunks train; the replicate's lock is held until every pending
save is on disk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax

from lth.errors import ConfigError
from lth.lottery import Resume, Setup, init_params, initial_mask, lottery_levels, lottery_levels_together
from lth.lottery.levels import recompute_rewind, resume_point
from lth.lottery.setup import stacked_training
from lth.spec.parse import CheckpointPeriod
from lth.execution.progress import FollowerProgress, warn
from lth.execution.recorder import Recorder
from lth.execution.tracking import one_run_at_a_time
from lth.sparsity.masks import Mask
from lth.store import JsonlSink, ReplicateDir, replicate_paths
from lth.store.checkpoints import tree_digest
from lth.store.resume import check_finished, find_resume, recover_records
from lth.store.writer import BackgroundWriter
from lth.training.loop import DivergedError
from lth.training.processes import barrier, context_difference, numerics_context


def open_replicate(setup: Setup, rep: ReplicateDir, mask: Mask | None, replicate: int, reporter: Any,
                   allow_mixed_numerics: bool = False) -> tuple[list[dict[str, Any]], Resume | None] | None:
    """A replicate's finished records and its resume point (None: every level is done and its files
    check out); its files are repaired, reset or truncated to that point. The replicate's numerics
    context is recorded; resuming under another one is refused unless `allow_mixed_numerics`."""
    params0, model_state0 = init_params(setup)
    template, mask0 = setup.trainer.init_state(params0, model_state0), initial_mask(setup, params0, mask)
    if len(recover_records(rep, template, mask0, warn)) == setup.config.levels + 1 and \
            len(check_finished(rep, template, mask0, warn)) == setup.config.levels + 1:
        return None
    resume = find_resume(rep, template, mask0, setup.rewind_step, warn)
    _check_numerics(rep, replicate, resume is not None, allow_mixed_numerics)
    if resume is not None and resume.rewind_damaged:
        resume = resume._replace(rewind_point=recompute_checked_rewind(setup, rep, mask), rewind_damaged=False)
    barrier(f"lth: replicate {replicate} read")  # several processes: all have read before process 0 writes
    if resume is None:
        rep.reset()
        records = []
    else:
        records = rep.read_results()[: resume.level]
        rep.truncate_metrics(resume.level, int(resume.state.step) if resume.state is not None else -1, warn)
        where = f"iteration {int(resume.state.step)}" if resume.state is not None else "its start"
        reporter.note(f"resuming replicate {replicate} at level {resume.level}, {where}")
    rep.mkdir()
    rep.update_manifest(numerics=numerics_context())
    return records, resume


def _check_numerics(rep: ReplicateDir, replicate: int, resuming: bool, allow_mixed: bool) -> None:
    """Refuse (or, allowed, warn) to resume a replicate under another numerics context than it ran
    under; warn when the other replicates of the run ran under another one."""
    current = numerics_context()
    stored = rep.read_manifest().get("numerics")
    if resuming and stored is None and rep.manifest_lost() and not allow_mixed:
        raise ConfigError(f"replicate {replicate}'s manifest.json was damaged, so the numerics it ran with are unknown "
                          "and resuming here could mix two sets of floats: if this is the machine, cores and --layout "
                          "it ran with, pass --allow-mixed-numerics; or delete the replicate to train it again")
    difference = context_difference(stored, current) if stored and resuming else ""
    if difference and not allow_mixed:
        raise ConfigError(f"replicate {replicate} ran with other numerics ({difference}); resuming it here would mix "
                          "two sets of floats: resume it as it ran (the same cores and --layout, e.g. --replicates N "
                          "as before), or pass --allow-mixed-numerics")
    if difference:
        warn(f"replicate {replicate} resumes with other numerics than it started with ({difference})")
    for sibling in replicate_paths(rep.path.parent):
        other = ReplicateDir(sibling, writable=False).read_manifest().get("numerics")
        if sibling != rep.path and other and context_difference(other, current):
            warn(f"replicate {replicate} trains with other numerics than {sibling.name} "
                 f"({context_difference(other, current)}): equal seeds would not give equal bits")
            break


def recompute_checked_rewind(setup: Setup, rep: ReplicateDir, mask: Mask | None) -> tuple[Any, Any]:
    """The rewind weights trained again from the seed, checked bit for bit against the digest
    recorded when they were first saved, and saved again."""
    params, model_state = recompute_rewind(setup, mask)
    tree = {"params": params, "model_state": model_state}
    want = rep.read_manifest().get("rewind_digest")
    if want is not None and tree_digest(tree) != want:
        raise ConfigError(f"{rep.rewind_path} is damaged, and training it again here gives other weights than "
                          "before (other numerics?): restore the checkpoint, or delete "
                          f"{rep.path} to retrain this replicate")
    warn(f"recomputed the rewind weights of {rep.path.name} from the seed"
         + (" (bit-identical to the damaged checkpoint's digest)" if want is not None else " (no digest to check)"))
    rep.save_rewind(setup.trainer.init_state(params, model_state, setup.rewind_step))
    return params, model_state


def _recorder(setup: Setup, rep: ReplicateDir, sink: JsonlSink, reporter: Any, trackers: list[Any], replicate: int,
              every: CheckpointPeriod, records: list[dict[str, Any]], writer: BackgroundWriter) -> Recorder:
    return Recorder(rep, sink, reporter, trackers, replicate, checkpoint_every=every,
                    steps_per_epoch=setup.trainer.steps_per_epoch, total_steps=setup.trainer.total_steps,
                    records=records, writer=writer)


def saves_writer(background: bool | None = None) -> BackgroundWriter:
    """The writer of a replicate's checkpoints and records: in the background (`background` None: when
    this is the only process; a multi-process run's process 0 saves in step with the others)."""
    if background is None:
        background = jax.process_count() == 1
    return BackgroundWriter(background, on_late_error=warn)


def run_replicate(setup: Setup, rep: ReplicateDir, mask: Mask | None, replicate: int, every: CheckpointPeriod,
                  reporter: Any, trackers: list[Any], allow_mixed_numerics: bool = False,
                  background_saves: bool | None = None) -> list[dict[str, Any]]:
    """Train (or finish) replicate `replicate` of a run (`setup` has its seed) under the replicate's
    own lock; returns its records. `background_saves`: see `saves_writer` (False: every save on the
    critical path, as lth did before)."""
    with rep.lock():
        opened = open_replicate(setup, rep, mask, replicate, reporter, allow_mixed_numerics)
        if opened is None:
            return rep.read_results()
        records, resume = opened
        recorders: list[Recorder] = []
        with level_errors(recorders), JsonlSink(rep.metrics_path, enabled=rep.writable) as sink, \
                saves_writer(background_saves) as writer:
            recorders.append(_recorder(setup, rep, sink, reporter, trackers, replicate, every, records, writer))
            for outcome in lottery_levels(setup, mask, hooks=recorders[0], resume=resume):
                records = recorders[0].level_done(outcome)
    return records


@contextlib.contextmanager
def level_errors(recorders: list[Recorder]) -> Iterator[None]:
    """A divergence (or another one-line error of a level) says which replicate and level it hit, and
    a divergence is recorded in each replicate's manifest (`lth ls` then says what to change: the
    same config diverges again). Enter it before the recorders' writer: the manifest is written
    after every pending save."""
    try:
        yield
    except (DivergedError, ConfigError) as err:
        if not recorders:
            raise
        diverged = isinstance(err, DivergedError)  # a pruning error names its level itself
        if diverged:
            for r in recorders:
                r.files.update_manifest(diverged={"level": r.level, "iteration": err.iteration, "loss": err.loss})
        where = ", ".join(f"replicate {r.replicate}" + (f" level {r.level}" if diverged else "") for r in recorders)
        raise type(err)(f"{where}: {err}") from None


def run_replicates_together(setup: Setup, reps: list[ReplicateDir], todo: list[int], mask: Mask | None, layout: str,
                            every: CheckpointPeriod, reporter: Any, trackers: list[Any],
                            allow_mixed_numerics: bool = False) -> None:
    """Train the replicates `todo` as one vmapped program (`lth.training.stacked`), each group of those
    that resume from the same point together (normally all of them); their files as in `run_replicate`."""
    with contextlib.ExitStack() as locks:
        for r in todo:
            locks.enter_context(reps[r].lock())
        _train_together(setup, reps, todo, mask, layout, every, reporter, trackers, allow_mixed_numerics)


def _train_together(setup: Setup, reps: list[ReplicateDir], todo: list[int], mask: Mask | None, layout: str,
                    every: CheckpointPeriod, reporter: Any, trackers: list[Any], allow_mixed_numerics: bool) -> None:
    setups = {r: setup.for_replicate(r) for r in todo}
    trackers = one_run_at_a_time(trackers)
    opened = {r: open_replicate(setups[r], reps[r], mask, r, reporter, allow_mixed_numerics) for r in todo}
    groups: dict[tuple[int, int | None], list[int]] = {}
    for r in todo:
        if opened[r] is not None:
            groups.setdefault(resume_point(opened[r][1]), []).append(r)
    for members in groups.values():
        group_setup, train_many = stacked_training(setup, len(members), layout)
        reporter.note(f"training replicates {', '.join(map(str, members))} together ({layout})")
        reporter.together = len(members)
        recorders: list[Recorder] = []
        with level_errors(recorders), contextlib.ExitStack() as files:
            sinks = [files.enter_context(JsonlSink(reps[r].metrics_path, enabled=reps[r].writable)) for r in members]
            writer = files.enter_context(saves_writer())
            recorders += [_recorder(setup, reps[r], sink, reporter if i == 0 else FollowerProgress(reporter), trackers,
                                    r, every, opened[r][0], writer) for i, (r, sink) in enumerate(zip(members, sinks))]
            levels = lottery_levels_together(
                [group_setup.with_config(setups[r].config) for r in members], [mask] * len(members),
                hooks=recorders, resumes=[opened[r][1] for r in members], train_many=train_many)
            for outcomes in levels:
                for recorder, outcome in zip(recorders, outcomes):
                    recorder.level_done(outcome)
        reporter.together = 1
