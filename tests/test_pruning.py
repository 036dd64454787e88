"""Pruning maths against an independent NumPy re-computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import backend_compiles

from lth.spec.config import PruningConfig
from lth.errors import ConfigError
from lth.models import get_model
from lth.sparsity.masks import layer_counts, make_mask, mask_leaves
from lth.sparsity.pruning import plan_groups, prune_magnitude


def random_params(seed, ties=False):
    rng = np.random.default_rng(seed)
    shapes = {"a": {"kernel": (13, 7), "bias": (7,)}, "b": {"kernel": (7, 5), "bias": (5,)}, "c": {"kernel": (5, 3)}}
    params = {}
    for layer, leaves in shapes.items():
        params[layer] = {}
        for name, shape in leaves.items():
            w = rng.normal(size=shape).astype(np.float32)
            if ties:
                w = np.round(w * 2) / 2  # many exact ties, both signs
            params[layer][name] = jnp.asarray(w)
    return params


def random_mask(params, seed, keep=0.7):
    rng = np.random.default_rng(seed)
    mask = make_mask(params)
    return jax.tree.map(lambda m: None if m is None else jnp.asarray(rng.random(m.shape) < keep), mask,
                        is_leaf=lambda x: x is None)


def reference_keep(scores: np.ndarray, alive: np.ndarray, keep: int) -> np.ndarray:
    """Keep the `keep` largest alive scores; ties -> lower flat index. Independent of lth.sparsity.pruning."""
    flat, live = scores.reshape(-1), alive.reshape(-1)
    candidates = [i for i in range(flat.size) if live[i]]
    candidates.sort(key=lambda i: (-abs(float(flat[i])), i))
    out = np.zeros(flat.size, bool)
    out[candidates[: min(keep, len(candidates))]] = True
    return out.reshape(scores.shape)


LAYERS = ["a/kernel", "b/kernel", "c/kernel"]


def leaf(tree, name):
    layer, param = name.split("/")
    return np.asarray(tree[layer][param])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layerwise_matches_numpy(seed, ties):
    params = random_params(seed, ties)
    mask = random_mask(params, seed + 10)
    spec = PruningConfig(strategy="layerwise", fraction=0.3, layer_fractions=((r"c/kernel", 0.15),))
    new = prune_magnitude(params, mask, spec)
    for name, p in zip(LAYERS, [0.3, 0.3, 0.15]):
        alive = leaf(mask, name)
        keep = int(round(alive.sum() * (1 - p)))
        np.testing.assert_array_equal(leaf(new, name), reference_keep(leaf(params, name), alive, keep))
    assert new["a"]["bias"] is None


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 3])
def test_global_matches_numpy(seed, ties):
    params = random_params(seed, ties)
    mask = random_mask(params, seed + 20)
    spec = PruningConfig(strategy="global", fraction=0.4, exclude=(r"c/.*",))
    new = prune_magnitude(params, mask, spec)
    pool = ["a/kernel", "b/kernel"]  # flattening order of the pytree
    scores = np.concatenate([leaf(params, n).reshape(-1) for n in pool])
    alive = np.concatenate([leaf(mask, n).reshape(-1) for n in pool])
    expected = reference_keep(scores, alive, int(round(alive.sum() * 0.6)))
    got = np.concatenate([leaf(new, n).reshape(-1) for n in pool])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(leaf(new, "c/kernel"), leaf(mask, "c/kernel"))  # excluded: untouched


def test_global_uses_one_threshold():
    params = random_params(5)
    mask = make_mask(params)
    new = prune_magnitude(params, mask, PruningConfig(strategy="global", fraction=0.5))
    kept = np.concatenate([np.abs(leaf(params, n))[leaf(new, n)] for n in LAYERS])
    dropped = np.concatenate([np.abs(leaf(params, n))[~leaf(new, n)] for n in LAYERS])
    assert kept.min() >= dropped.max()


def test_pruned_weights_never_come_back():
    params = random_params(7)
    mask = random_mask(params, 8, keep=0.5)
    # make the pruned weights the largest: they must still not return
    params = jax.tree.map(lambda p, m: p if m is None else jnp.where(m, p, 100.0), params, mask)
    params = {k: {n: v for n, v in layer.items()} for k, layer in params.items()}
    new = prune_magnitude(params, mask, PruningConfig(fraction=0.2))
    for name in LAYERS:
        assert not np.any(leaf(new, name) & ~leaf(mask, name))


def lenet_params():
    model = get_model("lenet300_100", (28, 28, 1), 10)
    params, _ = model.init(jax.random.key(0))
    return params


@pytest.mark.parametrize("rounds,percent", [(3, 51.28), (7, 21.07), (9, 13.52), (12, 6.95), (15, 3.58), (18, 1.85)])
def test_frankle_carbin_percent_remaining(rounds, percent):
    """Frankle & Carbin 2019: LeNet-300-100, 20 % per round on hidden layers, 10 % on the output layer."""
    params = lenet_params()
    mask = make_mask(params)
    spec = PruningConfig(fraction=0.2, layer_fractions=((r"output/kernel", 0.1),))
    base = {k: n for k, (n, _) in layer_counts(mask).items()}
    for level in range(1, rounds + 1):
        mask = prune_magnitude(params, mask, spec, level, base)
    counts = layer_counts(mask)
    remaining = sum(k for k, _ in counts.values())
    assert round(100 * remaining / 266_200, 2) == percent
    for name, (kept, size) in counts.items():  # each layer within one weight of N (1-p)^L
        p = 0.1 if name == "output/kernel" else 0.2
        assert abs(kept - size * (1 - p) ** rounds) <= 1


def test_densities_exact_over_many_levels_with_changing_weights():
    """Rounding does not accumulate: every level, every layer is within one weight of N (1-p)^L."""
    rng = np.random.default_rng(0)
    params = {"l": {"kernel": jnp.asarray(rng.normal(size=(37, 29)).astype(np.float32))}}
    mask = make_mask(params)
    spec = PruningConfig(fraction=0.2)
    for level in range(1, 16):
        params = {"l": {"kernel": jnp.asarray(rng.normal(size=(37, 29)).astype(np.float32))}}
        mask = prune_magnitude(params, mask, spec, level, {"l/kernel": 37 * 29})
        kept = int(np.asarray(mask["l"]["kernel"]).sum())
        assert abs(kept - 37 * 29 * 0.8**level) <= 0.5 + 1e-9


def test_plan_groups_global_with_overrides():
    base = {"a/kernel": 100, "b/kernel": 50, "out/kernel": 10}
    spec = PruningConfig(strategy="global", fraction=0.2, layer_fractions=((r"out/.*", 0.1),))
    groups = plan_groups(base, spec, 2)
    assert groups == [(("out/kernel",), 8), (("a/kernel", "b/kernel"), 96)]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_out_of_range(fraction):
    with pytest.raises(ConfigError, match="prune fraction"):
        plan_groups({"a": 10}, PruningConfig(fraction=fraction), 1)


def test_unknown_strategy():
    with pytest.raises(ConfigError, match="unknown pruning strategy"):
        plan_groups({"a": 10}, PruningConfig(strategy="magic"), 1)


def test_pruning_runs_on_device_without_recompiling_per_level():
    params = random_params(0)
    mask = make_mask(params)
    spec = PruningConfig(fraction=0.2)
    base = {k: n for k, (n, _) in layer_counts(mask).items()}
    mask = prune_magnitude(params, mask, spec, 1, base)
    with backend_compiles() as compiles:
        for level in range(2, 6):
            mask = prune_magnitude(params, mask, spec, level, base)
    assert not compiles, "the keep count must be traced, not static"
    assert all(isinstance(m, jax.Array) for m in mask_leaves(mask).values())


@pytest.mark.parametrize("seed", range(6))
def test_keep_top_equals_a_stable_sort_on_hard_scores(seed):
    """The bisection threshold keeps exactly what a stable ascending sort of -score keeps: ties
    (also +0.0 / -0.0), negative and huge or tiny scores, dead entries, keep = 0 and keep = all."""
    from lth.sparsity.topk import keep_top

    rng = np.random.default_rng(seed)
    pool = np.array([0.0, -0.0, 1e-40, -1e-40, 1e-30, 3.0, -3.0, 1e30, -1e30, 2.5, 2.5], np.float32)
    shapes = [(40, 30), (30,), (7, 3, 2)]
    if seed % 2:
        scores = [rng.choice(pool, size=s) for s in shapes]
    else:  # magnitudes from 1e-30 to 1e30
        scores = [(rng.standard_normal(s) * 10.0 ** rng.integers(-30, 30, size=s)).astype(np.float32) for s in shapes]
    alive = [rng.random(s) < 0.7 for s in shapes]
    flat_s = np.concatenate([x.ravel() for x in scores])
    flat_a = np.concatenate([a.ravel() for a in alive])
    key = np.where(flat_a, -flat_s, np.inf) + np.float32(0.0)
    order = np.argsort(key, kind="stable")
    for keep in (0, 1, 17, int(flat_a.sum()) // 2, int(flat_a.sum()), int(flat_a.sum()) + 5):
        want = np.zeros(key.size, bool)
        want[order[: min(keep, int(flat_a.sum()))]] = True
        got = np.concatenate([np.asarray(k).ravel() for k in keep_top(
            [jnp.asarray(x) for x in scores], [jnp.asarray(a) for a in alive], jnp.int32(keep))])
        np.testing.assert_array_equal(got, want, err_msg=f"keep={keep}")


@pytest.mark.parametrize("seed", range(3))
def test_keep_lowest_equals_a_stable_sort_of_codes_within_any_valid_range(seed):
    """`keep_lowest` on uint32 codes with many ties keeps what a stable ascending sort keeps, from
    the full range or any [low, high] that holds the keep-th code, and says when a tie at the
    threshold was split by index."""
    from lth.sparsity.topk import keep_lowest

    lowest = jax.jit(keep_lowest)
    rng = np.random.default_rng(seed)
    code = rng.integers(0, 2**32, size=500, dtype=np.uint32) >> np.uint32(rng.choice([0, 20, 26]))
    order = np.argsort(code, kind="stable")
    for keep in (0, 1, 7, 250, 499, 500):
        want = np.zeros(code.size, bool)
        want[order[:keep]] = True
        kth = int(np.sort(code)[keep - 1]) if keep else 0
        split = keep > 0 and (code <= kth).sum() > keep  # more at or below the keep-th code than kept
        for low, high in ((0, 0xFFFFFFFF), (kth, kth), (kth // 2, min(2 * kth + 1, 0xFFFFFFFF))):
            got = lowest(jnp.asarray(code).reshape(20, 25), jnp.int32(keep), jnp.uint32(low), jnp.uint32(high))
            np.testing.assert_array_equal(np.asarray(got.kept).reshape(-1), want, err_msg=f"keep={keep}")
            assert bool(got.tie_split) == split, (keep, low, high)
