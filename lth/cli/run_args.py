"""`lth run`'s arguments -> its config and plan (`lth.plans.run`), and the report of `lth run --dry-run`:
every config field with its value, the run directory and what is in it, nothing written."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lth.errors import ConfigError
from lth.plans.run import RunPlan, controls_beyond_note, plan_run
from lth.spec.config import ExperimentConfig, replace
from lth.spec.experiments import Experiment, load_experiment
from lth.spec.fields import flat_fields, value_text
from lth.spec.parse import parse_assignment, parse_densities
from lth.store import describe_run, run_name
from lth.store.queries import divergence_text
from lth.store.run_dir import check_run_root

FLAG_FIELDS = {  # the option's dest -> the config field it sets
    "levels": "levels",
    "prune_fraction": "pruning.fraction",
    "strategy": "pruning.strategy",
    "rewind": "rewind",
    "retraining": "retraining",
    "seed": "seed",
    "batch_size": "training.batch_size",
    "lr": "optimizer.learning_rate",
    "eval_every": "training.eval_every",
    "test_at": "training.test_at",
    "dataset": "data.name",
    "method": "method",
    "epochs": "training.length",
    "iterations": "training.length",
    "densities": "sparse.densities",
}


def _flag_value(dest: str, value: Any) -> Any:
    if dest == "epochs":
        return f"{value}ep"
    if dest == "iterations":
        return f"{value}it"
    return parse_densities(value) if dest == "densities" else value


def config_changes(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """{config field: (the option that sets it, value)} of the options and every `--set FIELD=VALUE`. A
    field set to two different values (`--batch-size 64 --set training.batch_size=128`, or two
    --set) is a one-line ConfigError: nothing wins silently."""
    given = [(f"--{dest.replace('_', '-')} {getattr(args, dest)}", field, _flag_value(dest, getattr(args, dest)))
             for dest, field in FLAG_FIELDS.items() if getattr(args, dest, None) is not None]
    given += [(f"--set {item}", *parse_assignment(item)) for item in args.set]
    changes: dict[str, tuple[str, Any]] = {}
    for option, field, value in given:
        if field in changes and changes[field][1] != value:
            raise ConfigError(f"{changes[field][0]} and {option} both set {field}: give one of them")
        changes.setdefault(field, (option, value))
    return changes


def config_from_args(args: argparse.Namespace, experiment: Experiment | None = None) -> ExperimentConfig:
    """The experiment's config with the command line's changes (`--levels`, `--set FIELD=VALUE`, ...)."""
    config = (experiment or load_experiment(args.experiment, args.variant)).config
    changes = {field: value for field, (_, value) in config_changes(args).items()}
    return replace(config, **changes) if changes else config


def run_plan_from_args(args: argparse.Namespace, experiment: Experiment | None = None) -> RunPlan:
    """The checked plan of `lth run` (the experiment file imported once; nothing heavy imported)."""
    experiment = experiment or load_experiment(args.experiment, args.variant)
    return plan_run(config_from_args(args, experiment), runs_root=args.runs, data_root=args.data_dir,
                    mask=args.mask, ticket=args.ticket, replicates=args.replicates,
                    checkpoint_every=args.checkpoint_every, wandb=args.wandb, progress=not args.no_progress,
                    controls=() if args.no_controls else experiment.controls,
                    control_levels=experiment.control_levels, data_parallel=args.data_parallel,
                    workers=args.workers, layout=args.layout, allow_mixed_numerics=args.allow_mixed_numerics,
                    show_paths=True)


def dry_run(args: argparse.Namespace, plan: RunPlan, experiment: Experiment) -> None:
    """Print what `lth run` would do with these arguments (checked as a run checks them, the run root
    included): the run directory and what it holds, replicates and controls, and every config field
    with its value (those the command line changed marked with the option and the experiment's value).
    Writes nothing."""
    root = check_run_root(plan.runs_root)
    print(f"dry run of `lth run {args.experiment} --variant {args.variant}`: options and config checked (what needs "
          "the data or the model is checked when the run starts), nothing written")
    print(f"run directory: {_directory_text(root, plan)}")
    seeds = f"seeds {plan.config.seed}-{plan.config.seed + plan.replicates - 1}" if plan.replicates > 1 else \
        f"seed {plan.config.seed}"
    print(f"replicates: {plan.replicates} ({seeds})")
    if plan.controls and plan.control_levels:
        levels = ",".join(map(str, plan.control_levels))
        print(f"controls: {', '.join(c.name for c in plan.controls)} at main-line levels {levels}")
    print("config (every field; change one with --set FIELD=VALUE):")
    original = flat_fields(experiment.config)
    changed = config_changes(args)
    fields = {k: value_text(v) for k, v in flat_fields(plan.config).items()}
    width = max(len(f"{k}={v}") for k, v in fields.items()) + 2
    for field, text in fields.items():
        note = ""
        if field in changed:
            note = f"# {changed[field][0].split(' ')[0]} (experiment: {value_text(original.get(field))})"
        print(f"  {f'{field}={text}':<{width}}{note}".rstrip())


def _directory_text(root: Any, plan: RunPlan) -> str:
    """The run directory and what it holds: new, finished, or how far its replicates got."""
    if plan.mask is not None or plan.ticket is not None or plan.config.initial_mask is not None:
        return f"{root / plan.config.name}-<hash> (the hash includes the starting mask's digest: read when it starts)"
    path = root / run_name(plan.config)
    if not path.is_dir():
        return f"{path} (new)"
    row = describe_run(path)
    done = row["replicate_levels"][: plan.replicates]
    if len(done) == plan.replicates and all(n == row["levels_planned"] for n in done):
        return f"{path} (exists: every level done)"
    levels = ", ".join(f"r{r}: {n if n is not None else 'damaged'}/{row['levels_planned']}" for r, n in enumerate(done))
    stopped = [f"r{r} {divergence_text(d)}" for r, d in row["diverged"].items() if r < plan.replicates]
    then = stopped[0] if stopped else "`lth run` resumes it"
    return f"{path} (exists; levels done {levels or 'none'}: {then})"


def note_controls_beyond(plan: RunPlan, experiment: Experiment) -> None:
    """One note on stderr when the experiment's control levels lie past the run's last level (a
    shorter `--levels`): those controls are not trained, and the user hears so."""
    note = controls_beyond_note([c.name for c in plan.controls], experiment.control_levels, [plan.config.levels])
    if note:
        print(f"lth: note: {note}", file=sys.stderr)

