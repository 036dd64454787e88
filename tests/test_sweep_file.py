"""Sweep files: cells from grid and zip axes, replicates and the `lth run` command of a cell; every
bad sweep file a one-line error, exit code 2, nothing written and no Ray started."""

import shlex
import textwrap

import pytest

from lth.cli import main
from lth.cli.run_args import config_from_args
from lth.cli.parser import build_parser
from lth.spec.config import replace
from lth.spec.experiments import load_config
from lth.sweeps.file import load_sweep
from lth.store import run_name


def write_sweep(tmp_path, body: str, name: str = "study"):
    path = tmp_path / f"{name}.py"
    path.write_text("from lth.sweeps.file import Sweep\nfrom lth.spec.config import ExperimentConfig\n\n"
                    + textwrap.dedent(body))
    return path


def test_grid_zip_and_replicates_expand_to_ordinary_configs(tmp_path):
    path = write_sweep(tmp_path, """
        def get_sweep(variant="default"):
            return Sweep(name="s", experiment="lenet300_mnist", variant="smoke", set={"levels": 1},
                         grid={"rewind": ["0it", "20it"], "pruning.fraction": [0.2, 0.5]},
                         zip={"optimizer.learning_rate": [1e-3, 2e-3], "training.batch_size": [30, 60]},
                         replicates=2)
    """)
    plan = load_sweep(str(path))
    base = replace(load_config("lenet300_mnist", "smoke"), levels=1)
    expected = []
    for rewind in ("0it", "20it"):
        for fraction in (0.2, 0.5):
            for lr, batch in ((1e-3, 30), (2e-3, 60)):
                for r in range(2):
                    expected.append(replace(base, **{"rewind": rewind, "pruning.fraction": fraction,
                                                     "optimizer.learning_rate": lr, "training.batch_size": batch,
                                                     "seed": base.seed + r}))
    assert [c.config for c in plan.cells] == expected  # 2 x 2 grid x 2 zipped x 2 replicates, in order
    assert [c.run_name for c in plan.cells] == [run_name(c) for c in expected]
    assert plan.axes == ("rewind", "pruning.fraction", "optimizer.learning_rate", "training.batch_size")
    assert plan.cells[3].label == "rewind=0it pruning.fraction=0.2 optimizer.learning_rate=0.002 training.batch_size=60"
    assert [c.replicate for c in plan.cells[:4]] == [0, 1, 0, 1]


def test_a_cells_command_rebuilds_its_config_and_the_hash_follows_the_cells(tmp_path):
    path = write_sweep(tmp_path, """
        def get_sweep(variant="default"):
            lr = 2 if variant == "other" else 1
            return Sweep(name="s", experiment="lenet300_mnist", variant="smoke",
                         grid={"rewind": ["20it"], "optimizer.learning_rate": [lr * 1e-3],
                               "pruning.layer_fractions": [[["output/kernel", 0.05]]]},
                         replicates=2)
        VARIANTS = ("default", "other")
    """)
    plan = load_sweep(str(path))
    for cell in plan.cells:
        argv = shlex.split(plan.command(cell))
        assert argv[:2] == ["lth", "run"]
        assert config_from_args(build_parser().parse_args(argv[1:])) == cell.config  # same config: same run dir
    assert load_sweep(str(path)).hash == plan.hash
    assert load_sweep(str(path), "other").hash != plan.hash


def test_the_example_sweep_is_the_rewinding_study():
    plan = load_sweep("lenet300_rewinding")
    assert len(plan.cells) == 9 and plan.controls == ("imp+reinit",)
    assert sorted({c.config.rewind for c in plan.cells}) == ["0it", "100it", "500it"]
    assert sorted({c.config.seed for c in plan.cells}) == [0, 1, 2]
    smoke = load_sweep("lenet300_rewinding", "smoke")
    assert len(smoke.cells) == 4


