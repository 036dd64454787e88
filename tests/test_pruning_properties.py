"""Property tests of magnitude pruning over random layer shapes, strategies, schedules, overrides
and exclusions: masks nest level to level, every threshold group keeps exactly its planned count,
every kept weight outranks every pruned one of its group, and excluded layers are never touched."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lth.spec.config import PruningConfig
from lth.sparsity.masks import mask_leaves
from lth.sparsity.pruning import kept_at, layer_fraction, plan_groups, prune_magnitude

LAYERS = ("a/kernel", "a/bias", "b/kernel", "b/bias", "c/kernel")


@st.composite
def problems(draw):
    sizes = {name: draw(st.integers(1, 40)) for name in LAYERS}
    strategy = draw(st.sampled_from(["layerwise", "global", "modulewise"]))
    schedule = draw(st.sampled_from(["geometric", "linear"]))
    fraction = draw(st.sampled_from([0.1, 0.2, 0.5]))
    override = draw(st.sampled_from([(), (("c/kernel", 0.3),)]))
    exclude = draw(st.sampled_from([(), ("a/bias",)]))
    spec = PruningConfig(strategy=strategy, schedule=schedule, fraction=fraction, layer_fractions=override,
                         exclude=exclude, prunable=(r".*kernel", r".*bias"))
    # weights with repeated magnitudes (ties) and both signs
    values = {name: np.asarray(draw(st.lists(st.integers(-6, 6), min_size=n, max_size=n)), np.float32) / 2
              for name, n in sizes.items()}
    return spec, values, draw(st.integers(1, 4))


def _params(values):
    out: dict = {}
    for name, v in values.items():
        module, leaf = name.split("/")
        out.setdefault(module, {})[leaf] = jnp.asarray(v)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_masks_nest_and_keep_exact_counts_with_separated_thresholds(problem):
    spec, values, levels = problem
    params = _params(values)
    mask = {m: {leaf: jnp.ones_like(w, dtype=bool) for leaf, w in leaves.items()} for m, leaves in params.items()}
    base = {name: v.size for name, v in values.items()}
    previous = {name: np.ones(v.size, bool) for name, v in values.items()}
    for level in range(1, levels + 1):
        groups = plan_groups(base, spec, level)
        if any(g.keep == 0 for g in groups):
            break
        mask = prune_magnitude(params, mask, spec, level, base)
        kept = {name: np.asarray(m).reshape(-1) for name, m in mask_leaves(mask).items()}
        for name in LAYERS:
            assert not np.any(kept[name] & ~previous[name]), "a pruned weight came back"
            if layer_fraction(name, spec) == 0.0:
                assert kept[name].all(), "an excluded layer was pruned"
        for group in groups:
            total = sum(base[n] for n in group.names)
            fraction = layer_fraction(group.names[0], spec)
            assert group.keep == kept_at(total, fraction, level, spec.schedule)
            assert sum(int(kept[n].sum()) for n in group.names) == group.keep
            alive_before = np.concatenate([np.abs(values[n])[previous[n]] for n in group.names])
            kept_mags = np.concatenate([np.abs(values[n])[kept[n]] for n in group.names])
            dropped = np.concatenate([np.abs(values[n])[previous[n] & ~kept[n]] for n in group.names])
            assert len(kept_mags) + len(dropped) == len(alive_before)
            if len(kept_mags) and len(dropped):
                assert kept_mags.min() >= dropped.max(), "a pruned weight outranked a kept one"
        previous = kept
