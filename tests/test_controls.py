"""Controls: masks with exactly the intended densities, correct initial weights, stored beside the main line."""

import json

import numpy as np
import pytest
from helpers import copy_run, tiny_config

from lth.errors import ConfigError
from lth.lottery import init_params, lottery_levels, prepare
from lth.lottery.controls import (
    Control,
    LevelInputs,
    control_mask,
    control_start,
    counts_of,
    finalize_mask,
    parse_control,
    parse_controls,
)
from lth.spec.parse import parse_levels
from lth.jobs.controls import run_controls
from lth.sparsity.masks import mask_leaves, named_leaves


@pytest.fixture(scope="module")
def main_line():
    setup = prepare(tiny_config(levels=3))
    outcomes = list(lottery_levels(setup))
    params0, state0 = init_params(setup)
    return setup, outcomes, params0, state0


def inputs_for(outcomes, level, **extra):
    return LevelInputs(level, outcomes[level].mask, outcomes[0].mask, **extra)


def as_np(mask):
    return {k: np.asarray(v) for k, v in mask_leaves(mask).items()}


def test_parse():
    assert parse_control("snip+shuffle") == Control("snip", ("shuffle",))
    assert [c.name for c in parse_controls("reinit,random_layerwise")] == ["imp+reinit", "random_layerwise"]
    assert parse_levels("0-3,7, 12", 12) == [0, 1, 2, 3, 7, 12]
    for bad, match in [("magic", "unknown control source"), ("snip+twist", "unknown control transform"),
                       ("imp", "main line"), ("random_global+invert", "drop"), ("imp+reinit+reinit", "repeats")]:
        with pytest.raises(ConfigError, match=match):
            parse_control(bad)
    for bad in ("1-", "3-1", "a", "1,,2"):
        with pytest.raises(ConfigError):
            parse_levels(bad, 5)
    with pytest.raises(ConfigError, match="beyond"):
        parse_levels("0-6", 5)


def test_random_layerwise_keeps_per_layer_counts(main_line):
    setup, outcomes, params0, state0 = main_line
    mask = control_mask(setup, Control("random_layerwise"), inputs_for(outcomes, 3), params0, state0)
    assert counts_of(mask) == counts_of(outcomes[3].mask)
    assert any(np.any(a != b) for a, b in zip(as_np(mask).values(), as_np(outcomes[3].mask).values()))


def test_random_global_keeps_the_overall_count_only(main_line):
    """Global over the layers at the default rate; a layer with a rate of its own (tiny_config prunes
    output/kernel at 0.15) keeps exactly the main line's count, so the control differs from the ticket
    only where the ticket's own choice (global ranking) differs."""
    setup, outcomes, params0, state0 = main_line
    mask = control_mask(setup, Control("random_global"), inputs_for(outcomes, 3), params0, state0)
    ours, ticket = counts_of(mask), counts_of(outcomes[3].mask)
    assert ours["output/kernel"] == ticket["output/kernel"]
    pool = [name for name in ticket if name != "output/kernel"]
    assert sum(ours[n] for n in pool) == sum(ticket[n] for n in pool)
    assert ours != ticket  # spread uniformly over the pool, not per layer
    sizes = {name: m.size for name, m in as_np(mask).items()}
    overall = sum(ours[n] for n in pool) / sum(sizes[n] for n in pool)
    for name in pool:  # uniform: each pooled layer's density close to the pool's
        assert abs(ours[name] / sizes[name] - overall) < 0.1, name


def test_shuffle_preserves_counts_and_moves_positions(main_line):
    setup, outcomes, params0, state0 = main_line
    control = parse_control("imp+shuffle")
    mask = finalize_mask(setup, control, 3, control_mask(setup, control, inputs_for(outcomes, 3), params0, state0))
    assert counts_of(mask) == counts_of(outcomes[3].mask)
    for name, m in as_np(mask).items():
        original = as_np(outcomes[3].mask)[name]
        assert np.count_nonzero(m != original) > 0.2 * m.size * min(m.mean(), 1 - m.mean()), name


def test_reinit_keeps_the_mask_and_changes_the_values(main_line):
    setup, outcomes, params0, state0 = main_line
    control = parse_control("imp+reinit")
    mask = finalize_mask(setup, control, 2, control_mask(setup, control, inputs_for(outcomes, 2), params0, state0))
    assert counts_of(mask) == counts_of(outcomes[2].mask)
    assert all(np.array_equal(a, b) for a, b in zip(as_np(mask).values(), as_np(outcomes[2].mask).values()))
    start = control_start(setup, control, 2, mask, params0, state0, (params0, state0))
    rewound = control_start(setup, Control("random_layerwise"), 2, mask, params0, state0, (params0, state0))
    for name, m in as_np(mask).items():
        fresh = np.asarray(named_leaves(start.params)[name])
        original = np.asarray(named_leaves(rewound.params)[name])
        assert np.all(fresh[~m] == 0) and not np.allclose(fresh[m], original[m])
        assert fresh[m].std() == pytest.approx(original[m].std(), rel=0.3)  # same init distribution


def test_invert_keeps_the_smallest_trained_weights(main_line):
    setup, outcomes, params0, state0 = main_line
    inputs = inputs_for(outcomes, 2, previous_final=outcomes[1].state.params, previous_mask=outcomes[1].mask)
    mask = control_mask(setup, parse_control("imp+invert"), inputs, params0, state0)
    assert counts_of(mask) == counts_of(outcomes[2].mask)
    weights = named_leaves(outcomes[1].state.params)
    for name, m in as_np(mask).items():
        alive = as_np(outcomes[1].mask)[name]
        w = np.abs(np.asarray(weights[name]))
        kept, dropped = w[m], w[alive & ~m]
        assert kept.max() <= dropped.min()


