"""Early-Bird tickets (`lth.sparsity.earlybird`, `lth.lottery.earlybird`): the distance and the stop
rule against hand-worked examples, the search against a NumPy recomputation of its masks on the
same dense trajectory, the records, resume, compilations, bad settings and unchanged hashes."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import backend_compiles, tiny_config

from lth.errors import ConfigError
from lth.spec.checks import validate_config
from lth.spec.config import ExperimentConfig
from lth.spec.hashing import config_hash

FAST = {"training.length": "140it", "sparse.densities": (0.3, 0.1)}  # 35 iterations an epoch: 4 epochs


def _tree(first, second):
    import jax.numpy as jnp

    return {"a": {"kernel": jnp.asarray(first, bool), "bias": None}, "b": {"kernel": jnp.asarray(second, bool)}}


def test_mask_distance_is_the_fraction_of_entries_that_differ():
    a = _tree([[1, 0], [1, 1]], [1, 0, 0])
    b = _tree([[1, 1], [0, 1]], [1, 0, 1])  # differs at a[0,1], a[1,0], b[2]: 3 of 7 entries
    from lth.sparsity.earlybird import mask_distance

    assert mask_distance(a, b) == pytest.approx(3 / 7)
    assert mask_distance(a, a) == 0.0
    assert mask_distance(a, _tree([[0, 1], [0, 0]], [0, 1, 1])) == 1.0


def _run_rule(masks, window, epsilon):
    """Feed flat masks through `observe`; the index of the first check where `should_stop` holds."""
    import jax.numpy as jnp

    from lth.sparsity import earlybird as eb

    state = eb.init_state(len(masks[0]), window)
    for i, m in enumerate(masks):
        state, differ = eb.observe(state, jnp.asarray(m, bool))
        if eb.should_stop(eb.distances(differ, len(m)), int(state.seen), window, epsilon):
            return i
    return None


# hand-worked, window 3 (the newest against the two before it):
#   check 2: d(m2, m1) = 0,   d(m2, m0) = 2/4   -> max 0.5
#   check 3: d(m3, m2) = 2/4                    -> max 0.5
#   check 4: d(m4, m3) = 0,   d(m4, m2) = 2/4   -> max 0.5
#   check 5: d(m5, m4) = 0,   d(m5, m3) = 0     -> max 0
SEQUENCE = ["1100", "1010", "1010", "1001", "1001", "1001"]


@pytest.mark.parametrize("window, epsilon, stop", [(3, 0.25, 5), (3, 0.5, 2), (2, 0.25, 2), (2, 0.6, 1),
                                                   (4, 0.5, 3), (6, 1.0, 5), (7, 1.0, None)])
def test_the_window_rule_stops_where_the_hand_worked_distances_say(window, epsilon, stop):
    masks = [[c == "1" for c in m] for m in SEQUENCE]
    assert _run_rule(masks, window, epsilon) == stop


def test_observe_counts_the_differences_to_the_queued_masks_as_numpy_does():
    import jax.numpy as jnp

    from lth.sparsity import earlybird as eb

    rng = np.random.default_rng(0)
    masks = rng.random((7, 50)) < 0.3
    state = eb.init_state(50, 4)
    for i, m in enumerate(masks):
        state, differ = eb.observe(state, jnp.asarray(m))
        previous = [masks[i - j] for j in range(1, 4)]  # most recent first
        want = [int(np.sum(m != p)) if i - j >= 0 else 50 for j, p in enumerate(previous, start=1)]
        assert np.asarray(differ).tolist() == want
    assert int(state.seen) == 7


def _numpy_mask(params, names, counts):
    """The magnitude mask of `params` with `counts` per layer: a stable sort of -|w|, ties to the lower index."""
    from lth.sparsity.masks import named_leaves

    leaves = named_leaves(params)
    out = {}
    for name in names:
        w = np.abs(np.asarray(leaves[name], np.float32)).reshape(-1)
        keep = np.zeros(w.size, bool)
        keep[np.argsort(-w, kind="stable")[: counts[name]]] = True
        out[name] = keep
    return out


@functools.lru_cache(maxsize=4)
def _run(**changes):
    from lth.lottery import prepare
    from lth.lottery.methods import method_levels

    config = tiny_config(method="earlybird", **FAST, **dict(changes))
    setup = prepare(config)
    return setup, list(method_levels(setup))


def test_the_search_draws_the_masks_numpy_draws_on_the_dense_trajectory():
    """Every distance of the record, the EB iteration and the ticket's mask, recomputed with NumPy
    masks from dense states trained separately with the search's data order."""
    from lth.lottery.earlybird import check_iterations
    from lth.lottery.methods import target_counts
    from lth.lottery.setup import data_keys, init_params, initial_mask
    from lth.sparsity.masks import mask_leaves
    from lth.training import train

    setup, outcomes = _run(**{"sparse.eb_epsilon": 0.06, "sparse.eb_window": 3})
    params0, model_state0 = init_params(setup)
    full = initial_mask(setup, params0)
    names = list(mask_leaves(full))
    points = check_iterations(setup)
    assert points == [0, 35, 70, 105, 140]
    states = {0: params0}
    state = setup.trainer.init_state(params0, model_state0, 0)
    for state, _ in train(setup.trainer, state, full, setup.data, *data_keys(setup, 0), breaks=points):
        states[int(state.step)] = state.params
    for outcome, density in zip(outcomes, (0.3, 0.1), strict=True):
        counts = target_counts(setup, full, density)
        masks = [np.concatenate(list(_numpy_mask(states[p], names, counts).values())) for p in points]
        size = masks[0].size
        want = [[p, float(np.sum(masks[i] != masks[i - 1])) / size] for i, p in enumerate(points) if i]
        record = outcome.record
        stop = next((i for i in range(2, len(points)) if max(np.sum(masks[i] != masks[i - j]) / size
                                                              for j in (1, 2)) <= 0.06), None)
        n = (stop if stop is not None else len(points) - 1)
        assert record["mask_distances"] == want[:n]  # exact: both are counts / size
        assert record["earlybird_found"] is (stop is not None)
        assert record["earlybird_iteration"] == points[n]
        assert len(record["window_distances"]) == n - 1
        got = mask_leaves(outcome.mask)
        for i, name in enumerate(names):
            offset = sum(int(np.size(got[m])) for m in names[:i])
            np.testing.assert_array_equal(np.asarray(got[name]).reshape(-1),
                                          masks[n][offset: offset + int(np.size(got[name]))])
    # 0.06 separates the two densities on this trajectory: one is found, the other is not
    assert [o.record["earlybird_found"] for o in outcomes] == [False, True]


