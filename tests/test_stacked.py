"""Replicates as one vmapped program (lth.training.stacked): equal to one by one, resumable, spread over devices.

The "devices" layout needs several devices, fixed when jax starts: that check runs in a
subprocess with 4 virtual CPU devices (this file is its script).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import backend_compiles, finish_scripts, start_script, tiny_config

TOLERANCE = 1e-5  # vmapped matmuls round differently from single ones (measured: ~1e-7 after 35 iterations)
FLOAT_FIELDS = ("early_stop_val_loss", "early_stop_val_accuracy", "early_stop_test_accuracy", "test_accuracy",
                "best_test_accuracy", "sign_agreement_with_init")


def assert_records_close(got: list[dict], want: list[dict]) -> None:
    """Same levels, masks (exact counts, per-layer density, overlap) and iterations; floats within TOLERANCE."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key in set(g) | set(w):
            if key in FLOAT_FIELDS:
                assert g[key] == pytest.approx(w[key], abs=TOLERANCE), (g["level"], key)
            else:
                assert g[key] == w[key], (g["level"], key)


def replicate_results(root: Path, replicates: int) -> list[list[dict]]:
    (run,) = list(root.iterdir())
    return [json.loads((run / f"replicate_{r:02d}" / "results.json").read_text()) for r in range(replicates)]


def test_vmapped_replicates_equal_one_by_one(tmp_path):
    from lth.jobs.lottery import run_lottery

    config = tiny_config(levels=2, rewind="13it")
    sequential = run_lottery(config, runs_root=tmp_path / "seq", replicates=3, layout="sequential",
                             progress=False, wandb="disabled")
    vmapped = run_lottery(config, runs_root=tmp_path / "vmap", replicates=3, layout="vmap", progress=False,
                          wandb="disabled")
    for got, want in zip(replicate_results(tmp_path / "vmap", 3), replicate_results(tmp_path / "seq", 3)):
        assert_records_close(got, want)
    assert_records_close([{k: v for k, v in r.items() if not k.endswith("_sample_std")} for r in vmapped],
                         [{k: v for k, v in r.items() if not k.endswith("_sample_std")} for r in sequential])
    # the masks themselves, not only their counts
    for r in range(3):
        (a,) = (tmp_path / "seq").glob(f"*/replicate_{r:02d}/masks/level_02.npz")
        (b,) = (tmp_path / "vmap").glob(f"*/replicate_{r:02d}/masks/level_02.npz")
        with np.load(a) as x, np.load(b) as y:
            assert sorted(x) == sorted(y) and all(np.array_equal(x[k], y[k]) for k in x)


def test_vmapped_chunk_matches_single_chunks_with_batchnorm_and_augmentation():
    """BatchNorm statistics and crop+flip keys stay per replicate (ResNet-20, CIFAR-shaped synthetic data)."""
    import jax
    import jax.numpy as jnp

    from lth import rng
    from lth.spec.config import replace
    from lth.data.device import epoch_order
    from lth.spec.experiments import load_config
    from lth.lottery import init_params, initial_mask, prepare
    from lth.training.stacked import epoch_orders, stack, stack_states, stacked_chunk

    setup = prepare(replace(load_config("resnet20_cifar10", "smoke"), levels=0))
    trainer = setup.trainer
    assert trainer.augmentation == "crop_flip"
    n = int(setup.data.x_train.shape[0])
    singles, starts, masks, keys, order_keys = [], [], [], [], []
    for seed in (0, 1):
        params, model_state = init_params(dataclasses.replace(setup, config=replace(setup.config, seed=seed)))
        start, mask = trainer.init_state(params, model_state), initial_mask(setup, params)
        order_key, key = rng.stream(seed, "data_order"), rng.stream(seed, "augmentation")
        order = epoch_order(order_key, 0, n, trainer.batch_size)
        singles.append(trainer.train_chunk(start, mask, setup.data, order, jnp.int32(0), key, length=1))
        starts.append(start), masks.append(mask), keys.append(key), order_keys.append(order_key)
    orders = epoch_orders(stack(order_keys), 0, n, trainer.batch_size)
    for r, key in enumerate(order_keys):  # integer maths: the stacked orders are the single ones exactly
        np.testing.assert_array_equal(orders[r], epoch_order(key, 0, n, trainer.batch_size))
    chunk = stacked_chunk(trainer)
    state, metrics = chunk(stack_states(starts), stack(masks), setup.data, orders, jnp.int32(0), stack(keys),
                           length=1)
    # one step: ResNet-20 at lr 0.1 on synthetic images amplifies rounding fast (a 1e-7 relative change
    # of the params moves the validation loss by 3 % within 4 steps, measured); even after one step the
    # BatchNorm bias gradients, sums that nearly cancel, differ by ~6e-5 (params by lr x that)
    for r, (single_state, single_metrics) in enumerate(singles):
        np.testing.assert_allclose(metrics.train_loss[:, r], single_metrics.train_loss, rtol=1e-5)
        for got, want in zip(jax.tree.leaves(state.model_state), jax.tree.leaves(single_state.model_state)):
            np.testing.assert_allclose(got[r], want, rtol=1e-4, atol=1e-6)  # BatchNorm running statistics
        for got, want, start in zip(jax.tree.leaves(state.params), jax.tree.leaves(single_state.params),
                                    jax.tree.leaves(starts[r].params)):
            np.testing.assert_allclose(got[r], want, rtol=0, atol=1e-4)
            # the difference is a small fraction of the step itself: up to 1.04 % of the leaf's largest step
            # measured on one machine (a BatchNorm bias, whose gradient is a sum that nearly cancels; a 1 %
            # bound failed there); an error in the stacked step (a wrong key, mask or batch) is ~100 %
            moved = np.abs(np.asarray(want) - np.asarray(start)).max()
            assert np.abs(np.asarray(got[r]) - np.asarray(want)).max() <= max(0.03 * moved, 1e-7)
    assert metrics.train_loss[0, 0] != metrics.train_loss[0, 1]  # two different replicates


