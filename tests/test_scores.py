"""Pruning-at-init scores against hand-written NumPy (float64) gradients, Hessians and closed forms."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lth.spec.config import PruningConfig
from lth.errors import ConfigError, LthError
from lth.models import from_functions, from_linen, from_nnx
from lth.sparsity.at_init import density_groups, prune_at_init, shuffle_mask, synflow_prune
from lth.sparsity.masks import apply_mask, count_prunable, count_remaining, layer_counts, make_mask, mask_leaves
from lth.sparsity.pruning import Group, prune_by_scores
from lth.sparsity.scores import (
    GRASP_TEMPERATURE,
    SCORERS,
    grasp_hvp,
    grasp_scores,
    invert_scores,
    magnitude_at_init,
    snip_scores,
    synflow_scores,
)

# ------------------------------------------------------------------------------ tiny networks


def mlp_params(seed, sizes=(6, 5, 3), bias=True):
    """{"l1": {"kernel", "bias"}, "l2": ...}; kernels (fan_in, fan_out), flax's x @ kernel."""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layer = {"kernel": jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32)}
        if bias:
            layer["bias"] = jnp.asarray(0.3 * rng.normal(size=(b,)), jnp.float32)
        params[f"l{i + 1}"] = layer
    return params


def mlp_apply(params, x):
    layers = sorted(params, key=lambda n: int(n[1:]))
    h = x
    for i, name in enumerate(layers):
        h = h @ params[name]["kernel"]
        if "bias" in params[name]:
            h = h + params[name]["bias"]
        if i < len(layers) - 1:
            h = jax.nn.relu(h)
    return h


@functools.cache
def tiny_model(seed=0, sizes=(6, 5, 3), bias=True):
    """One Model object per arguments, so the compiled score functions are reused across tests."""
    model = from_functions("tiny", lambda key: mlp_params(seed, sizes, bias), mlp_apply)
    params, state = model.init(jax.random.key(0))
    return model, params, state


def batch(seed=1, n=8, d=6, k=3):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, d)), jnp.float32), jnp.asarray(rng.integers(0, k, size=n), jnp.int32)


def random_mask(params, seed, keep=0.7):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda m: None if m is None else jnp.asarray(rng.random(m.shape) < keep), make_mask(params),
                        is_leaf=lambda x: x is None)


def np64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def np_mask(params, mask):
    """{layer: {leaf: 0/1 float64}}: the mask's bits on kernels, ones on unmasked leaves."""
    out = {}
    for layer, leaves in params.items():
        out[layer] = {}
        for leaf, value in leaves.items():
            m = mask[layer][leaf]
            out[layer][leaf] = np.ones(np.shape(value)) if m is None else np.asarray(m, np.float64)
    return out


# ------------------------------------------------------------------- NumPy reference (float64)


