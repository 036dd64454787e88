"""Grokking tickets (Minegishi et al. 2023): the modular-addition data against NumPy, the embedding MLP
against the reference's formulation, the first-reach record on a hand-worked curve, and the
oneshot_early control (level 0's weights part-way, pruned by magnitude) against NumPy."""

import json

import jax
import numpy as np
import pytest

from lth.data.modular import modular_addition, modular_split
from lth.errors import ConfigError
from lth.spec.config import replace
from lth.training.loop import first_reach, summarize
from tests.helpers import tiny_config


def _decode(x_NxP: np.ndarray) -> list[tuple[int, int]]:
    """The pair (a <= b) a two-hot row encodes."""
    pairs = []
    for row in x_NxP:
        hot = np.flatnonzero(row)
        pairs.append((int(hot[0]), int(hot[0])) if len(hot) == 1 else (int(hot[0]), int(hot[1])))
    return pairs


@pytest.mark.parametrize("p", [67, 7])
def test_modular_addition_is_every_unordered_pair_labelled_a_plus_b_mod_p_split_40_60(tmp_path, p):
    ds = modular_addition(tmp_path, p=p)
    n = p * (p + 1) // 2
    assert len(ds.y_train) == int(0.4 * n) and len(ds.y_test) == n - int(0.4 * n) and len(ds.y_val) == 0
    assert ds.x_train.dtype == np.float32 and ds.input_shape == (p,) and ds.num_classes == p
    train, test = _decode(ds.x_train), _decode(ds.x_test)
    assert not set(train) & set(test)  # no pair in both
    assert sorted(train + test) == [(a, b) for a in range(p) for b in range(a, p)]  # every pair once
    for x, y, pairs in ((ds.x_train, ds.y_train, train), (ds.x_test, ds.y_test, test)):
        assert np.array_equal(y, np.array([(a + b) % p for a, b in pairs]))
        assert np.array_equal(x.sum(axis=1), np.full(len(y), 2.0, np.float32))  # a 2 where a = b
    if p == 67:
        assert (len(ds.y_train), len(ds.y_test)) == (911, 1367)  # 40 % of 2,278, the reference's counts
    again = modular_addition(tmp_path, p=p)
    assert np.array_equal(again.x_train, ds.x_train)  # a fixed split, whatever the experiment seed


def test_a_validation_split_comes_out_of_the_training_pairs_and_too_many_is_one_line(tmp_path):
    ds = modular_addition(tmp_path, validation_size=100)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (811, 100, 1367)
    train_idx, _ = modular_split(67, 0.4, 0)
    assert len(train_idx) == 911
    with pytest.raises(ConfigError, match="validation size 911 leaves no training pairs") as err:
        modular_addition(tmp_path, validation_size=911)
    assert "\n" not in str(err.value)


def test_embed_mlp_equals_the_references_embed_each_operand_project_and_sum(tmp_path):
    """The reference (`OnlyMLP`) looks up W_E for a and for b, projects each, sums, ReLU, projects back,
    unembeds; lth runs the same matrices on one-hot(a) + one-hot(b): equal logits (NumPy reference)."""
    from lth.models import get_model

    ds = modular_addition(tmp_path, p=11)
    model = get_model("embed_mlp", ds.input_shape, ds.num_classes)
    params, state = model.init(jax.random.key(0))
    w = {name: np.asarray(params[name]["kernel"], np.float64) for name in ("embed", "inproj", "outproj", "unembed")}
    assert {k: v.shape for k, v in w.items()} == {"embed": (11, 500), "inproj": (500, 48), "outproj": (48, 500),
                                                  "unembed": (500, 11)}
    assert set(params) == set(w) and all(set(params[k]) == {"kernel"} for k in w)  # no biases
    assert abs(w["embed"].std() * np.sqrt(11) - 1) < 0.05 and abs(w["inproj"].std() * np.sqrt(500) - 1) < 0.05
    pairs = _decode(ds.x_test)
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    hidden = np.maximum(w["embed"][a] @ w["inproj"] + w["embed"][b] @ w["inproj"], 0.0)
    want = hidden @ w["outproj"] @ w["unembed"]
    got, _ = model.apply(params, state, ds.x_test, False)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_first_reach_on_a_hand_worked_accuracy_curve():
    curve = [{"iteration": i, "test_accuracy": acc, "val_loss": float("nan"), "val_accuracy": float("nan")}
             for i, acc in ((100, 0.01), (200, 0.50), (300, 0.96), (400, 0.94), (500, 0.99))]
    assert first_reach(curve, "test_accuracy", 0.95) == 300  # the first at or above, not the last crossing
    assert first_reach(curve, "test_accuracy", 0.96) == 300  # >=, not >
    assert first_reach(curve, "test_accuracy", 0.97) == 500
    assert first_reach(curve, "test_accuracy", 0.999) is None
    assert summarize(curve)["first_test_95_iteration"] == 300
    assert summarize(curve, from_iteration=400)["first_test_95_iteration"] == 500  # a final mask's window only


