"""Every experiment file: documented, valid, and its smoke variant runs end to end (model + data wiring)."""

import importlib.util

import pytest

from lth.experiments import find_experiment, experiment_names, load_config
from lth.lottery import run_lottery, validate_config

NAMES = experiment_names()


def test_the_papers_experiments_are_there():
    assert {"lenet300_mnist", "mlp_mnist1d", "conv2_cifar10", "conv4_cifar10", "conv6_cifar10",
            "resnet20_cifar10", "vgg16_cifar10"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_and_default_config(name):
    spec = importlib.util.spec_from_file_location(name, find_experiment(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = module.__doc__ or ""
    assert f"lth run {name}" in doc and "Expected outcome" in doc and "Runtime" in doc
    validate_config(load_config(name))  # names, fractions, durations of the paper's setup


@pytest.mark.parametrize("name", NAMES)
def test_smoke_variant_runs_end_to_end(name, tmp_path):
    config = load_config(name, "smoke")
    records = run_lottery(config, runs_root=tmp_path, wandb="disabled", progress=False)
    assert [r["level"] for r in records] == [0, 1, 2]
    assert records[0]["density"] == 1.0 > records[1]["density"] > records[2]["density"]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in records)