def np_loss_grad(p, x, y, temperature=1.0):
    """Mean cross-entropy of (relu(x K1 + b1) K2 + b2) / T and its gradient, by hand."""
    x = np.asarray(x, np.float64)
    a = x @ p["l1"]["kernel"] + p["l1"]["bias"]
    h = np.maximum(a, 0)
    z = (h @ p["l2"]["kernel"] + p["l2"]["bias"]) / temperature
    z = z - z.max(1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    n = x.shape[0]
    onehot = np.eye(z.shape[1])[np.asarray(y)]
    loss = -np.mean(np.log(prob[np.arange(n), np.asarray(y)]))
    dz = (prob - onehot) / n / temperature
    dh = dz @ p["l2"]["kernel"].T
    da = dh * (a > 0)
    grads = {
        "l1": {"kernel": x.T @ da, "bias": da.sum(0)},
        "l2": {"kernel": h.T @ dz, "bias": dz.sum(0)},
    }
    return loss, grads


def tmap(f, *trees):
    return {k: {j: f(*(t[k][j] for t in trees)) for j in trees[0][k]} for k in trees[0]}


def np_masked_grad(p, m, x, y, temperature=1.0):
    """Gradient of w -> L(m * w) at w: m * grad L(m * w)."""
    _, g = np_loss_grad(tmap(lambda a, b: a * b, p, m), x, y, temperature)
    return tmap(lambda a, b: a * b, g, m)


# --------------------------------------------------------------------------------- magnitude


def test_magnitude_at_init_is_abs_w0():
    _, params, _ = tiny_model()
    scores = magnitude_at_init(params, make_mask(params))
    assert set(scores) == {"l1/kernel", "l2/kernel"}
    np.testing.assert_array_equal(scores["l1/kernel"], np.abs(params["l1"]["kernel"]))


# -------------------------------------------------------------------------------------- SNIP


@pytest.mark.parametrize("partial", [False, True])
def test_snip_matches_numpy_gradient(partial):
    model, params, state = tiny_model()
    mask = random_mask(params, 3) if partial else make_mask(params)
    x, y = batch()
    scores = snip_scores(model, params, state, mask, x, y)
    p, m = np64(params), np_mask(params, mask)
    g = np_masked_grad(p, m, x, y)
    for layer in ("l1", "l2"):
        expected = np.abs(g[layer]["kernel"] * p[layer]["kernel"] * m[layer]["kernel"])
        np.testing.assert_allclose(scores[f"{layer}/kernel"], expected, rtol=1e-4, atol=1e-7)
        if partial:  # pruned weights score exactly 0
            assert np.all(np.asarray(scores[f"{layer}/kernel"])[m[layer]["kernel"] == 0] == 0)


def test_snip_matches_finite_differences_of_a_gate():
    """SNIP = |dL/dc| for a gate c = 1 multiplying each weight (Lee et al. 2019), by central differences."""
    model, params, state = tiny_model()
    x, y = batch()
    scores = snip_scores(model, params, state, make_mask(params), x, y)
    p = np64(params)
    k = p["l1"]["kernel"]
    eps = 1e-6
    for i, j in [(0, 0), (2, 3), (5, 4)]:
        plus, minus = {**p, "l1": dict(p["l1"])}, {**p, "l1": dict(p["l1"])}
        plus["l1"]["kernel"] = k.copy()
        plus["l1"]["kernel"][i, j] *= 1 + eps
        minus["l1"]["kernel"] = k.copy()
        minus["l1"]["kernel"][i, j] *= 1 - eps
        fd = (np_loss_grad(plus, x, y)[0] - np_loss_grad(minus, x, y)[0]) / (2 * eps)
        np.testing.assert_allclose(scores["l1/kernel"][i, j], abs(fd), rtol=1e-3, atol=1e-7)


# ------------------------------------------------------------------------------------- GraSP


def flat_masked_loss(model, params, state, mask, x, y):
    flat, unravel = ravel_pytree(params)

    def loss(v):
        logits, _ = model.apply(apply_mask(unravel(v), mask), state, x, False)
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y])

    return loss, flat


@pytest.mark.parametrize("partial", [False, True])
def test_grasp_hvp_matches_explicit_hessian(partial):
    model, params, state = tiny_model()
    mask = random_mask(params, 4) if partial else make_mask(params)
    x, y = batch()
    g, hg = grasp_hvp(model, params, state, mask, x, y)
    loss, flat = flat_masked_loss(model, params, state, mask, x, y)
    g_ref = jax.jit(jax.grad(loss))(flat)
    hessian = jax.jit(jax.hessian(loss))(flat)
    np.testing.assert_allclose(ravel_pytree(g)[0], g_ref, rtol=1e-5, atol=1e-7)
    hg_ref = hessian @ g_ref
    np.testing.assert_allclose(ravel_pytree(hg)[0], hg_ref, rtol=1e-4, atol=1e-6 * float(jnp.max(jnp.abs(hg_ref))))