class Interrupt(Exception):
    pass


class InterruptAt:
    """A tracker that stops the run (like a SIGKILL would) once `level` has logged past `iteration`."""

    def __init__(self, level: int, iteration: int):
        self.level, self.iteration = level, iteration

    def level_start(self, *args):
        pass

    def log_evaluations(self, replicate, level, evaluations):
        if level == self.level and evaluations and evaluations[-1]["iteration"] >= self.iteration:
            raise Interrupt

    def level_done(self, *args):
        pass

    def run_done(self, *args):
        pass

    def close(self):
        pass


def test_interrupted_vmapped_run_resumes_bit_identical(tmp_path):
    from lth.jobs.lottery import run_lottery

    config = tiny_config(**{"training.length": "4ep", "rewind": "13it", "levels": 2})
    options = dict(replicates=2, layout="vmap", checkpoint_every="1ep", progress=False, wandb="disabled")
    run_lottery(config, runs_root=tmp_path / "whole", **options)
    with pytest.raises(Interrupt):
        run_lottery(config, runs_root=tmp_path / "cut", trackers=[InterruptAt(level=1, iteration=80)], **options)
    (cut,) = list((tmp_path / "cut").iterdir())
    assert [len(json.loads((cut / f"replicate_{r:02d}/results.json").read_text())) for r in range(2)] == [1, 1]
    assert list((cut / "replicate_01/checkpoints/level_01").glob("step_*"))  # a mid-level checkpoint to resume from
    run_lottery(config, runs_root=tmp_path / "cut", **options)
    for r in range(2):
        (a,) = (tmp_path / "whole").glob(f"*/replicate_{r:02d}/results.json")
        (b,) = (tmp_path / "cut").glob(f"*/replicate_{r:02d}/results.json")
        assert a.read_bytes() == b.read_bytes()


def test_finished_replicates_are_kept_and_the_rest_train_together(tmp_path, capsys):
    from lth.jobs.lottery import run_lottery

    config = tiny_config(levels=1)
    run_lottery(config, runs_root=tmp_path, replicates=1, layout="sequential", progress=False, wandb="disabled")
    (run,) = list(tmp_path.iterdir())
    before = (run / "replicate_00" / "results.json").stat().st_mtime_ns
    records = run_lottery(config, runs_root=tmp_path, replicates=3, layout="vmap", wandb="disabled")
    assert (run / "replicate_00" / "results.json").stat().st_mtime_ns == before
    assert records[0]["replicates"] == 3
    out = capsys.readouterr().out
    assert "training replicates 1, 2 together (vmap)" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert sorted((row[0], row[1]) for row in rows) == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]


def test_no_recompilation_after_the_first_level_vmapped():
    from lth.spec.config import replace
    from lth.lottery import lottery_levels_together, prepare
    from lth.lottery.setup import stacked_training

    config = tiny_config(levels=3, rewind="13it")
    setup, train_many = stacked_training(prepare(config), 2, "vmap")
    setups = [dataclasses.replace(setup, config=replace(config, seed=s)) for s in (0, 1)]
    with backend_compiles() as compiles:
        levels = lottery_levels_together(setups, train_many=train_many)
        next(levels)
        next(levels)  # level 1 compiles the pruning step and stacking once
        before = len(compiles)
        for _ in levels:
            pass
        assert len(compiles) == before, "levels 2-3 compiled something (the stacked chunk or anything else)"


