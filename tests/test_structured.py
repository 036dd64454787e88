"""Structured pruning (`pruning.granularity`): unit counts and scores against NumPy, pruned units
exactly zero, the function of the masked network, residual streams, exclusions, refill, controls,
end-to-end levels, config hashes and bad configs."""

import os

import jax
import numpy as np
import pytest
from helpers import tiny_config

from lth.errors import ConfigError
from lth.lottery import init_params, lottery_levels, prepare
from lth.lottery.controls import LevelInputs, control_mask, finalize_mask
from lth.models import get_model
from lth.models.spaces import unit_spaces
from lth.spec.config import ExperimentConfig, PruningConfig, replace
from lth.spec.hashing import config_hash
from lth.spec.checks import validate_config
from lth.spec.controls import check_granularity, parse_control
from lth.sparsity.masks import apply_mask, mask_leaves, named_leaves
from lth.sparsity.structured import (
    kept_units, prune_units, refill_units, structured_mask, structured_spaces, unit_counts
)

os.environ.setdefault("WANDB_MODE", "disabled")


def model_and_params(name, shape, seed=0):
    model = get_model(name, shape, 10, "default")
    params, state = model.init(jax.random.key(seed))
    # random values everywhere (biases and norms too), so that every member counts in the scores
    leaves = jax.tree.leaves(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    params = jax.tree.unflatten(jax.tree.structure(params),
                                [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    return model, params, state


def numpy_kept(params, layer, norm, keep, previous=None, rows=None):
    """Independent recomputation for an MLP layer: unit norm over kernel column + bias (the masked
    values: `rows` alive inputs), top `keep` among the previously alive units (stable: lower index first)."""
    kernel, bias = np.asarray(params[layer]["kernel"], np.float64), np.asarray(params[layer]["bias"], np.float64)
    alive = np.ones(kernel.shape[1], bool) if previous is None else previous
    rows = np.ones(kernel.shape[0], bool) if rows is None else rows
    kernel, bias = kernel * alive * rows[:, None], bias * alive
    score = (np.abs(kernel).sum(0) + np.abs(bias) if norm == "l1"
             else np.sqrt((kernel ** 2).sum(0) + bias ** 2))
    order = sorted(np.flatnonzero(alive), key=lambda i: (-score[i], i))
    kept = np.zeros_like(alive)
    kept[order[:keep]] = True
    return kept


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_mlp_unit_counts_and_scores_match_numpy(norm):
    _, params, _ = model_and_params("mlp_tiny", (40,))
    spec = PruningConfig(granularity="neuron", unit_score=norm, fraction=0.3, layer_fractions=((r"fc2/kernel", 0.5),))
    spaces = structured_spaces("mlp_tiny", params, spec)
    assert [s.name for s in spaces] == ["fc1", "fc2"]
    mask = structured_mask(params, spec, spaces)
    previous = {"fc1": None, "fc2": None}
    for level in (1, 2, 3):
        mask = prune_units(apply_mask(params, mask), mask, spaces, spec, level)
        alive, rows = kept_units(mask, spaces), {"fc1": None, "fc2": previous["fc1"]}
        for layer, fraction, size in (("fc1", 0.3, 32), ("fc2", 0.5, 16)):
            keep = int(round(size * (1 - fraction) ** level))
            want = numpy_kept(params, layer, norm, keep, previous[layer], rows[layer])
            np.testing.assert_array_equal(alive[layer], want)
            previous[layer] = want
        leaves = {k: np.asarray(v) for k, v in mask_leaves(mask).items()}
        for layer in ("fc1", "fc2"):  # members of dead units all False, alive ones' bias True
            np.testing.assert_array_equal(leaves[f"{layer}/bias"], previous[layer])
            assert not leaves[f"{layer}/kernel"][:, ~previous[layer]].any()
        # readers: fc2's rows of dead fc1 units, the output's rows of dead fc2 units
        np.testing.assert_array_equal(leaves["fc2/kernel"].any(1), previous["fc1"])
        np.testing.assert_array_equal(leaves["output/kernel"].all(1), previous["fc2"])
        assert "output/bias" not in leaves and leaves["output/kernel"][previous["fc2"]].all()  # classes untouched


def test_masked_mlp_equals_the_numpy_smaller_network():
    model, params, state = model_and_params("mlp_tiny", (40,))
    spec = PruningConfig(granularity="neuron", fraction=0.4)
    spaces = structured_spaces("mlp_tiny", params, spec)
    mask = structured_mask(params, spec, spaces)
    for level in (1, 2):
        mask = prune_units(params, mask, spaces, spec, level)
    masked = apply_mask(params, mask)
    x = np.asarray(jax.random.normal(jax.random.key(5), (6, 40)))
    logits, _ = model.apply(masked, state, x, False)
    alive = kept_units(mask, spaces)
    p = {k: np.asarray(v, np.float64) for k, v in named_leaves(params).items()}
    a1, a2 = alive["fc1"], alive["fc2"]
    h = np.maximum(x @ p["fc1/kernel"][:, a1] + p["fc1/bias"][a1], 0)
    h = np.maximum(h @ p["fc2/kernel"][a1][:, a2] + p["fc2/bias"][a2], 0)
    small = h @ p["output/kernel"][a2] + p["output/bias"]
    assert a1.sum() == round(32 * 0.36) and a2.sum() == round(16 * 0.36)
    np.testing.assert_allclose(np.asarray(logits), small, rtol=1e-4, atol=1e-4)


def members_only(mask, spaces, params):
    """The same units pruned, but the readers' rows left alone (only the members masked)."""
    from lth.models.spaces import unit_members
    alive = kept_units(mask, spaces)
    leaves = {k: None if v is None else np.ones(np.shape(v), bool) for k, v in named_leaves(mask).items()}
    for s in spaces:
        for path, axis in unit_members(s, leaves):
            index = [1] * leaves[path].ndim
            index[axis] = s.size
            leaves[path] = leaves[path] & alive[s.name].reshape(index)
    return jax.tree_util.tree_map_with_path(
        lambda p, m: None if m is None else leaves["/".join(str(k.key) for k in p)], mask, is_leaf=lambda x: x is None)


@pytest.mark.parametrize("name,shape,granularity", [
    ("lenet5", (28, 28, 1), "unit"), ("resnet20", (32, 32, 3), "channel"), ("mlp_mnist1d", (40,), "neuron")])
def test_pruned_units_output_zero_whether_or_not_readers_are_masked(name, shape, granularity):
    model, params, state = model_and_params(name, shape)
    state = jax.tree.map(lambda v: np.abs(v) + 0.5, state)  # BatchNorm statistics not trivial
    spec = PruningConfig(granularity=granularity, fraction=0.5)
    spaces = structured_spaces(name, params, spec)
    mask = prune_units(params, structured_mask(params, spec, spaces), spaces, spec, 1)
    x = np.asarray(jax.random.normal(jax.random.key(3), (2, *shape)))
    full, _ = model.apply(apply_mask(params, mask), state, x, False)
    loose, _ = model.apply(apply_mask(params, members_only(mask, spaces, params)), state, x, False)
    np.testing.assert_array_equal(np.asarray(full), np.asarray(loose))
    counts = unit_counts(mask, spaces)
    assert all(counts[s.name] == round(s.size * 0.5) for s in spaces)


def test_resnet_streams_are_zero_in_every_writer():
    params = jax.eval_shape(get_model("resnet20", (32, 32, 3), 10, "default").init, jax.random.key(0))[0]
    params = jax.tree.map(lambda s: np.random.default_rng(0).normal(size=s.shape).astype(np.float32), params)
    spec = PruningConfig(granularity="channel", fraction=0.5)
    spaces = structured_spaces("resnet20", params, spec)
    stage1 = next(s for s in spaces if s.name == "conv1")
    assert stage1.stream and set(stage1.writers) == {"conv1", "block1_1/conv2", "block1_2/conv2", "block1_3/conv2"}
    mask = prune_units(params, structured_mask(params, spec, spaces), spaces, spec, 1)
    dead = ~kept_units(mask, spaces)["conv1"]
    assert dead.sum() == 8
    leaves = {k: np.asarray(v) for k, v in mask_leaves(mask).items()}
    for writer in stage1.writers:
        assert not leaves[f"{writer}/kernel"][..., dead].any() and leaves[f"{writer}/kernel"][..., ~dead].any()
        norm = stage1.norms[writer]
        assert not leaves[f"{norm}/scale"][dead].any() and not leaves[f"{norm}/bias"][dead].any()
    for reader in ("block1_1/conv1", "block1_2/conv1", "block2_1/conv1", "block2_1/shortcut"):
        assert not leaves[f"{reader}/kernel"][..., dead, :].any()
    # the stream's channel scores sum every writer's column (L1 of the masked values, members only)
    p = named_leaves(params)
    score = sum(np.abs(np.asarray(p[f"{w}/kernel"])).reshape(-1, 16).sum(0) + np.abs(p[f"{stage1.norms[w]}/scale"])
                + np.abs(p[f"{stage1.norms[w]}/bias"]) for w in stage1.writers)
    np.testing.assert_array_equal(np.sort(np.argsort(-score, kind="stable")[:8]), np.flatnonzero(~dead))


def test_exclusions_and_granularity_kinds():
    _, params, _ = model_and_params("lenet5", (28, 28, 1))
    names = lambda g, exclude=(): [s.name for s in structured_spaces(  # noqa: E731
        "lenet5", params, PruningConfig(granularity=g, exclude=exclude))]
    assert names("neuron") == ["fc1", "fc2"] and names("channel") == ["conv1", "conv2"]
    assert names("unit") == ["conv1", "conv2", "fc1", "fc2"]
    assert names("unit", (r"conv2/kernel", r"fc1/.*")) == ["conv1", "fc2"]
    spec = PruningConfig(granularity="neuron", fraction=0.5)
    spaces = structured_spaces("lenet5", params, spec)
    mask = prune_units(params, structured_mask(params, spec, spaces), spaces, spec, 1)
    leaves = mask_leaves(mask)
    assert np.asarray(leaves["conv1/kernel"]).all() and np.asarray(leaves["conv2/kernel"]).all()  # other kind
    assert "conv1/bias" not in leaves  # conv members are not in a neuron mask


def test_refill_hand_worked_example():
    graph = [{"op": "flatten"}, {"op": "dense", "params": "fc1", "norm": None, "activation": "relu"},
             {"op": "dense", "params": "output", "norm": None, "activation": None}]
    kernel = np.array([[9, 7, 6, 0.4], [8, 0.2, 5, 0.5], [0.1, 0.3, 4, 0.6]], np.float32)  # 3 inputs, 4 units
    params = {"fc1": {"kernel": kernel, "bias": np.ones(4, np.float32)},
              "output": {"kernel": np.ones((4, 2), np.float32), "bias": np.zeros(2, np.float32)}}
    spec = PruningConfig(granularity="refill", fraction=0.5)
    spaces = [s for s in unit_spaces(graph, params) if s.role == "hidden"]
    mask = structured_mask(params, spec, spaces)
    # level 1 keeps 6 of 12 weights: 9 8 7 6 5 4, per unit 2 1 3 0 surviving; S = 6, F = 3:
    # floor(6 / 3) + 1 = 3 units, the ones with most survivors (2, 0, 1), made dense again
    mask = refill_units(params, mask, spaces, spec, 1)
    leaves = {k: np.asarray(v) for k, v in mask_leaves(mask).items()}
    np.testing.assert_array_equal(leaves["fc1/kernel"], np.array([[1, 1, 1, 0]] * 3, bool))
    np.testing.assert_array_equal(leaves["fc1/bias"], [1, 1, 1, 0])
    np.testing.assert_array_equal(leaves["output/kernel"], np.array([[1, 1]] * 3 + [[0, 0]], bool))
    # level 2 keeps 3 weights (9 8 7): counts 2 1 0 -> floor(3 / 3) + 1 = 2 units: 0 and 1
    mask = refill_units(apply_mask(params, mask), mask, spaces, spec, 2)
    np.testing.assert_array_equal(np.asarray(mask_leaves(mask)["fc1/bias"]), [1, 1, 0, 0])


@pytest.fixture(scope="module")
def neuron_run():
    setup = prepare(tiny_config(levels=2, **{"pruning.granularity": "neuron"}))
    return setup, list(lottery_levels(setup)), *init_params(setup)


@pytest.mark.parametrize("retraining", ["rewind", "lr_rewind"])
def test_two_level_neuron_lottery(neuron_run, retraining):
    setup, outcomes, params0, _ = neuron_run
    if retraining != "rewind":
        setup = prepare(replace(setup.config, retraining=retraining))
        outcomes = list(lottery_levels(setup))
    spaces = structured_spaces("mlp_tiny", params0, setup.config.pruning)
    # fc1 and fc2 at 30 % a level (the output/kernel override does not touch units)
    assert [unit_counts(o.mask, spaces) for o in outcomes] == [{"fc1": 32, "fc2": 16}, {"fc1": 22, "fc2": 11},
                                                              {"fc1": 16, "fc2": 8}]
    for o in outcomes[1:]:
        alive, final = kept_units(o.mask, spaces), named_leaves(o.state.params)
        for layer in ("fc1", "fc2"):  # pruned units stayed exactly zero through training
            assert not np.asarray(final[f"{layer}/kernel"])[:, ~alive[layer]].any()
            assert not np.asarray(final[f"{layer}/bias"])[~alive[layer]].any()
    kept = [o.record["weights_remaining"] for o in outcomes]
    assert kept[0] == 40 * 32 + 32 + 32 * 16 + 16 + 16 * 10 and kept[1] == 40 * 22 + 22 + 22 * 11 + 11 + 11 * 10
    assert outcomes[2].record["percent_remaining"] < outcomes[1].record["percent_remaining"] < 100


def test_controls_at_neuron_granularity(neuron_run):
    setup, outcomes, params0, state0 = neuron_run
    spaces = structured_spaces("mlp_tiny", params0, setup.config.pruning)
    inputs = LevelInputs(2, outcomes[2].mask, outcomes[0].mask, dense_final=outcomes[0].state.params,
                         previous_final=outcomes[1].state.params, previous_mask=outcomes[1].mask)
    ticket = unit_counts(outcomes[2].mask, spaces)
    random = control_mask(setup, parse_control("random_layerwise"), inputs, params0, state0)
    assert unit_counts(random, spaces) == ticket
    assert any((kept_units(random, spaces)[n] != kept_units(outcomes[2].mask, spaces)[n]).any() for n in ticket)
    shuffle = parse_control("imp+shuffle")
    shuffled = finalize_mask(setup, shuffle, 2, control_mask(setup, shuffle, inputs, params0, state0))
    assert unit_counts(shuffled, spaces) == ticket
    oneshot = control_mask(setup, parse_control("oneshot"), inputs, params0, state0)
    dense = named_leaves(outcomes[0].state.params)
    want = numpy_kept({"fc1": {"kernel": dense["fc1/kernel"], "bias": dense["fc1/bias"]}}, "fc1", "l1", 16)
    np.testing.assert_array_equal(kept_units(oneshot, spaces)["fc1"], want)
    inverted = control_mask(setup, parse_control("imp+invert"), inputs, params0, state0)
    assert unit_counts(inverted, spaces) == ticket
    before, after = (kept_units(outcomes[level].mask, spaces)["fc1"] for level in (1, 2))
    inverted_alive = kept_units(inverted, spaces)["fc1"]  # the 16 lowest of level 1's 22: level 2's 6 pruned kept
    assert not (inverted_alive & ~before).any() and (inverted_alive >= (before & ~after)).all()
    for bad in ("snip", "random_global", "set"):
        with pytest.raises(ConfigError, match="whole units") as err:
            check_granularity(parse_control(bad), "neuron")
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="invert"):
        check_granularity(parse_control("oneshot+invert"), "refill")


def test_default_hashes_unchanged():
    assert config_hash(ExperimentConfig(), 64) == "8d6aece1002f941278ae921e40501fb2dd0a7da72caa25d1b3b525dab1da3c9c"
    assert config_hash(tiny_config(), 64) == "ab2ec8ecd24e0d2e46a1cba11edb25991b4e5c0d815d565cbf873eef785c4a72"
    neuron = replace(ExperimentConfig(), **{"pruning.granularity": "neuron"})
    l2 = replace(ExperimentConfig(), **{"pruning.unit_score": "l2"})
    assert len({config_hash(ExperimentConfig()), config_hash(neuron), config_hash(l2)}) == 3


@pytest.mark.parametrize("changes,message", [
    ({"pruning.granularity": "neurons"}, "granularity"),
    ({"pruning.unit_score": "l3"}, "unit_score"),
    ({"pruning.granularity": "neuron", "pruning.strategy": "global"}, "layerwise"),
    ({"pruning.granularity": "channel", "method": "gradual", "sparse.densities": (0.5,)}, "method imp"),
    ({"pruning.granularity": "unit", "sparse.structure": "2:4"}, "N:M"),
])
def test_bad_configs_are_one_line_errors(changes, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate_config(replace(tiny_config(), **changes))
    assert "\n" not in str(err.value)


def test_too_many_levels_for_the_units_is_refused_before_training():
    with pytest.raises(ConfigError, match="units of fc2 would all be pruned at level") as err:
        prepare(tiny_config(levels=12, **{"pruning.granularity": "neuron", "pruning.fraction": 0.5}))
    assert "\n" not in str(err.value)


def test_records_carry_units_and_the_compact_networks_cost(neuron_run):
    """Each level's record: the units alive per layer and the compact params / MACs, equal to what
    compacting the level's trained network gives (`lth.tickets.compact`), and to a hand count."""
    from lth.tickets.compact import compact_network

    setup, outcomes, params0, state0 = neuron_run
    for o in outcomes:
        net = compact_network("mlp_tiny", o.state.params, o.state.model_state, o.mask, setup.dataset.input_shape)
        assert o.record["compact_params"] == net.report["params"]
        assert o.record["compact_macs"] == net.report["macs"]
        assert o.record["units"] == {k: v for k, v in net.report["units"].items() if k != "output"}
    fc1, fc2 = outcomes[2].record["units"]["fc1"][0], outcomes[2].record["units"]["fc2"][0]
    assert (fc1, fc2) == (16, 8)
    inputs = outcomes[2].record["units"]["input"][0]
    assert outcomes[2].record["compact_macs"] == inputs * fc1 + fc1 * fc2 + fc2 * 10
