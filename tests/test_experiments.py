"""Every experiment file: documented, valid, and its smoke variant runs end to end (model + data wiring)."""

import importlib.util

import pytest

from lth.spec.experiments import experiment_names, find_experiment, load_config, load_experiment
from lth.lottery import validate_config
from lth.jobs.lottery import run_lottery

NAMES = experiment_names()
# VGG-16's smoke run takes ~2 minutes on 2 CPU cores (its 13 convolutions compile and run slowly there);
# resnet20's smoke covers the same path (BatchNorm convnet, global pruning): VGG-16's runs with LTH_SLOW=1
SMOKE = [pytest.param(name, marks=pytest.mark.slow) if name == "vgg16_cifar10" else name for name in NAMES]


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


@pytest.mark.parametrize("name", SMOKE)
def test_smoke_variant_runs_end_to_end(name, tmp_path):
    config = load_config(name, "smoke")
    records = run_lottery(config, runs_root=tmp_path, wandb="disabled", progress=False)
    assert [r["level"] for r in records] == [0, 1, 2]
    assert records[0]["density"] == 1.0 > records[1]["density"] > records[2]["density"]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in records)


def test_experiment_controls_run_after_the_main_line(tmp_path, capsys):
    """`lth run` trains the controls an experiment file lists (pruning at init and sanity checks here)."""
    import json

    from lth.cli import main
    from lth.spec.experiments import load_experiment

    experiment = load_experiment("pai_lenet300", "smoke")
    assert "snip+shuffle" in experiment.controls and experiment.control_levels == "2"
    assert load_experiment("pai_lenet300").control_levels == "3,6,9,12"
    code = main(["run", "pai_lenet300", "--variant", "smoke", "--runs", str(tmp_path), "--no-progress",
                 "--wandb", "disabled"])
    assert code == 0, capsys.readouterr().err
    (run,) = list(tmp_path.iterdir())
    main_records = json.loads((run / "replicate_00" / "results.json").read_text())
    for name in experiment.controls:
        records = json.loads((run / "replicate_00" / "controls" / name / "results.json").read_text())
        assert [r["level"] for r in records] == [2], name
        for r, m in zip(records, main_records[2:]):
            assert abs(r["weights_remaining"] - m["weights_remaining"]) <= 1, name  # the level's density


def test_the_readme_run_has_its_reinit_control_at_21_7_and_2_percent_and_only_there():
    """CONTROLS may map variants to controls: the quick variant (the README run) trains imp+reinit at
    three levels; the paper's default and the tests' smoke variant train none."""
    from lth.plans.run import control_levels_of

    quick = load_experiment("lenet300_mnist", "quick")
    levels = control_levels_of(quick.controls, quick.control_levels, quick.config.levels)
    assert quick.controls == ("imp+reinit",) and levels == (7, 12, 17)
    hidden, output = 784 * 300 + 300 * 100, 100 * 10  # 20 % per level on the hidden layers, 10 % on the output
    percent = [100 * (hidden * 0.8 ** level + output * 0.9 ** level) / (hidden + output) for level in levels]
    assert [round(p) for p in percent] == [21, 7, 2]
    assert [load_experiment("lenet300_mnist", v).controls for v in ("default", "smoke")] == [(), ()]


def test_mlp_mnist1d_smoke_trains_the_notebooks_random_pruning(tmp_path, capsys):
    """`lth run mlp_mnist1d --variant smoke` trains random_modulewise (the MNIST-1D notebook's random
    pruning) and random_layerwise at level 2: both with the ticket's count per module, the former
    drawing each module's kernel/bias split at random, the latter keeping the ticket's."""
    import json

    import numpy as np

    from lth.cli import main

    experiment = load_experiment("mlp_mnist1d", "notebook")
    assert experiment.controls == ("random_modulewise", "random_layerwise")
    assert experiment.control_levels == "0,79,89,94,96" and experiment.config.levels == 98
    code = main(["run", "mlp_mnist1d", "--variant", "smoke", "--runs", str(tmp_path), "--no-progress",
                 "--wandb", "disabled"])
    assert code == 0, capsys.readouterr().err
    (replicate,) = [d for d in next(tmp_path.iterdir()).iterdir() if d.name.startswith("replicate")]

    def counts(path):
        with np.load(path) as masks:
            return {name: int(masks[name].sum()) for name in masks.files}

    ticket = counts(replicate / "masks" / "level_02.npz")
    for name in ("random_modulewise", "random_layerwise"):
        (record,) = json.loads((replicate / "controls" / name / "results.json").read_text())
        assert record["level"] == 2 and 0.0 <= record["best_test_accuracy"] <= 1.0
        assert record["best_test_accuracy"] >= record["test_accuracy"]
        ours = counts(replicate / "controls" / name / "masks" / "level_02.npz")
        for module in ("fc1", "fc2", "output"):
            pair = [f"{module}/kernel", f"{module}/bias"]
            assert sum(ours[n] for n in pair) == sum(ticket[n] for n in pair), (name, module)
        assert (ours == ticket) == (name == "random_layerwise")
