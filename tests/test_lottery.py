"""The IMP driver: rewinding, determinism, compilation reuse, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import compiles_after_first_level, copy_run, tiny_config

from lth.errors import ConfigError, MaskError
from lth.lottery import Hooks, init_params, lottery_levels, prepare
from lth.jobs.lottery import run_lottery
from lth.sparsity.masks import layer_counts, make_mask, mask_leaves, named_leaves


class Recorder(Hooks):
    def __init__(self):
        self.starts, self.at_step = {}, {}

    def level_start(self, level, state, mask):
        self.starts[level] = (state, mask)

    def chunk_done(self, level, state, mask, new, evaluations):
        self.at_step[(level, int(state.step))] = state


def assert_rewound(start_state, mask, rewind_params):
    got, want = named_leaves(start_state.params), named_leaves(rewind_params)
    masks = named_leaves(mask)
    for name, value in got.items():
        value, expected = np.asarray(value), np.asarray(want[name])
        m = masks.get(name)
        if m is None:
            np.testing.assert_array_equal(value, expected)  # biases: rewound too
        else:
            m = np.asarray(m)
            np.testing.assert_array_equal(value[m], expected[m])  # survivors: exactly the rewind values
            assert np.all(value[~m] == 0.0)


@pytest.fixture(scope="module")
def three_levels():
    """(setup, Recorder, outcomes) of a 3-level tiny lottery rewinding to init, trained once for the
    tests that read it (the hooks only record: the outcomes are those of a run without them)."""
    setup = prepare(tiny_config(levels=3))
    hooks = Recorder()
    return setup, hooks, list(lottery_levels(setup, hooks=hooks))


def test_rewind_to_init_restores_initial_values(three_levels):
    setup, hooks, outcomes = three_levels
    params0, _ = init_params(setup)
    for level in range(1, 4):
        state, mask = hooks.starts[level]
        assert int(state.step) == 0
        assert_rewound(state, mask, params0)
        # the mask comes from the previous level's *trained* weights
        prev = named_leaves(outcomes[level - 1].state.params)
        for name, m in mask_leaves(mask).items():
            kept = np.abs(np.asarray(prev[name]))[np.asarray(m)]
            alive_before = np.asarray(mask_leaves(outcomes[level - 1].mask)[name])
            dropped = np.abs(np.asarray(prev[name]))[alive_before & ~np.asarray(m)]
            assert kept.min() >= dropped.max()


def test_rewind_to_step_k_restores_step_k_and_fresh_optimizer():
    setup = prepare(tiny_config(rewind="13it", levels=1))
    hooks = Recorder()
    list(lottery_levels(setup, hooks=hooks))
    state_k = hooks.at_step[(0, 13)]
    start, mask = hooks.starts[1]
    assert int(start.step) == 13
    assert_rewound(start, mask, state_k.params)
    assert all(float(jnp.abs(x).sum()) == 0.0 for x in jax.tree.leaves(start.opt_state) if x.dtype == jnp.float32)
    assert (1, 35) in hooks.at_step and (1, 13) not in hooks.at_step  # level 1 trains 13 -> 35


def test_records_and_densities(three_levels):
    records = [o.record for o in three_levels[2]]
    assert [r["level"] for r in records] == [0, 1, 2, 3]
    assert records[0]["density"] == 1.0
    # mlp_tiny on 40 inputs: fc1 40x32, fc2 32x16 at 30 %, output 16x10 at 15 % per level
    for r in records:
        L = r["level"]
        expected = round(1280 * 0.7**L) + round(512 * 0.7**L) + round(160 * 0.85**L)
        assert r["weights_remaining"] == expected
        assert r["density"] == pytest.approx(expected / 1952)
        for key in ("test_accuracy", "early_stop_iteration", "early_stop_test_accuracy", "best_test_accuracy"):
            assert key in r
        assert r["early_stop_iteration"] in (10, 20, 30, 35)


def test_same_seed_identical_results(tmp_path, finished_tiny_run):
    config = tiny_config()
    run_lottery(config, runs_root=tmp_path / "b", progress=False)  # a second training of the session's run
    a = finished_tiny_run[0] / "replicate_00" / "results.json"
    (b,) = list((tmp_path / "b").glob("*/replicate_00/results.json"))
    assert a.read_bytes() == b.read_bytes()
    assert a.parent.parent.name == b.parent.parent.name  # same config -> same run directory name
    run_lottery(tiny_config(seed=1), runs_root=tmp_path / "c", progress=False)
    (c,) = list((tmp_path / "c").glob("*/replicate_00/results.json"))
    assert c.read_bytes() != a.read_bytes()


def test_no_compilation_after_level_0():
    """Level 0 compiles the pruning program ahead (`warm_pruning`): the first pruned level builds
    nothing that a steady one does not, so it costs no more."""
    assert compiles_after_first_level(prepare(tiny_config(levels=4, rewind="13it"))) == 0, \
        "levels 1-4 compiled something (the chunk, pruning or anything else)"


@pytest.mark.parametrize("changes,match", [
    ({"levels": -1}, "levels must be >= 0"),
    ({"pruning.fraction": 1.0}, "prune fraction"),
    ({"pruning.fraction": 0.0}, "prune fraction"),
    ({"model": "resnet9000"}, "unknown model"),
    ({"data.name": "imagenet"}, "unknown dataset"),
    ({"training.batch_size": 10_000}, "batch size 10000 is larger"),
    ({"rewind": "40it"}, "rewind point"),
    ({"rewind": "1ep"}, None),  # 35 steps per epoch: 1ep = 35 = the end -> error
    ({"optimizer.name": "adagrad"}, "unknown optimizer"),
    ({"rewind": "soon"}, "invalid duration"),
])
def test_bad_input_raises_value_error_and_writes_nothing(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match or "rewind point"):
        run_lottery(tiny_config(**changes), runs_root=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_starting_mask_must_fit(tmp_path):
    setup = prepare(tiny_config())
    other = prepare(tiny_config(model="lenet300_100", **{"data.name": "mnist5k"}))
    wrong = make_mask(init_params(other)[0])
    with pytest.raises(MaskError, match="does not fit"):
        run_lottery(setup.config, runs_root=tmp_path / "runs", mask=wrong, progress=False)
    assert not (tmp_path / "runs").exists()


def test_starting_mask_is_trained_and_gets_its_own_run(tmp_path):
    config = tiny_config(levels=1)
    first = run_lottery(config, runs_root=tmp_path, progress=False)
    (run,) = list(tmp_path.iterdir())
    mask_file = run / "replicate_00" / "masks" / "level_01.npz"
    records = run_lottery(config, runs_root=tmp_path, mask=mask_file, progress=False)
    assert len(list(tmp_path.iterdir())) == 2
    assert records[0]["weights_remaining"] == first[1]["weights_remaining"]
    assert records[1]["weights_remaining"] < records[0]["weights_remaining"]


def test_run_directory_contents(tmp_path, finished_tiny_run):
    trained, records = finished_tiny_run
    copy_run(trained, tmp_path)  # the session's finished run of tiny_config(): what training it here writes
    (run,) = list(tmp_path.iterdir())
    names = sorted(p.name for p in run.iterdir())
    assert names == ["accuracy_vs_cost.png", "accuracy_vs_sparsity.png", "config.json", "lock", "replicate_00",
                     "results.json"]
    rep = run / "replicate_00"
    assert sorted(p.name for p in rep.iterdir()) == ["checkpoints", "lock", "manifest.json", "masks", "metrics.jsonl",
                                                     "results.json"]
    assert sorted(p.name for p in (rep / "masks").iterdir()) == ["level_00.npz", "level_01.npz", "level_02.npz"]
    from lth.store import load_mask
    from lth.store.io import read_jsonl

    params0, _ = init_params(prepare(tiny_config()))
    mask2 = load_mask(rep / "masks" / "level_02.npz", params0)
    assert sum(k for k, _ in layer_counts(mask2).values()) == records[2]["weights_remaining"]
    rows = read_jsonl(rep / "metrics.jsonl")
    assert [r["iteration"] for r in rows if r.get("level") == 1 and "iteration" in r] == [10, 20, 30, 35]
    import json

    top = json.loads((run / "results.json").read_text())
    for key in ("level", "density", "test_accuracy", "early_stop_iteration", "early_stop_test_accuracy",
                "best_test_accuracy"):
        assert [r[key] for r in top] == [r[key] for r in records]
    # a complete run is not recomputed
    assert run_lottery(tiny_config(), runs_root=tmp_path, progress=False) == records


@pytest.mark.parametrize("retraining", ["lr_rewind", "finetune"])
def test_lr_rewinding_and_finetuning_keep_the_final_weights(retraining):
    # a decaying (step) schedule, so that replaying it from k differs from the final learning rate
    config = tiny_config(rewind="13it", levels=2, retraining=retraining, **{
        "optimizer.schedule": "step", "optimizer.milestones": ("20it",), "optimizer.gamma": 0.1})
    setup = prepare(config)
    hooks = Recorder()
    outcomes = list(lottery_levels(setup, hooks=hooks))
    for level in (1, 2):
        start, mask = hooks.starts[level]
        assert int(start.step) == 13
        assert_rewound(start, mask, outcomes[level - 1].state.params)  # survivors keep their trained values
    schedule = setup.retrain_trainer.schedule
    if retraining == "lr_rewind":
        assert float(schedule(13)) == pytest.approx(1e-2) and float(schedule(30)) == pytest.approx(1e-3)
    else:
        assert float(schedule(13)) == pytest.approx(1e-3) == float(schedule(30))  # the final learning rate


def test_weight_rewinding_differs_from_lr_rewinding():
    base = {"rewind": "13it", "levels": 1, "optimizer.schedule": "step", "optimizer.milestones": ("20it",)}
    records = {r: list(lottery_levels(prepare(tiny_config(retraining=r, **base))))[1].record
               for r in ("rewind", "lr_rewind", "finetune")}
    assert len({r["test_accuracy"] for r in records.values()}) == 3
    with pytest.raises(ConfigError, match="unknown retraining"):
        prepare(tiny_config(retraining="continue"))


def test_records_carry_mask_analysis():
    from lth.sparsity.masks import overlap, sign_agreement

    setup = prepare(tiny_config(levels=2))
    outcomes = list(lottery_levels(setup))
    params0, _ = init_params(setup)
    assert "overlap_with_previous" not in outcomes[0].record
    for level in (1, 2):
        record = outcomes[level].record
        assert record["overlap_with_previous"] == pytest.approx(overlap(outcomes[level].mask, outcomes[level - 1].mask))
        # nested masks: the overlap is the density ratio
        assert record["overlap_with_previous"] == pytest.approx(
            record["weights_remaining"] / outcomes[level - 1].record["weights_remaining"])
        agreement = sign_agreement(params0, outcomes[level].state.params, outcomes[level].mask)
        assert record["sign_agreement_with_init"] == agreement and 0.5 < agreement <= 1.0
    # hand-worked: 3 kept weights, two keep their sign
    a = {"l": {"kernel": jnp.array([1.0, -2.0, 3.0, 4.0])}}
    b = {"l": {"kernel": jnp.array([0.5, 2.0, 1.0, -9.0])}}
    mask = {"l": {"kernel": jnp.array([True, True, True, False])}}
    assert sign_agreement(a, b, mask) == pytest.approx(2 / 3)
