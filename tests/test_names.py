"""The names the jax-free config checks accept (`lth.spec.names`) are exactly those the registries implement."""

import pytest

from lth.spec import names
from lth.spec.checks import check_dataset_name, check_model_name
from lth.errors import ConfigError


def test_model_and_dataset_names_match_the_registries():
    import lth.data
    import lth.models
    from lth.models.mlp import INITS

    assert set(names.MODELS) == set(lth.models._REGISTRY) == set(lth.models.model_names())
    assert set(names.DATASETS) == set(lth.data._REGISTRY)
    assert names.MODELS["lenet300_100"] == INITS


def test_the_other_names_are_the_implementations():
    from lth.execution.layout import LAYOUTS
    from lth.sparsity.distributions import DISTRIBUTIONS
    from lth.sparsity.pruning import SCHEDULES, STRATEGIES
    from lth.training.optim import OPTIMIZERS, make_optimizer, make_schedule
    from lth.spec.config import OptimizerConfig

    assert (STRATEGIES, SCHEDULES, DISTRIBUTIONS, LAYOUTS) == (
        names.PRUNING_STRATEGIES, names.PRUNING_SCHEDULES, names.DISTRIBUTIONS, names.LAYOUTS)
    for name in OPTIMIZERS:  # every name the checks accept builds
        make_optimizer(OptimizerConfig(name=name))
    for schedule in names.LR_SCHEDULES:
        make_schedule(OptimizerConfig(schedule=schedule), 100, 10)


def test_unknown_names_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'"):
        check_model_name("resnet9000")
    with pytest.raises(ConfigError, match="has no 'pytorch' initialisation"):
        check_model_name("resnet20", "pytorch")
    check_model_name("lenet300_100", "pytorch")
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        check_dataset_name("imagenet")
