"""What a run is, as data: the config dataclasses (`config`), their checks (`checks`), the registries
of the extension points (`methods`: sparse-training methods; `controls`: control sources and
transforms; `catalog`: models and datasets), the names a config may use (`names`), the small text
formats (`parse`: durations, level lists, N:M) and experiment files (`experiments`). No jax here (an
import-linter contract says so): the command line checks everything in this package before it
imports jax."""
