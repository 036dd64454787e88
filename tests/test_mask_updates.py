"""Mask updates inside the compiled loop (lth.training.mask_updates through the one masked iteration):
exact counts after every update, the dense gradient of the step, new weights and their moments at 0,
pruned weights exactly 0, one compiled program, N vmapped seeds equal to one by one."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import backend_compiles, tiny_config

from lth import rng
from lth.data.device import epoch_order
from lth.lottery import init_params, prepare
from lth.lottery.methods import method_trainer, start_mask, start_state, target_counts
from lth.models.base import cross_entropy
from lth.sparsity import dynamic, gradual
from lth.sparsity.masks import apply_mask, layer_counts, make_mask, mask_leaves, named_leaves
from lth.training import train
from lth.spec.config import SparseConfig
from lth.training.mask_updates import (
    count_updates,
    current_mask,
    due_steps,
    effective_updates,
    final_mask_from,
    make_mask_update,
    sparse_state,
)
from lth.training.stacked import train_stacked


@functools.lru_cache(maxsize=4)
def _setup(method: str, length: str = "80it", **sparse):
    changes = {"method": method, "training.length": length, "sparse.densities": (0.3,), "sparse.dt": 10,
               **{f"sparse.{k}": v for k, v in sparse.items()}}
    return prepare(tiny_config(**changes))


def _start(setup, seed_offset: int = 0, density: float = 0.3):
    setup = setup.for_replicate(seed_offset)
    params0, state0 = init_params(setup)
    full = make_mask(params0, setup.config.pruning.prunable)
    counts = target_counts(setup, full, density)
    mask = start_mask(setup, setup.config.method, full, counts)
    return setup, start_state(setup, setup.config.method, params0, state0, mask, 0, counts), mask, counts


def _counts(mask):
    return {name: kept for name, (kept, _) in layer_counts(mask).items()}


def _chunks(setup, state, mask):
    trainer = method_trainer(setup, setup.config.method)
    order_key, augment_key = rng.stream(setup.config.seed, "data_order"), rng.stream(setup.config.seed, "augmentation")
    return train(trainer, state, mask, setup.data, order_key, augment_key)


def _run(setup, state, mask):
    return list(_chunks(setup, state, mask))


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_dynamic_methods_keep_every_layer_count_and_pruned_weights_stay_zero(method):
    setup, state, mask, counts = _start(_setup(method))
    masks_seen = []
    for st, _ in _run(setup, state, mask):
        m = current_mask(st, mask)
        assert _counts(m) == counts  # per layer, hence overall, after every update
        masks_seen.append(m)
        for name, leaf in mask_leaves(m).items():
            assert not np.any(np.asarray(named_leaves(st.params)[name])[~np.asarray(leaf)])
    changed = any(not np.array_equal(np.asarray(a), np.asarray(b))
                  for a, b in zip(mask_leaves(mask).values(), mask_leaves(masks_seen[-1]).values()))
    assert changed  # the mask did move
    # due at t = 0, 10, ..., 60 <= T_end = 60; at 60 the cosine drop fraction is 0: that update moves nothing
    assert count_updates(method_trainer(setup, method).parts.mask_update, 0, 80, state.sparse) == 6


def _one_step(setup, state, mask, step_batch):
    """One compiled iteration at `state.step` on batch `step_batch` (the trainer's chunk of length 1)."""
    trainer = method_trainer(setup, setup.config.method)
    order = step_batch[None]
    return trainer.train_chunk(state, mask, setup.data, order, jnp.int32(0), rng.stream(0, "augmentation"),
                               length=1)[0]


def test_rigl_in_the_loop_uses_the_dense_gradient_of_the_step_and_zeroes_new_moments():
    setup, state, mask, counts = _start(_setup("rigl"))
    # train 10 iterations (an update at 0), then look at the update of iteration 10
    order = epoch_order(rng.stream(0, "data_order"), 0, int(setup.data.x_train.shape[0]), 100)
    state = _advance(method_trainer(setup, "rigl"), setup, state, mask, order, rng.stream(0, "augmentation"), 10)
    idx = order[10]
    x, y = setup.data.x_train[idx], setup.data.y_train[idx]

    def loss(p):
        logits, _ = setup.model.apply(p, state.model_state, x, True)
        return jnp.mean(cross_entropy(logits, y))

    grads = jax.grad(loss)(state.params)  # the dense gradient (pruned positions included)
    fraction = dynamic.cosine_drop_fraction(10, setup.config.sparse.alpha, int(0.75 * 80))
    want = dynamic.rigl_update(state.sparse.mask, state.params, grads, fraction)
    after = _one_step(setup, state, mask, idx)
    for name, leaf in mask_leaves(want).items():
        np.testing.assert_array_equal(np.asarray(mask_leaves(after.sparse.mask)[name]), np.asarray(leaf))
    new = dynamic.new_connections(state.sparse.mask, after.sparse.mask)
    dropped = dynamic.new_connections(after.sparse.mask, state.sparse.mask)
    adam = after.opt_state
    assert any(np.any(np.asarray(v)) for v in mask_leaves(new).values())
    for name, grown in mask_leaves(new).items():
        grown, g = np.asarray(grown), np.asarray(named_leaves(grads)[name])
        # grown weights start at 0 with zero moments, then take this iteration's step (see mask_updates):
        # their moments are exactly one Adam update from zero
        np.testing.assert_allclose(np.asarray(named_leaves(adam.mu)[name])[grown], (1 - 0.9) * g[grown], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(named_leaves(adam.nu)[name])[grown], (1 - 0.999) * g[grown] ** 2,
                                   rtol=1e-5)
        gone = np.asarray(mask_leaves(dropped)[name])
        assert not np.any(np.asarray(named_leaves(after.params)[name])[gone])  # dropped weights are 0
        for moments in (adam.mu, adam.nu):
            assert not np.any(np.asarray(named_leaves(moments)[name])[gone])  # and so are their moments
    assert int(after.step) == 11


def test_gradual_hits_the_schedule_at_each_update_and_the_target_at_the_end():
    setup, state, mask, counts = _start(_setup("gradual", t0=10))
    s = setup.config.sparse
    n = (int(0.75 * 80) - s.t0) // s.dt  # 5 steps after t0: 10, 20, ..., 60
    start = _counts(mask)
    trainer = method_trainer(setup, "gradual")
    order = epoch_order(rng.stream(0, "data_order"), 0, int(setup.data.x_train.shape[0]), 100)
    key = rng.stream(0, "augmentation")
    for t in gradual.update_steps(s.t0, n, s.dt):
        state = _advance(trainer, setup, state, mask, order, key, t + 1)
        want = {k: int(v) for k, v in gradual.counts_at(t, start, counts, s.t0, n, s.dt).items()}
        assert _counts(state.sparse.mask) == want
    assert _counts(state.sparse.mask) == counts  # s_f, exactly the distribution's counts


def _advance(trainer, setup, state, mask, order, key, until):
    """Train from state.step to `until` (within the first epoch)."""
    start = int(state.step)
    return trainer.train_chunk(state, mask, setup.data, order, jnp.int32(start), key, length=until - start)[0]


@pytest.mark.parametrize("method", ["set", "rigl", "gradual"])
def test_between_updates_a_dynamic_method_trains_bit_for_bit_as_the_static_trainer(method):
    """Where no update is due, the iteration of a method whose mask changes is the plain masked
    iteration under the mask in force: the same params and moments, bit for bit, as `setup.trainer`
    (the update and its moment reset run only under the `lax.cond` of an update iteration)."""
    setup, state, mask, _ = _start(_setup(method, t0=0) if method == "gradual" else _setup(method))
    order = epoch_order(rng.stream(0, "data_order"), 0, int(setup.data.x_train.shape[0]), 100)
    key = rng.stream(0, "augmentation")
    state = _advance(method_trainer(setup, method), setup, state, mask, order, key, 1)  # the update at 0
    dynamic_run = _advance(method_trainer(setup, method), setup, state, mask, order, key, 10)
    static_run = _advance(setup.trainer, setup, state._replace(sparse=None), state.sparse.mask, order, key, 10)
    for a, b in zip(jax.tree.leaves((dynamic_run.params, dynamic_run.opt_state)),
                    jax.tree.leaves((static_run.params, static_run.opt_state))):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_one_compiled_program_per_run():
    """After the first chunk (a whole epoch of 35 iterations), nothing compiles: not the later chunks
    with their mask updates, not a second target density (its counts are traced, in the state).
    (A run whose length is not a whole number of epochs compiles its shorter last chunk once, as IMP.)"""
    setup = _setup("gradual", length="105it", t0=0)
    setup, state, mask, counts = _start(setup)
    chunks = _chunks(setup, state, mask)
    next(chunks)
    with backend_compiles() as compiles:
        assert len(list(chunks)) == 2
        _, state2, mask2, counts2 = _start(setup, density=0.1)
        last = _run(setup, state2, mask2)[-1][0]
    assert compiles == []
    assert _counts(last.sparse.mask) == counts2


def test_vmapped_rigl_seeds_equal_one_by_one():
    setup = _setup("rigl", length="70it")
    starts = [_start(setup, r) for r in range(3)]
    singles = [_run(s, st, m)[-1][0] for s, st, m, _ in starts]
    trainer = method_trainer(setup, "rigl")
    keys = [(rng.stream(s.config.seed, "data_order"), rng.stream(s.config.seed, "augmentation")) for s, *_ in starts]
    chunks = train_stacked(trainer, [st for _, st, _, _ in starts], [m for _, _, m, _ in starts], setup.data,
                           [k[0] for k in keys], [k[1] for k in keys])
    outs = [next(chunks)]
    with backend_compiles() as compiles:  # the three seeds are one program: after its first chunk, nothing compiles
        outs.extend(chunks)
    assert compiles == [] and len(outs) == 2
    for single, stacked in zip(singles, outs[-1][0]):
        for a, b in zip(mask_leaves(single.sparse.mask).values(), mask_leaves(stacked.sparse.mask).values()):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(stacked.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
        masked = apply_mask(stacked.params, stacked.sparse.mask)
        assert all(np.array_equal(np.asarray(a), np.asarray(b))
                   for a, b in zip(jax.tree.leaves(masked), jax.tree.leaves(stacked.params)))


# ----------------------------------------------------------------- updates that change the mask (host side)


def _layers(**active):
    """A mask of 10x10 layers, `active[name]` entries kept each (the first ones), and its sparse state."""
    mask = {name: {"kernel": jnp.arange(100).reshape(10, 10) < n} for name, n in active.items()}
    counts = {f"{name}/kernel": n for name, n in active.items()}
    return mask, sparse_state(mask, counts, counts)


def _rule(method, **sparse):
    return make_mask_update(method, SparseConfig(dt=10, **sparse), 80)


def test_rigl_and_set_count_only_updates_that_drop_a_weight():
    """T = 80, T_end = 60, dt = 10, alpha = z = 0.3: due at 0, 10, ..., 60 with drop fractions
    0.15 (1 + cos(pi t / 60)) = 0.3, 0.2799, 0.225, 0.15, 0.075, 0.0201, 0. A layer of 40 drops floor(40 f) =
    12, 11, 9, 6, 3, 0, 0; a layer of 60 drops 18, 16, 13, 9, 4, 1, 0; a full layer regrows what it drops."""
    rigl = _rule("rigl", t_end=0.75, alpha=0.3)
    assert due_steps(rigl, 0, 80) == [0, 10, 20, 30, 40, 50, 60]
    for active, moved in (({"a": 40}, [0, 10, 20, 30, 40]), ({"a": 40, "b": 60}, [0, 10, 20, 30, 40, 50]),
                          ({"a": 40, "c": 100}, [0, 10, 20, 30, 40])):
        _, sparse = _layers(**active)
        assert effective_updates(rigl, 0, 80, sparse) == moved
        assert count_updates(rigl, 0, 80, sparse) == len(moved)
        assert final_mask_from(rigl, 0, 80, sparse) == moved[-1] + 1
    _, sparse = _layers(a=40)
    assert effective_updates(rigl, 15, 80, sparse) == [20, 30, 40]  # a control starting at its rewind step 15
    assert effective_updates(_rule("set", t_end=0.75, z=0.3), 0, 80, sparse) == [0, 10, 20, 30, 40]
    constant = _rule("set", t_end=0.75, z=0.3, set_drop="constant")  # floor(40 * 0.3) = 12 at every update
    assert effective_updates(constant, 0, 80, sparse) == [0, 10, 20, 30, 40, 50, 60]
    assert final_mask_from(rigl, 50, 80, sparse) == 50  # nothing moves from 50 on: the start mask is final


def test_an_update_the_host_calls_ineffective_leaves_the_compiled_mask_alone():
    """The compiled rule at t = 50 (layer a of 40: floor(40 * 0.0201) = 0; layer c full) returns the mask it
    was given; at t = 40 (floor(40 * 0.075) = 3) it moves weights."""
    rigl = _rule("rigl", t_end=0.75, alpha=0.3)
    mask, sparse = _layers(a=40, c=100)
    keys = jax.random.split(jax.random.key(0), 4)
    params = {name: {"kernel": jax.random.normal(keys[i], (10, 10))} for i, name in enumerate(mask)}
    grads = {name: {"kernel": jax.random.normal(keys[2 + i], (10, 10))} for i, name in enumerate(mask)}
    new_mask = jax.jit(rigl.new_mask)
    same = new_mask(sparse, params, grads, jnp.int32(50), keys[0])
    moved = new_mask(sparse, params, grads, jnp.int32(40), keys[0])
    for name in mask:
        np.testing.assert_array_equal(np.asarray(same[name]["kernel"]), np.asarray(mask[name]["kernel"]))
    assert not np.array_equal(np.asarray(moved["a"]["kernel"]), np.asarray(mask["a"]["kernel"]))
    np.testing.assert_array_equal(np.asarray(moved["c"]["kernel"]), np.asarray(mask["c"]["kernel"]))


def test_gradual_counts_only_updates_that_prune_a_weight():
    """dt = 10, t0 = 10, n = 3: due at 10, 20, 30, 40 with ramp (1 - (t - 10)/30)^3 = 1, 8/27, 1/27, 0.
    100 -> 10 weights: keeps 100 (nothing pruned at t0 from a full start, s_i = 0), 10 + round(90 * 8/27) = 37,
    10 + round(90/27) = 13, 10. 100 -> 99: 99 + round(8/27) = 99 at 20, then 99 again: only t = 20 prunes.
    From s_i = 0.5 (start count 50): t0 prunes 100 -> 50, so all four do."""
    rule = _rule("gradual", t0=10, n=3)
    mask = {"a": {"kernel": jnp.ones((10, 10), bool)}}
    assert effective_updates(rule, 0, 80, sparse_state(mask, {"a/kernel": 100}, {"a/kernel": 10})) == [20, 30, 40]
    assert effective_updates(rule, 0, 80, sparse_state(mask, {"a/kernel": 100}, {"a/kernel": 99})) == [20]
    assert final_mask_from(rule, 0, 80, sparse_state(mask, {"a/kernel": 100}, {"a/kernel": 99})) == 21
    assert effective_updates(rule, 0, 80, sparse_state(mask, {"a/kernel": 50}, {"a/kernel": 10})) == [10, 20, 30, 40]
    nm_rule = _rule("gradual", t0=10, n=3, structure="2:4")  # keeps 2 + round(2 * ramp) per group: 4, 3, 2, 2
    assert effective_updates(nm_rule, 0, 80, sparse_state(mask)) == [20, 30]


@pytest.mark.parametrize("set_drop, dropped", [("cosine", 11), ("constant", 12)])
def test_set_drops_on_the_cosine_by_default(set_drop, dropped):
    """At t = 10 of T_end = 60, z = 0.3: cosine drops floor(40 * 0.15 (1 + cos(pi / 6))) = floor(11.196) = 11 of
    40 active weights, constant floor(40 * 0.3) = 12 -- the smallest |w|; regrowth is at random among 39,971
    positions (none of the just-dropped ones for this key)."""
    rule = _rule("set", t_end=0.75, z=0.3, set_drop=set_drop)
    alive = (jnp.arange(40000) < 40).reshape(200, 200)
    w = jnp.where(alive, jnp.arange(40000, dtype=jnp.float32).reshape(200, 200) + 1.0, 0.0)
    mask = {"a": {"kernel": alive}}
    new = jax.jit(rule.new_mask)(sparse_state(mask), {"a": {"kernel": w}}, None, jnp.int32(10), jax.random.key(3))
    old, got = np.asarray(alive).reshape(-1), np.asarray(new["a"]["kernel"]).reshape(-1)
    assert got.sum() == 40
    np.testing.assert_array_equal(np.flatnonzero(old & ~got), np.arange(dropped))  # the smallest |w| left
