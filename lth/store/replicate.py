"""The files of one replicate of a run (or of one of its control branches): records, metrics,
masks, checkpoints, and the manifest of file digests that lets a finished replicate be checked.

Layout (under ``replicate_XX/``):

    results.json                one record per finished level
    metrics.jsonl               every evaluation as it happens
    manifest.json               SHA-256 of every mask file, the rewind weights' digest, the numerics context,
                                the divergence that stopped the replicate (level, iteration, loss), if one did
    lock                        held by the process training this replicate
    masks/level_XX.npz          the mask of every level ({parameter path: bool array})
    masks/level_XX/step_N.npz   a mask that changes during training (gradual, SET, RigL), when it did
    checkpoints/rewind          the weights at the rewind step (k > 0)
    checkpoints/level_XX/final  the trained state, mask and record of a finished level
    checkpoints/level_XX/step_N the state inside a level, every `checkpoint_every`
    controls/<name>/            a control branch (the same layout, no checkpoints)
    instability/level_XX.json   instability records of a level (and its .png)
    tickets/level_XX.safetensors  exported tickets (`lth ticket export`)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth.spec.files import UNREADABLE_JSON
from lth.errors import LthError
from lth.store import checkpoints
from lth.store.io import npz_bytes, read_json_list, read_jsonl, write_atomic, write_json
from lth.store.lock import RunLock
from lth.store.records import record_problem

if TYPE_CHECKING:  # reading records and manifests needs no jax (`lth ls`): jax is imported by what loads arrays
    from lth.sparsity.masks import Mask
    from lth.training import TrainState


class DamagedFileError(LthError):
    """A file of a run that exists but cannot be read (truncated, corrupted, not what it should be)."""



class ReplicateDir:
    """The files of one replicate (one seed) of a run, or of one of its control branches.

    `writable=False` gives a reader: every method that writes does nothing (processes other than 0
    of a multi-process run read the same files, compute the same things, and leave writing to 0).
    """

    def __init__(self, path: Path, writable: bool = True, branch: bool = False):
        self.path = Path(path)
        self.writable = writable
        self.branch = branch  # a control branch: its records are of chosen levels, not 0, 1, 2, ...

    results_path = property(lambda self: self.path / "results.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    masks_dir = property(lambda self: self.path / "masks")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    rewind_path = property(lambda self: self.path / "checkpoints" / "rewind")
    controls_dir = property(lambda self: self.path / "controls")

    def level_dir(self, level: int) -> Path:
        return self.checkpoints_dir / f"level_{level:02d}"

    def mask_path(self, level: int) -> Path:
        return self.masks_dir / f"level_{level:02d}.npz"

    def mask_history_path(self, level: int, step: int) -> Path:
        """A changing mask (gradual, SET, RigL) after iteration `step` of level (or density) `level`."""
        return self.masks_dir / f"level_{level:02d}" / f"step_{step:07d}.npz"

    def instability_path(self, level: int, bn_state: str = "interpolate") -> Path:
        """Where `lth instability` keeps a level's records (a .png beside it); the records with
        BatchNorm statistics set otherwise than interpolated in a file of their own."""
        suffix = "" if bn_state == "interpolate" else f"_{bn_state}"
        return self.path / "instability" / f"level_{level:02d}{suffix}.json"

    def instability_records(self) -> list[dict[str, Any]]:
        """Every `lth instability` record of this replicate, each with its ``level`` (files in level
        order; a damaged file counts as empty: `lth instability` recomputes it)."""
        out = []
        for path in sorted((self.path / "instability").glob("level_*.json")):
            level = path.stem.split("_")[1]
            if level.isdigit():
                out += [{"level": int(level), **r} for r in read_json_list(path) if isinstance(r, dict)]
        return out

    def ticket_path(self, level: int) -> Path:
        """Where `lth ticket export` writes a level's ticket by default."""
        return self.path / "tickets" / f"level_{level:02d}.safetensors"

    def control(self, name: str) -> ReplicateDir:
        """The files of control branch `name` of this replicate (same layout, no checkpoints)."""
        return ReplicateDir(self.controls_dir / name, self.writable, branch=True)

    def control_names(self) -> list[str]:
        """The control branches on disk."""
        return sorted(p.name for p in self.controls_dir.glob("*") if p.is_dir())

    manifest_path = property(lambda self: self.path / "manifest.json")

    def lock(self) -> RunLock | contextlib.nullcontext:
        """The replicate's own lock (a worker process holds it while it trains the replicate)."""
        return RunLock(self.path / "lock") if self.writable else contextlib.nullcontext()

    def mkdir(self) -> None:
        if self.writable:
            self.path.mkdir(parents=True, exist_ok=True)

    # records, metrics, masks ---------------------------------------------------------------

    def read_results(self) -> list[dict[str, Any]]:
        """The finished levels' records ([] before the first); a one-line DamagedFileError if
        results.json exists but is not a list of level records 0, 1, 2, ... (a control branch's:
        of increasing levels)."""
        try:
            text = self.results_path.read_text()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as err:
            raise DamagedFileError(f"{self.results_path} cannot be read ({type(err).__name__})") from None
        try:
            records = json.loads(text)
        except UNREADABLE_JSON:
            records = None
        levels = [r.get("level") if isinstance(r, dict) else None for r in records] \
            if isinstance(records, list) else None
        if levels is None or not all(isinstance(level, int) for level in levels) or \
                levels != (sorted(set(levels)) if self.branch else list(range(len(levels)))):
            raise DamagedFileError(f"{self.results_path} is damaged (not the list of level records lth writes)")
        for record in records:  # numbers edited to NaN, Infinity, a string: damage, never a point to plot
            if (problem := record_problem(record)) is not None:
                raise DamagedFileError(f"{self.results_path} is damaged (level {record['level']}: {problem})")
        return records

    def write_results(self, records: list[dict[str, Any]]) -> None:
        if self.writable:
            write_json(self.results_path, records)

    def read_metrics(self, on_bad: Callable[[int, str], None] | None = None) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl ([] when there is none); damaged lines are skipped (`on_bad`)."""
        return read_jsonl(self.metrics_path, on_bad) if self.metrics_path.exists() else []

    def save_mask(self, level: int, mask: Mask, step: int | None = None) -> Path:
        """masks/level_XX.npz (with `step`: a changing mask's state after that iteration, its history),
        written atomically, its SHA-256 in the manifest (keyed by its path under masks/)."""
        path = self.mask_path(level) if step is None else self.mask_history_path(level, step)
        if self.writable:
            from lth.sparsity.masks import mask_to_arrays  # heavy (jax): only to write

            data = npz_bytes(mask_to_arrays(mask))
            write_atomic(path, data)
            key = path.relative_to(self.masks_dir).as_posix()
            self.update_manifest(masks={key: hashlib.sha256(data).hexdigest()})
        return path

    # the manifest --------------------------------------------------------------------------

    def _manifest(self) -> tuple[dict[str, Any], bool]:
        """(manifest.json as a dict, whether it exists but is not a JSON object), read once."""
        try:
            value = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {}, False
        except (OSError, UnicodeDecodeError, *UNREADABLE_JSON):
            return {}, True
        return (value, False) if isinstance(value, dict) else ({}, True)

    def read_manifest(self) -> dict[str, Any]:
        """manifest.json ({} when missing or damaged: everything in it can be recomputed or skipped)."""
        return self._manifest()[0]

    def manifest_damaged(self) -> bool:
        """Whether manifest.json exists but is not a JSON object: its digests and numerics are lost."""
        return self._manifest()[1]

    def manifest_lost(self, manifest: tuple[dict[str, Any], bool] | None = None) -> bool:
        """Whether the manifest is damaged, or was rebuilt after damage (``"rebuilt": true``): a file
        without a digest in it is then unverified, and the numerics the replicate ran with unknown.
        `manifest`: what `_manifest` read, if the caller has it."""
        value, damaged = manifest or self._manifest()
        return damaged or bool(value.get("rebuilt"))

    def update_manifest(self, masks: dict[str, str] | None = None, **fields: Any) -> None:
        """Merge mask digests and other fields (rewind digest, numerics context) into the manifest; a
        damaged one is started again, marked ``"rebuilt"`` (what it held is not trusted by default)."""
        if not self.writable:
            return
        manifest, damaged = self._manifest()
        manifest = {"rebuilt": True} if damaged else manifest
        manifest.setdefault("masks", {}).update(masks or {})
        manifest.update(fields)
        write_json(self.manifest_path, manifest)

    def record_mask_digest(self, level: int) -> None:
        """Record the SHA-256 of masks/level_XX.npz as it is (verified otherwise) in the manifest."""
        path = self.mask_path(level)
        self.update_manifest(masks={path.name: hashlib.sha256(path.read_bytes()).hexdigest()})

    def mask_file_ok(self, level: int) -> bool:
        """Whether masks/level_XX.npz exists and matches its digest in the manifest (if recorded; with
        no digest after the manifest was damaged: False, for the caller to verify it otherwise)."""
        path = self.mask_path(level)
        try:
            data = path.read_bytes()
        except OSError:
            return False
        manifest = self._manifest()
        want = manifest[0].get("masks", {}).get(path.name)
        if want is None:  # no digest: a manifest from before digests, or one lost to damage
            return not self.manifest_lost(manifest)
        return hashlib.sha256(data).hexdigest() == want

    # checkpoints ---------------------------------------------------------------------------

    def save_state(self, path: Path, state: TrainState, mask: Mask, record: dict[str, Any]) -> None:
        if self.writable:
            checkpoints.save(path, {"state": state, "mask": mask}, record)

    def save_level_step(self, level: int, state: TrainState, mask: Mask, evaluations: list[dict[str, float]]) -> None:
        """A mid-level checkpoint; older ones of the level are removed once it is written."""
        if not self.writable:
            return
        step = int(state.step)
        self.save_state(checkpoints.step_dir(self.level_dir(level), step), state, mask,
                        {"level": level, "step": step, "evaluations": evaluations})
        for older in checkpoints.list_steps(self.level_dir(level))[1:]:
            shutil.rmtree(checkpoints.step_dir(self.level_dir(level), older), ignore_errors=True)

    def save_level_final(self, level: int, state: TrainState, mask: Mask, record: dict[str, Any] | None = None
                         ) -> None:
        """The trained state and mask of a finished level, with its record (results.json can be
        rebuilt from these); the level's mid-level checkpoints are removed once it is written."""
        if not self.writable:
            return
        extra = {"record": record} if record is not None else {}
        self.save_state(self.final_path(level), state, mask, {"level": level, "step": int(state.step), **extra})
        for step in checkpoints.list_steps(self.level_dir(level)):
            shutil.rmtree(checkpoints.step_dir(self.level_dir(level), step), ignore_errors=True)

    def save_rewind(self, state: TrainState) -> None:
        """The weights at the rewind step; their digest also goes to the manifest, so that weights
        recomputed after damage can be checked bit for bit."""
        if self.writable:
            tree = {"params": state.params, "model_state": state.model_state}
            checkpoints.save(self.rewind_path, tree, {"step": int(state.step)})
            self.update_manifest(rewind_digest=checkpoints.tree_digest(tree))

    def load_final(self, level: int, template: TrainState, mask_template: Mask) -> tuple[TrainState, Mask]:
        """The trained state and mask of a finished level (CheckpointError if missing or damaged)."""
        state, mask, _ = self.load_state(self.level_dir(level) / "final", template, mask_template)
        return state, mask

    def final_path(self, level: int) -> Path:
        return self.level_dir(level) / "final"

    def load_rewind(self, template: TrainState) -> tuple[Any, Any]:
        """(params, model state) at the rewind step k > 0."""
        import jax  # heavy: only to load arrays
        import jax.numpy as jnp

        tree, _ = checkpoints.load(self.rewind_path, {"params": template.params, "model_state": template.model_state})
        return jax.tree.map(jnp.asarray, tree["params"]), jax.tree.map(jnp.asarray, tree["model_state"])

    def load_state(self, path: Path, template: TrainState, mask_template: Mask
                   ) -> tuple[TrainState, Mask, dict[str, Any]]:
        """(state, mask, record) of the checkpoint at `path` (CheckpointError if missing or damaged)."""
        import jax  # heavy: only to load arrays
        import jax.numpy as jnp

        tree, record = checkpoints.load(path, {"state": template, "mask": mask_template})
        state = jax.tree.map(jnp.asarray, tree["state"])
        mask = jax.tree.map(lambda m: None if m is None else jnp.asarray(m, bool), tree["mask"],
                            is_leaf=lambda x: x is None)
        return state, mask, record

    def truncate_metrics(self, level: int, step: int, warn: Callable[[str], None] | None = None) -> None:
        """Drop metrics.jsonl lines past the resume point (they will be recomputed, identically);
        a damaged line is dropped too, with a word to `warn`, and the lines after it kept."""

        def kept(r: dict[str, Any]) -> bool:
            same_level = r.get("level") == level
            return r.get("level", 0) < level or (same_level and "iteration" in r and r["iteration"] <= step)

        self.filter_metrics(kept, warn)

    def filter_metrics(self, keep: Callable[[dict[str, Any]], bool], warn: Callable[[str], None] | None = None
                       ) -> None:
        """Rewrite metrics.jsonl with the rows `keep` accepts (and without damaged lines, each
        reported to `warn`)."""
        if not self.writable or not self.metrics_path.exists():
            return

        def bad(number: int, text: str) -> None:
            if warn is not None:
                warn(f"{self.metrics_path} line {number} is damaged ({text[:40]!r}...): dropped, the lines after "
                     "it kept")

        rows = [r for r in self.read_metrics(bad) if keep(r)]
        write_atomic(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())

    def reset(self) -> None:
        """Forget everything of this replicate (a fresh start)."""
        if not self.writable:
            return
        for path in (self.results_path, self.metrics_path, self.manifest_path):
            path.unlink(missing_ok=True)
        for path in (self.masks_dir, self.checkpoints_dir):
            shutil.rmtree(path, ignore_errors=True)