@pytest.mark.parametrize("partial,temperature", [(False, 1.0), (True, 1.0), (False, 200.0), (True, 200.0)])
def test_grasp_matches_numpy_finite_difference_of_gradients(partial, temperature):
    """The reference rule, computed independently: (H g) = (g(w + eps g) - g(w - eps g)) / 2 eps in
    float64 with the hand-written gradient of the loss at temperature T (logits / T; both
    reference codes use T = 200, the default), and the score kept-higher is +(H g) * w."""
    model, params, state = tiny_model()
    mask = random_mask(params, 5) if partial else make_mask(params)
    x, y = batch()
    scores = grasp_scores(model, params, state, mask, x, y, temperature=temperature)
    if temperature == 200.0:  # the default is the reference codes' temperature
        default = grasp_scores(model, params, state, mask, x, y)
        assert all(np.array_equal(default[k], scores[k]) for k in scores)
    p, m = np64(params), np_mask(params, mask)
    g = np_masked_grad(p, m, x, y, temperature)
    eps = 1e-6 if temperature == 1.0 else 1e-2  # H scales as 1/T^2: a larger step keeps the difference resolved
    gp = np_masked_grad(tmap(lambda w, d: w + eps * d, p, g), m, x, y, temperature)
    gm = np_masked_grad(tmap(lambda w, d: w - eps * d, p, g), m, x, y, temperature)
    for layer in ("l1", "l2"):
        hg = (gp[layer]["kernel"] - gm[layer]["kernel"]) / (2 * eps)
        expected = hg * p[layer]["kernel"] * m[layer]["kernel"]  # keep-higher: +(H g) * w
        got = np.asarray(scores[f"{layer}/kernel"])
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
        assert np.all(got[m[layer]["kernel"] == 0] == 0)


def test_grasp_keeps_the_weights_whose_removal_cuts_gradient_flow_most():
    """The sign convention, from GraSP's definition rather than its formula.

    Removing weight q moves w by v = -w_q e_q; the squared gradient norm G = |g|^2 changes at rate
    dG/dt = 2 (H g) . v = -2 w_q (H g)_q. GraSP removes weights whose removal reduces G least (the
    highest -(Hg) w), i.e. keeps those with the highest  -1/2 dG/dt = (H g)_q w_q. Checked by finite
    differences of G in float64, independently of the Hessian.
    """
    model, params, state = tiny_model()
    mask = make_mask(params)
    x, y = batch()
    scores = grasp_scores(model, params, state, mask, x, y, temperature=1.0)  # the definition, at T = 1
    p, m = np64(params), np_mask(params, mask)

    def grad_norm2(q):
        g = np_masked_grad(q, m, x, y)
        return sum(float(np.sum(v**2)) for layer in g.values() for v in layer.values())

    t = 1e-5
    for layer, (i, j) in [("l1", (0, 1)), ("l1", (3, 2)), ("l2", (1, 0)), ("l2", (4, 2))]:
        changes = []
        for sign in (1, -1):
            q = tmap(lambda a: a.copy(), p)
            q[layer]["kernel"][i, j] -= sign * t * p[layer]["kernel"][i, j]
            changes.append(grad_norm2(q))
        dgdt = (changes[0] - changes[1]) / (2 * t)
        np.testing.assert_allclose(scores[f"{layer}/kernel"][i, j], -0.5 * dgdt, rtol=2e-3, atol=1e-7)


def test_grasp_paper_score_is_the_inversion():
    """invert_scores(grasp) is the paper's S = -(H g) w; pruning with it keeps the opposite end."""
    model, params, state = tiny_model(sizes=(6, 8, 3))
    mask = make_mask(params)
    x, y = batch()
    keep = grasp_scores(model, params, state, mask, x, y)
    _, hg = grasp_hvp(model, params, state, mask, x, y, temperature=GRASP_TEMPERATURE)
    paper = {n: -hg[n.split("/")[0]]["kernel"] * params[n.split("/")[0]]["kernel"] for n in keep}
    inv = invert_scores(keep)
    for n in keep:
        np.testing.assert_allclose(inv[n], paper[n], rtol=1e-6)
    new = prune_at_init("grasp", model, params, state, mask, (x, y), None, 0.25)
    flat_keep = np.concatenate([np.asarray(keep[n]).ravel() for n in keep])
    flat_new = np.concatenate([np.asarray(v).ravel() for v in mask_leaves(new).values()])
    assert flat_keep[flat_new].min() >= flat_keep[~flat_new].max()  # the highest (H g) w are kept


