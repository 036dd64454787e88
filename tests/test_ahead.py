"""A run's start-up work in threads (`lth.lottery.ahead`): each program is built once, the results
are those of the run without it, the next epoch's order is dispatched before a chunk's metrics
are waited for (`lth.training.loop.run_chunks`), and a run stopped by bad input leaves no start-up
work running."""

import threading
import time
from collections import Counter
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from helpers import ticket_file, tiny_config

from lth.errors import LthError
from lth.jobs.lottery import run_lottery
from lth.lottery import lottery_levels
from lth.lottery.ahead import Ahead, start_ahead
from lth.lottery.setup import build_setup, fresh_init
from lth.training.loop import chunk_plan, run_chunks


def _record_compiles(names: list[str], main_thread: list[str] | None = None):
    def on_duration(event, duration, fun_name=None, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":  # a compile or a persistent-cache load
            names.append(fun_name)
            if main_thread is not None and threading.current_thread() is threading.main_thread():
                main_thread.append(fun_name)

    return on_duration


def test_start_up_work_builds_each_program_once_and_changes_no_bit():
    config = tiny_config(levels=2, rewind="13it")  # level 0 is cut at the rewind step: two chunk lengths there
    names: list[str] = []
    on_main: list[str] = []
    listener = _record_compiles(names, on_main)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        setup = build_setup(config, ahead=start_ahead)
        del on_main[:]  # the levels: every program they run was built in the threads
        ahead_outcomes = list(lottery_levels(setup))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    plain_outcomes = list(lottery_levels(build_setup(config)))

    trainer = setup.trainer
    lengths = {s.length for first, breaks in ((0, (13,)), (13, ()))
               for s in chunk_plan(first, trainer.total_steps, trainer.steps_per_epoch, breaks)}
    built = Counter(names)
    assert lengths == {13, 22} and built["jit(scan_chunk)"] == 2, built  # 13 + 22 at level 0, 22 at level 1
    assert built["jit(epoch_order)"] <= 1 and built["jit(<lambda>)"] <= 1, built  # module-level: maybe built before
    assert on_main == [], on_main  # the init's masking and the optimiser's init included (`_initialise`)
    assert setup.ahead.result("pruning") is True  # level 0 found the pruning program warmed up ahead
    made = setup.ahead.result(("initial", config.seed))
    for got, want in zip(jax.tree.leaves(made), jax.tree.leaves(fresh_init(setup.model, config.seed))):
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes()
    for a, b in zip(ahead_outcomes, plain_outcomes):
        assert a.record == b.record and a.evaluations == b.evaluations
        for got, want in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
            assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


def test_the_next_order_is_dispatched_before_the_caller_waits_for_a_chunk():
    events: list[str] = []
    trainer = SimpleNamespace(total_steps=25, steps_per_epoch=10, parts=SimpleNamespace(test_at="every_evaluation"))

    def orders(epoch):
        events.append(f"order {epoch}")
        return epoch

    def chunk(state, mask, data, order, offset, augment_key, *, length, val_min):
        events.append(f"chunk of epoch {order} from {int(offset)}")
        return state, None

    for _, first, _ in run_chunks(chunk, trainer, None, None, None, orders, None, 0, breaks=(4,)):
        events.append(f"caller gets {first}")
    assert events == ["order 0", "chunk of epoch 0 from 0", "caller gets 0",  # the rest of epoch 0: same order
                      "chunk of epoch 0 from 4", "order 1", "caller gets 4",
                      "chunk of epoch 1 from 0", "order 2", "caller gets 10",
                      "chunk of epoch 2 from 0", "caller gets 20"]


def test_cancelled_compiles_give_no_result_and_the_running_one_finishes():
    ahead = Ahead()
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return "compiled"

    ahead.submit("compile", "first", slow)
    ahead.submit("compile", "second", lambda: "never")
    ahead.submit("init", "initial", lambda: "params")
    started.wait(10)
    ahead.cancel_compiles()  # a finished run: nothing queued behind the running compile is wanted
    release.set()
    assert ahead.result("first") == "compiled" and ahead.result("second") is None
    assert ahead.result("initial") == "params"  # the init queue is not touched
    ahead.close()


def test_a_run_stopped_by_bad_input_leaves_no_start_up_work_running(tmp_path):
    """The ticket is checked once the data is loaded, when the start-up threads are already compiling:
    the error stops them (queued jobs dropped, the running one awaited), so nothing goes on compiling
    behind the caller's back (the CLI process used to exit seconds after printing its error)."""
    path = ticket_file(tmp_path)[0]  # mlp_tiny on 28x28 images: tiny_config's inputs are MNIST-1D's 40 values
    with pytest.raises(LthError, match="does not fit the model"):
        run_lottery(tiny_config(), ticket=path, runs_root=tmp_path / "runs", progress=False, wandb="disabled")
    assert [t.name for t in threading.enumerate() if t.name.startswith("lth-ahead")] == []
    assert not (tmp_path / "runs").exists()


def test_cancel_drops_every_queued_job_and_waits_for_the_running_one():
    ahead = Ahead()
    started, finished = threading.Event(), threading.Event()

    def running():
        started.set()
        time.sleep(0.2)
        finished.set()
        return "compiled"

    ahead.submit("compile", "first", running)
    ahead.submit("compile", "second", lambda: "never")
    ahead.submit("init", "initial", lambda: started.wait(10) and "params")
    ahead.submit("init", "more", lambda: "never")
    started.wait(10)
    ahead.cancel()
    assert finished.is_set()  # returned only once the running job was done
    assert ahead.result("first") == "compiled" and ahead.result("second") is None and ahead.result("more") is None
