"""Saves off the critical path (lth.store.writer): the writer itself, and a replicate trained with it
(the next level trains while the last one's save is written; a failed save is one error and its
level is not done; the files equal those of synchronous saving)."""

import errno
import json
import threading

import numpy as np
import pytest
from helpers import tiny_config

from lth.lottery import prepare
from lth.spec.parse import parse_checkpoint_period
from lth.execution.progress import LevelProgress
from lth.execution.replicates import run_replicate
from lth.execution.tracking import Tracker
from lth.store import ReplicateDir, checkpoints
from lth.store.writer import BackgroundWriter, host_copy

# the writer ---------------------------------------------------------------------------------


def test_jobs_run_in_order_on_another_thread_while_the_caller_goes_on():
    gate, ran = threading.Event(), []
    with BackgroundWriter() as writer:
        writer.submit(lambda: (gate.wait(10), ran.append(("first", threading.current_thread().name))))
        writer.submit(lambda: ran.append(("second", threading.current_thread().name)))
        assert ran == []  # submit returned while the first job still waits
        gate.set()
        writer.wait()
        assert [name for name, _ in ran] == ["first", "second"]
        assert all(thread != threading.current_thread().name for _, thread in ran)


def test_a_failed_job_is_raised_once_at_the_next_sync_point_and_drops_the_jobs_after_it():
    ran = []

    def fail():
        raise OSError(errno.ENOSPC, "No space left on device", "/x")

    writer = BackgroundWriter()
    writer.submit(lambda: ran.append(1))
    writer.submit(fail)
    writer.submit(lambda: ran.append(3))
    with pytest.raises(OSError) as caught:
        writer.wait()
    assert caught.value.errno == errno.ENOSPC and ran == [1]
    writer.submit(lambda: ran.append(4))  # after the failure: dropped, the error not raised again
    writer.close()
    assert ran == [1]


def test_close_waits_for_pending_jobs_and_a_late_error_does_not_hide_the_one_ending_the_run():
    done, late = [], []

    def slow_fail():
        done.append("saved")
        raise OSError(errno.EFBIG, "File too large", "/y")

    with pytest.raises(KeyboardInterrupt):
        with BackgroundWriter(on_late_error=late.append) as writer:
            writer.submit(slow_fail)
            raise KeyboardInterrupt
    assert done == ["saved"] and len(late) == 1 and "File too large" in late[0]


def test_without_a_thread_jobs_run_at_once_and_raise_there():
    ran = []
    writer = BackgroundWriter(background=False)
    writer.submit(lambda: ran.append(threading.current_thread().name))
    assert ran == [threading.current_thread().name]
    with pytest.raises(ZeroDivisionError):
        writer.submit(lambda: 1 / 0)


def test_host_copy_owns_its_memory():
    import jax.numpy as jnp

    tree = {"w": jnp.arange(6.0).reshape(2, 3), "none": None, "step": jnp.int32(7)}
    host = host_copy(tree)
    assert host["none"] is None and int(host["step"]) == 7
    assert isinstance(host["w"], np.ndarray) and host["w"].flags.owndata
    np.testing.assert_array_equal(host["w"], np.arange(6.0).reshape(2, 3))


# a replicate trained with it ----------------------------------------------------------------

CONFIG = tiny_config(**{"rewind": "13it"})  # 3 levels of 35 iterations, a rewind checkpoint at 13


def train(rep: ReplicateDir, trackers=(), background: bool | None = True) -> list[dict]:
    setup = prepare(CONFIG)
    every = parse_checkpoint_period("1ep", setup.trainer.steps_per_epoch)
    reporter = LevelProgress(CONFIG.levels, setup.total_steps, enabled=False)
    return run_replicate(setup, rep, None, 0, every, reporter, list(trackers), background_saves=background)


class SlowDisk(ReplicateDir):
    """Level 0's final checkpoint takes until level 1 has trained a chunk (or 10 s)."""

    def __init__(self, path):
        super().__init__(path)
        self.saving = threading.Event()  # level 0's final save is in progress
        self.chunk_trained = threading.Event()

    def save_state(self, path, state, mask, record):
        if path == self.final_path(0):
            self.saving.set()
            self.chunk_trained.wait(10)
            self.saving.clear()
        super().save_state(path, state, mask, record)


