"""Where an interrupted replicate continues: its finished levels and newest good checkpoint.

Damaged checkpoints are reported (one line each) and skipped: the level resumes from the newest
good one, or the run from the last good finished level.
"""

from __future__ import annotations

from collections.abc import Callable

from lth.lottery.levels import Resume
from lth.sparsity.masks import Mask
from lth.store import checkpoints
from lth.store.run_dir import ReplicateDir
from lth.training import TrainState


def find_resume(rep: ReplicateDir, template: TrainState, mask_template: Mask, rewind_step: int,
                warn: Callable[[str], None]) -> Resume | None:
    """The `Resume` point of replicate `rep`, or None to start from scratch (see the module doc)."""
    records = rep.read_results()
    previous = previous_mask = None
    while records:
        level = len(records) - 1
        try:
            previous, previous_mask, _ = rep.load_state(rep.level_dir(level) / "final", template, mask_template)
            break
        except checkpoints.CheckpointError as err:
            warn(f"{err}; level {level} will be recomputed")
            records = records[:-1]
            rep.write_results(records)
    level = len(records)
    mid = None
    for step in checkpoints.list_steps(rep.level_dir(level)):
        try:
            mid = rep.load_state(checkpoints.step_dir(rep.level_dir(level), step), template, mask_template)
            break
        except checkpoints.CheckpointError as err:
            warn(f"{err}; trying the previous checkpoint")
    rewind_point = None
    needs_rewind = rewind_step > 0 and (level > 0 or (mid is not None and int(mid[0].step) >= rewind_step))
    if needs_rewind:
        try:
            rewind_point = rep.load_rewind(template)
        except checkpoints.CheckpointError as err:
            warn(f"{err}; the replicate restarts from level 0")
            rep.reset()
            return None
    if level == 0 and mid is None:
        return None
    resume = Resume(level, previous, previous_mask, rewind_point)
    if mid is not None:
        state, mask, record = mid
        resume = resume._replace(state=state, mask=mask, evaluations=tuple(record["evaluations"]))
    return resume
