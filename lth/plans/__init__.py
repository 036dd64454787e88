"""One typed plan per command (run, control, instability, ticket, sweep), built and checked once
from the command line's arguments or a library call's, before anything heavy is imported or anything
is written: durations, level lists, control names and N:M structures arrive parsed. No jax here (an
import-linter contract says so)."""
