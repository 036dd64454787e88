"""`python -m lth ...`: the `lth` command, as `python -m lth.cli` runs it."""

import runpy

runpy.run_module("lth.cli", run_name="__main__", alter_sys=True)