def test_oneshot_equals_magnitude_pruning_of_the_dense_network(main_line):
    setup, outcomes, params0, state0 = main_line
    inputs = inputs_for(outcomes, 3, dense_final=outcomes[0].state.params)
    mask = control_mask(setup, Control("oneshot"), inputs, params0, state0)
    assert counts_of(mask) == counts_of(outcomes[3].mask)
    weights = named_leaves(outcomes[0].state.params)
    for name, m in as_np(mask).items():
        w = np.abs(np.asarray(weights[name]))
        assert w[m].min() >= w[~m].max()
    level1 = control_mask(setup, Control("oneshot"), inputs_for(outcomes, 1, dense_final=outcomes[0].state.params),
                          params0, state0)
    assert all(np.array_equal(a, b) for a, b in zip(as_np(level1).values(), as_np(outcomes[1].mask).values()))


def test_run_controls_stores_results_beside_the_main_line_and_resumes(tmp_path, capsys, finished_tiny_run):
    from lth.cli import main

    assert tiny_config(levels=2) == tiny_config()  # the session's finished run (copied: controls are added)
    trained, main_records = finished_tiny_run
    copy_run(trained, tmp_path)
    (run,) = list(tmp_path.iterdir())
    results = run_controls(run, "reinit,random_layerwise", "1-2", wandb="disabled", progress=False)
    assert sorted(results) == ["imp+reinit", "random_layerwise"]
    for name, records in results.items():
        assert [r["level"] for r in records] == [1, 2]
        assert [r["weights_remaining"] for r in records] == [m["weights_remaining"] for m in main_records[1:]]
        stored = json.loads((run / "replicate_00" / "controls" / name / "results.json").read_text())
        assert stored == records
        assert (run / "replicate_00" / "controls" / name / "masks" / "level_02.npz").exists()
    before = (run / "replicate_00" / "controls" / "imp+reinit" / "results.json").stat().st_mtime_ns
    code = main(["control", run.name, "reinit", "--levels", "1-2", "--runs", str(tmp_path), "--no-progress",
                 "--wandb", "disabled"])
    assert code == 0
    assert (run / "replicate_00" / "controls" / "imp+reinit" / "results.json").stat().st_mtime_ns == before
    code = main(["control", run.name, "reinit", "--levels", "0-5", "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "beyond the run's last level 2" in err and len(err.strip().splitlines()) == 1


def test_control_groups_pool_per_module_hand_worked():
    """random_modulewise's groups: each module's leaves at the default rate pooled (kernel with its
    bias), a leaf with a rate of its own (tiny_config: output/kernel at 0.15) alone."""
    from lth.lottery.controls import control_groups

    spec = tiny_config(**{"pruning.prunable": (r".*kernel", r".*bias")}).pruning
    target = {"fc1/kernel": 900, "fc1/bias": 30, "fc2/kernel": 300, "fc2/bias": 12, "output/kernel": 140,
              "output/bias": 7}
    groups = {g.names: g.keep for g in control_groups(spec, target, per_module=True)}
    assert groups == {("output/kernel",): 140, ("fc1/kernel", "fc1/bias"): 930, ("fc2/kernel", "fc2/bias"): 312,
                      ("output/bias",): 7}
    pooled = {g.names: g.keep for g in control_groups(spec, target)}  # random_global: one pool
    assert pooled == {("output/kernel",): 140,
                      ("fc1/kernel", "fc1/bias", "fc2/kernel", "fc2/bias", "output/bias"): 900 + 30 + 300 + 12 + 7}


def test_random_modulewise_is_numpys_top_k_of_its_scores_per_module():
    """The MNIST-1D notebook's random pruning (`get_mask(torch.rand(...), p)` on each layer's weight
    and bias vector): per module, the weights with the highest i.i.d. uniform scores, as many as the
    ticket keeps in the module; its kernel/bias split is the draw's, not the ticket's. Checked
    against NumPy's argsort of the same scores; drawn afresh per level (not nested)."""
    import jax

    from lth import rng
    from lth.sparsity.scores import random_scores

    config = tiny_config(**{"pruning.strategy": "modulewise", "pruning.prunable": (r".*kernel", r".*bias"),
                            "pruning.layer_fractions": ()})
    setup = prepare(config)
    params0, state0 = init_params(setup)
    full = jax.tree.map(lambda p: np.ones(np.shape(p), bool), params0)
    ticket = jax.tree.map(lambda p: np.ones(np.shape(p), bool), params0)  # keeps every bias, half of each kernel
    for module in ticket:
        kernel = ticket[module]["kernel"]
        kernel.reshape(-1)[: kernel.size // 2] = False
    for level in (3, 4):
        mask = as_np(control_mask(setup, Control("random_modulewise"), LevelInputs(level, ticket, full),
                                  params0, state0))
        scores = random_scores(full, rng.stream(config.seed, "control:random_modulewise", level))
        for module in ticket:
            names = (f"{module}/kernel", f"{module}/bias")
            flat = np.concatenate([np.asarray(scores[n]).reshape(-1) for n in names])
            keep = sum(int(ticket[module][n.split("/")[1]].sum()) for n in names)
            expected = np.zeros(flat.size, bool)
            expected[np.argsort(-flat, kind="stable")[:keep]] = True
            got = np.concatenate([mask[n].reshape(-1) for n in names])
            assert np.array_equal(got, expected), (level, module)
            assert mask[f"{module}/bias"].sum() < ticket[module]["bias"].size  # biases pruned too
        if level == 3:
            level3 = mask
    assert any(not np.array_equal(level3[n], mask[n]) for n in mask)  # a fresh draw per level
