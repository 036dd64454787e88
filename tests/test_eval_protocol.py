"""The test protocol `training.test_at`: "validation_minimum" evaluates the test set only where the
validation loss reaches a new minimum of the level and at its end, and keeps the early stop, the
final accuracy and the validation curve of the full protocol ("every_evaluation") bit for bit; in
every trainer (scan, steps, stacked, data-parallel) and across a resume mid-level."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from helpers import tiny_config

from lth.data.device import to_device
from lth.errors import ConfigError
from lth.lottery import prepare
from lth.lottery.levels import Hooks, Resume, lottery_levels
from lth.models import get_model
from lth.spec.checks import validate_config
from lth.spec.config import OptimizerConfig, replace
from lth.spec.hashing import config_hash
from lth.spec.names import TEST_AT
from lth.training import make_trainer, train
from lth.training.loop import val_minimum
from lth.training.stacked import train_stacked

FULL, CHEAP = TEST_AT
SAME_FIELDS = ("early_stop_iteration", "early_stop_val_loss", "early_stop_val_accuracy", "early_stop_test_accuracy",
               "test_accuracy", "final_iteration")


def synthetic(seed=0):
    from lth.data.dataset import Dataset

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(12, 3))

    def make(m):
        x = rng.normal(size=(m, 12)).astype(np.float32)
        return x, np.argmax(x @ w + rng.normal(scale=2.0, size=(m, 3)), 1).astype(np.int32)  # noisy: val loss wanders

    return Dataset("synthetic", *make(240), *make(60), *make(60), num_classes=3)


def expected_test_iterations(evaluations: list[dict], last: int) -> list[int]:
    """Where the test set is due: each strictly lower finite validation loss (the first is one), and the end."""
    best, due = math.inf, []
    for e in evaluations:
        if not math.isfinite(e["val_loss"]) or e["val_loss"] < best or e["iteration"] == last:
            due.append(e["iteration"])
        if math.isfinite(e["val_loss"]):
            best = min(best, e["val_loss"])
    return due


def assert_cheap_matches_full(cheap: list[dict], full: list[dict], last: int) -> None:
    """Same iterations and validation curve; test where due (equal to the full run's) and NaN elsewhere."""
    assert [e["iteration"] for e in cheap] == [e["iteration"] for e in full]
    assert [(e["val_loss"], e["val_accuracy"], e["train_loss"]) for e in cheap] == \
        [(e["val_loss"], e["val_accuracy"], e["train_loss"]) for e in full]
    due = expected_test_iterations(full, last)
    assert [e["iteration"] for e in cheap if not math.isnan(e["test_accuracy"])] == due
    assert len(due) < len(full)  # the protocol skipped something: the comparison means something
    by_iteration = {e["iteration"]: e for e in full}
    for e in cheap:
        if e["iteration"] in due:
            assert (e["test_loss"], e["test_accuracy"]) == (by_iteration[e["iteration"]]["test_loss"],
                                                            by_iteration[e["iteration"]]["test_accuracy"])


def run_training(test_at: str, loop: str = "scan", total: int = 48, **kwargs):
    """(trainer, [(state, evaluations)] per chunk, data, params) of a synthetic run, eval every 2 it."""
    ds = synthetic()
    model = get_model("mlp_tiny", ds.input_shape, ds.num_classes)
    params, model_state = model.init(jax.random.key(0))
    trainer = make_trainer(model, OptimizerConfig(learning_rate=0.05), total_steps=total, steps_per_epoch=8,
                           batch_size=30, eval_every=2, loop=loop, test_at=test_at)
    data = to_device(ds)
    chunks = list(train(trainer, trainer.init_state(params, model_state), params_mask(params), data,
                        jax.random.key(1), **kwargs))
    return trainer, chunks, data


def params_mask(params):
    from lth.sparsity.masks import make_mask

    return make_mask(params)


def flat(chunks) -> list[dict]:
    return [e for _, evals in chunks for e in evals]


@pytest.mark.parametrize("loop", ["scan", "steps"])
def test_test_set_only_at_new_validation_minima_and_the_end(loop):
    _, full, _ = run_training(FULL, loop)
    _, cheap, _ = run_training(CHEAP, loop)
    assert_cheap_matches_full(flat(cheap), flat(full), 48)
    for a, b in zip(cheap, full):  # the trained weights do not depend on the protocol
        assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a[0].params), jax.tree.leaves(b[0].params)))