# ----------------------------------------------------------------------------------- SynFlow


def test_synflow_closed_form_two_layer_linear():
    """f(x) = x K1 K2 (no biases): R = 1^T |K1| |K2| 1, so
    dR/d|K1|[i, j] = (|K2| 1)[j] and dR/d|K2|[j, k] = (1^T |K1|)[j]."""
    model, params, state = tiny_model(sizes=(6, 5, 3), bias=False)
    scores = synflow_scores(model, params, state, make_mask(params), (6,))
    k1, k2 = np.abs(np64(params)["l1"]["kernel"]), np.abs(np64(params)["l2"]["kernel"])
    np.testing.assert_allclose(scores["l1/kernel"], k1 * k2.sum(1)[None, :], rtol=1e-5)
    np.testing.assert_allclose(scores["l2/kernel"], k1.sum(0)[:, None] * k2, rtol=1e-5)
    r = np.ones(6) @ k1 @ k2 @ np.ones(3)
    np.testing.assert_allclose(float(scores["l1/kernel"].sum()), r, rtol=1e-5)


def test_synflow_conservation_bias_free_relu():
    """Tanaka et al. 2020: in a bias-free ReLU net every layer's scores sum to R."""
    model, params, state = tiny_model(seed=7, sizes=(6, 9, 7, 4), bias=False)
    scores = synflow_scores(model, params, state, make_mask(params), (6,))
    k = [np.abs(np64(params)[f"l{i}"]["kernel"]) for i in (1, 2, 3)]
    r = np.ones(6) @ k[0] @ k[1] @ k[2] @ np.ones(4)
    sums = [float(np.sum(np.asarray(scores[f"l{i}/kernel"], np.float64))) for i in (1, 2, 3)]
    np.testing.assert_allclose(sums, [r] * 3, rtol=1e-5)


def test_synflow_conservation_with_masked_weights():
    model, params, state = tiny_model(seed=8, sizes=(6, 9, 7, 4), bias=False)
    mask = random_mask(params, 9, keep=0.6)
    scores = synflow_scores(model, params, state, mask, (6,))
    k = [np.abs(np64(params)[f"l{i}"]["kernel"]) * np.asarray(mask[f"l{i}"]["kernel"]) for i in (1, 2, 3)]
    r = np.ones(6) @ k[0] @ k[1] @ k[2] @ np.ones(4)
    for i in (1, 2, 3):
        s = np.asarray(scores[f"l{i}/kernel"])
        np.testing.assert_allclose(s.sum(dtype=np.float64), r, rtol=1e-5)
        assert np.all(s[~np.asarray(mask[f"l{i}"]["kernel"])] == 0)


def test_synflow_takes_abs_of_biases():
    """Biases enter as |b| (the reference code abs()es the whole state_dict): with negative biases
    that would switch hidden units off, the scores still follow R = (1^T |K1| + |b1|) |K2| 1 + 1^T |b2|."""
    model, params, state = tiny_model(seed=2, sizes=(6, 5, 3), bias=True)
    params = {**params, "l1": {**params["l1"], "bias": -10.0 * jnp.ones(5)}}
    scores = synflow_scores(model, params, state, make_mask(params), (6,))
    p = np64(params)
    k1, k2, b1 = np.abs(p["l1"]["kernel"]), np.abs(p["l2"]["kernel"]), np.abs(p["l1"]["bias"])
    np.testing.assert_allclose(scores["l1/kernel"], k1 * k2.sum(1)[None, :], rtol=1e-5)
    np.testing.assert_allclose(scores["l2/kernel"], (k1.sum(0) + b1)[:, None] * k2, rtol=1e-5)


