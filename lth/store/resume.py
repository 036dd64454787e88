"""Where an interrupted replicate continues, and what of a replicate's files can be trusted.

Nothing finished is thrown away without a word: a damaged results.json is rebuilt from the level
checkpoints (each holds its level's record); a damaged checkpoint is reported in one line and its
level recomputed from the previous good one; a damaged rewind checkpoint is reported as such
(`Resume.rewind_damaged`), for the runner to recompute it from the seed and check it against its
recorded digest; a damaged mask file is rewritten from its level's checkpoint.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from lth.lottery.levels import Resume
from lth.sparsity.masks import Mask, mask_to_arrays
from lth.store import checkpoints
from lth.store.replicate import DamagedFileError, ReplicateDir
from lth.training import TrainState

Warn = Callable[[str], None]


def recover_records(rep: ReplicateDir, template: TrainState, mask_template: Mask, warn: Warn) -> list[dict[str, Any]]:
    """The replicate's finished records: results.json, or, when it is damaged, the records kept in
    the finished levels' checkpoints (written back to results.json, with a one-line warning). A
    one-line DamagedFileError when they cannot be rebuilt (checkpoints of an older lth)."""
    try:
        return rep.read_results()
    except DamagedFileError as err:
        records = []
        for level in itertools.count():
            try:
                _, _, saved = rep.load_state(rep.final_path(level), template, mask_template)
            except checkpoints.CheckpointError:
                break
            if "record" not in saved:
                raise DamagedFileError(f"{err}, and the level checkpoints hold no records to rebuild it from (an "
                                       f"older lth wrote them): restore the file, or delete {rep.path} to retrain "
                                       "this replicate") from None
            records.append(saved["record"])
        warn(f"{err}; rebuilt it from the checkpoints of levels 0-{len(records) - 1}" if records else
             f"{err}; no level checkpoint is readable, the replicate starts again")
        rep.write_results(records)
        return records


def find_resume(rep: ReplicateDir, template: TrainState, mask_template: Mask, rewind_step: int,
                warn: Warn) -> Resume | None:
    """The `Resume` point of replicate `rep`, or None to start from scratch (see the module doc)."""
    records = recover_records(rep, template, mask_template, warn)
    previous = previous_mask = None
    while records:
        level = len(records) - 1
        try:
            previous, previous_mask, _ = rep.load_state(rep.final_path(level), template, mask_template)
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
    rewind_point, rewind_damaged = None, False
    needs_rewind = rewind_step > 0 and (level > 0 or (mid is not None and int(mid[0].step) >= rewind_step))
    if needs_rewind:
        try:
            rewind_point = rep.load_rewind(template)
        except checkpoints.CheckpointError as err:
            warn(f"{err}; the rewind weights will be recomputed from the seed")
            rewind_damaged = True
    if level == 0 and mid is None:
        return None
    resume = Resume(level, previous, previous_mask, rewind_point, rewind_damaged=rewind_damaged)
    if mid is not None:
        state, mask, record = mid
        resume = resume._replace(state=state, mask=mask, evaluations=tuple(record["evaluations"]))
    return resume


def check_finished(rep: ReplicateDir, template: TrainState, mask_template: Mask, warn: Warn,
                   full: bool = False) -> list[dict[str, Any]]:
    """The records of `rep` whose files are sound. Cheap by default (mask files against their
    digests, checkpoints present); `full` also loads every level checkpoint (its digest) and compares
    its mask with the file. A damaged mask file is rewritten from its checkpoint; from the first level
    that cannot be repaired on, records are dropped (one warning) so that those levels are recomputed."""
    warn_damaged_manifest(rep, warn)
    records = recover_records(rep, template, mask_template, warn)
    for level in range(len(records)):
        problem = _level_problem(rep, level, template, mask_template, full, warn)
        if problem is not None:
            warn(f"{problem}; levels {level}-{len(records) - 1} of {rep.path.name} will be recomputed")
            records = records[:level]
            rep.write_results(records)
            break
    return records


def _level_problem(rep: ReplicateDir, level: int, template: TrainState, mask_template: Mask, full: bool,
                   warn: Warn) -> str | None:
    """What is wrong with a finished level's files that cannot be repaired, or None."""
    if not rep.final_path(level).is_dir():
        return f"the checkpoint of level {level} ({rep.final_path(level)}) is missing"
    mask_ok = rep.mask_file_ok(level)
    if mask_ok and not full:
        return None
    try:
        _, mask, _ = rep.load_state(rep.final_path(level), template, mask_template)
    except checkpoints.CheckpointError as err:
        return str(err)
    if mask_ok and full:
        mask_ok = _same_mask_file(rep, level, mask)
    if not mask_ok and rep.manifest_lost() and _same_mask_file(rep, level, mask):
        rep.record_mask_digest(level)  # sound: only its digest was lost with the manifest
        return None
    if not mask_ok:  # the checkpoint's copy of the mask is sound: restore the file from it
        rep.save_mask(level, mask)
        warn(f"{rep.mask_path(level)} was damaged or missing; restored from the level's checkpoint")
    return None


def _same_mask_file(rep: ReplicateDir, level: int, mask: Mask) -> bool:
    try:
        with np.load(rep.mask_path(level), allow_pickle=False) as f:
            saved = {k: f[k] for k in f.files}
    except Exception:  # zipfile / OS errors of a damaged file
        return False
    want = mask_to_arrays(mask)
    return saved.keys() == want.keys() and all(np.array_equal(saved[k], want[k]) for k in want)


def method_level_problem(rep: ReplicateDir, level: int) -> str | None:
    """What a method run (static, SNIP, SET, RigL, gradual, Early-Bird: no level checkpoints) keeps of
    a finished density that does not verify, or None: its mask file and its mask history against their
    digests in the manifest. Reads only: a verification never changes a record."""
    if not rep.mask_file_ok(level):
        return f"{rep.mask_path(level)} is missing or does not match its digest in the manifest"
    history = f"{rep.mask_path(level).stem}/"
    for key, digest in sorted(rep.read_manifest().get("masks", {}).items()):
        if key.startswith(history):
            path = rep.masks_dir / key
            try:
                same = hashlib.sha256(path.read_bytes()).hexdigest() == digest
            except OSError:
                same = False
            if not same:
                return f"{path} is missing or does not match its digest in the manifest"
    return None


def warn_damaged_manifest(rep: ReplicateDir, warn: Warn) -> None:
    """One warning if the replicate's manifest.json is damaged: what is lost and how it is rebuilt."""
    if rep.manifest_damaged():
        warn(f"{rep.manifest_path} is damaged: mask files without their digest are verified against the level "
             "checkpoints where the run keeps them (and their digests recorded again), reported where it does not; "
             "the numerics the replicate ran with are unknown")
