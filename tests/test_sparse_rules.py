"""The pure pieces of sparse training (lth.sparsity.distributions, gradual, dynamic, nm) against
hand-worked examples, NumPy re-computations and property tests."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lth.errors import ConfigError
from lth.sparsity import distributions as dist
from lth.sparsity import dynamic, gradual, nm
from lth.sparsity.masks import layer_counts, make_mask, mask_leaves
from lth.sparsity.topk import keep_top

SHAPES = {"a/kernel": (10, 10), "b/kernel": (10, 4), "c/kernel": (4, 1)}


def _mask(shapes=SHAPES):
    return make_mask({name.split("/")[0]: {"kernel": jnp.zeros(shape)} for name, shape in shapes.items()})


# ------------------------------------------------------------------------------------------ ERK


def test_erk_by_hand():
    """N = 144, density 0.25 -> 36 kept. Ratios (sum/prod of dims): a 0.2, b 0.35, c 1.25.
    Pass 1: eps = 36 / (20 + 14 + 5) = 0.923, c would get 1.154 > 1 -> c dense.
    Pass 2: eps = (36 - 4) / (20 + 14) = 16/17: a 0.2*16/17 = 0.18824 (18.82 weights),
    b 0.35*16/17 = 0.32941 (13.18 weights), c 1. Floors 18 + 13 + 4 = 35; the missing weight goes to
    the largest fraction (a, .82): a 19, b 13, c 4."""
    d = dist.erk_densities(SHAPES, 0.25)
    assert d["c/kernel"] == 1.0
    assert d["a/kernel"] == pytest.approx(0.2 * 16 / 17)
    assert d["b/kernel"] == pytest.approx(0.35 * 16 / 17)
    assert dist.keep_counts(_mask(), 0.25, "erk") == {"a/kernel": 19, "b/kernel": 13, "c/kernel": 4}


def _reference_erk_counts(shapes, density):
    """A NumPy re-computation of google-research/rigl's rule (sparse_utils.get_sparsities_erdos_renyi,
    then n_zeros = floor(sparsity * size) per layer)."""
    sparsity, dense = 1 - density, set()
    while True:
        rhs, divisor, raw = 0, 0, {}
        for name, shape in shapes.items():
            size = int(np.prod(shape))
            zeros = int(np.floor(sparsity * size))
            if name in dense:
                rhs -= zeros
            else:
                rhs += size - zeros
                raw[name] = np.sum(shape) / size
                divisor += raw[name] * size
        eps = rhs / divisor
        top = max(raw.values())
        if top * eps > 1:
            dense.update(name for name, r in raw.items() if r == top)
        else:
            break
    out = {}
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        s = 0.0 if name in dense else 1 - eps * raw[name]
        out[name] = size - int(np.floor(s * size))
    return out


def test_erk_matches_the_reference_to_one_weight_per_layer_and_is_exact():
    shapes = {"fc1/kernel": (784, 300), "fc2/kernel": (300, 100), "output/kernel": (100, 10)}
    mask = _mask(shapes)
    for density in (0.2, 0.05, 0.02):
        ours = dist.keep_counts(mask, density, "erk")
        ref = _reference_erk_counts(shapes, density)
        assert sum(ours.values()) == round(density * 266200)
        assert all(abs(ours[k] - ref[k]) <= 1 for k in shapes)
    # the hand example: the reference floors to 37 weights where the target is 36
    assert sum(_reference_erk_counts(SHAPES, 0.25).values()) == 37


def test_erk_counts_against_the_rigl_reference_on_conv2():
    """Conv-2's five kernels at the 999 densities 0.001 ... 0.999: the reference (its eps balanced on
    n - floor(s n) per layer, then n - floor(s_l n) kept) keeps at least as many weights as this code in
    every layer, at most 5 more (fc1, 4.2 M weights; at most 1 in the others), 1 to 7 more in total -- the
    bound the `lth.sparsity.distributions` docstring states (measured; analysis: at most L + 1 per layer)."""
    from lth.models import get_model

    model = get_model("conv2", (32, 32, 3), 10)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0))[0])
    mask = make_mask(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), params))
    shapes = {name: tuple(np.shape(m)) for name, m in mask_leaves(mask).items()}
    assert shapes == {"conv1/kernel": (3, 3, 3, 64), "conv2/kernel": (3, 3, 64, 64), "fc1/kernel": (16384, 256),
                      "fc2/kernel": (256, 256), "output/kernel": (256, 10)}
    worst, totals = dict.fromkeys(shapes, 0), []
    for density in np.round(np.linspace(0.001, 0.999, 999), 3):
        ours, ref = dist.keep_counts(mask, float(density), "erk"), _reference_erk_counts(shapes, float(density))
        assert all(ref[k] >= ours[k] for k in shapes), density
        worst = {k: max(worst[k], ref[k] - ours[k]) for k in shapes}
        totals.append(sum(ref.values()) - sum(ours.values()))
    assert worst == {"conv1/kernel": 1, "conv2/kernel": 1, "fc1/kernel": 5, "fc2/kernel": 1, "output/kernel": 1}
    assert (min(totals), max(totals)) == (1, 7)


def test_uniform_with_an_excluded_layer_by_hand():
    """c (4 weights) excluded: the others share (36 - 4) / 140 = 0.2286: a 22.86, b 9.14 -> 22 + 9 + 4
    = 35, one more to a: 23, 9, 4."""
    assert dist.keep_counts(_mask(), 0.25, "uniform", exclude=(r"c/.*",)) == {"a/kernel": 23, "b/kernel": 9,
                                                                              "c/kernel": 4}


def test_erk_respects_exclude_and_bad_densities_are_one_line_errors():
    counts = dist.keep_counts(_mask(), 0.8, "erk", exclude=(r"a/.*",))
    assert counts["a/kernel"] == 100  # excluded: dense, counted in the density
    assert sum(counts.values()) == round(0.8 * 144)
    with pytest.raises(ConfigError, match="below"):
        dist.keep_counts(_mask(), 0.5, "erk", exclude=(r"a/.*",))  # a alone keeps 100/144 = 0.69
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=r"\(0, 1\]"):
            dist.keep_counts(_mask(), bad, "uniform")
    with pytest.raises(ConfigError, match="unknown layer distribution"):
        dist.keep_counts(_mask(), 0.5, "lognormal")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=5),
       st.floats(0.01, 1.0), st.sampled_from(dist.DISTRIBUTIONS))
def test_counts_are_exact_for_any_shapes(dims, density, distribution):
    shapes = {f"l{i}/kernel": shape for i, shape in enumerate(dims)}
    mask = {name.split("/")[0]: {"kernel": np.ones(shape, bool)} for name, shape in shapes.items()}  # host only
    counts = dist.keep_counts(mask, density, distribution)
    sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    assert sum(counts.values()) == round(density * sum(sizes.values()))
    rule = dist.erk_densities if distribution == "erk" else dist.uniform_densities
    for name, share in rule(shapes, density).items():
        assert 0 <= counts[name] <= sizes[name]
        assert abs(counts[name] - share * sizes[name]) < 1 + 1e-6


def test_random_mask_has_the_counts():
    counts = dist.keep_counts(_mask(), 0.3, "erk")
    kept = dist.random_mask(_mask(), counts, jax.random.key(0))
    assert {name: k for name, (k, _) in layer_counts(kept).items()} == counts


# ------------------------------------------------------------------------------------------ gradual


def test_gradual_schedule_hits_s_t_at_every_update_and_s_f_at_the_end():
    shapes = {"fc1/kernel": (784, 300), "fc2/kernel": (300, 100), "output/kernel": (100, 10)}
    mask = _mask(shapes)
    sizes = {k: int(np.prod(s)) for k, s in shapes.items()}
    s_i, s_f, t0, n, dt = 0.0, 0.95, 200, 10, 100
    start = dist.keep_counts(mask, 1 - s_i, "uniform")
    final = dist.keep_counts(mask, 1 - s_f, "uniform")
    steps = gradual.update_steps(t0, n, dt)
    assert steps == list(range(200, 1201, 100))
    for t in steps:
        counts = gradual.counts_at(t, start, final, t0, n, dt)
        expected = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3
        assert float(gradual.sparsity_at(t, s_i, s_f, t0, n, dt)) == pytest.approx(expected, abs=1e-6)
        achieved = 1 - sum(int(c) for c in counts.values()) / sum(sizes.values())
        assert abs(achieved - expected) <= 0.5 * len(sizes) / sum(sizes.values()) + 1e-6
    assert {k: int(v) for k, v in gradual.counts_at(steps[-1], start, final, t0, n, dt).items()} == final
    assert {k: int(v) for k, v in gradual.counts_at(10_000, start, final, t0, n, dt).items()} == final
    assert {k: int(v) for k, v in gradual.counts_at(0, start, final, t0, n, dt).items()} == start
    due = [t for t in range(0, 1400) if bool(gradual.is_update_step(t, t0, n, dt))]
    assert due == steps


def test_gradual_prune_keeps_the_largest_and_never_regrows():
    key = jax.random.key(1)
    params = {"a": {"kernel": jax.random.normal(key, (10, 10))}}
    mask = make_mask(params)
    for t in gradual.update_steps(0, 4, 10):
        new = gradual.gradual_prune(params, mask, t, {"a/kernel": 100}, {"a/kernel": 20}, 0, 4, 10)
        keep = int(gradual.counts_at(t, {"a/kernel": 100}, {"a/kernel": 20}, 0, 4, 10)["a/kernel"])
        m_old, m_new = np.asarray(mask["a"]["kernel"]), np.asarray(new["a"]["kernel"])
        assert m_new.sum() == keep and not (m_new & ~m_old).any()
        w = np.abs(np.asarray(params["a"]["kernel"]))
        assert w[m_new].min() >= w[m_old & ~m_new].max(initial=0)
        mask = new
    with pytest.raises(ConfigError, match="dt"):
        gradual.check_schedule(0, 3, 0)


# ------------------------------------------------------------------------------------------ SET / RigL


def _small_net(seed=0, density=0.3):
    k = jax.random.split(jax.random.key(seed), 5)
    params = {"l1": {"kernel": jax.random.normal(k[0], (12, 8)), "bias": jnp.zeros(8)},
              "l2": {"kernel": jax.random.normal(k[1], (8, 3)), "bias": jnp.zeros(3)}}
    grads = jax.tree.map(lambda p: jax.random.normal(k[2], p.shape), params)
    full = make_mask(params)
    mask = dist.random_mask(full, dist.keep_counts(full, density, "uniform"), k[3])
    params = jax.tree.map(lambda p, m: p if m is None else jnp.where(m, p, 0), params, mask,
                          is_leaf=lambda x: x is None)
    return params, grads, mask


def _numpy_rigl(alive, w, g, fraction):
    """The rule re-computed with NumPy stable sorts (ties: lower index first)."""
    alive, w, g = (np.asarray(a).reshape(-1) for a in (alive, w, g))
    n = int(alive.sum())
    n_drop = int(np.floor(np.float32(n) * np.float32(fraction)))
    order = np.argsort(-np.where(alive, np.abs(w), -np.inf), kind="stable")
    kept = np.zeros_like(alive)
    kept[order[: n - n_drop]] = True
    grow_order = np.argsort(-np.where(~kept, np.abs(g), -np.inf), kind="stable")
    grown = np.zeros_like(alive)
    grown[grow_order[:n_drop]] = True
    return kept | grown


@pytest.mark.parametrize("fraction", [0.3, 0.15, 0.5])
def test_rigl_grows_exactly_the_top_gradient_positions(fraction):
    params, grads, mask = _small_net()
    new = dynamic.rigl_update(mask, params, grads, fraction)
    for layer in ("l1", "l2"):
        want = _numpy_rigl(mask[layer]["kernel"], params[layer]["kernel"], grads[layer]["kernel"], fraction)
        got = np.asarray(new[layer]["kernel"]).reshape(-1)
        np.testing.assert_array_equal(got, want)
        assert got.sum() == int(np.asarray(mask[layer]["kernel"]).sum())  # the count is kept exactly
    assert new["l1"]["bias"] is None


def test_a_just_dropped_weight_can_be_regrown():
    """One layer, 4 active: the smallest |w| (index 0) is dropped, and its |g| is the largest of all,
    so RigL grows it back at once (the references rank it with the other inactive positions)."""
    alive = jnp.array([True, True, True, True, False, False])
    w = jnp.array([0.1, 1.0, 2.0, 3.0, 0.0, 0.0])
    g = jnp.array([9.0, 0.0, 0.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(dynamic.drop_and_grow(alive, jnp.abs(w), jnp.abs(g), 0.25), np.asarray(alive))
    # with a smaller gradient there it grows index 5 instead
    g2 = g.at[0].set(0.5)
    np.testing.assert_array_equal(dynamic.drop_and_grow(alive, jnp.abs(w), jnp.abs(g2), 0.25),
                                  [False, True, True, True, False, True])


def test_set_keeps_counts_and_drops_the_smallest():
    params, _, mask = _small_net(seed=3)
    new = dynamic.set_update(mask, params, jax.random.key(7), 0.3)
    for layer in ("l1", "l2"):
        old, m = np.asarray(mask[layer]["kernel"]), np.asarray(new[layer]["kernel"])
        assert m.sum() == old.sum()
        w = np.abs(np.asarray(params[layer]["kernel"]))
        n_drop = int(np.floor(np.float32(old.sum()) * np.float32(0.3)))
        largest = np.argsort(-np.where(old, w, -np.inf).reshape(-1), kind="stable")[: int(old.sum()) - n_drop]
        assert m.reshape(-1)[largest].all()  # the largest |w| survive; the rest may be regrown at random
        assert (old & ~m).sum() <= n_drop
    again = dynamic.set_update(mask, params, jax.random.key(7), 0.3)
    assert all(np.array_equal(a, b) for a, b in zip(mask_leaves(new).values(), mask_leaves(again).values()))


def _uniform_ranking(eligible, count, key):
    """SET's regrowth before `random_positions`: rank a float32 uniform draw (ties: lower index)."""
    return keep_top([jax.random.uniform(key, eligible.shape)], [eligible], count)[0]