class Watch(Tracker):
    """What was on disk when level 1's first chunk had trained."""

    def __init__(self, rep: SlowDisk):
        self.rep, self.seen = rep, None

    def log_evaluations(self, replicate, level, evaluations):
        if level == 1 and self.seen is None:
            # the writer thread may not have taken level 0's save off its queue yet (a loaded machine): give it
            # until then; a synchronous save has already ended here, so the wait runs out and the check fails
            self.rep.saving.wait(10)
            self.seen = {"saving level 0": self.rep.saving.is_set(), "level 0 final": self.rep.final_path(0).exists(),
                         "records": len(self.rep.read_results())}
            self.rep.chunk_trained.set()


def test_the_next_level_trains_while_the_level_end_save_is_written(tmp_path):
    rep = SlowDisk(tmp_path / "replicate_00")
    watch = Watch(rep)
    records = train(rep, [watch])
    # level 1 trained a chunk while level 0's checkpoint was still being written, and level 0 was
    # not yet listed as done (synchronous saving: the chunk comes only after the save and the record)
    assert watch.seen == {"saving level 0": True, "level 0 final": False, "records": 0}
    assert [r["level"] for r in records] == [0, 1, 2] and len(rep.read_results()) == 3


class FullDisk(ReplicateDir):
    """The disk fills up when level 1's final checkpoint is written."""

    def save_state(self, path, state, mask, record):
        if path == self.final_path(1):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        super().save_state(path, state, mask, record)


class Levels(Tracker):
    def __init__(self):
        self.started = []

    def level_start(self, replicate, level, *args, **kwargs):
        self.started.append(level)


def test_a_failed_background_save_is_the_same_error_and_its_level_is_not_done(tmp_path):
    reference = tmp_path / "reference" / "replicate_00"
    train(ReplicateDir(reference), background=False)

    path = tmp_path / "full" / "replicate_00"
    with pytest.raises(OSError) as caught:
        train(FullDisk(path))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename.endswith("level_01/final")
    rep = ReplicateDir(path)
    assert [r["level"] for r in rep.read_results()] == [0]  # level 1 is not marked done
    assert not rep.mask_path(1).exists() and not rep.final_path(1).exists()
    assert not list(path.rglob("*orbax-checkpoint-tmp*"))

    levels = Levels()  # with room again: level 0 is kept, level 1 trained again, the same bytes
    train(rep, [levels])
    assert levels.started == [1, 2]
    assert rep.results_path.read_bytes() == ReplicateDir(reference).results_path.read_bytes()


def _files(rep: ReplicateDir) -> dict[str, object]:
    """results.json, manifest.json (mask digests, rewind digest, numerics), the mask files, and the
    array digest recorded in every checkpoint."""
    setup = prepare(CONFIG)
    from lth.lottery import init_params, initial_mask

    params0, model_state0 = init_params(setup)
    template, mask0 = setup.trainer.init_state(params0, model_state0), initial_mask(setup, params0, None)
    files = {p.relative_to(rep.path).as_posix(): p.read_bytes()
             for p in [rep.results_path, rep.manifest_path, *sorted(rep.masks_dir.rglob("*.npz"))]}
    for level in range(CONFIG.levels + 1):
        tree, record = checkpoints.load(rep.final_path(level), {"state": template, "mask": mask0})
        files[f"level {level}"] = (checkpoints.tree_digest(tree), record)
    files["rewind"] = checkpoints.tree_digest(
        checkpoints.load(rep.rewind_path, {"params": params0, "model_state": model_state0})[0])
    return files


def test_background_saves_write_the_same_files_as_synchronous_ones(tmp_path):
    sync, background = ReplicateDir(tmp_path / "sync"), ReplicateDir(tmp_path / "background")
    train(sync, background=False)
    train(background, background=True)
    assert _files(background) == _files(sync)
    rows = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in rep.metrics_path.read_text().splitlines()] for rep in (sync, background)]
    assert rows[0] == rows[1]
    assert not list(background.checkpoints_dir.glob("level_*/step_*"))  # mid-level ones removed at level ends