def test_synflow_batchnorm_model_runs_in_eval_mode_and_conserves():
    """A linen net with BatchNorm (state = batch_stats): eval mode at init is a positive per-channel
    scale, so conservation still holds without biases."""

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            h = nn.Dense(8, use_bias=False)(x)
            h = nn.relu(nn.BatchNorm(use_running_average=not train, use_bias=False, use_scale=False)(h))
            return nn.Dense(3, use_bias=False)(h)

    model = from_linen("bn", Net(), (6,))
    params, state = model.init(jax.random.key(0))
    assert "batch_stats" in state
    scores = synflow_scores(model, params, state, make_mask(params), (6,))
    sums = [float(s.sum()) for s in scores.values()]
    np.testing.assert_allclose(sums, [sums[0]] * len(sums), rtol=1e-5)
    x, y = batch()
    for method in ("snip", "grasp"):
        new = prune_at_init(method, model, params, state, make_mask(params), (x, y), None, 0.5)
        assert count_remaining(new) == round(count_prunable(new) * 0.5)


def test_nnx_state_params():
    """flax nnx: params are an nnx State (paths "l1/kernel"), BatchNorm statistics are the model state."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(6, 8, use_bias=False, rngs=rngs)
            self.bn = nnx.BatchNorm(8, use_running_average=True, use_bias=False, use_scale=False, rngs=rngs)
            self.l2 = nnx.Linear(8, 3, use_bias=False, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.relu(self.bn(self.l1(x))))

    model = from_nnx("nnx", Net)
    params, state = model.init(jax.random.key(0))
    mask = make_mask(params)
    scores = synflow_scores(model, params, state, mask, (6,))
    assert set(scores) == {"l1/kernel", "l2/kernel"}
    np.testing.assert_allclose(float(scores["l1/kernel"].sum()), float(scores["l2/kernel"].sum()), rtol=1e-5)
    new = prune_at_init("grasp", model, params, state, mask, batch(), None, 0.3)
    assert count_remaining(new) == round(72 * 0.3)


# ------------------------------------------------------------------------- scores -> exact masks


def wider():
    return tiny_model(seed=3, sizes=(6, 16, 3))


@pytest.mark.parametrize("method", SCORERS)
@pytest.mark.parametrize("strategy", ["global", "layerwise"])
@pytest.mark.parametrize("target", [0.3, 0.05, 1.0])
def test_prune_at_init_exact_counts(method, strategy, target):
    model, params, state = wider()
    mask = make_mask(params)
    new = prune_at_init(method, model, params, state, mask, batch(), (6,), target, strategy,
                        key=jax.random.key(0), rounds=10)
    counts = layer_counts(new)
    if strategy == "global":
        n = count_prunable(mask)
        assert count_remaining(new) == int(round(n * target))
    else:
        for kept, size in counts.values():
            assert kept == int(round(size * target))
    assert new["l1"]["bias"] is None


@pytest.mark.parametrize("method", ["magnitude", "snip", "grasp", "random"])
def test_one_shot_keeps_the_top_scores(method):
    """The mask is the global top-k of the method's score (ties: lower flat index)."""
    model, params, state = wider()
    mask = make_mask(params)
    x, y = batch()
    key = jax.random.key(5)
    new = prune_at_init(method, model, params, state, mask, (x, y), None, 0.2, key=key)
    if method == "magnitude":
        scores = magnitude_at_init(params, mask)
    elif method == "snip":
        scores = snip_scores(model, params, state, mask, x, y)
    elif method == "grasp":
        scores = grasp_scores(model, params, state, mask, x, y)
    else:
        from lth.sparsity.scores import random_scores

        scores = random_scores(mask, key)
    flat = np.concatenate([np.asarray(s, np.float32).ravel() for s in scores.values()])
    keep = int(round(flat.size * 0.2))
    order = sorted(range(flat.size), key=lambda i: (-float(flat[i]), i))
    expected = np.zeros(flat.size, bool)
    expected[order[:keep]] = True
    got = np.concatenate([np.asarray(v).ravel() for v in mask_leaves(new).values()])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("method", SCORERS)