@pytest.mark.parametrize("shape, density", [((784, 300), 0.1), ((300, 100), 0.5), ((10,), 0.0), ((7, 3), 0.9)])
def test_random_positions_are_those_of_the_uniform_ranking(shape, density):
    """Bit for bit the positions of ranking ``jax.random.uniform(key)`` (SET's draw before), for
    counts 0, 1, some and every eligible position: runs keep their masks."""
    rng = np.random.default_rng(len(shape))
    eligible = jnp.asarray(rng.random(shape) >= density)
    m = int(eligible.sum())
    draw = jax.jit(dynamic.random_positions)
    for i, count in enumerate(sorted({0, min(1, m), m // 30, m // 3, m})):
        key = jax.random.fold_in(jax.random.key(11), i)
        got = np.asarray(draw(eligible, jnp.int32(count), key))
        np.testing.assert_array_equal(got, np.asarray(_uniform_ranking(eligible, jnp.int32(count), key)))
        assert got.sum() == count and not (got & ~np.asarray(eligible)).any()


def test_random_positions_are_uniform_and_deterministic():
    """4,000 draws of 6 of 25 eligible positions (of 40): every eligible position is drawn as often
    as the others (chi-square, 24 degrees of freedom, below its 0.9999 quantile 59.2), every pair
    too (its frequency 6 * 5 / (25 * 24) within 5 standard deviations), never an ineligible one,
    always 6; the same key gives the same draw."""
    eligible = jnp.asarray(np.random.default_rng(0).permutation(40) < 25)
    keys = jax.random.split(jax.random.key(3), 4000)
    draws = np.asarray(jax.jit(jax.vmap(dynamic.random_positions, in_axes=(None, None, 0)))(
        eligible, jnp.int32(6), keys))
    assert (draws.sum(axis=1) == 6).all() and not draws[:, ~np.asarray(eligible)].any()
    counts = draws[:, np.asarray(eligible)].sum(axis=0)
    expected = 4000 * 6 / 25
    assert ((counts - expected) ** 2 / expected).sum() < 59.2
    pairs = draws[:, np.asarray(eligible)].astype(np.int64)
    together = (pairs.T @ pairs)[np.triu_indices(25, 1)] / 4000
    p = 6 * 5 / (25 * 24)
    assert np.abs(together - p).max() < 5 * np.sqrt(p * (1 - p) / 4000)
    np.testing.assert_array_equal(np.asarray(dynamic.random_positions(eligible, jnp.int32(6), keys[7])), draws[7])
    assert len({draw.tobytes() for draw in draws[:50]}) > 45


def test_set_grows_only_where_not_kept_and_just_dropped_weights_can_return():
    """SET's grown positions are never kept ones (the count stays exact), and over many keys a
    just-dropped position regrows as often as any other eligible one."""
    alive = jnp.array([True] * 10 + [False] * 10)
    w = jnp.arange(1.0, 21.0) * alive  # |w| smallest at index 0, 1, 2: dropped at f = 0.3
    keys = jax.random.split(jax.random.key(5), 3000)
    new = np.asarray(jax.jit(jax.vmap(lambda k: dynamic.set_drop_and_grow(alive, jnp.abs(w), k, 0.3)))(keys))
    assert (new.sum(axis=1) == 10).all() and new[:, 3:10].all()  # the 7 largest are kept
    grown = new[:, [0, 1, 2, *range(10, 20)]].mean(axis=0)  # 3 of the 13 not kept
    np.testing.assert_allclose(grown, 3 / 13, atol=5 * np.sqrt(3 / 13 * 10 / 13 / 3000))


def test_cosine_drop_fraction():
    for t in (0, 100, 1875, 3000, 3750, 5000):
        want = 0.3 / 2 * (1 + math.cos(math.pi * min(t, 3750) / 3750))
        assert float(dynamic.cosine_drop_fraction(t, 0.3, 3750)) == pytest.approx(want, abs=1e-7)
    assert float(dynamic.cosine_drop_fraction(0, 0.3, 3750)) == pytest.approx(0.3)


# ------------------------------------------------------------------------------------------ N:M


def test_nm_groups_hold_exactly_n_and_keep_the_largest():
    w = jax.random.normal(jax.random.key(2), (16, 6))
    params = {"fc": {"kernel": w}}
    mask = make_mask(params)
    new = nm.nm_magnitude(params, mask, 2, 4)
    counts = nm.group_counts(new, 4)["fc/kernel"]
    assert counts.shape == (6, 4) and (counts == 2).all()
    m = np.asarray(new["fc"]["kernel"])
    a = np.abs(np.asarray(w))
    for col in range(6):  # groups run along the input dimension (rows)
        for g in range(4):
            block = a[4 * g: 4 * g + 4, col]
            np.testing.assert_array_equal(m[4 * g: 4 * g + 4, col], np.isin(np.arange(4), np.argsort(-block)[:2]))
    # ramping down the group count only removes weights
    three = nm.nm_magnitude(params, mask, 3, 4)
    two = nm.nm_magnitude(params, three, 2, 4)
    assert (nm.group_counts(two, 4)["fc/kernel"] == 2).all()
    assert not (np.asarray(two["fc"]["kernel"]) & ~np.asarray(three["fc"]["kernel"])).any()


def test_nm_ties_go_to_the_lower_index_and_random_nm():
    keep = nm.nm_keep(jnp.ones((4, 1)), jnp.ones((4, 1), bool), 2, 4)
    np.testing.assert_array_equal(np.asarray(keep)[:, 0], [True, True, False, False])
    mask = make_mask({"c": {"kernel": jnp.zeros((3, 3, 8, 5))}})
    rand = nm.nm_random(mask, jax.random.key(0), 1, 4)
    assert (nm.group_counts(rand, 4)["c/kernel"] == 1).all()


@pytest.mark.parametrize("text, message", [("3:2", "must not exceed"), ("0:4", ">= 1"), ("2-4", "invalid")])
def test_bad_nm_is_a_one_line_error(text, message):
    with pytest.raises(ConfigError, match=message):
        nm.parse_nm(text)
    assert nm.parse_nm("2:4") == (2, 4) and nm.parse_nm("") is None
    with pytest.raises(ConfigError, match="do not divide"):
        nm.check_nm_shapes(_mask(), 4)  # c/kernel's input dimension is 4, b's 10
    assert nm.level_group_keep(2, 4, 0.2, 1) == 3 and nm.level_group_keep(2, 4, 0.2, 5) == 2