def test_oneshot_early_prunes_level_0s_weights_at_its_iteration_by_magnitude(tmp_path):
    """The control's mask is the global magnitude mask (NumPy) of level 0's weights at iteration k
    (trained again from the seed), at level 1's count, and not the ticket's (the final weights')."""
    from lth.jobs.lottery import run_lottery
    from lth.lottery import prepare
    from lth.lottery.levels import level0_at
    from lth.store import load_mask

    config = tiny_config(levels=1, **{"pruning.strategy": "global", "pruning.layer_fractions": (),
                                      "pruning.oneshot_early_at": "20it"})
    records = run_lottery(config, runs_root=tmp_path, wandb="disabled", progress=False,
                          controls=("oneshot_early",), control_levels="1")
    (run,) = list(tmp_path.iterdir())
    rep = run / "replicate_00"
    (control,) = json.loads((rep / "controls" / "oneshot_early" / "results.json").read_text())
    assert control["weights_remaining"] == records[1]["weights_remaining"]
    assert control["cumulative_iterations"] == 20 + 35  # the 20 dense iterations it pruned, then its own level
    setup = prepare(config)
    params_k, _ = level0_at(setup, 20)
    mask = load_mask(rep / "controls" / "oneshot_early" / "masks" / "level_01.npz", params_k)
    kernels = {name: np.abs(np.asarray(params_k[name]["kernel"])) for name in params_k}
    threshold = np.sort(np.concatenate([v.ravel() for v in kernels.values()]))[::-1][control["weights_remaining"] - 1]
    for name, magnitude in kernels.items():
        assert np.array_equal(np.asarray(mask[name]["kernel"]), magnitude >= threshold), name
    ticket = load_mask(rep / "masks" / "level_01.npz", params_k)
    assert any(not np.array_equal(mask[n]["kernel"], ticket[n]["kernel"]) for n in kernels)  # not the final's mask


def test_oneshot_early_without_its_iteration_or_past_the_end_is_one_line(tmp_path):
    from lth.jobs.lottery import run_lottery

    with pytest.raises(ConfigError, match="set it, e.g. --set pruning.oneshot_early_at=2000it") as err:
        run_lottery(tiny_config(levels=1), runs_root=tmp_path, wandb="disabled", progress=False,
                    controls=("oneshot_early",))
    assert "\n" not in str(err.value) and not list(tmp_path.iterdir())  # nothing written
    with pytest.raises(ConfigError, match="after its last"):
        from lth.lottery import prepare
        from lth.lottery.controls import check_controls
        from lth.spec.controls import parse_control

        check_controls(prepare(replace(tiny_config(), **{"pruning.oneshot_early_at": "36it"})),
                       [parse_control("oneshot_early")])
    with pytest.raises(ConfigError, match="prunes level 0 part-way"):
        run_lottery(replace(tiny_config(levels=1), retraining="lr_rewind", **{"pruning.oneshot_early_at": "20it"}),
                    runs_root=tmp_path, wandb="disabled", progress=False, controls=("oneshot_early",))


def test_the_aggregate_of_first_reach_is_over_the_replicates_that_reached_and_counts_them():
    from lth.store import aggregate

    rows = [[{"level": 1, "first_test_95_iteration": it}] for it in (300, None, 500)]
    (record,) = aggregate(rows)
    assert record["replicates"] == 3 and record["first_test_95_iteration_count"] == 2
    assert record["first_test_95_iteration"] == 400 and record["first_test_95_iteration_sample_std"] == pytest.approx(
        2 ** 0.5 * 100)
    (none,) = aggregate([[{"level": 0, "first_test_95_iteration": None}]])
    assert none["first_test_95_iteration"] is None and none["first_test_95_iteration_count"] == 0


def test_the_grokking_experiment_runs_its_dense_ticket_and_controls_in_one_command(tmp_path, capsys):
    """`lth run grokking_tickets --variant smoke`: the main line, then every control of the paper at level 1,
    each record with its first-reach field (None at 40 iterations: nothing generalises that soon)."""
    from lth.cli import main
    from lth.spec.experiments import load_experiment

    experiment = load_experiment("grokking_tickets", "smoke")
    assert set(experiment.controls) == {"oneshot_early", "random_global", "snip", "grasp", "synflow"}
    code = main(["run", "grokking_tickets", "--variant", "smoke", "--runs", str(tmp_path), "--no-progress",
                 "--wandb", "disabled"])
    assert code == 0, capsys.readouterr().err
    (run,) = list(tmp_path.iterdir())
    main_records = json.loads((run / "replicate_00" / "results.json").read_text())
    assert [r["level"] for r in main_records] == [0, 1, 2]
    assert main_records[1]["density"] == pytest.approx(0.4, abs=1e-5)  # 60 % of the four matrices pruned, globally
    for name in experiment.controls:
        (record,) = json.loads((run / "replicate_00" / "controls" / name / "results.json").read_text())
        assert record["level"] == 1 and record["weights_remaining"] == main_records[1]["weights_remaining"], name
        assert "first_test_95_iteration" in record and record["final_iteration"] == 40, name