def test_pruned_weights_never_come_back(method):
    model, params, state = wider()
    mask = random_mask(params, 11, keep=0.6)
    new = prune_at_init(method, model, params, state, mask, batch(), (6,), 0.25, key=jax.random.key(1), rounds=7)
    for name, m in mask_leaves(new).items():
        assert not np.any(np.asarray(m) & ~np.asarray(mask_leaves(mask)[name]))
    assert count_remaining(new) == int(round(count_prunable(mask) * 0.25))
    # asking for more than the mask keeps changes nothing
    same = prune_at_init(method, model, params, state, mask, batch(), (6,), 0.9, key=jax.random.key(1), rounds=3)
    for name, m in mask_leaves(same).items():
        np.testing.assert_array_equal(m, mask_leaves(mask)[name])


def test_random_is_keyed():
    model, params, state = wider()
    mask = make_mask(params)

    def run(seed):
        new = prune_at_init("random", model, params, state, mask, None, None, 0.3, key=jax.random.key(seed))
        return np.concatenate([np.asarray(v).ravel() for v in mask_leaves(new).values()])

    np.testing.assert_array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


@pytest.mark.parametrize("strategy", ["global", "layerwise"])
def test_synflow_iterative_final_density_exact(strategy):
    model, params, state = tiny_model(seed=4, sizes=(6, 20, 12, 3))
    mask = make_mask(params)
    target = 0.07
    spec = None if strategy == "global" else PruningConfig(strategy="layerwise")
    new = synflow_prune(model, params, state, mask, (6,), target, rounds=25, spec=spec)
    if strategy == "global":
        assert count_remaining(new) == int(round(count_prunable(mask) * target))
    else:
        for kept, size in layer_counts(new).values():
            assert kept == int(round(size * target))


def test_synflow_one_round_is_one_shot_and_rounds_differ():
    model, params, state = tiny_model(seed=4, sizes=(6, 20, 12, 3))
    mask = make_mask(params)
    one = synflow_prune(model, params, state, mask, (6,), 0.1, rounds=1)
    scores = synflow_scores(model, params, state, mask, (6,))
    shot = prune_by_scores(scores, mask, density_groups(mask, 0.1))
    for name in mask_leaves(one):
        np.testing.assert_array_equal(mask_leaves(one)[name], mask_leaves(shot)[name])
    many = synflow_prune(model, params, state, mask, (6,), 0.1, rounds=30)
    assert count_remaining(many) == count_remaining(one)


def test_synflow_exclude_and_schedule():
    model, params, state = tiny_model(seed=4, sizes=(6, 20, 12, 3))
    mask = make_mask(params)
    new = synflow_prune(model, params, state, mask, (6,), 0.2, rounds=5, spec=PruningConfig(
        strategy="global", exclude=(r"l3/.*",)))
    counts = layer_counts(new)
    assert counts["l3/kernel"] == (36, 36)
    assert counts["l1/kernel"][0] + counts["l2/kernel"][0] == round((120 + 240) * 0.2)
    groups = density_groups(mask, 0.2, "global", (r"l3/.*",))
    assert groups == [Group(("l1/kernel", "l2/kernel"), 72)]


