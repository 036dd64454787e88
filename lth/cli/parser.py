"""The `lth` argument parser: one sub-command per job, parsed before jax is imported (`lth.cli`
runs them). Bad arguments: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NoReturn

from lth.errors import closest

from lth.spec.catalog import datasets_help
from lth.spec.controls import controls_help
from lth.spec.methods import methods_help
from lth.spec.names import FILESYSTEMS, PRUNING_STRATEGIES, RETRAINING, TEST_AT, WANDB_MODES


class _Parser(argparse.ArgumentParser):
    """One line for bad arguments, exit 2 (argparse prints the usage too), with a did-you-mean for a
    misspelt option or choice; unknown options are reported by the (sub-)command they were given to."""

    def error(self, message: str) -> NoReturn:
        close = _suggestion(self, message)
        hint = f": did you mean {close}?" if close else ""
        self.exit(2, f"lth: error: {message}{hint} (see `{self.prog} --help`)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            _command_parser(self, parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _command_parser(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub-)command parser the parsed arguments went to (`lth ticket export` -> export)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(parsed, action.dest, None) in action.choices:
            return _command_parser(action.choices[getattr(parsed, action.dest)], parsed)
    return parser


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str | None:
    """The option (of `parser`) or choice an argparse error's unknown word most likely misspells."""
    unknown = re.match(r"unrecognized arguments: (-[^\s=]+)", message)
    if unknown:
        return closest(unknown.group(1), [o for a in parser._actions for o in a.option_strings if o.startswith("--")])
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    return closest(choice.group(1), re.findall(r"'([^']*)'", choice.group(2))) if choice else None


def build_parser() -> argparse.ArgumentParser:
    """The `lth` argument parser: one sub-command per job."""
    parser = _Parser(prog="lth", description="Lottery-ticket experiments in JAX.")
    parser.add_argument("--version", action="version", version=f"lth {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub.add_parser("run", help="run (or finish) a lottery experiment"))
    ls = sub.add_parser("ls", help="list the runs under the run root")
    ls.add_argument("--check", action="store_true",
                    help="verify every finished level's files (checkpoint digests, masks) and repair what can be")
    _add_roots(ls)
    _add_control(sub.add_parser("control", help="controls of a finished run: reinit, random pruning, shuffle, "
                                                "one-shot ...", epilog=controls_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter))
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


def installed_version() -> str:
    """The version of the installed lth package (its metadata), or a note that it is not installed."""
    try:
        return metadata.version("lth")
    except metadata.PackageNotFoundError:
        return "(not installed: run from a source tree)"


RUN_HELP = ("the run: a directory, its name, its config hash or the hash's first 4+ characters, or an experiment "
            "name with one run (see `lth ls`)")


def positive_int(text: str) -> int:
    """An argparse type: a positive integer (else argparse's one-line error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_ints(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive integers ("1,64,1024")."""
    values = tuple(positive_int(part.strip()) for part in text.split(","))
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"lists a value twice: {text!r}")
    return values


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
    run.add_argument("--strategy", choices=PRUNING_STRATEGIES,
                     help="one threshold per layer, one for all, or one per module (kernel and bias together)")
    run.add_argument("--rewind", help="rewind point: 0it (init), 500it, 2ep ...")
    run.add_argument("--retraining", choices=RETRAINING,
                     help="weight rewinding (default), learning-rate rewinding or fine-tuning (Renda et al. 2020)")
    run.add_argument("--seed", type=int)
    length = run.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="training length of every level, in epochs")
    length.add_argument("--iterations", type=int, help="training length of every level, in iterations")
    run.add_argument("--batch-size", type=int)
    run.add_argument("--lr", type=float, help="learning rate")
    run.add_argument("--eval-every", help="evaluation period, e.g. 100it or 1ep")
    run.add_argument("--test-at", choices=TEST_AT,
                     help="when test is evaluated: every_evaluation (default) or validation_minimum (only where the "
                     "validation loss reaches a new minimum, and at the end: the same early-stop records)")
    run.add_argument("--dataset", help=f"dataset: {datasets_help()}")
    run.add_argument("--mask", help="start level 0 from this saved mask (runs/<run>/masks/level_XX.npz)")
    run.add_argument("--ticket", help="start level 0 from this ticket file (`lth ticket export`): its mask and weights")
    run.add_argument("--method", help=f"{methods_help()} (default: imp; settings: --set sparse.FIELD=VALUE, e.g. "
                                      "sparse.distribution=uniform)")
    run.add_argument("--densities", help="target densities of a non-IMP method, one record each: e.g. 0.2,0.05,0.02")
    run.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="any config field by dotted name, e.g. --set optimizer.name=sgd (repeatable; every field "
                          "with its value: --dry-run). A field an option above also sets must not get two values")
    run.add_argument("--dry-run", action="store_true",
                     help="check everything that needs no data or model, print the run directory and every config "
                          "field with its value, write nothing")
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
    run.add_argument("--wandb", choices=WANDB_MODES,
                     help="W&B mode (default: $WANDB_MODE, else offline; offline files go inside the run directory)")
    _add_roots(run)
    run.add_argument("--data-parallel", action="store_true",
                     help="shard each batch over all local devices (jax.sharding; the batch size must divide)")
    run.add_argument("--no-controls", action="store_true", help="skip the controls the experiment file lists")
    run.add_argument("--allow-mixed-numerics", action="store_true",
                     help="resume a replicate under another numerics context (cores, devices, versions) than it "
                          "started with; its numbers then mix two contexts")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bars or table (the run directory, result paths and W&B sync command "
                          "are still printed)")
    run.add_argument("--no-compile-cache", action="store_true",
                     help="compile every program in this process (default: load them from $LTH_CACHE, "
                          "~/.cache/lth/compile, where an earlier process compiled them)")


