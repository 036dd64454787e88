"""Queries of a run directory and of the files a command names, without jax: whether a run has a
replicate and a finished level, whether a ticket or mask file is there. The plans (`lth.plans`) and
the readers (`lth.analysis`, `lth.tickets`) ask them; checks that need the model, the data or the
run's arrays stay with the jobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lth.errors import DIVERGED_HINT, ConfigError, LthError
from lth.store.replicate import DamagedFileError, ReplicateDir
from lth.store.run_dir import RunDir, check_mask_file, check_output_file, replicate_paths


def check_replicate(name: str, count: int, replicate: int) -> None:
    """A one-line LthError unless run `name`, of `count` replicates, has replicate `replicate`."""
    if not 0 <= replicate < count:
        raise LthError(f"run {name} has {count} replicate(s): no replicate {replicate}")


def check_level(name: str, done: int, level: int, replicate: int) -> None:
    """A one-line LthError unless `level` is among the `done` finished levels of the replicate."""
    if not 0 <= level < done:
        raise LthError(f"run {name}, replicate {replicate} has finished levels 0-{done - 1}: no level {level}"
                       if done else f"run {name}, replicate {replicate} has no finished level yet")


def check_finished_level(path: Path, level: int, replicate: int = 0) -> None:
    """`check_replicate` and `check_level` for the run in `path`, from its files."""
    reps = replicate_paths(path)
    check_replicate(path.name, len(reps), replicate)
    check_level(path.name, len(ReplicateDir(reps[replicate], writable=False).read_results()), level, replicate)


def check_ticket_file(path: str | os.PathLike) -> None:
    """A one-line LthError unless `path` is a file (what is in it is checked when it is loaded)."""
    where = str(path)
    if not Path(path).exists():
        raise LthError(f"ticket file {where!r} not found: export one with `lth ticket export RUN --level L`")
    if Path(path).is_dir():
        raise LthError(f"ticket file {where!r} is a directory: pass a .safetensors file of `lth ticket export`")
    if not Path(path).is_file():  # opening a FIFO would wait for a writer forever
        raise LthError(f"ticket file {where!r} is not a regular file (a FIFO, device or socket): pass a .safetensors "
                       "file of `lth ticket export`")


def compact_output(ticket: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Where `lth ticket compact` writes the compact network of `ticket`: `out`, or
    ``<stem>.compact.safetensors`` beside the ticket; checked first (`check_output_file`, and never
    the ticket itself). A one-line LthError otherwise; nothing is written."""
    ticket = Path(ticket)
    path = check_output_file(out if out is not None else ticket.with_name(f"{ticket.stem}.compact.safetensors"))
    if path.exists() and ticket.exists() and path.resolve() == ticket.resolve():
        raise LthError(f"output {path} is the ticket file itself: give another --out")
    return path


def check_start_files(mask: Any, ticket: Any, initial_mask: str | None = None, ticket_is_file: bool = True) -> None:
    """`lth run --mask / --ticket`: not both (a ticket brings its mask), and a file each where one is named
    (the ticket's unless `ticket_is_file` is False: a W&B artifact name, downloaded later)."""
    if ticket is not None and (mask is not None or initial_mask is not None):
        raise ConfigError("a ticket brings its own mask: pass --ticket or --mask, not both")
    if isinstance(mask, (str, os.PathLike)):
        check_mask_file(mask)
    if ticket_is_file and isinstance(ticket, (str, os.PathLike)):
        check_ticket_file(ticket)


def levels_done(rep: ReplicateDir) -> int:
    """Finished levels (or densities) of a replicate by its records; 0 if they are damaged (the job
    then repairs them from the other copies, or trains the replicate again)."""
    try:
        return len(rep.read_results())
    except DamagedFileError:
        return 0


def run_records(run: RunDir, reps: list[ReplicateDir]) -> list[dict[str, Any]]:
    """A run's records: its one replicate's, or the mean and std over its replicates (results.json)."""
    return reps[0].read_results() if len(reps) == 1 else run.read_aggregate()


RESUME_HINT = "rerun the `lth run` command that started it: it resumes where it stopped"


def divergence(rep: ReplicateDir, done: int) -> dict[str, Any] | None:
    """The divergence that stopped the replicate at its first unfinished level (`done` levels are
    finished), as the runner recorded it in the manifest ({level, iteration, loss}), or None."""
    stopped = rep.read_manifest().get("diverged")
    if isinstance(stopped, dict) and isinstance(stopped.get("level"), int) and stopped["level"] >= done:
        return stopped
    return None


def divergence_text(stopped: dict[str, Any]) -> str:
    """'diverged at level 3, iteration 120 (training loss nan): the same config diverges again; lower ...'."""
    at = f", iteration {stopped['iteration']}" if stopped.get("iteration") is not None else ""
    loss = f" (training loss {stopped['loss']})" if stopped.get("loss") is not None else ""
    return f"diverged at level {stopped['level']}{at}{loss}: the same config diverges again; {DIVERGED_HINT}"


def unfinished_text(rep: ReplicateDir, done: int) -> str:
    """What to do about a replicate with `done` levels finished: what to change if it diverged, else
    resume it."""
    stopped = divergence(rep, done)
    if stopped is not None:
        return divergence_text(stopped)
    return RESUME_HINT