def test_layout_choice_and_bad_input(tmp_path, capsys):
    from lth.cli import main
    from lth.errors import ConfigError
    from lth.jobs.lottery import choose_layout

    cores = len(os.sched_getaffinity(0))
    assert choose_layout(None, None, 1) == ("sequential", 1)
    assert choose_layout(None, None, 4) == (("workers", min(4, cores)) if cores > 1 else ("sequential", 1))
    assert choose_layout(None, 1, 4) == ("sequential", 1)
    assert choose_layout(None, None, 4, data_parallel=True) == ("sequential", 1)
    assert choose_layout("vmap", None, 4) == ("vmap", 1)
    assert choose_layout("devices", 1, 4) == ("devices", 1)
    for args, match in ((("bogus", None, 2), "unknown replicate layout 'bogus'"),
                        (("vmap", 2, 2), "--workers applies to --layout workers"),
                        (("devices", None, 2, True), "choose one")):
        with pytest.raises(ConfigError, match=match):
            choose_layout(*args)
    code = main(["run", "mlp_mnist1d", "--variant", "smoke", "--replicates", "2", "--layout", "bogus",
                 "--runs", str(tmp_path), "--wandb", "disabled"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "sequential, workers, vmap, devices" in err
    assert not list(tmp_path.iterdir())  # validated before the run directory is made


def test_replicates_spread_over_4_virtual_devices():
    (out,) = finish_scripts(start_script(__file__, ["devices"], devices=4), timeout=300)
    print(out[out.find("timings"):])


# --------------------------------------------------------------------------- the subprocess side


def worker_devices() -> None:
    import tempfile
    import time

    import jax

    from lth.jobs.lottery import run_lottery
    from lth.training.stacked import replicate_mesh, stack

    assert jax.device_count() == 4, jax.devices()
    assert replicate_mesh(4).devices.size == 4 and replicate_mesh(2).devices.size == 2
    assert replicate_mesh(6).devices.size == 3 and replicate_mesh(3).devices.size == 3
    config = tiny_config(levels=1, rewind="13it")
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        timings = {}
        for layout, replicates in (("sequential", 4), ("devices", 4), ("devices", 2)):
            started = time.perf_counter()
            run_lottery(config, runs_root=root / f"{layout}{replicates}", replicates=replicates, layout=layout,
                        progress=False, wandb="disabled")
            timings[f"{layout} x{replicates}"] = round(time.perf_counter() - started, 2)
        want = replicate_results(root / "sequential4", 4)
        for got, reference in zip(replicate_results(root / "devices4", 4), want):
            assert_records_close(got, reference)
        for got, reference in zip(replicate_results(root / "devices2", 2), want):
            assert_records_close(got, reference)

    # one replicate per device: the compiled chunk keeps the stacked state split over the 4 devices
    import jax.numpy as jnp

    from lth import rng
    from lth.data.device import epoch_order
    from lth.lottery import init_params, initial_mask, prepare
    from lth.training.stacked import place, place_state, stack_states, stacked_chunk

    setup = prepare(config)
    mesh = replicate_mesh(4)
    starts, masks, orders = [], [], []
    for seed in range(4):
        params, model_state = init_params(dataclasses.replace(setup, config=dataclasses.replace(config, seed=seed)))
        starts.append(setup.trainer.init_state(params, model_state)), masks.append(initial_mask(setup, params))
        orders.append(epoch_order(rng.stream(seed, "data_order"), 0, int(setup.data.x_train.shape[0]), 100))
    keys = [rng.stream(s, "augmentation") for s in range(4)]
    chunk = stacked_chunk(setup.trainer, mesh)
    state, metrics = chunk(place_state(stack_states(starts), mesh), place(stack(masks), mesh),
                           place(setup.data, mesh, split=False), place(jnp.stack(orders), mesh), jnp.int32(0),
                           place(stack(keys), mesh), length=10)
    for leaf in jax.tree.leaves(state.params):
        assert {shard.device for shard in leaf.addressable_shards} == set(jax.devices())
        assert all(shard.data.shape[0] == 1 for shard in leaf.addressable_shards)
    assert np.asarray(metrics.evaluated)[-1] and np.isfinite(np.asarray(metrics.val_loss)[-1]).all()
    print("timings (4 virtual devices on this machine's cores):", timings)
    print("WORKER OK", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    {"devices": worker_devices}[sys.argv[1]]()
