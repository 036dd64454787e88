"""Timing forward calls fairly: warm-up, rounds with a rotating order, medians and minima."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def time_calls(fns: dict[str, Callable[[], Any]], repeats: int, rounds: int = 5) -> dict[str, dict[str, float]]:
    """{fn: {"median", "min", "max", "repeats"}} seconds per call, timed in `rounds` rounds; in each
    round every fn runs one untimed call, then repeats / rounds timed calls back to back (each to a
    blocked result), the order of the fns rotating from round to round. Blocks keep one variant's
    memory traffic (BCOO's nse x batch intermediates) from slowing the next variant's calls; rounds
    spread a busy machine's load over all variants. Two untimed calls per fn first compile and warm up."""
    for fn in fns.values():
        for _ in range(2):
            jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    per_round = max(1, -(-repeats // rounds))
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn = fns[name]
            jax.block_until_ready(fn())
            for _ in range(per_round):
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times[name].append(time.perf_counter() - t0)
    return {name: {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "repeats": len(ts)}
            for name, ts in times.items()}


def repeats_for(seconds_per_call: float, budget: float = 0.5, low: int = 10, high: int = 200) -> int:
    """How many timed calls fit `budget` seconds, within [low, high]."""
    if seconds_per_call <= 0:
        return high
    return max(low, min(high, int(budget / seconds_per_call)))
