"""SWAMP (`lth.lottery.swamp`, `particles` > 1): the average, the particles' data orders, pruning from
the average, IMP at N = 1, the cost of N particles, one compiled program, the config's checks and hash."""

import functools

import jax
import numpy as np
import pytest
from helpers import compiles_after_first_level, tiny_config

from lth.errors import ConfigError
from lth.lottery import init_params, lottery_levels, prepare
from lth.lottery.setup import data_keys, data_parallel_setup
from lth.lottery.swamp import average, particle_keys
from lth.spec.checks import validate_config
from lth.spec.config import PruningConfig
from lth.spec.hashing import config_hash
from lth.sparsity.masks import make_mask, mask_leaves, named_leaves
from lth.sparsity.pruning import prune_magnitude
from lth.training import train
from lth.training.stacked import epoch_orders


@functools.lru_cache(maxsize=4)
def _levels(config):
    """A tiny lottery's outcomes (shared by the tests that read the same config)."""
    return list(lottery_levels(prepare(config)))


def test_average_is_the_numpy_mean_of_the_particles():
    rng = np.random.default_rng(0)
    trees = [{"a": {"kernel": rng.normal(size=(3, 4)).astype(np.float32)}, "b": rng.normal(size=5).astype(np.float32),
              "count": np.int32(7)} for _ in range(3)]
    got = average(trees)
    np.testing.assert_allclose(got["a"]["kernel"], np.mean([t["a"]["kernel"] for t in trees], axis=0), rtol=1e-6)
    np.testing.assert_allclose(got["b"], np.mean([t["b"] for t in trees], axis=0), rtol=1e-6)
    assert got["a"]["kernel"].dtype == np.float32 and int(got["count"]) == 7


def test_pruning_keeps_the_largest_averaged_magnitudes_hand_worked():
    """Particle A keeps {0, 3} alone and B {0, 2}; their average [0, 0, 1.5, 1.25] keeps {2, 3}."""
    a = {"dense": {"kernel": np.array([[4.0, -1.0, 0.0, 1.5]], np.float32)}}
    b = {"dense": {"kernel": np.array([[-4.0, 1.0, 3.0, 1.0]], np.float32)}}
    mask = make_mask(a, (r".*kernel",))
    spec = PruningConfig(strategy="layerwise", fraction=0.5)
    kept = np.asarray(mask_leaves(prune_magnitude(average([a, b]), mask, spec))["dense/kernel"])
    assert kept.tolist() == [[False, False, True, True]]


def test_particles_see_different_data_orders_and_particle_0_is_imps():
    setup = prepare(tiny_config())
    order_key, _ = data_keys(setup, 1)
    keys = particle_keys(order_key, 3)
    assert (jax.random.key_data(keys[0]) == jax.random.key_data(order_key)).all()
    orders = np.asarray(epoch_orders(jax.numpy.stack(keys), 0, int(setup.data.x_train.shape[0]), 100))
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])


def test_a_level_is_the_mean_of_particles_trained_alone_and_the_next_mask_prunes_it():
    """SWAMP's level 0 (N = 2) equals the NumPy mean of IMP's level 0 (particle 0) and a network trained
    alone with particle 1's data keys (up to batched-matmul rounding); its level-1 mask is a NumPy
    magnitude prune (30 % of fc1) of that average."""
    config = tiny_config(levels=1, particles=2)
    setup = prepare(config)
    swamp, imp = _levels(config), _levels(tiny_config(levels=1))
    order_key, augment_key = data_keys(setup, 0)
    params0, model_state0 = init_params(setup)
    *_, (particle1, _) = train(setup.trainer, setup.trainer.init_state(params0, model_state0), swamp[0].mask,
                               setup.data, particle_keys(order_key, 2)[1], particle_keys(augment_key, 2)[1])
    got = named_leaves(swamp[0].state.params)
    for (name, a), b in zip(named_leaves(imp[0].state.params).items(), named_leaves(particle1.params).values()):
        np.testing.assert_allclose(got[name], (np.asarray(a) + np.asarray(b)) / 2, atol=2e-5)
    kernel = np.abs(np.asarray(got["fc1/kernel"]))
    keep = round(kernel.size * 0.7)
    threshold = np.sort(kernel.ravel())[::-1][keep - 1]
    mask1 = np.asarray(mask_leaves(swamp[1].mask)["fc1/kernel"])
    assert mask1.sum() == keep and (kernel[mask1] >= threshold).all() and (kernel[~mask1] <= threshold).all()
    assert not np.array_equal(mask1, np.asarray(mask_leaves(imp[1].mask)["fc1/kernel"]))  # not IMP's mask


def test_one_particle_is_plain_imp_and_keeps_its_hash():
    config = tiny_config(levels=1)
    one = tiny_config(levels=1, particles=1)
    assert config_hash(one) == config_hash(config) != config_hash(tiny_config(levels=1, particles=4))
    for a, b in zip(_levels(config), lottery_levels(prepare(one))):
        assert a.record == b.record and "particles" not in a.record


def test_n_particles_cost_n_times_one_and_records_say_so():
    imp, swamp = _levels(tiny_config(levels=1)), _levels(tiny_config(levels=1, particles=3))
    assert swamp[0].record["particles"] == 3
    assert swamp[0].record["iterations"] == 3 * imp[0].record["iterations"]
    assert swamp[0].record["train_flops"] == 3 * imp[0].record["train_flops"]  # level 0: the same dense mask
    assert swamp[0].record["early_stop_iteration"] == swamp[0].record["final_iteration"]


def test_nothing_compiles_after_level_0():
    assert compiles_after_first_level(prepare(tiny_config(levels=3, particles=2))) == 0, \
        "SWAMP's levels 1-3 compiled something"


@pytest.mark.parametrize("changes,match", [
    ({"particles": 0}, "particles must be >= 1"),
    ({"particles": 2, "method": "gradual"}, "retraining of IMP"),
])
def test_bad_particle_counts_are_one_line_errors(changes, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(tiny_config(**changes))


def test_particles_refuse_a_data_parallel_trainer():
    setup = data_parallel_setup(prepare(tiny_config(particles=2)))
    with pytest.raises(ConfigError, match="does not combine with --data-parallel"):
        next(lottery_levels(setup))