BAD = [
    ('grid={"no_such_field": [1, 2]}', "unknown config field 'no_such_field'"),
    ('grid={"optimizer.nope": [1]}', "unknown config field 'optimizer.nope'"),
    ('grid={"rewind": []}', "grid axis 'rewind' is empty"),
    ('zip={"rewind": []}', "zip axis 'rewind' is empty"),
    ('grid={"rewind": "0it"}', "must be a list of values"),
    ('grid={"pruning.fraction": [0.2, 1.5]}', "fraction"),
    ('grid={"optimizer.name": ["adam", "adamx"]}', "unknown optimizer 'adamx'"),
    ('grid={"rewind": ["0it", "soon"]}', "invalid duration 'soon'"),
    ('grid={"levels": ["ten"]}', "config field levels must be an integer, got 'ten'"),
    ('grid={"training": ["5it"]}', "'training' is a group of fields"),
    ('zip={"rewind": ["0it", "20it"], "seed": [0]}', "zip axes must have equal lengths"),
    ('grid={"seed": [0, 1]}, replicates=2', "is the same run as"),
    ('grid={"rewind": ["0it"]}, set={"rewind": "20it"}', "given twice"),
    ('replicates=0', "replicates must be a whole number >= 1"),
    ('controls=("imp+nothing",)', "unknown control transform"),
    ('plot_axis="seed"', "plot_axis 'seed' is not an axis"),
]


