"""Checks of a config that need no data and no jax: types, names, ranges, duration and N:M syntax.
`lth.lottery.setup.prepare` runs them first; the command line runs them before it imports jax, so
a bad config answers at once (one-line `ConfigError`s)."""

from __future__ import annotations

import re

from lth.spec.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, SparseConfig, check_types
from lth.errors import ConfigError, unknown_name
from lth.spec.names import (
    BN_STATES, DATA_ORDERS, DATASETS, DISTRIBUTIONS, FILESYSTEMS, GRANULARITIES, LAYOUTS, LR_SCHEDULES, METHODS,
    MODELS, OPTIMIZERS, PRUNING_SCHEDULES, PRUNING_STRATEGIES, RETRAINING, STRUCTURED, TEST_AT, UNIT_SCORES
)
from lth.spec.methods import DENSE_CHOICES, REGISTRY, SET_DROPS
from lth.spec.parse import parse_checkpoint_period, parse_duration, parse_nm


def validate_config(config: ExperimentConfig) -> None:
    """Checks that need no data: types, names, ranges, duration syntax."""
    check_types(config)
    if config.levels < 0:
        raise ConfigError(f"levels must be >= 0, got {config.levels}: level 0 trains dense, each further level prunes")
    validate_spec(config.pruning)
    if config.optimizer.name not in OPTIMIZERS:
        raise unknown_name("optimizer", config.optimizer.name, OPTIMIZERS)
    if config.optimizer.schedule not in LR_SCHEDULES:
        raise unknown_name("schedule", config.optimizer.schedule, LR_SCHEDULES)
    _check_optimizer(config.optimizer)
    if config.training.batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {config.training.batch_size}")
    if config.retraining not in RETRAINING:
        raise unknown_name("retraining", config.retraining, RETRAINING)
    _check_particles(config)
    check_seeds(config.seed)
    if config.data_order not in DATA_ORDERS:
        raise unknown_name("data_order", config.data_order, DATA_ORDERS)
    _check_data(config.data)
    _check_scoring(config.pruning)
    check_model_name(config.model, config.init)
    check_dataset_name(config.data.name)
    validate_method(config)
    _check_test_at(config)
    check_granularity(config)
    for text in (config.training.length, config.training.eval_every, config.rewind, config.optimizer.warmup,
                 *config.optimizer.milestones, *filter(None, [config.pruning.oneshot_early_at])):
        parse_duration(text)


def _check_test_at(config: ExperimentConfig) -> None:
    """`training.test_at`: a known protocol; "validation_minimum" only where the mask is fixed during
    training (a changing mask early-stops under its final mask only, whose first iteration is known
    only once trained: its minima there need not be minima of the level)."""
    if config.training.test_at not in TEST_AT:
        raise unknown_name("training.test_at", config.training.test_at, TEST_AT)
    if config.training.test_at != TEST_AT[0] and REGISTRY[config.method].dynamic:
        raise ConfigError(f"training.test_at={config.training.test_at} needs a mask fixed during training; the "
                          f"method {config.method} changes it: use training.test_at={TEST_AT[0]}")


def _check_particles(config: ExperimentConfig) -> None:
    """SWAMP's particle count: >= 1, and more than one only for IMP (the other methods train one network)."""
    if config.particles < 1:
        raise ConfigError(f"particles must be >= 1, got {config.particles}: 1 trains plain IMP, N > 1 averages "
                          "N particles per level (SWAMP)")
    if config.particles > 1 and config.method != "imp":
        raise ConfigError(f"particles={config.particles} (SWAMP) is a retraining of IMP: the method {config.method} "
                          "trains one network; use --method imp or particles=1")