def test_synflow_overflow_raises_and_float64_fixes_it():
    """R = 1^T |K1| |K2| 1 ~ 1e42 overflows float32; in float64 the (scale-free) ranking is that of the
    unscaled network, and the float32 path says how to get there."""
    model, params, state = tiny_model(seed=1, sizes=(6, 10, 3), bias=False)
    big = jax.tree.map(lambda a: a * 1e21, params)
    mask = make_mask(params)
    with pytest.raises(LthError, match="float64"):
        synflow_prune(model, big, state, mask, (6,), 0.2, rounds=3)
    with pytest.raises(ConfigError, match="jax_enable_x64"):
        synflow_scores(model, big, state, mask, (6,), dtype=jnp.float64)
    with jax.enable_x64(True):
        scores = synflow_scores(model, big, state, mask, (6,), dtype=jnp.float64)
        assert scores["l1/kernel"].dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(scores["l1/kernel"])))
        got = synflow_prune(model, big, state, mask, (6,), 0.2, rounds=3, dtype=jnp.float64)
    ref = synflow_prune(model, params, state, mask, (6,), 0.2, rounds=3)
    for name in mask_leaves(ref):
        np.testing.assert_array_equal(mask_leaves(got)[name], mask_leaves(ref)[name])


def test_synflow_prune_traces_the_network_once():
    calls = []

    def apply_fn(params, x):
        calls.append(1)
        return mlp_apply(params, x)

    model = from_functions("counted", lambda key: mlp_params(4, (6, 20, 3)), apply_fn)
    params, state = model.init(jax.random.key(0))
    synflow_prune(model, params, state, make_mask(params), (6,), 0.1, rounds=12)
    assert len(calls) == 1


# ------------------------------------------------------------------------------------- errors


def test_errors():
    model, params, state = wider()
    mask = make_mask(params)
    with pytest.raises(ConfigError, match="magnitude, snip, grasp, synflow, random"):
        prune_at_init("snap", model, params, state, mask, batch(), (6,), 0.5)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="target density"):
            prune_at_init("magnitude", model, params, state, mask, None, None, bad)
        with pytest.raises(ConfigError, match="target density"):
            synflow_prune(model, params, state, mask, (6,), bad)
    with pytest.raises(ConfigError, match="strategy"):
        prune_at_init("magnitude", model, params, state, mask, None, None, 0.5, "blockwise")
    with pytest.raises(ConfigError, match="batch"):
        prune_at_init("snip", model, params, state, mask, None, (6,), 0.5)
    with pytest.raises(ConfigError, match="key"):
        prune_at_init("random", model, params, state, mask, None, None, 0.5)
    with pytest.raises(ConfigError, match="rounds"):
        synflow_prune(model, params, state, mask, (6,), 0.5, rounds=0)
    with pytest.raises(ConfigError, match="per-layer"):
        synflow_prune(model, params, state, mask, (6,), 0.5, spec=PruningConfig(layer_fractions=((r"l1/.*", 0.1),)))


# ------------------------------------------------------------------------------ sanity checks


def test_shuffle_mask_really_permutes_within_layers():
    _, params, _ = wider()
    mask = random_mask(params, 12, keep=0.5)
    before = {k: np.asarray(v).copy() for k, v in mask_leaves(mask).items()}
    shuffled = shuffle_mask(mask, jax.random.key(0))
    for name, m in mask_leaves(shuffled).items():
        m = np.asarray(m)
        assert m.shape == before[name].shape and m.dtype == bool
        assert m.sum() == before[name].sum()  # exact count per layer
        assert not np.array_equal(m, before[name])  # positions really changed
    for name, m in mask_leaves(mask).items():  # pure: the input is untouched
        np.testing.assert_array_equal(m, before[name])
    assert shuffled["l1"]["bias"] is None
    again = shuffle_mask(mask, jax.random.key(0))
    other = shuffle_mask(mask, jax.random.key(1))
    for name in before:
        np.testing.assert_array_equal(mask_leaves(again)[name], mask_leaves(shuffled)[name])
    assert any(not np.array_equal(mask_leaves(other)[n], mask_leaves(shuffled)[n]) for n in before)


