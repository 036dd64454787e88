"""What a run is, as data: the config dataclasses (`config`), their checks (`checks`), the names a
config may use (`names`), the small text formats (`parse`: durations, level lists, N:M), the control
vocabulary (`controls`) and experiment files (`experiments`). No jax here (an import-linter contract
says so): the command line checks everything in this package before it imports jax."""
