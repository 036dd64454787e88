"""Find and load experiment files: `experiments/NAME.py` defining `get_config(variant)`."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from lth.spec.config import (
    DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig, check_types, replace
)
from lth.errors import ConfigError, unknown_name
from lth.spec.user_code import call_user_function, import_user_file, names_constant

REPO_EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
# a non-editable install carries the repository's experiments/ as lth/experiments/ (setup.py)
INSTALLED_EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def shipped_experiments() -> Path:
    """The experiment files that come with lth: lth/experiments/ of an installed package, else the
    experiments/ of the repository the package is in (a clone, or an editable install)."""
    return INSTALLED_EXPERIMENTS if INSTALLED_EXPERIMENTS.is_dir() else REPO_EXPERIMENTS


def experiment_dirs() -> list[Path]:
    """Where names are looked up: ./experiments first, then the experiments that come with lth."""
    dirs = [Path.cwd() / "experiments", shipped_experiments()]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d.resolve() not in [x.resolve() for x in dirs[:i]]]


def experiment_names() -> list[str]:
    """The experiment names of every directory in `experiment_dirs()`."""
    return file_names(experiment_dirs())


def file_names(dirs: list[Path]) -> list[str]:
    """The names (stems) of the .py files in `dirs`, files starting with "_" left out."""
    return sorted({p.stem for d in dirs for p in d.glob("*.py") if not p.stem.startswith("_")})


def find_file(name_or_path: str, dirs: list[Path], kind: str, defines: str) -> Path:
    """A path to a .py file, or the name of one in `dirs`; else a one-line ConfigError naming the
    choices (`kind`: "experiment", "sweep"; `defines`: what such a file must define)."""
    path = Path(name_or_path)
    if path.suffix == ".py":
        if not path.is_file():
            raise ConfigError(f"{kind} file {name_or_path!r} not found")
        return path
    for d in dirs:
        candidate = d / f"{name_or_path}.py"
        if candidate.is_file():
            return candidate
    raise unknown_name(kind, name_or_path, file_names(dirs), then=f", or give a path to a .py file defining {defines}")


def find_experiment(name_or_path: str) -> Path:
    """A path to an experiment file, or the name of one in an experiments directory."""
    return find_file(name_or_path, experiment_dirs(), "experiment", "get_config(variant)")


def sweep_dirs() -> list[Path]:
    """Where sweep names are looked up: experiments/sweeps/ of ./ and of the repository."""
    return [d / "sweeps" for d in experiment_dirs() if (d / "sweeps").is_dir()]


def find_sweep(name_or_path: str) -> Path:
    """A sweep file: a path to a .py file, or a name in an experiments/sweeps/ directory."""
    return find_file(name_or_path, sweep_dirs(), "sweep", "get_sweep(variant)")


class Experiment(NamedTuple):
    """An experiment file's config, and the controls it asks for (module attributes CONTROLS and
    CONTROL_LEVELS), which `lth run` trains after the main line."""

    config: ExperimentConfig
    controls: tuple[str, ...]  # CONTROLS may map variant -> controls (a variant not named: none)
    control_levels: str | None  # e.g. "3,6,9"; None: every level (CONTROL_LEVELS may map variant -> levels)


def load_experiment(name_or_path: str, variant: str = "default") -> Experiment:
    """Import the experiment file: its `get_config(variant)`, CONTROLS and CONTROL_LEVELS."""
    module, path = _import(name_or_path)
    controls = names_constant(module, "CONTROLS", (), path, per_variant=True)
    controls = controls.get(variant, ()) if isinstance(controls, dict) else controls
    levels = getattr(module, "CONTROL_LEVELS", None)
    if isinstance(levels, dict):
        levels = levels.get(variant)
    return Experiment(_config(module, path, variant), controls, levels)


def load_config(name_or_path: str, variant: str = "default") -> ExperimentConfig:
    """Import the experiment file and call its `get_config(variant)`."""
    module, path = _import(name_or_path)
    return _config(module, path, variant)


def experiment_variants(name_or_path: str) -> tuple[str, ...]:
    """The variants an experiment file offers (its VARIANTS; ("default",) without one)."""
    module, path = _import(name_or_path)
    return names_constant(module, "VARIANTS", ("default",), path)


def _import(name_or_path: str):
    path = find_experiment(name_or_path)
    return import_user_file(path, "experiment"), path


def _config(module, path: Path, variant: str) -> ExperimentConfig:
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"experiment file {str(path)!r} defines no function get_config(variant)")
    variants = names_constant(module, "VARIANTS", ("default",), path)
    if variant not in variants:
        raise unknown_name("variant", variant, variants, where=f"of experiment {path.stem}")
    config = call_user_function(get_config, variant, path)
    if not isinstance(config, ExperimentConfig):
        raise ConfigError(f"get_config() of {str(path)!r} must return an lth.spec.config.ExperimentConfig, "
                          f"not {type(config).__name__}")
    check_types(config)
    return config


def smoke_variant(config: ExperimentConfig, dataset: str, batch_size: int | None = None) -> ExperimentConfig:
    """The `smoke` variant of an experiment: its model on synthetic data of the right shape, 2 levels
    of 4 iterations and one evaluation each -- a wiring check that the test suite runs for every
    experiment (seconds; ~2 minutes for VGG-16, whose convolutions are slow on CPU: a slow test)."""
    changes = {"data.name": dataset, "data.validation_size": None, "training.length": "4it",
               "training.eval_every": "4it", "levels": 2, "rewind": "0it"}
    if batch_size is not None:
        changes["training.batch_size"] = batch_size
    return replace(config, **changes)


def frankle_carbin_conv(depth: int, learning_rate: float, iterations: int, conv_fraction: float) -> ExperimentConfig:
    """Conv-2/4/6 on CIFAR-10 as in Frankle & Carbin (2019): Adam, batch 60, evaluation every 100
    iterations, layerwise pruning of `conv_fraction` of the convs, 20 % of the FC layers, 10 % of
    the output layer per level, rewind to init, no augmentation."""
    return ExperimentConfig(
        name=f"conv{depth}_cifar10",
        model=f"conv{depth}",
        data=DataConfig(name="cifar10", augmentation="none"),
        training=TrainingConfig(batch_size=60, length=f"{iterations}it", eval_every="100it"),
        optimizer=OptimizerConfig(name="adam", learning_rate=learning_rate),
        pruning=PruningConfig(
            strategy="layerwise",
            fraction=0.2,
            layer_fractions=((r"conv\d+/kernel", conv_fraction), (r"output/kernel", 0.1)),
        ),
        levels=20,
        rewind="0it",
    )
