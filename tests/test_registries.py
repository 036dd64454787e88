"""The contract of every registry that is an extension point (models, datasets, control sources and
transforms, pruning-at-init scores, trackers; the methods' is `test_method_registry.py`): the names
a config may use are exactly those implemented, and every entry works -- each model builds on its
dataset's shapes, each dataset that needs no network loads with its entry's shape, each control
source makes a mask with the main line's count, each tracker takes a run's events."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from lth.errors import ConfigError
from lth.spec.catalog import DATASET_REGISTRY, MODEL_REGISTRY
from lth.spec.controls import KINDS, SOURCE_REGISTRY, SOURCES, TRANSFORMS, parse_control

# --------------------------------------------------------------------------- models and datasets


def test_models_and_datasets_are_exactly_those_implemented():
    import lth.data
    import lth.models
    from lth.data.download import CHECKSUMS, MIRRORS

    assert set(lth.models._REGISTRY) == set(MODEL_REGISTRY)
    assert set(lth.data._REGISTRY) == set(DATASET_REGISTRY)
    assert {m.dataset for m in MODEL_REGISTRY.values()} <= set(DATASET_REGISTRY)
    downloads = {name for name, d in DATASET_REGISTRY.items() if d.source == "download"}
    assert downloads == set(MIRRORS) == set(CHECKSUMS)
    assert {d.source for d in DATASET_REGISTRY.values()} <= {"embedded", "download", "generated"}


@pytest.mark.parametrize("name", list(MODEL_REGISTRY))
def test_every_model_builds_on_its_datasets_shapes(name):
    """Traced, not run (big models are free this way): params, and logits of (batch, classes)."""
    from lth.models import get_model

    entry = MODEL_REGISTRY[name]
    data = DATASET_REGISTRY[entry.dataset]
    for init in entry.inits:
        model = get_model(name, data.input_shape, data.num_classes, init)
        params, state = jax.eval_shape(model.init, jax.random.key(0))
        x = jax.ShapeDtypeStruct((2, *data.input_shape), jnp.float32)
        logits, _ = jax.eval_shape(lambda p, s, x: model.apply(p, s, x, False), params, state, x)
        assert logits.shape == (2, data.num_classes), (name, init)
        assert sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params)) > 0
    with pytest.raises(ConfigError, match="initialisation"):
        get_model(name, data.input_shape, data.num_classes, "no_such_init")


@pytest.mark.parametrize("name", [n for n, d in DATASET_REGISTRY.items() if d.source != "download"])
def test_every_dataset_without_a_download_loads_with_its_entrys_shape(name):
    from lth.data import load_dataset

    entry = DATASET_REGISTRY[name]
    ds = load_dataset(name, validation_size=100)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert x.shape[1:] == entry.input_shape and x.shape[0] == y.shape[0] > 0
        assert set(np.unique(y)) <= set(range(entry.num_classes))
    assert ds.num_classes == entry.num_classes and ds.x_val.shape[0] == 100


def test_unknown_models_and_datasets_get_a_did_you_mean():
    from lth.spec.checks import check_dataset_name, check_model_name

    with pytest.raises(ConfigError, match="did you mean lenet300_100\\?"):
        check_model_name("lenet300")
    with pytest.raises(ConfigError, match="did you mean cifar100\\?"):
        check_dataset_name("cifar1000")
    with pytest.raises(ConfigError) as caught:
        check_model_name("transformer")
    assert "did you mean" not in str(caught.value) and "choose one of" in str(caught.value)


# --------------------------------------------------------------------------- controls


def test_every_control_kind_has_a_mask_rule_and_every_score_a_scorer():
    from lth.lottery.controls import MASK_RULES
    from lth.sparsity.scores import SCORERS

    assert set(MASK_RULES) == set(KINDS) == {s.kind for s in SOURCE_REGISTRY.values()}
    for source in SOURCE_REGISTRY.values():
        assert (source.scorer in SCORERS) == (source.kind == "at_init"), source.name


def test_control_names_parse_from_the_registry_with_did_you_mean():
    for source in SOURCES:
        if SOURCE_REGISTRY[source].kind != "main":
            assert parse_control(source).source == source
    for transform in TRANSFORMS:
        assert parse_control(transform).name == f"imp+{transform}"
    with pytest.raises(ConfigError, match="did you mean random_global\\?"):
        parse_control("random_globl")
    with pytest.raises(ConfigError, match="did you mean reinit\\?"):
        parse_control("snip+renit")


@pytest.fixture(scope="module")
def main_line():
    from lth.lottery import init_params, lottery_levels, prepare

    setup = prepare(tiny_config(levels=2))
    outcomes = list(lottery_levels(setup))
    return setup, outcomes, init_params(setup)


@pytest.mark.parametrize("source", [s for s in SOURCES if SOURCE_REGISTRY[s].kind != "main"])
def test_every_control_source_makes_a_mask_with_the_main_lines_count(main_line, source):
    """Level 2's mask of each source keeps the main line's number of weights (a static_* source its
    overall density, spread by its own rule, so its count up to one weight per layer; gradual starts
    dense and ends at the main line's counts)."""
    from lth.lottery.controls import LevelInputs, control_mask, counts_of

    setup, outcomes, (params0, state0) = main_line
    inputs = LevelInputs(2, outcomes[2].mask, outcomes[0].mask, dense_final=outcomes[0].state.params)
    mask = control_mask(setup, parse_control(source), inputs, params0, state0)
    got, want, full = (sum(counts_of(m).values()) for m in (mask, outcomes[2].mask, outcomes[0].mask))
    if source == "gradual":
        assert got == full
    elif source.startswith("static_"):
        assert abs(got - want) <= len(counts_of(mask))
    else:
        assert got == want
    assert jax.tree.structure(mask) == jax.tree.structure(outcomes[2].mask)


# --------------------------------------------------------------------------- trackers


@pytest.mark.parametrize("mode", ["disabled", "offline"])
def test_every_built_in_tracker_takes_a_runs_events(tmp_path, monkeypatch, mode):
    from lth.execution.session import TRACKERS, worker_trackers
    from lth.execution.tracking import Tracker
    from lth.store import RunDir

    monkeypatch.setenv("WANDB_MODE", mode)
    run = RunDir(tmp_path, tiny_config(levels=1))
    run.create()
    trackers = worker_trackers(run, mode)
    assert len(trackers) == len(TRACKERS) and all(isinstance(t, Tracker) for t in trackers)
    record = {"level": 0, "percent_remaining": 100.0, "early_stop_test_accuracy": None, "test_accuracy": 0.5}
    for tracker in trackers:
        tracker.level_start(0, 0, 100.0, 0)
        tracker.log_evaluations(0, 0, [{"iteration": 10, "test_accuracy": 0.5}])
        tracker.level_done(0, record, [{"iteration": 10, "test_accuracy": 0.5}])
        tracker.close()
        assert getattr(tracker, "active", True) == (mode != "disabled")  # no failure turned it off