def _check_data(data: DataConfig) -> None:
    if not 0.0 <= data.random_labels_fraction <= 1.0:
        raise ConfigError(f"data.random_labels_fraction must be in [0, 1], got {data.random_labels_fraction}")
    if not 0.0 < data.subsample_fraction <= 1.0:
        raise ConfigError(f"data.subsample_fraction must be in (0, 1], got {data.subsample_fraction}")
    if data.validation_size is not None and data.validation_size < 0:
        raise ConfigError(f"data.validation_size must be >= 0 (0: no validation set), got {data.validation_size}")


def _check_scoring(spec: PruningConfig) -> None:
    if spec.score_samples_per_class < 1:
        raise ConfigError(f"pruning.score_samples_per_class must be >= 1, got {spec.score_samples_per_class}")
    if spec.grasp_temperature <= 0:
        raise ConfigError(f"pruning.grasp_temperature must be > 0, got {spec.grasp_temperature}")


def _check_optimizer(opt: OptimizerConfig) -> None:
    if opt.learning_rate <= 0:
        raise ConfigError(f"learning rate must be > 0, got {opt.learning_rate}")
    for name, value, low, high in (("momentum", opt.momentum, 0.0, 1.0), ("b1", opt.b1, 0.0, 1.0),
                                   ("b2", opt.b2, 0.0, 1.0)):
        if not low <= value < high:
            raise ConfigError(f"optimizer.{name} must be in [{low:g}, {high:g}), got {value}")
    for name, value in (("weight_decay", opt.weight_decay), ("eps", opt.eps), ("gamma", opt.gamma)):
        if value < 0 or (name != "weight_decay" and value == 0):
            raise ConfigError(f"optimizer.{name} must be {'>= 0' if name == 'weight_decay' else '> 0'}, got {value}")


def validate_spec(spec: PruningConfig) -> None:
    """Raise ConfigError for an unknown strategy or an out-of-range fraction."""
    if spec.strategy not in PRUNING_STRATEGIES:
        raise unknown_name("pruning strategy", spec.strategy, PRUNING_STRATEGIES)
    if spec.schedule not in PRUNING_SCHEDULES:
        raise unknown_name("pruning schedule", spec.schedule, PRUNING_SCHEDULES)
    if not 0.0 < spec.fraction < 1.0:
        raise ConfigError(f"prune fraction must be in (0, 1), got {spec.fraction}: e.g. 0.2 prunes 20% per level")
    for pattern, fraction in spec.layer_fractions:
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(
                f"per-layer prune fraction for {pattern!r} must be in [0, 1), got {fraction}"
            )
    if spec.granularity not in GRANULARITIES:
        raise unknown_name("pruning granularity", spec.granularity, GRANULARITIES)
    if spec.unit_score not in UNIT_SCORES:
        raise unknown_name("pruning unit_score", spec.unit_score, UNIT_SCORES)
    if spec.granularity in STRUCTURED and spec.strategy != "layerwise":
        raise ConfigError(f"pruning.granularity {spec.granularity} prunes units layer by layer (unit norms of "
                          f"different layers are not comparable): use pruning.strategy=layerwise, not {spec.strategy}")
    for where, patterns in (("prunable", spec.prunable), ("exclude", spec.exclude),
                            ("layer_fractions", [p for p, _ in spec.layer_fractions])):
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ConfigError(f"pruning.{where} has an invalid regex {pattern!r} ({err}): "
                                  r"write a Python regex over parameter paths, e.g. '.*kernel'") from None