@pytest.mark.parametrize("fields,message", BAD, ids=[m for _, m in BAD])
def test_bad_sweep_files_are_one_line_errors_before_anything_starts(tmp_path, capsys, fields, message):
    path = write_sweep(tmp_path, f"""
        def get_sweep(variant="default"):
            return Sweep(name="bad", experiment="lenet300_mnist", variant="smoke", {fields})
    """)
    runs = tmp_path / "runs"
    code = main(["sweep", str(path), "--runs", str(runs)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("lth: error: ") and message in err and err.count("\n") == 1, err
    assert not runs.exists()  # nothing written
    ray = __import__("sys").modules.get("ray")
    assert ray is None or not ray.is_initialized()  # nothing started


@pytest.mark.parametrize("body,message", [
    ("X = 1\n", "defines no get_sweep(variant)"),
    ("def get_sweep(variant):\n    return {'name': 'x'}\n", "must return an lth.sweeps.file.Sweep"),
    ("def get_sweep(variant):\n    return Sweep(name='x y', experiment='lenet300_mnist')\n", "name 'x y' must be"),
    ("def get_sweep(variant):\n    return Sweep(name='x')\n", "give the base as experiment="),
    ("def get_sweep(variant):\n    return Sweep(name='x', experiment='nope')\n", "unknown experiment 'nope'"),
    # user code: contained as experiment files are, one line naming the file and the line (write_sweep adds 3)
    ("def get_sweep(variant):\n    return Sweep(name='x'\n", "has a syntax error at line"),
    ("import no_such_module_lth\n", "ModuleNotFoundError: No module named 'no_such_module_lth' (line 4)"),
    ("def get_sweep(variant):\n    raise ValueError('boom')\n", "get_sweep('default') of"),
    ("def get_sweep(variant):\n    raise ValueError('boom')\n", "raised ValueError: boom (line 5)"),
    ("def get_sweep(a, b):\n    return None\n", "raised TypeError"),
    ("import sys\nsys.exit(0)\n", "failed to load (SystemExit: sys.exit(0) called while lth loaded it (line 5))"),
    ("def get_sweep(variant):\n    raise SystemExit(0)\n", "raised SystemExit"),
    ("VARIANTS = 'default'\ndef get_sweep(variant):\n    return None\n", "VARIANTS in"),
    ("def get_sweep(variant):\n    return Sweep(name='x', experiment='lenet300_mnist', grid=[('seed', [0, 1])])\n",
     "grid must be a dict of field -> values"),
    ("def get_sweep(variant):\n    return Sweep(name='x', experiment='lenet300_mnist', grid={'seed': range(1000), "
     "'levels': range(1000)})\n", "1,000,000 cells (the grid's product x zip x replicates) is more than 10,000"),
])
def test_bad_sweep_file_shapes(tmp_path, capsys, body, message):
    path = write_sweep(tmp_path, body)
    assert main(["sweep", str(path), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv,message", [
    (["sweep", "no_such_sweep"], "unknown sweep 'no_such_sweep'"),
    (["sweep", "lenet300_rewinding", "--variant", "huge"], "unknown variant 'huge'"),
    (["sweep", "lenet300_rewinding", "--address", "not an address"], "invalid Ray address"),
    (["sweep", "lenet300_rewinding", "--cpus-per-run", "0"], "cpus per run must be > 0"),
    (["sweep", "lenet300_rewinding", "--max-retries", "-1"], "max retries must be >= 0"),
    (["sweep", "lenet300_rewinding", "--checkpoint-every", "often"], "invalid checkpoint period"),
    (["sweep", "lenet300_rewinding", "--address", "127.0.0.1:9"], "no Ray cluster answers at 127.0.0.1:9"),
    # checked before Ray starts (it took 12-20 s to say so after)
    (["sweep", "lenet300_rewinding", "--cpus-per-run", "4096"], "the local Ray cluster this sweep starts has"),
    (["sweep", "lenet300_rewinding", "--runs", "/dev/null"], "is not usable: /dev/null is not a directory"),
    (["sweep", "lenet300_rewinding", "--filesystem", "local", "--worker-dir", "/proc/lth"],
     "--worker-dir /proc/lth cannot be written"),
])
def test_bad_sweep_options(tmp_path, capsys, argv, message):
    runs = [] if "--runs" in argv else ["--runs", str(tmp_path / "runs")]
    assert main([*argv, *runs, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_dry_run_lists_the_cells(tmp_path, capsys):
    assert main(["sweep", "lenet300_rewinding", "--variant", "smoke", "--dry-run", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    plan = load_sweep("lenet300_rewinding", "smoke")
    assert all(cell.run_name in out for cell in plan.cells) and out.count(" todo ") == 4
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name, granularities", [
    ("structured_lenet300", ["weight", "neuron", "refill", "neuron", "neuron"]),
    ("structured_lenet5", ["weight", "channel", "refill"])])
def test_structured_sweeps_compare_granularities_with_their_random_control(name, granularities):
    plan = load_sweep(name)
    assert plan.axes[0] == "pruning.granularity" and plan.controls == ("random_layerwise",)
    assert sorted(c.config.pruning.granularity for c in plan.cells) == sorted(granularities * 3)
    assert sorted(c.config.seed for c in plan.cells) == sorted([0, 1, 2] * len(granularities))
    smoke = load_sweep(name, "smoke")  # the wiring check: two granularities, 2 levels of a few dozen iterations
    assert len(smoke.cells) == 2 and {c.config.levels for c in smoke.cells} == {2}
    assert all(c.config.training.length in ("40it", "60it") for c in smoke.cells)


def test_the_ticket_cost_sweep_compares_every_route_under_one_distribution():
    """Every cell keeps the output layer dense and prunes the hidden layers alike (IMP by `exclude`
    and one rate, the methods by uniform + dense output), and the IMP levels and one-shot fractions
    land at the methods' target densities (worked here from the layer sizes)."""
    plan = load_sweep("ticket_cost_lenet300")
    hidden, output = 784 * 300 + 300 * 100, 100 * 10
    names = [c.config.name for c in plan.cells if c.config.seed == 0]
    assert names == ["imp_p10", "imp_p20", "imp_p40", "oneshot_20", "oneshot_5", "oneshot_2", "earlybird", "gradual",
                     "rigl", "snip", "static"]
    assert sorted({c.config.seed for c in plan.cells}) == [0, 1, 2] and not plan.controls
    for cell in plan.cells:
        config = cell.config
        if config.method == "imp":
            assert config.pruning.exclude == ("output/kernel",) and config.pruning.layer_fractions == ()
            density = (hidden * (1 - config.pruning.fraction) ** config.levels + output) / (hidden + output)
            assert 0.017 < density < 0.022 or config.levels == 1
            if config.levels == 1:  # one-shot to 20, 5 or 2 % of all weights
                assert min(abs(density - d) for d in (0.2, 0.05, 0.02)) < 1e-4
        else:
            assert config.sparse.densities == (0.2, 0.05, 0.02)
            assert (config.sparse.distribution, config.sparse.dense) == ("uniform", "output")


def test_a_damaged_cell_is_a_cell_to_run_not_a_blocked_sweep(tmp_path, capsys):
    """A finished cell whose results.json is damaged no longer stops the sweep (and --dry-run) with
    exit 2: it counts as to do, its run repairs it as `lth run` does, the other cells go on."""
    from lth.jobs.lottery import run_lottery
    from lth.sweeps.driver import cell_finished

    path = write_sweep(tmp_path, """
        def get_sweep(variant="default"):
            return Sweep(name="s", experiment="lenet300_mnist", variant="smoke", set={"levels": 1},
                         grid={"seed": [0, 1]}, controls=())
    """)
    plan = load_sweep(str(path))
    runs = tmp_path / "runs"
    run_lottery(plan.cells[0].config, runs_root=runs, progress=False, wandb="disabled")
    assert cell_finished(runs, plan, plan.cells[0])
    (run_dir,) = runs.iterdir()
    (run_dir / "replicate_00" / "results.json").write_text("[{not json")
    assert not cell_finished(runs, plan, plan.cells[0])
    assert main(["sweep", str(path), "--dry-run", "--runs", str(runs)]) == 0
    assert capsys.readouterr().out.count(" todo ") == 2