def _add_control(control: argparse.ArgumentParser) -> None:
    control.add_argument("run", help=RUN_HELP)
    control.add_argument("controls", help="comma-separated, e.g. reinit,random_layerwise,snip+shuffle (see below)")
    control.add_argument("--levels", help="levels of the main line, e.g. 0-3,7,12 (default: all)")
    control.add_argument("--wandb", choices=WANDB_MODES, help="W&B mode (default: offline)")
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
    inst.add_argument("--wandb", choices=WANDB_MODES,
                      help="W&B mode (default: offline): the run's summary run shows the barriers measured")
    inst.add_argument("--no-progress", action="store_true")


def _add_sweep(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("sweep", help="a name from experiments/sweeps/ or a .py file defining get_sweep(variant)")
    sweep.add_argument("--variant", default="default", help="the sweep's variant, e.g. smoke")
    sweep.add_argument("--address", help="join a cluster: auto, HOST:PORT or ray://HOST:PORT (default: a local one)")
    sweep.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs Ray reserves per cell (default 1)")
    sweep.add_argument("--gpus-per-run", type=float, help="GPUs per cell (default 1 if the cluster has GPUs, else 0)")
    sweep.add_argument("--max-retries", type=int, default=2, help="retries of a cell that raises or dies (default 2)")
    sweep.add_argument("--filesystem", choices=FILESYSTEMS, default="auto",
                       help="local: train on the workers' disks, ship run directories back (default: auto-detect)")
    sweep.add_argument("--worker-dir", help="the run root on each worker with --filesystem local (default: <tmp>)")
    sweep.add_argument("--checkpoint-every", default="10min", help="checkpoint period inside a level (as lth run)")
    sweep.add_argument("--wandb", choices=WANDB_MODES, help="W&B mode (default: offline)")
    sweep.add_argument("--dry-run", action="store_true", help="list the cells and their run directories, start nothing")
    _add_roots(sweep)
    sweep.add_argument("--no-progress", action="store_true", help="no progress lines (the summary is printed)")


def _add_ticket(ticket: argparse.ArgumentParser) -> None:
    actions = ticket.add_subparsers(dest="action", required=True, parser_class=_Parser)
    export = actions.add_parser("export", help="write a finished level of a run as a .safetensors ticket")
    export.add_argument("run", help=RUN_HELP)
    export.add_argument("--level", type=int, required=True)
    export.add_argument("--replicate", type=int, default=0)
    export.add_argument("--out", help="output file (default: <run>/replicate_XX/tickets/level_XX.safetensors)")
    export.add_argument("--trained", action="store_true", help="also store the level's trained weights")
    export.add_argument("--wandb", choices=WANDB_MODES,
                        help="log the file as a version of the run's W&B `ticket` artifact (default: $WANDB_MODE, "
                             "else offline: a reference to the file with its checksum; online: uploaded)")
    _add_roots(export)
    compact = actions.add_parser("compact", help="a ticket's compact network: the smaller dense network computing the "
                                                 "same function, as a .safetensors file NumPy can run")
    compact.add_argument("file", help="a .safetensors ticket (its trained weights if it has them, else its start "
                                      "weights)")
    compact.add_argument("--align", type=positive_int, default=1,
                         help="pad every hidden width to a multiple of N with zero units (default 1: no padding)")
    compact.add_argument("--out", help="output file (default: <ticket stem>.compact.safetensors beside the ticket)")
    bench = actions.add_parser("bench", help="a ticket's forward timed on this device: masked dense, compact, BCOO, "
                                             "scipy CSR; params, MACs, bytes")
    bench.add_argument("file", help="a .safetensors ticket (its trained weights if it has them, else its start "
                                    "weights)")
    bench.add_argument("--batch", type=positive_ints, default=(1, 64, 1024),
                       help="batch sizes, comma-separated (default 1,64,1024)")
    bench.add_argument("--json", help="also write the measurements to this JSON file")
    bench.add_argument("--budget", type=float, default=0.5,
                       help="about how many seconds of timed calls per variant and batch (default 0.5)")
    inspect = actions.add_parser("inspect", help="a ticket file's origin, accuracies and per-layer density")
    inspect.add_argument("file", help="a .safetensors ticket")
