"""The runner: the pure drivers of `lth.lottery` wired to the run store, W&B and the terminal through
one per-replicate hook (`lth.runs.recorder.Recorder`): `run_lottery`, `run_controls`,
`run_instability`; replicate layouts, worker processes, tracking and progress."""

from lth.runs.controls import run_controls
from lth.runs.instability import run_instability
from lth.runs.lottery import run_lottery

__all__ = ["run_controls", "run_instability", "run_lottery"]