def test_a_resumed_chunk_carries_the_running_minimum():
    """Training resumed at any chunk boundary with `val_minimum` of the evaluations before it gives the
    uninterrupted run's evaluations; resumed without it (none yet), some boundary evaluates differently."""
    trainer, chunks, data = run_training(CHEAP)
    whole = flat(chunks)
    mask, differs = params_mask(chunks[0][0].params), 0
    for i in range(1, len(chunks)):
        state, before = chunks[i - 1][0], flat(chunks[:i])
        rest = flat(train(trainer, state, mask, data, jax.random.key(1), val_min=val_minimum(before)))
        np.testing.assert_array_equal(np.array([list(e.values()) for e in before + rest]),
                                      np.array([list(e.values()) for e in whole]))
        forgot = flat(train(trainer, state, mask, data, jax.random.key(1)))
        differs += not np.array_equal(np.array([list(e.values()) for e in before + forgot]),
                                      np.array([list(e.values()) for e in whole]), equal_nan=True)
    assert differs  # without the carried minimum the test would be evaluated where it is not due


def level_records(config, **kwargs):
    outcomes = list(lottery_levels(prepare(config), **kwargs))
    return [o.record for o in outcomes], [o.evaluations for o in outcomes]


def test_lottery_records_keep_the_early_stop_and_final_accuracy():
    config = tiny_config(levels=2, **{"training.eval_every": "2it", "optimizer.learning_rate": 0.05})
    full_records, full_evals = level_records(config)
    cheap_records, cheap_evals = level_records(replace(config, **{"training.test_at": CHEAP}))
    for cheap, full, cheap_e, full_e in zip(cheap_records, full_records, cheap_evals, full_evals):
        assert {k: cheap[k] for k in SAME_FIELDS} == {k: full[k] for k in SAME_FIELDS}
        assert_cheap_matches_full(cheap_e, full_e, full["final_iteration"])
        tested = [e["test_accuracy"] for e in cheap_e if not math.isnan(e["test_accuracy"])]
        assert cheap["best_test_accuracy"] == max(tested) <= full["best_test_accuracy"]


class _Capture(Hooks):
    """Keeps the state and evaluations after the first chunk of `level`."""

    def __init__(self, level):
        self.level, self.at = level, None

    def chunk_done(self, level, state, mask, new, evaluations):
        if level == self.level and self.at is None:
            self.at = (state, mask, list(evaluations))


def test_a_level_resumed_mid_way_evaluates_as_an_uninterrupted_one():
    """Level 0 is cut at the rewind step (9): resumed there with its evaluations so far (as
    `lth.store.resume` gives them), both levels are those of the uninterrupted run. The evaluation
    after the cut (10) is no new minimum: a resume that forgot the minimum would evaluate test there."""
    config = tiny_config(levels=1, rewind="9it", **{"training.eval_every": "2it", "optimizer.learning_rate": 0.05,
                                                     "training.test_at": CHEAP})
    setup = prepare(config)
    hooks = _Capture(0)
    outcomes = list(lottery_levels(setup, hooks=hooks))
    state, mask, before = hooks.at
    assert int(state.step) == 9 and 0 < len(before) < len(outcomes[0].evaluations)
    after = outcomes[0].evaluations[len(before)]
    assert after["iteration"] == 10 and after["val_loss"] >= val_minimum(before) and math.isnan(after["test_loss"])
    resume = Resume(level=0, previous=None, previous_mask=None, rewind_point=(state.params, state.model_state),
                    state=state, mask=mask, evaluations=tuple(before))
    resumed = list(lottery_levels(setup, resume=resume))
    for got, want in zip(resumed, outcomes, strict=True):
        np.testing.assert_array_equal(np.array([list(e.values()) for e in got.evaluations]),
                                      np.array([list(e.values()) for e in want.evaluations]))
        assert got.record == want.record