def validate_method(config: ExperimentConfig) -> None:
    """One-line ConfigErrors for impossible settings that need no data (see also `check_schedule`)."""
    method, s = config.method, config.sparse
    if method not in METHODS:
        raise unknown_name("method", method, METHODS)
    if s.distribution not in ("auto", *DISTRIBUTIONS):
        raise unknown_name("layer distribution", s.distribution, ("auto", *DISTRIBUTIONS))
    if s.dense not in DENSE_CHOICES:
        raise unknown_name("sparse.dense choice", s.dense, DENSE_CHOICES)
    if s.set_drop not in SET_DROPS:
        raise unknown_name("SET drop schedule (sparse.set_drop)", s.set_drop, SET_DROPS)
    structure = parse_nm(s.structure)
    if s.dt < 1:
        raise ConfigError(f"the mask update period dt must be at least 1 iteration, got {s.dt}: "
                          "e.g. --set sparse.dt=100")
    if not 0.0 < s.t_end <= 1.0:
        raise ConfigError(f"T_end {s.t_end} is past the end of training (or not after its start): give a fraction "
                          "of training in (0, 1], e.g. --set sparse.t_end=0.75")
    for name, value in (("alpha", s.alpha), ("z", s.z)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"drop fraction {name} must be in (0, 1), got {value}: e.g. 0.3")
    if not 0.0 <= s.s_i < 1.0 or s.t0 < 0 or s.n < 0:
        raise ConfigError(f"gradual pruning needs 0 <= s_i < 1, t0 >= 0 and n >= 0, got s_i={s.s_i}, t0={s.t0}, "
                          f"n={s.n}")
    _check_earlybird(s)
    for d in s.densities:
        if not (isinstance(d, (int, float)) and 0.0 < d <= 1.0):
            raise ConfigError(f"target density must be in (0, 1], got {d!r}: e.g. --densities 0.2,0.05,0.02")
    repeated = sorted({d for d in s.densities if s.densities.count(d) > 1})
    if repeated:
        raise ConfigError(f"--densities repeats {', '.join(f'{d:g}' for d in repeated)}: each density is trained "
                          "once per replicate (more seeds: --replicates)")
    if method == "imp":
        if s.densities:
            others = ", ".join(name for name in METHODS if name != "imp")
            raise ConfigError(f"--densities are for the other methods ({others}): IMP's densities "
                              "are its levels (--levels, --prune-fraction)")
        return
    if structure is not None:
        if not REGISTRY[method].structured:
            structured = ", ".join(name for name, m in REGISTRY.items() if m.structured)
            raise ConfigError(f"{method} with an N:M structure is not supported (it chooses single weights): "
                              f"use N:M with {structured}")
        if s.densities:
            raise ConfigError(f"the N:M structure {s.structure} fixes the density: drop --densities")
    elif not s.densities:
        raise ConfigError(f"method {method} needs target densities, e.g. --densities 0.2,0.05,0.02")


def _check_earlybird(s: SparseConfig) -> None:
    if not 0.0 < s.eb_epsilon <= 1.0:
        raise ConfigError(f"sparse.eb_epsilon must be in (0, 1] (a fraction of mask entries), got {s.eb_epsilon}: "
                          "e.g. --set sparse.eb_epsilon=0.1")
    if s.eb_window < 2:
        raise ConfigError(f"sparse.eb_window must be at least 2 masks (the newest is compared with the others), "
                          f"got {s.eb_window}: e.g. --set sparse.eb_window=5")
    try:
        every = parse_duration(s.eb_every)[0]
    except ConfigError as err:
        raise ConfigError(f"sparse.eb_every: {err}") from None
    if every < 1:
        raise ConfigError(f"sparse.eb_every must be at least 1 iteration or epoch, got {s.eb_every!r}: "
                          "e.g. --set sparse.eb_every=1ep")


def check_granularity(config: ExperimentConfig) -> None:
    """One-line ConfigErrors for a structured granularity with what it cannot combine with: another
    method than IMP (the sparse methods' drop-and-grow is per weight) or an N:M structure."""
    granularity = config.pruning.granularity
    if granularity not in STRUCTURED:
        return
    if config.method != "imp":
        raise ConfigError(f"pruning.granularity {granularity} is IMP's (method imp): the sparse method {config.method} "
                          "prunes and grows single weights; use pruning.granularity=weight with it")
    if config.sparse.structure:
        raise ConfigError(f"pruning.granularity {granularity} removes whole units: it does not combine with the N:M "
                          f"structure {config.sparse.structure}; drop one of them")