def test_invert_scores_keeps_exactly_the_complement_ranking():
    """Distinct scores with a zero and negatives: keeping k of -s is the complement of keeping N - k of s."""
    scores = {"a/kernel": jnp.asarray([[3.0, -1.0, 0.0], [2.5, -7.0, 0.5]]),
              "b/kernel": jnp.asarray([-2.0, 9.0, 1.0, -0.25])}
    params = {"a": {"kernel": jnp.zeros((2, 3))}, "b": {"kernel": jnp.zeros(4)}}
    mask = make_mask(params)
    n = 10
    inverted = invert_scores(scores)
    for k in range(n + 1):
        kept = prune_by_scores(scores, mask, [Group(("a/kernel", "b/kernel"), n - k)])
        inv = prune_by_scores(inverted, mask, [Group(("a/kernel", "b/kernel"), k)])
        for name in scores:
            np.testing.assert_array_equal(np.asarray(inv[name.split("/")[0]]["kernel"]),
                                          ~np.asarray(kept[name.split("/")[0]]["kernel"]))
    # 1/s (the copied implementation) is not an inversion: it keeps a different set
    recip = {k: 1.0 / v for k, v in scores.items()}
    inv3 = prune_by_scores(inverted, mask, [Group(("a/kernel", "b/kernel"), 3)])
    rec3 = prune_by_scores(recip, mask, [Group(("a/kernel", "b/kernel"), 3)])
    assert any(not np.array_equal(inv3[k]["kernel"], rec3[k]["kernel"]) for k in ("a", "b"))
    np.testing.assert_array_equal(inv3["a"]["kernel"], [[False, True, False], [False, True, False]])
    np.testing.assert_array_equal(inv3["b"]["kernel"], [True, False, False, False])


def test_invert_scores_with_ties_keeps_the_lowest():
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=(7, 9)) * 2) / 2  # many exact ties, zeros, both signs
    scores = {"a/kernel": jnp.asarray(s, jnp.float32)}
    mask = make_mask({"a": {"kernel": jnp.zeros((7, 9))}})
    for k in (1, 10, 31, 62):
        inv = np.asarray(prune_by_scores(invert_scores(scores), mask, [Group(("a/kernel",), k)])["a"]["kernel"])
        assert inv.sum() == k
        assert s[inv].max() <= s[~inv].min()


def test_prune_at_init_invert_keeps_the_lowest_scores():
    import lth.sparsity.at_init as S

    rng = np.random.default_rng(0)
    params = {"l1": {"kernel": jnp.asarray(rng.normal(size=(6, 5)).astype(np.float32))},
              "l2": {"kernel": jnp.asarray(rng.normal(size=(5, 3)).astype(np.float32))}}
    from lth.models import from_functions
    from lth.sparsity.masks import make_mask

    model = from_functions("lin", lambda k: params,
                           lambda p, x: jnp.maximum(x @ p["l1"]["kernel"], 0) @ p["l2"]["kernel"])
    mask = make_mask(params)
    kept = S.prune_at_init("magnitude", model, params, {}, mask, None, (6,), 0.4)
    inverted = S.prune_at_init("magnitude", model, params, {}, mask, None, (6,), 0.4, invert=True)
    w = np.concatenate([np.abs(np.asarray(params[k]["kernel"])).ravel() for k in ("l1", "l2")])
    a = np.concatenate([np.asarray(kept[k]["kernel"]).ravel() for k in ("l1", "l2")])
    b = np.concatenate([np.asarray(inverted[k]["kernel"]).ravel() for k in ("l1", "l2")])
    assert a.sum() == b.sum() == round(0.4 * w.size)
    assert w[a].min() > w[b].max()  # inverted keeps the smallest magnitudes
    syn = S.prune_at_init("synflow", model, params, {}, mask, None, (6,), 0.4, rounds=5, invert=True)
    assert sum(int(np.asarray(syn[k]["kernel"]).sum()) for k in ("l1", "l2")) == round(0.4 * w.size)
