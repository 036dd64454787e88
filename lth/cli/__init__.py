"""The command line: `lth.cli.parser` builds the argument parser (choices from `lth.spec`), `lth.cli.main`
turns parsed arguments into a plan (`lth.plans`) and hands it to its job (`lth.jobs`)."""

from lth.cli.main import main

__all__ = ["main"]
