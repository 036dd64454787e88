"""Data-parallel training (lth.training.sharded) on 4 virtual CPU devices, and over 2 processes on loopback.

The main pytest process has imported jax with one device, and the device count is fixed when jax
starts, so the checks run in subprocesses that set ``XLA_FLAGS`` first: this file is also their
script (``python tests/test_sharded.py <check> ...``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import backend_compiles, start_script
from helpers import finish_scripts as _finish


def _start(args: list[str], devices: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    return start_script(__file__, args, devices, extra_env)


def test_data_parallel_equals_single_device_on_4_virtual_devices():
    (out,) = _finish(_start(["single_host"], devices=4), timeout=240)
    print(out[out.find("timings"):])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SMOKE_RUN = ["run", "mlp_mnist1d", "--variant", "smoke", "--wandb", "disabled", "--no-controls"]


def _launch_two(check: list[str], runs: Path) -> list[str]:
    """`lth run SMOKE_RUN --data-parallel` launched as 2 processes of 2 virtual devices each over
    loopback (after `check`, a script check run first in the same processes); their outputs."""
    port = _free_port()
    env = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2"}
    procs = [_start([*check, "lth_run", str(runs), *SMOKE_RUN, "--data-parallel"], devices=2,
                    extra_env={**env, "JAX_PROCESS_ID": str(i)})
             for i in range(2)]
    return _finish(*procs, timeout=300)


@pytest.fixture(scope="module")
def two_process_launch(tmp_path_factory) -> tuple[list[str], Path]:
    """One 2-process launch shared by the two tests below (starting 2 jax processes and their
    coordinator is most of either's time): the loopback check, then `lth run --data-parallel` in the
    same processes. Its outputs and the run root."""
    runs = tmp_path_factory.mktemp("multi")
    return _launch_two(["two_processes"], runs), runs


def test_two_processes_over_loopback(two_process_launch):
    """2 processes x 2 virtual devices = one 4-device mesh, via jax.distributed (gloo collectives)."""
    outs, _ = two_process_launch
    assert "process 0 of 2" in outs[0] and "process 1 of 2" in outs[1]


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    """`lth run mlp_mnist1d --variant smoke --no-controls` on this process's one device: the reference
    both `--data-parallel` tests compare with (trained once for the file)."""
    from lth.cli import main

    root = tmp_path_factory.mktemp("single")
    assert main([*SMOKE_RUN, "--no-progress", "--runs", str(root)]) == 0
    (single,) = root.iterdir()
    return single


def test_lth_run_in_two_processes_writes_once_and_resumes(two_process_launch, single_run):
    """`lth run --data-parallel` launched as 2 processes (2 virtual devices each): one run directory,
    written by process 0 alone, records equal to a single-process run; and a resume in which both
    processes restore process 0's checkpoint ends bit-identical."""
    import json

    single = single_run
    outs, runs = two_process_launch
    assert "results:" in outs[0] and "results:" not in outs[1]  # output from process 0 only
    assert "100.00" in outs[0] and "100.00" not in outs[1]  # the level table too
    (multi,) = runs.iterdir()
    rep = multi / "replicate_00"
    want = json.loads((single / "replicate_00/results.json").read_text())
    got = json.loads((rep / "results.json").read_text())
    assert [r["weights_remaining"] for r in got] == [r["weights_remaining"] for r in want]
    for a, b in zip(got, want):
        assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 2e-3
    lines = (rep / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((single / "replicate_00/metrics.jsonl").read_text().splitlines())  # not twice
    assert not list(multi.glob("**/*.tmp")) and (multi / "accuracy_vs_sparsity.png").exists()

    # forget the last level; both processes restore level 1's checkpoint and retrain level 2
    whole = (rep / "results.json").read_bytes()
    (rep / "results.json").write_text(json.dumps(got[:2]))
    outs = _launch_two([], runs)
    assert "resuming replicate 0 at level 2" in outs[0]
    assert (rep / "results.json").read_bytes() == whole


# --------------------------------------------------------------------------- the subprocess side


def _tiny(**changes):
    from helpers import tiny_config

    return tiny_config(**changes)


def _random_mask(params, seed=0):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lth.sparsity.masks import make_mask

    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda m: None if m is None else jnp.asarray(rng.random(m.shape) < 0.5), make_mask(params),
                        is_leaf=lambda x: x is None)


def _run_chunks(trainer, state, mask, data, order_key, augment_key):
    """Like lth.training.train, also collecting every iteration's training loss."""
    import jax.numpy as jnp
    import numpy as np

    from lth.data.device import epoch_order
    from lth.training import chunk_plan

    losses = []
    for chunk in chunk_plan(int(state.step), trainer.total_steps, trainer.steps_per_epoch):
        order = epoch_order(order_key, chunk.epoch, int(data.x_train.shape[0]), trainer.batch_size)
        state, metrics = trainer.train_chunk(state, mask, data, order, jnp.int32(chunk.offset), augment_key,
                                             length=chunk.length)
        losses.append(np.asarray(metrics.train_loss))
    return state, np.concatenate(losses), metrics


def _assert_close_trees(a, b, rtol, atol):
    import jax
    import numpy as np

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def worker_single_host() -> None:
    import jax
    import numpy as np
    from jax.sharding import PartitionSpec as P

    from lth import rng
    from lth.errors import ConfigError
    from lth.lottery import init_params, lottery_levels, prepare
    from lth.lottery.setup import data_parallel_setup
    from lth.sparsity.masks import mask_leaves, named_leaves
    from lth.training import sharded as parallel

    assert jax.device_count() == 4, jax.devices()
    mesh = parallel.make_mesh()
    timings = {}

    # 100 iterations of batch 100 (25 per device), evaluations every 10, a random half mask
    setup = prepare(_tiny(**{"training.length": "100it"}))
    params, model_state = init_params(setup)
    mask = _random_mask(params)
    order_key, augment_key = rng.stream(0, "data_order"), rng.stream(0, "augmentation")
    single = setup.trainer
    dp, data = parallel.data_parallel(single, setup.data, mesh)

    results = {}
    for name, trainer, d in (("single", single, setup.data), ("parallel", dp, data)):
        started = time.perf_counter()
        state, losses, metrics = _run_chunks(trainer, trainer.init_state(params, model_state), mask, d,
                                             order_key, augment_key)
        jax.block_until_ready(state)
        timings[name] = time.perf_counter() - started
        results[name] = (state, losses, metrics)
    (s1, l1, m1), (s4, l4, m4) = results["single"], results["parallel"]
    assert int(s4.step) == 100 and l4.shape == (100,)
    np.testing.assert_allclose(l4, l1, rtol=1e-5, atol=1e-6)
    _assert_close_trees(s4.params, s1.params, rtol=1e-5, atol=1e-6)
    _assert_close_trees(s4.opt_state, s1.opt_state, rtol=1e-4, atol=1e-7)
    for field in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(np.asarray(getattr(m4, field)), np.asarray(getattr(m1, field)), rtol=1e-5)

    # pruned weights are exactly zero in the sharded run
    p4 = named_leaves(s4.params)
    for path, m in mask_leaves(mask).items():
        assert np.all(np.asarray(p4[path])[~np.asarray(m)] == 0.0), path

    # layout: state and metrics replicated over the 4 devices, eval sets split along the batch axis
    for leaf in jax.tree.leaves((s4, m4)):
        assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4, leaf.sharding
    assert data.x_train.sharding.is_fully_replicated and len(data.x_train.sharding.device_set) == 4
    assert data.val.x.sharding.spec == P(None, "data") and data.test.weight.sharding.spec == P(None, "data")
    assert data.val.x.addressable_shards[0].data.shape[1] == data.val.x.shape[1] // 4
    # the step really is partitioned: per-device batch 25 and an all-reduce of the gradients
    import jax.numpy as jnp

    from lth.data.device import epoch_order

    order = epoch_order(order_key, 0, int(data.x_train.shape[0]), 100)
    hlo = dp.train_chunk.lower(s4, mask, data, order, jnp.int32(0), augment_key, length=35).compile().as_text()
    assert "all-reduce" in hlo and "f32[25,32]" in hlo, "training step not split over the devices"
    # one compilation per chunk length, as on one device: the lengths trained above (35, 30) are
    # compiled already, a new one compiles once
    with backend_compiles() as compiles:
        for length in (35, 30):
            dp.train_chunk(s4, mask, data, order, jnp.int32(0), augment_key, length=length)
        assert not compiles, "a chunk length trained before compiled again"
        for _ in range(2):
            dp.train_chunk(s4, mask, data, order, jnp.int32(0), augment_key, length=20)
        assert len(compiles) == 1, compiles
    # evaluate: same numbers
    np.testing.assert_allclose(np.asarray(dp.evaluate(s1.params, s1.model_state, setup.data.test)),
                               np.asarray(single.evaluate(s1.params, s1.model_state, setup.data.test)), rtol=1e-5)

    # the whole lottery (prune, rewind, retrain) through an unchanged lth.lottery / lth.training
    setup2 = prepare(_tiny(levels=1))
    one = [o.record for o in lottery_levels(setup2)]
    four = [o.record for o in lottery_levels(data_parallel_setup(setup2, mesh))]
    for r1, r4 in zip(one, four, strict=True):
        assert r1["weights_remaining"] == r4["weights_remaining"]
        for key in ("early_stop_test_accuracy", "test_accuracy"):
            assert abs(r1[key] - r4[key]) <= 2e-3, (key, r1[key], r4[key])

    # the per-iteration loop of convolutional models on CPU: waits for every step (no deadlock)
    setup3 = prepare(_tiny(model="cnn_mnist1d", **{"training.length": "12it"}))
    assert setup3.trainer.train_chunk.loop == "steps"
    params3, ms3 = init_params(setup3)
    cnn_dp, data3 = parallel.data_parallel(setup3.trainer, setup3.data, mesh)
    c1 = _run_chunks(setup3.trainer, setup3.trainer.init_state(params3, ms3), _random_mask(params3), setup3.data,
                     order_key, augment_key)
    c4 = _run_chunks(cnn_dp, cnn_dp.init_state(params3, ms3), _random_mask(params3), data3, order_key, augment_key)
    np.testing.assert_allclose(c4[1], c1[1], rtol=1e-5, atol=1e-6)
    _assert_close_trees(c4[0].params, c1[0].params, rtol=1e-4, atol=1e-6)
    with backend_compiles() as compiles:  # one compiled step serves every iteration
        _run_chunks(cnn_dp, cnn_dp.init_state(params3, ms3), _random_mask(params3), data3, order_key, augment_key)
    assert not compiles, compiles

    # a batch that does not split over 4 devices: one line
    bad = prepare(_tiny(**{"training.batch_size": 30}))
    try:
        parallel.data_parallel(bad.trainer, bad.data, mesh)
    except ConfigError as e:
        assert "batch size 30" in str(e) and "4 devices" in str(e) and "\n" not in str(e), e
    else:
        raise AssertionError("no ConfigError for batch 30 over 4 devices")
    print(f"timings (100 iterations incl. compilation): single {timings['single']:.2f} s, "
          f"4 virtual devices {timings['parallel']:.2f} s")
    print("WORKER OK")


def worker_two_processes() -> None:
    from lth.training import processes
    from lth.training import sharded as parallel

    assert processes.initialize_distributed()
    import jax
    import numpy as np

    from lth import rng
    from lth.lottery import init_params, prepare

    index = jax.process_index()
    print(f"process {index} of {jax.process_count()}", flush=True)
    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    assert processes.is_main_process() == (index == 0)
    setup = prepare(_tiny())  # 35 iterations, batch 100: 25 per device, 2 devices per process
    params, model_state = init_params(setup)
    mask = _random_mask(params)
    order_key, augment_key = rng.stream(0, "data_order"), rng.stream(0, "augmentation")
    dp, data = parallel.data_parallel(setup.trainer, setup.data)  # mesh over both processes' devices
    state, losses, metrics = _run_chunks(dp, dp.init_state(params, model_state), mask, data, order_key, augment_key)
    assert not state.params["output"]["kernel"].is_fully_addressable  # a global array over 2 processes
    # reference: the single-device trainer on this process's first device
    ref, ref_losses, _ = _run_chunks(setup.trainer, setup.trainer.init_state(params, model_state), mask,
                                     setup.data, order_key, augment_key)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-6)
    host = jax.device_get(state.params)  # replicated: every process reads its own copy
    _assert_close_trees(host, ref.params, rtol=1e-5, atol=1e-6)
    print("WORKER OK", flush=True)


