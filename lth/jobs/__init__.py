"""The jobs: one module per command, each a short `run_x` over the layers below: `run_lottery`
(`lottery`), `run_method` (`methods`), `run_controls` (`controls`), `run_instability` (`instability`),
`check_runs` (`check`, `lth ls --check`)."""

from lth.jobs.controls import run_controls
from lth.jobs.instability import run_instability
from lth.jobs.lottery import run_lottery

__all__ = ["run_controls", "run_instability", "run_lottery"]
