"""Config: canonical JSON, hashing, dotted replace, durations."""

import dataclasses

import pytest

from lth.spec.config import ExperimentConfig, from_dict, replace, to_dict
from lth.spec.hashing import canonical_json, config_hash
from lth.errors import ConfigError
from lth.spec.experiments import load_config
from lth.spec.parse import duration_to_steps, parse_duration


def test_equal_configs_equal_hash_and_round_trip():
    a = load_config("lenet300_mnist", "quick")
    b = from_dict(to_dict(a))
    assert a == b
    assert canonical_json(a) == canonical_json(b)
    assert config_hash(a) == config_hash(b)


@pytest.mark.parametrize("field,value", [
    ("seed", 1), ("levels", 3), ("rewind", "500it"), ("training.batch_size", 30), ("pruning.fraction", 0.1),
    ("optimizer.learning_rate", 1e-3), ("data.name", "mnist1d"), ("pruning.prunable", (".*",)), ("name", "x"),
    ("ticket", "ab" * 32),
])
def test_any_field_change_changes_hash(field, value):
    base = ExperimentConfig()
    assert config_hash(replace(base, **{field: value})) != config_hash(base)


def test_an_unset_ticket_leaves_the_hash_of_runs_named_before_the_field():
    """`ticket` (and `pruning.granularity`, `pruning.unit_score`) came after runs were named by their
    hash: while at their default they are not hashed, so those runs keep their names."""
    import hashlib
    import json

    config = load_config("lenet300_mnist", "quick")
    fields = to_dict(config)
    assert fields["ticket"] is None  # in config.json ...
    fields.pop("ticket")  # ... but not in the hash
    assert fields.pop("particles") == 1  # SWAMP's particle count: 1 (plain IMP) is not hashed either
    assert fields["training"].pop("test_at") == "every_evaluation"  # the full test protocol: not hashed
    assert fields["pruning"].pop("granularity") == "weight" and fields["pruning"].pop("unit_score") == "l1"
    assert fields["pruning"].pop("oneshot_early_at") == ""  # the oneshot_early control's iteration: unset
    assert fields["sparse"].pop("dense") == "reference" and fields["sparse"].pop("set_drop") == "cosine"
    assert [fields["sparse"].pop(f) for f in ("eb_epsilon", "eb_window", "eb_every")] == [0.1, 5, "1ep"]
    assert fields["sparse"]["distribution"] == "auto"
    fields["sparse"]["distribution"] = "erk"  # the default before "auto"
    before = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:8]
    assert config_hash(config) == before
    assert "ticket" not in canonical_json(config) and "ticket" in canonical_json(replace(config, ticket="ab"))
    assert "granularity" in canonical_json(replace(config, **{"pruning.granularity": "neuron"}))
    assert "particles" in canonical_json(replace(config, particles=4))
    assert "test_at" in canonical_json(replace(config, **{"training.test_at": "validation_minimum"}))
    assert "eb_window" in canonical_json(replace(config, **{"sparse.eb_window": 3}))
    assert "oneshot_early_at" in canonical_json(replace(config, **{"pruning.oneshot_early_at": "2000it"}))


def test_method_runs_whose_defaults_changed_get_new_hashes_and_imp_runs_keep_theirs():
    """SET's cosine drop, the reference dense layers and gradual's uniform distribution changed what
    those runs train: they are hashed for the methods that read them, so an old run's directory is not
    resumed with new rules; an IMP run's hash does not see them (nor an explicit value equal to the
    resolved default)."""
    imp = load_config("lenet300_mnist", "quick")
    assert "set_drop" not in canonical_json(imp) and '"dense"' not in canonical_json(imp)
    assert config_hash(replace(imp, **{"sparse.distribution": "erk"})) == config_hash(imp)
    set_run = replace(imp, method="set", **{"sparse.densities": (0.1,)})
    assert '"set_drop":"cosine"' in canonical_json(set_run) and '"dense":"reference"' in canonical_json(set_run)
    assert config_hash(replace(set_run, **{"sparse.set_drop": "constant"})) != config_hash(set_run)
    rigl = replace(set_run, method="rigl")
    assert "set_drop" not in canonical_json(rigl) and '"distribution":"erk"' in canonical_json(rigl)
    gradual = replace(set_run, method="gradual")
    assert '"distribution":"uniform"' in canonical_json(gradual)
    assert config_hash(replace(gradual, **{"sparse.distribution": "uniform"})) == config_hash(gradual)
    assert config_hash(replace(gradual, **{"sparse.distribution": "erk"})) != config_hash(gradual)


def test_replace_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="unknown config field"):
        replace(ExperimentConfig(), **{"training.batchsize": 3})
    with pytest.raises(ConfigError, match="unknown config field"):
        from_dict({**to_dict(ExperimentConfig()), "colour": "red"})


def test_durations():
    assert parse_duration("500it") == (500, "it")
    assert duration_to_steps("2ep", 58) == 116
    for bad in ("5", "it", "1.5ep", "-3it", "3 iterations"):
        with pytest.raises(ConfigError, match="invalid duration"):
            parse_duration(bad)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ExperimentConfig().seed = 3


def test_equal_durations_spelt_differently_share_a_hash():
    """rewind 0it and 0ep train the same network: one run directory (and one sweep cell), not two."""
    base = load_config("lenet300_mnist", "smoke")
    same = [replace(base, rewind=r) for r in ("0it", "0ep", "000it", " 0 ep")]
    assert len({config_hash(c) for c in same}) == 1
    assert config_hash(replace(base, rewind="5ep")) == config_hash(replace(base, rewind="05ep"))
    assert config_hash(replace(base, rewind="5ep")) != config_hash(base)
    assert config_hash(replace(base, **{"optimizer.warmup": "0ep"})) == config_hash(base)
