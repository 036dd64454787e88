"""`lth run | ls | control | instability | ticket | plot | experiments | sweep` -- the command line.

Bad input: one line on stderr, exit code 2. Arguments are parsed before jax is imported: each
command imports what it runs (jax, the runner) only once its arguments are known.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from lth.cli import process_exit
from lth.cli.listing import print_runs
from lth.cli.parser import build_parser
from lth.cli.run_args import dry_run, note_controls_beyond, run_plan_from_args
from lth.errors import ConfigError, LthError, os_error_text
from lth.plans.control import plan_controls, plan_instability
from lth.plans.sweep import plan_sweep_options
from lth.plans.wandb_mode import checked_wandb_mode
from lth.spec.experiments import experiment_names, find_sweep, load_experiment, shipped_experiments
from lth.store import resolve_run
from lth.store.io import write_json
from lth.store.run_dir import check_output_file
from lth.store.queries import check_finished_level, check_ticket_file, compact_output


def cmd_run(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.experiment, args.variant)
    plan = run_plan_from_args(args, experiment)  # bad names, values, options and files answer before jax is imported
    note_controls_beyond(plan, experiment)
    if args.dry_run:
        dry_run(args, plan, experiment)
        return 0
    if args.no_compile_cache:
        os.environ["LTH_CACHE"] = "off"  # worker processes inherit it
    from lth.training.processes import initialize_distributed  # heavy (jax): after the arguments parse

    initialize_distributed()  # a multi-process launch (SLURM, or JAX_* variables): before any jax computation
    from lth.jobs.lottery import run_plan  # heavy (jax, the runner): after the arguments parse

    run_plan(plan)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from lth.store import list_runs, runs_root

    rows = list_runs(args.runs)
    if not rows:
        print(f"no runs under {runs_root(args.runs)}")
        return 0
    if args.check:
        from lth.jobs.check import check_runs  # heavy (builds each run's model): only with --check

        check_runs(rows, data_root=args.data_dir)
        rows = list_runs(args.runs)
    print_runs(rows, runs_root(args.runs))
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    plan = plan_controls(args.run, args.controls, args.levels, runs_root=args.runs, wandb=args.wandb,
                         data_root=args.data_dir, progress=not args.no_progress, show_paths=True)  # before jax
    from lth.jobs.controls import run_control_plan  # heavy (jax, the runner): after the arguments parse

    run_control_plan(plan)
    return 0


def cmd_instability(args: argparse.Namespace) -> int:
    plan = plan_instability(args.run, args.rewind, args.levels, replicate=args.replicate, runs_root=args.runs,
                            bn_state=args.bn_state, data_root=args.data_dir, progress=not args.no_progress,
                            wandb=args.wandb)
    from lth.jobs.instability import run_instability_plan  # heavy (jax, the runner): after the arguments parse

    results = run_instability_plan(plan)
    print(f"{'level':>5} {'k':>7} {'barrier (points)':>17} {'stable':>7}")
    for level, records in results.items():
        for r in records:
            print(f"{level:>5} {r['rewind_step']:>7} {100 * r['barrier']:>17.2f} {str(r['stable']):>7}")
    return 0


def cmd_ticket(args: argparse.Namespace) -> int:
    if args.action == "compact":
        return cmd_compact(args)
    if args.action == "bench":
        return cmd_bench(args)
    if args.action == "inspect":
        check_ticket_file(args.file)  # before jax; what is in it is checked when it is loaded
    else:
        check_finished_level(resolve_run(args.run, args.runs), args.level, args.replicate)
        if args.out is not None:
            check_output_file(args.out)  # before jax: nothing is written for a bad path
        wandb_mode = checked_wandb_mode(args.wandb)
    import lth.tickets  # heavy (jax): after the arguments parse

    if args.action == "inspect":
        print(lth.tickets.describe(args.file))
        return 0
    info = lth.tickets.export_from_run(args.run, args.level, replicate=args.replicate, out=args.out, root=args.runs,
                                       trained=args.trained, data_root=args.data_dir)
    print(f"ticket: {info['path']} ({100 * info['density']:.2f} % of the weights, {info['bytes']:,} bytes, "
          f"sha256 {info['digest'][:12]}...)")
    if wandb_mode != "disabled":
        from lth.jobs.export import log_ticket_artifact

        log_ticket_artifact(resolve_run(args.run, args.runs), info, wandb_mode)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    check_ticket_file(args.file)
    out = compact_output(args.file, args.out)  # before jax: nothing is written for a bad path
    from lth.jobs.compact import compact_ticket  # heavy (jax): after the arguments parse

    info = compact_ticket(args.file, args.align, out)
    if info["note"]:
        print(f"note: {info['note']}")
    report = info["report"]
    padded = f" (hidden widths padded to multiples of {args.align})" if args.align > 1 else ""
    print(f"units alive / total{padded}:")
    for name, (alive, total) in report["units"].items():
        print(f"  {name:<24} {alive:>6} / {total}")
    print(f"params: {report['dense_params']:,} dense -> {report['params']:,} compact "
          f"({report['params'] / report['dense_params']:.1%})")
    print(f"MACs per example: {report['dense_macs']:,} dense -> {report['macs']:,} compact "
          f"({report['macs'] / report['dense_macs']:.1%})")
    print(f"compact network: {info['path']} ({info['bytes']:,} bytes; the ticket file: {info['ticket_bytes']:,} bytes)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    check_ticket_file(args.file)
    if not math.isfinite(args.budget) or not 0 < args.budget <= 60:
        raise LthError(f"--budget must be a number of seconds in (0, 60], got {args.budget}")
    out = check_output_file(args.json) if args.json else None  # before jax: nothing is written for a bad path
    from lth.tickets.bench import bench_text, bench_ticket  # heavy (jax): after the arguments parse

    result = bench_ticket(args.file, args.batch, budget=args.budget)
    print(bench_text(result))
    if out is not None:
        write_json(out, result)
        print(f"measurements: {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    for name in args.run:
        resolve_run(name, args.runs)  # an unknown run: one line before jax
    check_output_file(args.out)  # never a run's own files, a device or a directory
    from lth.analysis.plots import plot_runs  # heavy (jax, matplotlib): after the arguments parse

    path = plot_runs(args.run, args.out, root=args.runs)
    print(f"plot: {path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    find_sweep(args.sweep)  # an unknown sweep, and options that cannot work: before jax
    options = plan_sweep_options(args.runs, args.data_dir, args.address, args.cpus_per_run, args.gpus_per_run,
                                 args.max_retries, args.filesystem, args.worker_dir, args.checkpoint_every, args.wandb)
    from lth.sweeps.report import sweep_command  # heavy (jax, the runner; Ray later): after parsing

    return sweep_command(args.sweep, args.variant, dry_run=args.dry_run, progress=not args.no_progress,
                         runs_root=args.runs, options=options)


def cmd_experiments(args: argparse.Namespace) -> int:
    names = experiment_names()
    if not names:
        raise ConfigError(f"no experiment files in {os.path.join(os.getcwd(), 'experiments')} or "
                          f"{shipped_experiments()}: run lth where experiments/NAME.py files are, or give "
                          "`lth run` a path to a .py file defining get_config(variant)")
    for name in names:
        print(name)
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM / SIGHUP end a run as Ctrl-C does: one line, locks released, workers stopped


def main(argv: Sequence[str] | None = None) -> int:
    """The `lth` command; `argv` None: the `lth` process itself (`sys.argv`), which then skips the
    interpreter's teardown at its exit (`lth.cli.process_exit`)."""
    if argv is None:
        process_exit.arm()
        return process_exit.finished(_command(None))
    return _command(argv)


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "ls": cmd_ls, "control": cmd_control, "instability": cmd_instability,
               "ticket": cmd_ticket, "plot": cmd_plot, "experiments": cmd_experiments,
               "sweep": cmd_sweep}[args.command]
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return handler(args)
    except LthError as err:
        print(f"lth: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`lth ls | head`): no more output, no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 0
    except OSError as err:  # a full disk, a path that cannot be written: one line, what is done is kept
        print(f"lth: error: {os_error_text(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lth: interrupted; finished levels are kept in the run directory", file=sys.stderr)
        if argv is None:  # the `lth` process itself: a second signal must not kill its exit (-15 for 130)
            previous = dict.fromkeys(previous, signal.SIG_IGN)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