def test_records_and_the_ticket_trained_from_init_for_the_full_length():
    setup, outcomes = _run(**{"sparse.eb_epsilon": 1.0, "sparse.eb_window": 2})
    from lth.lottery.methods import target_counts
    from lth.lottery.setup import init_params, initial_mask
    from lth.sparsity.masks import layer_counts

    full = initial_mask(setup, init_params(setup)[0])
    for outcome, density in zip(outcomes, (0.3, 0.1), strict=True):
        r = outcome.record
        assert r["method"] == "earlybird" and r["target_density"] == density
        # epsilon 1 holds at once: the second check (one epoch of dense training)
        assert r["earlybird_found"] is True and r["earlybird_iteration"] == 35
        assert len(r["mask_distances"]) == 1 and r["window_distances"] == r["mask_distances"]
        assert r["final_iteration"] == setup.total_steps  # the ticket trains the full length
        assert r["mask_updates"] == 0 and r["overlap_with_initial_mask"] == 1.0
        want = target_counts(setup, full, density)
        assert {k: kept for k, (kept, _) in layer_counts(outcome.mask).items()} == want
        params = outcome.state.params
        from lth.sparsity.masks import mask_leaves, named_leaves

        for name, m in mask_leaves(outcome.mask).items():
            assert not np.any(np.asarray(named_leaves(params)[name])[~np.asarray(m)])  # pruned stay zero


def test_a_resumed_density_gets_the_record_of_an_uninterrupted_run():
    from lth.lottery.methods import method_levels

    setup, outcomes = _run(**{"sparse.eb_epsilon": 0.06, "sparse.eb_window": 3})
    (resumed,) = list(method_levels(setup, done=frozenset({0})))
    assert resumed.record == outcomes[1].record


def test_nothing_compiles_after_the_searchs_first_chunk():
    """The checks (compiled at iteration 0) and the tickets' training reuse what the search's first
    chunk compiled: no program is built after it, across both densities."""
    from lth.lottery import Hooks, prepare
    from lth.lottery.methods import method_levels

    class Watch(Hooks):
        block = None
        compiles: list = []
        chunks = 0

        def chunk_done(self, level, state, mask, new, evaluations):
            self.chunks += 1
            if self.block is None:
                self.block = backend_compiles()
                self.compiles = self.block.__enter__()

    changes = {"sparse.eb_epsilon": 0.01, "training.eval_every": "35it"}
    setup = prepare(tiny_config(method="earlybird", **FAST, **changes))
    watch = Watch()
    try:
        outcomes = list(method_levels(setup, watch))
    finally:
        if watch.block is not None:
            watch.block.__exit__(None, None, None)
    assert [o.record["earlybird_found"] for o in outcomes] == [False, False]  # the search ran to the end
    assert watch.chunks == 3 * 4
    assert watch.compiles == [], f"{len(watch.compiles)} program(s) compiled after the search's first chunk"


@pytest.mark.parametrize("change, message", [
    ({"sparse.eb_epsilon": 0.0}, "sparse.eb_epsilon must be in (0, 1]"),
    ({"sparse.eb_epsilon": 1.5}, "sparse.eb_epsilon must be in (0, 1]"),
    ({"sparse.eb_window": 1}, "sparse.eb_window must be at least 2"),
    ({"sparse.eb_every": "0ep"}, "sparse.eb_every must be at least 1"),
    ({"sparse.eb_every": "often"}, "sparse.eb_every: invalid duration"),
])
def test_bad_settings_are_one_line_config_errors(change, message):
    config = tiny_config(method="earlybird", **{"sparse.densities": (0.2,)}, **change)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")) as caught:
        validate_config(config)
    assert "\n" not in str(caught.value)


def test_hashes_of_other_runs_are_unchanged_and_the_settings_hash_when_set():
    # the values main gave before the earlybird fields existed
    assert config_hash(ExperimentConfig()) == "8d6aece1"
    assert config_hash(tiny_config(method="rigl", **{"sparse.densities": (0.2,)})) == "506de97e"
    base = tiny_config(method="earlybird", **{"sparse.densities": (0.2,)})
    assert config_hash(base) != config_hash(tiny_config(method="earlybird", **{"sparse.densities": (0.2,),
                                                                                "sparse.eb_epsilon": 0.05}))
