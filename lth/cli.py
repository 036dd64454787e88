"""`lth run | ls | control | instability | ticket | plot | experiments | sweep` -- the command line.

Bad input: one line on stderr, exit code 2. Arguments are parsed before jax is imported: each
command imports what it runs (jax, the runner) only once its arguments are known.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from lth.config import replace
from lth.errors import LthError
from lth.experiments import experiment_names, load_experiment
from lth.parse import parse_assignment


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"lth: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `lth` argument parser: one sub-command per job."""
    parser = _Parser(prog="lth", description="Lottery-ticket experiments in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub.add_parser("run", help="run (or finish) a lottery experiment"))
    ls = sub.add_parser("ls", help="list the runs under the run root")
    ls.add_argument("--check", action="store_true",
                    help="verify every finished level's files (checkpoint digests, masks) and repair what can be")
    _add_roots(ls)
    _add_control(sub.add_parser("control", help="controls of a finished run: reinit, random pruning, shuffle, "
                                                "one-shot ..."))
    _add_instability(sub.add_parser("instability", help="linear mode connectivity: error barrier per level and "
                                                        "rewind step"))
    _add_ticket(sub.add_parser("ticket", help="tickets as portable files: export a level of a run, inspect a file"))
    plot = sub.add_parser("plot", help="accuracy and early-stop iteration vs. sparsity of several runs, as PNG")
    plot.add_argument("run", nargs="+", help="run directories, or run names / hashes under the run root")
    plot.add_argument("--out", default="comparison.png", help="output PNG (default: comparison.png)")
    _add_roots(plot, data=False)
    sub.add_parser("experiments", help="list the experiment files")
    _add_sweep(sub.add_parser("sweep", help="every cell of a sweep file as a Ray task (docs/cluster.md)"))
    return parser


RUN_HELP = "the run: a directory, a name or a config hash (see `lth ls`)"


def _add_roots(parser: argparse.ArgumentParser, data: bool = True) -> None:
    parser.add_argument("--runs", help="run root (default: $LTH_RUNS or ./runs)")
    if data:
        parser.add_argument("--data-dir", help="dataset cache directory (default: $LTH_DATA or ~/.cache/lth)")


def _add_run(run: argparse.ArgumentParser) -> None:
    run.add_argument("experiment", help="a name from experiments/ (e.g. lenet300_mnist) or a path to a .py file")
    run.add_argument("--variant", default="default", help="the experiment's variant, e.g. quick or smoke")
    run.add_argument("--levels", type=int, help="pruning levels after the dense level 0")
    run.add_argument("--prune-fraction", type=float,
                     help="fraction of the remaining weights pruned per level, in (0, 1)")
    run.add_argument("--strategy", choices=("layerwise", "global", "modulewise"),
                     help="one threshold per layer, one for all, or one per module (kernel and bias together)")
    run.add_argument("--rewind", help="rewind point: 0it (init), 500it, 2ep ...")
    run.add_argument("--retraining", choices=("rewind", "lr_rewind", "finetune"),
                     help="weight rewinding (default), learning-rate rewinding or fine-tuning (Renda et al. 2020)")
    run.add_argument("--seed", type=int)
    length = run.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="training length of every level, in epochs")
    length.add_argument("--iterations", type=int, help="training length of every level, in iterations")
    run.add_argument("--batch-size", type=int)
    run.add_argument("--lr", type=float, help="learning rate")
    run.add_argument("--eval-every", help="evaluation period, e.g. 100it or 1ep")
    run.add_argument("--dataset", help="dataset name (e.g. mnist5k, mnist1d)")
    run.add_argument("--mask", help="start level 0 from this saved mask (runs/<run>/masks/level_XX.npz)")
    run.add_argument("--ticket", help="start level 0 from this ticket file (`lth ticket export`): its mask and weights")
    run.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="any config field by dotted name, e.g. --set optimizer.name=sgd (repeatable)")
    _add_run_execution(run)


