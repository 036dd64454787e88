"""The training cost of records (`lth.lottery.cost`) against hand-worked FLOP counts."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "disabled")

from helpers import copy_run, tiny_config  # noqa: E402
from lth import run_controls, run_lottery  # noqa: E402
from lth.lottery.cost import control_base, cumulative, forward_flops, layer_positions  # noqa: E402
from lth.lottery.setup import build_setup  # noqa: E402
from lth.sparsity import gradual  # noqa: E402
from lth.spec.config import replace  # noqa: E402

BATCH = 100  # tiny_config's
SIZES = {"fc1/kernel": 40 * 32, "fc2/kernel": 32 * 16, "output/kernel": 16 * 10}  # mlp_tiny's kernels


def _kept(record):
    return {name: round(d * SIZES[name]) for name, d in record["layer_density"].items()}


def test_conv_positions_and_forward_flops_by_hand():
    """Conv-2 on 32x32x3 images: both 3x3 convs ('same' padding) write 32x32 positions, the dense
    layers 1; a forward is 2 FLOPs per kept weight and position."""
    setup = build_setup(tiny_config(model="conv2", **{"data.name": "synthetic_cifar10"}))
    positions = layer_positions(setup)
    assert positions["conv1"] == positions["conv2"] == 32 * 32
    assert positions["fc1"] == positions["output"] == 1
    counts = {"conv1/kernel": 10, "conv2/kernel": 0, "fc1/kernel": 7, "fc2/kernel": 0, "output/kernel": 3}
    assert forward_flops(counts, positions) == 2 * (10 * 1024 + 7 + 3)


def test_lottery_levels_cost_three_forwards_per_kept_weight_and_sum_to_the_cumulative(tmp_path, finished_tiny_run):
    assert tiny_config(levels=2) == tiny_config()  # the session's finished run (copied: controls are added)
    trained, records = finished_tiny_run
    copy_run(trained, tmp_path)
    total = 0
    for record in records:
        kept = sum(_kept(record).values())
        assert record["weights_remaining"] == kept
        assert record["iterations"] == 35
        assert record["train_flops"] == 35 * BATCH * 3 * 2 * kept  # forward + backward (2x), dense layers
        total += record["train_flops"]
        assert record["cumulative_train_flops"] == total
        assert record["cumulative_iterations"] == 35 * (record["level"] + 1)
    run = next(tmp_path.iterdir())
    controls = run_controls(run, ["imp+reinit", "random_layerwise"], "2", progress=False, wandb="disabled")
    reinit, random = controls["imp+reinit"][0], controls["random_layerwise"][0]
    assert reinit["train_flops"] == random["train_flops"] == records[2]["train_flops"]  # same counts, same length
    # the ticket's mask came from levels 0 and 1: a transform of it builds on them; a random mask does not
    assert reinit["cumulative_train_flops"] == records[1]["cumulative_train_flops"] + reinit["train_flops"]
    assert random["cumulative_train_flops"] == random["train_flops"]
    saved = json.loads((run / "replicate_00" / "results.json").read_text())
    assert saved[2]["cumulative_train_flops"] == records[2]["cumulative_train_flops"]


def test_control_bases():
    main = {0: {"cumulative_iterations": 10, "cumulative_train_flops": 100},
            1: {"cumulative_iterations": 20, "cumulative_train_flops": 150}}
    assert control_base("oneshot", 2, "rewind", main, 0, 7) == main[0]
    assert control_base("main", 2, "rewind", main, 0, 7) == main[1]
    assert control_base("random_layerwise", 2, "lr_rewind", main, 0, 7) == main[1]  # starts from trained weights
    assert control_base("random_layerwise", 2, "rewind", main, 3, 7) == {"cumulative_iterations": 3,
                                                                         "cumulative_train_flops": 21}
    assert control_base("at_init", 2, "rewind", main, 3, 7) is None
    assert cumulative({"iterations": 5, "train_flops": 9}, main[1])["cumulative_train_flops"] == 159
    unknown = {"cumulative_iterations": None, "cumulative_train_flops": None}  # a run recorded before costs
    assert "cumulative_train_flops" not in cumulative({"iterations": 5, "train_flops": 9}, unknown)


def test_gradual_pays_the_mask_in_force_at_every_iteration(tmp_path):
    """60 iterations, pruning at t = 0, 10, ..., 40 (dt 10, T_end 45): the forward of each iteration
    recomputed here from Zhu & Gupta's cubic, per layer, independently of the library's schedule."""
    config = tiny_config(method="gradual", **{"training.length": "60it", "sparse.densities": (0.2,), "sparse.dt": 10})
    (record,) = run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    final = _kept(record)
    t0, n, dt = 0, 4, 10
    per_iteration = []
    for t in range(60):
        last = max(u for u in range(t0, t0 + n * dt + 1, dt) if u <= t)
        frac = (1 - (last - t0) / (n * dt)) ** 3
        counts = {k: final[k] + round((SIZES[k] - final[k]) * frac) for k in SIZES}
        per_iteration.append(2 * sum(counts.values()))
    assert gradual.update_steps(t0, n, dt)[-1] == 40
    assert record["train_flops"] == 3 * BATCH * sum(per_iteration)
    assert record["cumulative_train_flops"] == record["train_flops"]  # a method's density: its own training


def test_rigl_pays_the_dense_gradient_at_its_updates(tmp_path):
    config = tiny_config(method="rigl", **{"training.length": "60it", "sparse.densities": (0.2,), "sparse.dt": 10})
    (record,) = run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    kept, dense = sum(_kept(record).values()), sum(SIZES.values())
    updates = len([t for t in range(60) if t % 10 == 0 and t <= 45])  # due at 0, 10, ..., 40
    want = 3 * BATCH * 60 * 2 * kept + updates * BATCH * 2 * (dense - kept)
    assert record["train_flops"] == want
    static = run_lottery(replace(config, method="static"), runs_root=tmp_path, progress=False, wandb="disabled")[0]
    assert static["train_flops"] == 3 * BATCH * 60 * 2 * kept
    assert np.isclose(record["train_flops"] / static["train_flops"], 1 + updates * (dense - kept) / (3 * 60 * kept))


@pytest.mark.parametrize("rewind", ["0it", "10it"])
def test_a_level_retrained_from_the_rewind_step_costs_the_iterations_after_it(tmp_path, rewind):
    records = run_lottery(tiny_config(levels=1, rewind=rewind), runs_root=tmp_path, progress=False, wandb="disabled")
    k = int(rewind.removesuffix("it"))
    assert [r["iterations"] for r in records] == [35, 35 - k]


def test_an_early_bird_ticket_pays_its_dense_search_then_its_training(tmp_path):
    config = tiny_config(method="earlybird", **{"training.length": "60it", "sparse.densities": (0.2,),
                                                 "sparse.eb_every": "10it", "sparse.eb_epsilon": 1.0,
                                                 "sparse.eb_window": 2})
    (record,) = run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    search = record["earlybird_iteration"]
    assert 0 < search < 60  # epsilon 1 with a window of 2 masks: found at the second check
    kept, dense = sum(_kept(record).values()), sum(SIZES.values())
    assert record["iterations"] == search + 60
    assert record["train_flops"] == 3 * BATCH * 2 * (search * dense + 60 * kept)


def test_prunable_biases_cost_one_add_per_kept_bias():
    """The MNIST-1D MLP prunes its biases (as the notebook): each kept bias is one add per example."""
    positions = {"fc1": 1, "conv": 9}
    assert forward_flops({"fc1/kernel": 5, "fc1/bias": 3, "conv/kernel": 2, "conv/bias": 1}, positions) == \
        2 * 5 + 3 + 2 * 2 * 9 + 9
    with pytest.raises(ValueError, match="no output positions"):
        forward_flops({"norm/scale": 1}, positions)


def test_the_ticket_cost_sweeps_routes_cost_what_they_train(tmp_path):
    """The smoke cells of `ticket_cost_lenet300`, in this process: at one density every method that
    trains once costs at least the static mask's training, each for its own reason, and IMP's levels
    cost one training each."""
    from lth.sweeps.file import load_sweep

    plan = load_sweep("ticket_cost_lenet300", "smoke")
    out = {cell.config.name: run_lottery(cell.config, runs_root=tmp_path, progress=False, wandb="disabled")
           for cell in plan.cells}
    static = out["static"][0]["cumulative_train_flops"]
    assert all(out[name][0]["weights_remaining"] == out["static"][0]["weights_remaining"]
               for name in ("earlybird", "gradual", "rigl", "snip"))  # one distribution: the same counts
    assert out["snip"][0]["cumulative_train_flops"] == static  # a fixed mask, chosen at init
    assert out["rigl"][0]["cumulative_train_flops"] > static  # + dense gradients at its updates
    assert out["gradual"][0]["cumulative_train_flops"] > static  # starts dense
    eb = out["earlybird"][0]
    assert eb["cumulative_train_flops"] == static + 3 * 60 * 2 * 266200 * eb["earlybird_iteration"]  # + the search
    imp, oneshot = out["imp_p50"], out["oneshot_25"]
    assert imp[2]["cumulative_train_flops"] == sum(r["train_flops"] for r in imp)
    assert oneshot[1]["cumulative_train_flops"] == imp[0]["train_flops"] + oneshot[1]["train_flops"]
    assert oneshot[1]["weights_remaining"] == imp[2]["weights_remaining"]  # 0.75 at once = 0.5 twice