def test_stacked_networks_share_one_cond_and_keep_their_own_rows():
    """Stacked, each network's rows are its own: test where its own minima are (NaN elsewhere, though
    the shared cond evaluated the set for another network), as trained one at a time (to the float
    tolerance of a vmapped matmul: the same positions)."""
    ds = synthetic()
    model = get_model("mlp_tiny", ds.input_shape, ds.num_classes)
    inits = [model.init(jax.random.key(s)) for s in range(3)]
    data = to_device(ds)
    trainer = make_trainer(model, OptimizerConfig(learning_rate=0.05), total_steps=48, steps_per_epoch=8,
                           batch_size=30, eval_every=2, test_at=CHEAP)
    states = [trainer.init_state(p, s) for p, s in inits]
    masks = [params_mask(p) for p, _ in inits]
    keys = [jax.random.key(10 + s) for s in range(3)]
    stacked = [[] for _ in states]
    for _, evals in train_stacked(trainer, states, masks, data, keys, keys):
        for r, e in enumerate(evals):
            stacked[r].extend(e)
    alone = [flat(train(trainer, st, m, data, k, k)) for st, m, k in zip(states, masks, keys)]
    tested = [[e["iteration"] for e in evals if not math.isnan(e["test_accuracy"])] for evals in stacked]
    assert tested == [[e["iteration"] for e in evals if not math.isnan(e["test_accuracy"])] for evals in alone]
    assert len({tuple(t) for t in tested}) > 1  # the networks' minima differ: the select per network mattered
    for got, want in zip(stacked, alone):
        np.testing.assert_allclose(np.array([list(e.values()) for e in got]),
                                   np.array([list(e.values()) for e in want]), atol=1e-5)


def test_data_parallel_trainer_evaluates_at_the_same_minima():
    from lth.training.sharded import data_parallel

    trainer, chunks, data = run_training(CHEAP)
    dp, dp_data = data_parallel(trainer, data)  # a mesh of this process's devices (one CPU here)
    params, model_state = trainer.model.init(jax.random.key(0))  # run_training's start
    got = flat(train(dp, dp.init_state(params, model_state), params_mask(params), dp_data, jax.random.key(1)))
    want = flat(chunks)
    assert [e["iteration"] for e in got if not math.isnan(e["test_accuracy"])] == \
        [e["iteration"] for e in want if not math.isnan(e["test_accuracy"])]
    np.testing.assert_allclose(np.array([list(e.values()) for e in got]),
                               np.array([list(e.values()) for e in want]), atol=1e-5)


def test_without_a_validation_set_test_is_evaluated_every_time():
    config = tiny_config(levels=0, **{"data.validation_size": 0})
    (full,), (full_e,) = level_records(config)
    (cheap,), (cheap_e,) = level_records(replace(config, **{"training.test_at": CHEAP}))
    np.testing.assert_array_equal(np.array([list(e.values()) for e in cheap_e]),
                                  np.array([list(e.values()) for e in full_e]))
    assert cheap == full and cheap["early_stop_iteration"] is None


def test_config_field_hash_and_refusals():
    base = tiny_config()
    assert config_hash(replace(base, **{"training.test_at": FULL})) == config_hash(base)
    assert config_hash(replace(base, **{"training.test_at": CHEAP})) != config_hash(base)
    with pytest.raises(ConfigError, match="training.test_at"):
        validate_config(replace(base, **{"training.test_at": "sometimes"}))
    with pytest.raises(ConfigError, match="needs a mask fixed during training"):
        validate_config(replace(base, method="set", **{"training.test_at": CHEAP, "sparse.densities": (0.5,)}))


def test_command_line_flag_sets_the_field():
    from lth.cli.parser import build_parser
    from lth.cli.run_args import config_changes

    args = build_parser().parse_args(["run", "lenet300_mnist", "--test-at", CHEAP])
    assert config_changes(args)["training.test_at"] == ("--test-at validation_minimum", CHEAP)


def test_a_changing_mask_falls_back_to_the_full_protocol():
    """A dynamic method's control in an IMP run: its trainer evaluates test at every evaluation."""
    from lth.spec.config import SparseConfig
    from lth.training.mask_updates import make_mask_update
    from lth.training.trainer import with_mask_update

    trainer, _, _ = run_training(CHEAP, total=8)
    moving = with_mask_update(trainer, make_mask_update("set", SparseConfig(dt=2), 8))
    assert trainer.parts.test_at == CHEAP and moving.parts.test_at == FULL