def _add_run_execution(run: argparse.ArgumentParser) -> None:
    """How a run executes (replicates, layout, checkpoints, W&B, roots), not what it computes."""
    run.add_argument("--replicates", type=int, default=1, help="independent seeds (seed, seed+1, ...)")
    run.add_argument("--layout", metavar="LAYOUT",
                     help="how replicates run: sequential, workers (processes pinned to cores; CPU default), "
                          "vmap (one vmapped program) or devices (vmapped, split over the local devices; "
                          "accelerator default)")
    run.add_argument("--workers", type=int,
                     help="with --layout workers: how many processes (default: one per core and replicate)")
    run.add_argument("--checkpoint-every", default="10min",
                     help="checkpoint period inside a level: wall time (10min, the default; 90s) or training "
                          "(5ep, 2000it); 0ep = level ends only")
    run.add_argument("--wandb", choices=("online", "offline", "disabled"),
                     help="W&B mode (default: $WANDB_MODE, else offline; offline files go inside the run directory)")
    _add_roots(run)
    run.add_argument("--data-parallel", action="store_true",
                     help="shard each batch over all local devices (jax.sharding; the batch size must divide)")
    run.add_argument("--no-controls", action="store_true", help="skip the controls the experiment file lists")
    run.add_argument("--allow-mixed-numerics", action="store_true",
                     help="resume a replicate under another numerics context (cores, devices, versions) than it "
                          "started with; its numbers then mix two contexts")
    run.add_argument("--no-progress", action="store_true", help="no progress bars or table")


def _add_control(control: argparse.ArgumentParser) -> None:
    control.add_argument("run", help=RUN_HELP)
    control.add_argument("controls", help="comma-separated, e.g. reinit,random_layerwise,random_global,shuffle,"
                                          "invert,oneshot,snip,snip+shuffle,synflow+reinit")
    control.add_argument("--levels", default="0-999", help="levels of the main line, e.g. 0-3,7,12 (default: all)")
    control.add_argument("--wandb", choices=("online", "offline", "disabled"), help="W&B mode (default: offline)")
    _add_roots(control)
    control.add_argument("--no-progress", action="store_true")


def _add_instability(inst: argparse.ArgumentParser) -> None:
    inst.add_argument("run", help=RUN_HELP)
    inst.add_argument("--rewind", required=True, help="rewind steps k, e.g. 0,100,500it,2ep")
    inst.add_argument("--levels", default="0", help="levels: 0 = the dense network, L = the level's ticket (e.g. 0,3)")
    inst.add_argument("--replicate", type=int, default=0)
    inst.add_argument("--bn-state", default="interpolate",
                      help="BatchNorm statistics along the path: interpolate (default), reestimate (on a fixed "
                           "training subset at every alpha), a, average")
    _add_roots(inst)
    inst.add_argument("--no-progress", action="store_true")