def check_model_name(name: str, init: str = "default") -> None:
    """Raise ConfigError, listing the registered names, if `name` is not one of them, or if `init`
    is not an initialisation convention the model has."""
    if name not in MODELS:
        raise unknown_name("model", name, sorted(MODELS))
    if init not in MODELS[name]:
        raise ConfigError(f"model {name} has no {init!r} initialisation: choose one of {', '.join(MODELS[name])}")


def check_dataset_name(name: str) -> None:
    """Raise ConfigError, listing the registered names, if `name` is not one of them."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, sorted(DATASETS))


SEED_LIMIT = 2**32  # jax's PRNG keys take a 32-bit seed: 2**32 would train the network of seed 0


def check_seeds(seed: int, replicates: int = 1) -> None:
    """A ConfigError unless seeds `seed` .. `seed + replicates - 1` are all seeds the PRNG takes as
    themselves (0 <= s < 2**32): a larger one aliases a smaller one's network or overflows."""
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    last = seed + replicates - 1
    if last >= SEED_LIMIT:
        what = f"seed {seed}" if replicates == 1 else f"seeds {seed}-{last} (seed + replicates - 1)"
        raise ConfigError(f"{what} must be in 0..{SEED_LIMIT - 1}: the PRNG takes 32-bit seeds, so a larger one "
                          f"would train the network of seed {last % SEED_LIMIT}; pick a smaller --seed")


def check_run_options(replicates: int, workers: int | None = None, layout: str | None = None,
                      seed: int = 0) -> None:
    """One-line ConfigErrors for `lth run`'s execution options that need neither data nor jax: the
    replicate and worker counts, every replicate's seed and the layout's name (the checkpoint
    period is parsed by the plan)."""
    if replicates < 1:
        raise ConfigError(f"replicates must be >= 1, got {replicates}")
    check_seeds(seed, replicates)
    check_workers(workers)
    if layout is not None and layout not in LAYOUTS:
        raise unknown_name("replicate layout", layout, LAYOUTS)


def check_workers(workers: int | None) -> None:
    """A ConfigError unless `workers` (worker processes asked for) is None or >= 1."""
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")


def check_bn_state(bn_state: str) -> None:
    """A ConfigError unless `bn_state` names a way to treat BatchNorm statistics along a path."""
    if bn_state not in BN_STATES:
        raise unknown_name("bn_state", bn_state, BN_STATES)


HOST_PORT = re.compile(r"(?:ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")  # a Ray address


def check_address(address: str | None) -> None:
    """A one-line ConfigError for an address that is none of: auto, HOST:PORT, ray://HOST:PORT."""
    if address is None or address == "auto" or HOST_PORT.fullmatch(address):
        return
    raise ConfigError(f"invalid Ray address {address!r}: write auto, HOST:PORT (a head started with "
                      "`ray start --head`) or ray://HOST:PORT (Ray Client)")


def check_sweep_options(address: str | None = None, cpus: float = 1.0, gpus: float | None = None, retries: int = 2,
                        filesystem: str = "auto", checkpoint_every: str = "10min",
                        local_cpus: int | None = None) -> None:
    """One-line ConfigErrors for `lth sweep`'s options that need neither a cluster nor jax."""
    check_address(address)
    if not cpus > 0 or (gpus is not None and gpus < 0):
        raise ConfigError(f"cpus per run must be > 0 and gpus per run >= 0, got {cpus} and {gpus}")
    if retries < 0:
        raise ConfigError(f"max retries must be >= 0, got {retries}")
    if filesystem not in FILESYSTEMS:
        raise unknown_name("filesystem mode", filesystem, FILESYSTEMS)
    if local_cpus is not None and local_cpus < 1:
        raise ConfigError(f"local cpus must be >= 1, got {local_cpus}")
    parse_checkpoint_period(checkpoint_every, steps_per_epoch=1)  # the syntax (the steps need the data)
