"""The Ray cluster a sweep runs on: a local one sized to this machine (no address), or an existing
one joined by address (`auto`, `HOST:PORT` of a head started with `ray start --head`, or
`ray://HOST:PORT` through Ray Client); and whether its workers see the driver's filesystem.

Ray is imported only here and in `lth.sweeps.driver` (function-local: an optional dependency).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lth.spec.checks import HOST_PORT, check_address
from lth.errors import LthError, first_line
from lth.store.sweeps import sees_probe



def _check_reachable(address: str) -> None:
    """Fail fast (Ray itself retries for minutes) when nothing listens at HOST:PORT."""
    match = HOST_PORT.fullmatch(address)
    if match is None:
        return
    host, port = match.group(1).strip("[]"), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as err:
        raise LthError(f"no Ray cluster answers at {address} ({err.strerror or type(err).__name__}): start one "
                       "with `ray start --head` (see docs/cluster.md) or leave out --address for a local one") from None


def import_ray() -> Any:
    try:
        import ray  # optional dependency (the `sweep` extra): only sweeps need it
    except ImportError:
        raise LthError("lth sweep runs on Ray, which is not installed: pip install -e '.[sweep]' "
                       "(or pip install 'ray[default]')") from None
    return ray


_TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


def _drop_token_enabled_notice(record: logging.LogRecord) -> bool:
    """False for Ray's notice that token authentication is on (printed by every local sweep); the
    warning that it is off, which matters, passes."""
    return "Token authentication is enabled" not in record.getMessage()


@contextlib.contextmanager
def ray_cluster(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Connected to Ray for the block: a new local cluster (`num_cpus`: default all of this
    machine's) that is shut down afterwards, or the cluster at `address` (left running)."""
    ray = import_ray()
    check_address(address)
    if ray.is_initialized():  # already connected (a notebook, a test): use it and leave it be
        yield ray
        return
    with kept_signal_handlers():
        _connect(ray, address, num_cpus)
    try:
        yield ray
    finally:
        with signals_ignored():  # stopping the local cluster's processes is not cut short by a second signal
            ray.shutdown()


def _without_failure_signal_handler() -> None:
    """Ray's driver installs absl's failure signal handler (SIGTERM included: a C++ stack dump) and
    `ray.shutdown()` resets those signals to SIG_DFL, under lth's SIG_IGN: a second SIGTERM during the
    shutdown ended the process with -15. Ray's own switch for it (RAY_DISABLE_FAILURE_SIGNAL_HANDLER,
    read from `ray._private.ray_constants` when the driver connects) is set in this process only: the
    cluster's workers, started with the environment, keep their handler."""
    from ray._private import ray_constants  # optional dependency: see import_ray

    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True


def _connect(ray: Any, address: str | None, num_cpus: int | None) -> None:
    _without_failure_signal_handler()
    if address is None:
        notice = logging.getLogger(_TOKEN_NOTICE_LOGGER)
        notice.addFilter(_drop_token_enabled_notice)  # lth's own local cluster: token auth on is no news
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
        finally:
            notice.removeFilter(_drop_token_enabled_notice)
    else:
        if address == "auto" and os.environ.get("RAY_ADDRESS"):
            _check_reachable(os.environ["RAY_ADDRESS"])
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = first_line(err)
            raise LthError(f"could not join the Ray cluster at {address}: {first}") from None


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """The process's Python signal handlers as they were before the block: `ray.init` installs its
    own (SIGTERM printed a C++ stack dump and exited 15, 134 or 1), and lth's end a sweep as Ctrl-C
    does (one line, exit 130, sweep.json saying so). Only the main thread can set handlers."""
    main_thread = threading.current_thread() is threading.main_thread()
    before = {sig: signal.getsignal(sig) for sig in SIGNALS} if main_thread else {}
    try:
        yield
    finally:
        for sig, handler in before.items():
            if handler is not None:
                signal.signal(sig, handler)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP ignored for the block (the cleanup of an interrupted sweep: a second
    Ctrl-C must not cut it short); the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def describe(ray: Any) -> dict[str, Any]:
    """The cluster's alive nodes and total CPUs and GPUs."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    resources = ray.cluster_resources()
    return {"nodes": len(nodes), "cpus": float(resources.get("CPU", 0)), "gpus": float(resources.get("GPU", 0)),
            "node_ids": [n["NodeID"] for n in nodes]}


def _probe(path: str, token: str) -> bool:
    return sees_probe(path, token)


def shared_filesystem(ray: Any, probe_path: Path, token: str) -> bool:
    """Whether every alive node sees the driver's run root: the probe file written there with
    `token` is read back by a zero-CPU task pinned to each node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # optional dependency: see import_ray

    probe = ray.remote(num_cpus=0)(_probe)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(
        str(probe_path), token) for node_id in describe(ray)["node_ids"]]
    return all(ray.get(refs))