def _add_sweep(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("sweep", help="a name from experiments/sweeps/ or a .py file defining get_sweep(variant)")
    sweep.add_argument("--variant", default="default", help="the sweep's variant, e.g. smoke")
    sweep.add_argument("--address", help="join a cluster: auto, HOST:PORT or ray://HOST:PORT (default: a local one)")
    sweep.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs Ray reserves per cell (default 1)")
    sweep.add_argument("--gpus-per-run", type=float, help="GPUs per cell (default 1 if the cluster has GPUs, else 0)")
    sweep.add_argument("--max-retries", type=int, default=2, help="retries of a cell that raises or dies (default 2)")
    sweep.add_argument("--filesystem", choices=("auto", "shared", "local"), default="auto",
                       help="local: train on the workers' disks, ship run directories back (default: auto-detect)")
    sweep.add_argument("--worker-dir", help="the run root on each worker with --filesystem local (default: <tmp>)")
    sweep.add_argument("--checkpoint-every", default="10min", help="checkpoint period inside a level (as lth run)")
    sweep.add_argument("--wandb", choices=("online", "offline", "disabled"), help="W&B mode (default: offline)")
    sweep.add_argument("--dry-run", action="store_true", help="list the cells and their run directories, start nothing")
    _add_roots(sweep)
    sweep.add_argument("--no-progress", action="store_true", help="no progress lines (the summary is printed)")


def config_from_args(args: argparse.Namespace):
    """The experiment's config with the command line's changes (`--levels`, `--set FIELD=VALUE`, ...)."""
    config = load_experiment(args.experiment, args.variant).config
    changes: dict[str, Any] = {}
    simple = {
        "levels": "levels",
        "prune_fraction": "pruning.fraction",
        "strategy": "pruning.strategy",
        "rewind": "rewind",
        "retraining": "retraining",
        "seed": "seed",
        "batch_size": "training.batch_size",
        "lr": "optimizer.learning_rate",
        "eval_every": "training.eval_every",
        "dataset": "data.name",
    }
    for arg, field in simple.items():
        if getattr(args, arg) is not None:
            changes[field] = getattr(args, arg)
    if args.epochs is not None:
        changes["training.length"] = f"{args.epochs}ep"
    if args.iterations is not None:
        changes["training.length"] = f"{args.iterations}it"
    for item in args.set:
        field, value = parse_assignment(item)
        changes[field] = value
    return replace(config, **changes) if changes else config


def cmd_run(args: argparse.Namespace) -> int:
    from lth.training.processes import initialize_distributed  # heavy (jax): after the arguments parse

    initialize_distributed()  # a multi-process launch (SLURM, or JAX_* variables): before any jax computation
    from lth.runs.lottery import run_lottery  # heavy (jax, the runner): after the arguments parse

    config = config_from_args(args)
    experiment = load_experiment(args.experiment, args.variant)
    controls = () if args.no_controls else experiment.controls
    run_lottery(config, runs_root=args.runs, data_root=args.data_dir, mask=args.mask, ticket=args.ticket,
                replicates=args.replicates,
                checkpoint_every=args.checkpoint_every, wandb=args.wandb, progress=not args.no_progress,
                controls=controls, control_levels=experiment.control_levels, data_parallel=args.data_parallel,
                workers=args.workers, layout=args.layout, allow_mixed_numerics=args.allow_mixed_numerics)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from lth.store import list_runs, runs_root  # heavy (jax, via the store's checkpoints types)

    rows = list_runs(args.runs)
    if not rows:
        print(f"no runs under {runs_root(args.runs)}")
        return 0
    if args.check:
        from lth.runs.check import check_runs  # heavy (builds each run's model): only with --check

        check_runs(rows, data_root=args.data_dir)
        rows = list_runs(args.runs)
    print(f"{'experiment':<22} {'hash':<8} {'levels':>7} {'reps':>4}  {'best ticket (% left, acc)':<26} path")
    for row in rows:
        best = row["best_ticket"]
        best_text = f"{best['percent_remaining']:6.2f}%  {100 * best['early_stop_test_accuracy']:.2f}%" if best else "-"
        planned = row["levels_planned"] if row["levels_planned"] is not None else "?"
        levels = f"{row['levels_done']}/{planned}"
        print(f"{row['name']:<22} {row['hash']:<8} {levels:>7} {row['replicates']:>4}  {best_text:<26} {row['path']}")
        unfinished = [f"r{r}: {n if n is not None else 'damaged'}" for r, n in enumerate(row["replicate_levels"])
                      if n != row["levels_planned"]]
        if unfinished and row["levels_planned"] is not None:
            print(f"{'':<22} levels done per replicate: {', '.join(unfinished)} (unfinished: rerun `lth run`)")
        for problem in row["problems"]:
            print(f"{'':<22} damaged: {problem}")
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    from lth.runs.controls import run_controls  # heavy (jax, the runner): after the arguments parse
    from lth.store import read_config, resolve_run  # heavy (jax): after the arguments parse

    levels = args.levels
    if levels == "0-999":  # all the levels the run has
        levels = f"0-{read_config(resolve_run(args.run, args.runs))['levels']}"
    run_controls(args.run, args.controls, levels, runs_root=args.runs, data_root=args.data_dir, wandb=args.wandb,
                 progress=not args.no_progress)
    return 0


def cmd_instability(args: argparse.Namespace) -> int:
    from lth.runs.instability import run_instability  # heavy (jax, the runner): after the arguments parse

    results = run_instability(args.run, args.rewind, args.levels, replicate=args.replicate, runs_root=args.runs,
                              data_root=args.data_dir, progress=not args.no_progress, bn_state=args.bn_state)
    print(f"{'level':>5} {'k':>7} {'barrier (points)':>17} {'stable':>7}")
    for level, records in results.items():
        for r in records:
            print(f"{level:>5} {r['rewind_step']:>7} {100 * r['barrier']:>17.2f} {str(r['stable']):>7}")
    return 0


def _add_ticket(ticket: argparse.ArgumentParser) -> None:
    actions = ticket.add_subparsers(dest="action", required=True, parser_class=_Parser)
    export = actions.add_parser("export", help="write a finished level of a run as a .safetensors ticket")
    export.add_argument("run", help=RUN_HELP)
    export.add_argument("--level", type=int, required=True)
    export.add_argument("--replicate", type=int, default=0)
    export.add_argument("--out", help="output file (default: <run>/replicate_XX/tickets/level_XX.safetensors)")
    export.add_argument("--trained", action="store_true", help="also store the level's trained weights")
    _add_roots(export)
    inspect = actions.add_parser("inspect", help="a ticket file's origin, accuracies and per-layer density")
    inspect.add_argument("file", help="a .safetensors ticket")


def cmd_ticket(args: argparse.Namespace) -> int:
    import lth.tickets  # heavy (jax): after the arguments parse

    if args.action == "inspect":
        print(lth.tickets.describe(args.file))
        return 0
    info = lth.tickets.export_from_run(args.run, args.level, replicate=args.replicate, out=args.out, root=args.runs,
                                       trained=args.trained, data_root=args.data_dir)
    print(f"ticket: {info['path']} ({100 * info['density']:.2f} % of the weights, {info['bytes']:,} bytes, "
          f"sha256 {info['digest'][:12]}...)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from lth.analysis.plots import plot_runs  # heavy (jax, matplotlib): after the arguments parse

    path = plot_runs(args.run, args.out, root=args.runs)
    print(f"plot: {path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from lth.runs.sweep_report import sweep_command  # heavy (jax, the runner; Ray later): after parsing

    options = {k: getattr(args, k) for k in ("address", "cpus_per_run", "gpus_per_run", "max_retries", "filesystem",
                                             "worker_dir", "checkpoint_every", "wandb")}
    return sweep_command(args.sweep, args.variant, dry_run=args.dry_run, progress=not args.no_progress,
                         runs_root=args.runs, data_root=args.data_dir, **options)


def cmd_experiments(args: argparse.Namespace) -> int:
    for name in experiment_names():
        print(name)
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a run as Ctrl-C does: one line, locks released, workers stopped


def _os_error(err: OSError) -> str:
    what = err.strerror or type(err).__name__
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"no room to write{where} ({what}): free some space, or use --runs / --data-dir elsewhere; " \
               "finished levels are kept"
    return f"{what}{where}: check the path and its permissions"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "ls": cmd_ls, "control": cmd_control, "instability": cmd_instability,
               "ticket": cmd_ticket, "plot": cmd_plot, "experiments": cmd_experiments,
               "sweep": cmd_sweep}[args.command]
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return handler(args)
    except LthError as err:
        print(f"lth: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a path that cannot be written: one line, what is done is kept
        print(f"lth: error: {_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lth: interrupted; finished levels are kept in the run directory", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    os.environ.setdefault("WANDB_SILENT", "true")
    sys.exit(main())