def worker_lth_run() -> None:
    """`lth run <args>` in this process, under the runs directory given first (after `lth_run`)."""
    from lth.cli import main

    runs, *args = sys.argv[sys.argv.index("lth_run") + 1:]
    code = main([*args, "--runs", runs])
    import jax

    print(f"process {jax.process_index()} of {jax.process_count()}: exit {code}", flush=True)
    assert code == 0 and jax.process_count() == 2
    print("WORKER OK", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    # one check, or "two_processes lth_run ...": the loopback check, then `lth run` in the same processes
    {"single_host": worker_single_host, "two_processes": worker_two_processes,
     "lth_run": worker_lth_run}[sys.argv[1]]()
    if sys.argv[1] == "two_processes" and "lth_run" in sys.argv:
        worker_lth_run()


def test_cli_data_parallel_flag_on_the_local_devices(tmp_path, capsys, single_run):
    """`lth run --data-parallel` wires lth.training.sharded into the lottery (here over this process's
    devices). Its main line is compared with the single-device run (`single_run`); the smoke
    variant's random controls are left out of both (nothing here reads them)."""
    import json

    from lth.cli import main

    code = main([*SMOKE_RUN, "--no-progress", "--runs", str(tmp_path / "parallel"), "--data-parallel"])
    assert code == 0, capsys.readouterr().err
    single, parallel = (json.loads(next(r.glob("*/replicate_00/results.json")).read_text())
                        for r in (single_run.parent, tmp_path / "parallel"))
    assert [r["weights_remaining"] for r in single] == [r["weights_remaining"] for r in parallel]
    for a, b in zip(single, parallel):
        assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 2e-3
