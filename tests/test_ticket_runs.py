"""Tickets and runs: `lth ticket export` of a finished level, retraining a ticket on its own experiment
(the level's record and evaluations again, bit for bit), ticket transfer to another dataset of the
same shapes, resumes and controls of a run from a ticket, and every bad ticket through the CLI:
one line, exit code 2, nothing written."""

import json
import os
import stat

import numpy as np
import pytest
from helpers import tiny_config

import lth.tickets as ex
from lth.analysis import load_run
from lth.cli import main
from lth.spec.config import replace
from lth.errors import LthError
from lth.jobs.controls import run_controls
from lth.jobs.lottery import run_lottery
from lth.sparsity.masks import apply_mask, named_leaves

# what a level's training determines; `level`, the overlap with the previous level's mask and the sign
# agreement with the init at iteration 0 describe where the level sat in its run, which a ticket does not carry
# what depends on the branch's history, not on training the level: a ticket's run starts its cumulative
# cost at the ticket (the levels that found it are not its own)
NOT_TRAINING = {"level", "overlap_with_previous", "sign_agreement_with_init", "sign_agreement_with_previous",
                "cumulative_iterations", "cumulative_train_flops"}


def cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def evaluations(run_path, level):
    rows = [json.loads(line) for line in (run_path / "replicate_00" / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "level"} for r in rows if r.get("level") == level and "iteration" in r]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished 3-level run of mlp_tiny on MNIST-5k (28x28 inputs, 10 classes)."""
    root = tmp_path_factory.mktemp("runs")
    config = tiny_config(**{"data.name": "mnist5k"})
    run_lottery(config, runs_root=root, wandb="disabled", progress=False)
    return config, root, load_run(config, root=root)


def test_export_writes_the_level_with_its_origin(source, tmp_path):
    config, root, run = source
    info = ex.export_from_run(config, 2, root=root, trained=True)
    assert info["path"] == run.path / "replicate_00" / "tickets" / "level_02.safetensors"
    ticket = ex.load(info["path"])
    h = ticket.metadata
    assert (h["model"], h["dataset"], h["level"], h["replicate"], h["start_step"], h["retrained"], h["data_level"]) \
        == ("mlp_tiny", "mnist5k", 2, 0, 0, True, 2)
    assert h["config"] == run.config and h["config_hash"] == run.hash and h["record"] == run.records[0][2]
    assert h["density"] == pytest.approx(run.records[0][2]["density"])
    assert h["layer_density"] == pytest.approx(run.records[0][2]["layer_density"])
    # rewinding to iteration 0: the start weights are the init under the level's mask; trained: the level's end
    mask = run.mask(2)
    for name, leaf in named_leaves(apply_mask(run.init_params(), mask)).items():
        assert np.array_equal(named_leaves(ticket.params)[name], np.asarray(leaf)), name
    for name, leaf in named_leaves(apply_mask(run.params(2), mask)).items():
        assert np.array_equal(named_leaves(ticket.trained)[name], np.asarray(leaf)), name
    with pytest.raises(LthError, match="no level 7"):
        ex.export_from_run(run.path, 7)


# rewinding to iteration 0: test_replicates_from_a_ticket_in_worker_processes
@pytest.mark.parametrize("rewind, retraining", [("10it", "rewind"), ("10it", "finetune")])
def test_retraining_a_ticket_on_its_experiment_gives_the_level_again(tmp_path, rewind, retraining):
    config = tiny_config(rewind=rewind, retraining=retraining, levels=1)
    run_lottery(config, runs_root=tmp_path / "a", wandb="disabled", progress=False)
    original = load_run(config, root=tmp_path / "a")
    path = ex.export_from_run(original, 1, out=tmp_path / "t.safetensors")["path"]
    assert ex.load(path).metadata["start_step"] == (10 if rewind == "10it" else 0)

    records = run_lottery(replace(config, levels=0), ticket=path, runs_root=tmp_path / "b", wandb="disabled",
                          progress=False)
    want = {k: v for k, v in original.records[0][1].items() if k not in NOT_TRAINING}
    assert {k: v for k, v in records[0].items() if k not in NOT_TRAINING} == want
    (again,) = (tmp_path / "b").iterdir()
    assert evaluations(again, 0) == evaluations(original.path, 1)
    saved = json.loads((again / "config.json").read_text())
    assert saved["ticket"] == ex.load(path).digest and saved["initial_mask"] is None
    assert ex.load(again / "ticket.safetensors").digest == saved["ticket"]


def test_ticket_transfer_resume_and_controls(source, tmp_path, capsys):
    config, root, run = source
    path = ex.export_from_run(run, 1, out=tmp_path / "t.safetensors")["path"]
    runs = tmp_path / "runs"
    argv = ("run", "lenet300_mnist", "--variant", "smoke", "--set", "model=mlp_tiny", "--dataset", "synthetic_mnist",
            "--levels", "1", "--ticket", path, "--runs", runs, "--no-progress", "--no-controls")
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    (transfer,) = runs.iterdir()
    records = json.loads((transfer / "replicate_00" / "results.json").read_text())
    assert records[0]["density"] == pytest.approx(run.records[0][1]["density"])  # the ticket's mask
    assert records[1]["density"] < records[0]["density"]  # and IMP continues
    config_json = json.loads((transfer / "config.json").read_text())
    assert config_json["data"]["name"] == "synthetic_mnist" and config_json["ticket"] == ex.load(path).digest
    again = ex.load(ex.export_from_run(transfer, 1, out=tmp_path / "t1.safetensors")["path"]).metadata
    assert (again["level"], again["data_level"], again["retrained"]) == (1, 2, True)  # level 1 after a level-1 ticket

    code, out, err = cli(capsys, *argv[:-2])  # the same ticket and config: the same run, already done
    assert code == 0 and f"{transfer}: all 2 levels" in out and len(list(runs.iterdir())) == 1
    other = ex.export_from_run(run, 2, out=tmp_path / "t2.safetensors")["path"]
    code, _, err = cli(capsys, *argv[:-4], "--ticket", other, "--runs", runs, "--no-progress", "--no-controls")
    assert code == 0, err
    assert len(list(runs.iterdir())) == 2  # another ticket, another run

    results = run_controls(transfer, "imp+reinit", "0-1", wandb="disabled", progress=False)
    assert [r["level"] for r in results["imp+reinit"]] == [0, 1]


def test_a_ticket_runs_init_params_are_the_tickets_weights(source, tmp_path):
    """`lth.analysis` reads a run started from a ticket with the ticket's start, as its jobs do: its
    init params are the ticket's weights (pruned weights zero), not the seed's fresh init."""
    config, root, run = source
    path = ex.export_from_run(run, 2, out=tmp_path / "t.safetensors")["path"]
    run_lottery(replace(config, levels=0), ticket=path, runs_root=tmp_path / "b", wandb="disabled", progress=False)
    (again,) = (tmp_path / "b").iterdir()
    ticket, init = named_leaves(ex.load(path).params), named_leaves(load_run(again).init_params())
    assert set(init) == set(ticket)
    for name, leaf in init.items():
        assert np.array_equal(np.asarray(leaf), np.asarray(ticket[name])), name
    seed_init = named_leaves(run.init_params())  # the source run's: the same seed, no ticket
    assert any(not np.array_equal(np.asarray(seed_init[n]), np.asarray(init[n])) for n in init)


def test_bad_tickets_one_line_exit_2_nothing_written(source, tmp_path, capsys):
    config, root, run = source
    good = ex.export_from_run(run, 1, out=tmp_path / "good.safetensors")["path"]
    data = bytearray(good.read_bytes())
    (tmp_path / "truncated.safetensors").write_bytes(bytes(data[: len(data) // 3]))
    data[-40] ^= 0x01
    (tmp_path / "edited.safetensors").write_bytes(bytes(data))
    runs = tmp_path / "runs"
    smoke = ("run", "lenet300_mnist", "--variant", "smoke", "--runs", runs)
    cases = [
        ((*smoke, "--ticket", good), "is a mlp_tiny ticket but this experiment trains lenet300_100"),
        ((*smoke, "--set", "model=mlp_tiny", "--dataset", "mnist1d", "--ticket", good),
         "does not fit the model: params fc1/kernel is float32[784, 32] in the ticket but float32[40, 32]"),
        ((*smoke, "--set", "model=mlp_tiny", "--ticket", tmp_path / "truncated.safetensors"), "damaged"),
        ((*smoke, "--set", "model=mlp_tiny", "--ticket", tmp_path / "edited.safetensors"),
         "do not match the SHA-256 in its header"),
        ((*smoke, "--set", "model=mlp_tiny", "--ticket", tmp_path / "nope.safetensors"), "not found"),
        ((*smoke, "--set", "model=mlp_tiny", "--ticket", good, "--mask", run.replicate(0).mask_path(1)),
         "pass --ticket or --mask, not both"),
        ((*smoke, "--set", "model=mlp_tiny", "--ticket", good, "--set", "ticket=0123abcd"),
         "but the config names ticket 0123abcd"),
        ((*smoke, "--set", "model=mlp_tiny", "--set", "rewind=20it", "--ticket",
          ex.export_from_run(load_run(run_lottery_k(tmp_path), root=tmp_path / "k"), 1,
                             out=tmp_path / "k.safetensors")["path"]), "pass --rewind 10it"),
        (("ticket", "inspect", tmp_path / "edited.safetensors"), "do not match the SHA-256"),
        (("ticket", "export", run.path, "--level", "9"), "no level 9"),
    ]
    for argv, message in cases:
        code, out, err = cli(capsys, *argv)
        assert code == 2, (argv, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, (argv, err)
        assert not runs.exists(), argv


def run_lottery_k(tmp_path):
    """A finished run that rewinds to iteration 10 (its tickets of levels >= 1 start there)."""
    config = tiny_config(**{"data.name": "mnist5k", "rewind": "10it", "levels": 1})
    run_lottery(config, runs_root=tmp_path / "k", wandb="disabled", progress=False)
    return config


def test_inspect_prints_origin_accuracies_and_layers(source, capsys):
    config, root, run = source
    code, out, err = cli(capsys, "ticket", "export", run.path, "--level", "2", "--trained")
    assert code == 0, err
    path = run.path / "replicate_00" / "tickets" / "level_02.safetensors"
    assert f"ticket: {path}" in out
    code, out, err = cli(capsys, "ticket", "inspect", path)
    assert code == 0, err
    record = run.records[0][2]
    assert f"run {run.name}" in out and "level 2" in out and "mlp_tiny on mnist5k" in out
    assert f"{100 * record['early_stop_test_accuracy']:.2f} %" in out and "trained weights: yes" in out
    (row,) = [line for line in out.splitlines() if line.startswith("fc1/kernel")]
    kept = round(record["layer_density"]["fc1/kernel"] * 784 * 32)
    assert row.split()[1:4] == ["784x32", "float32", f"{kept:,}"]
    assert f"{100 * record['layer_density']['fc1/kernel']:.2f} %" in row


def test_replicates_from_a_ticket_in_worker_processes(source, tmp_path):
    """Every replicate starts from the ticket (with its own data order); replicate 0 retrains the level
    (rewinding to iteration 0: its record and evaluations, bit for bit)."""
    config, root, run = source
    path = ex.export_from_run(run, 2, out=tmp_path / "t.safetensors")["path"]
    run_lottery(replace(config, levels=0), ticket=path, runs_root=tmp_path, wandb="disabled", progress=False,
                replicates=2, layout="workers", workers=2)
    (many,) = tmp_path.glob("tiny-*")
    reps = [json.loads((many / f"replicate_0{r}" / "results.json").read_text())[0] for r in (0, 1)]
    assert reps[0]["density"] == reps[1]["density"] == run.records[0][2]["density"]
    assert {k: v for k, v in reps[0].items() if k not in NOT_TRAINING} == \
        {k: v for k, v in run.records[0][2].items() if k not in NOT_TRAINING}
    assert evaluations(many, 0) == evaluations(run.path, 2)
    assert reps[1]["early_stop_val_loss"] != reps[0]["early_stop_val_loss"]  # seed + 1: another data order


def test_a_fixed_mask_methods_density_is_a_ticket_that_retrains_to_its_record(tmp_path):
    """A static run trains every density from init with level 0's data order: its ticket says so
    (data_level 0, the training schedule) and retrains to the density's evaluations; a RigL density,
    whose mask moved, has no ticket (one line, nothing written)."""
    from lth.jobs.methods import run_method

    config = tiny_config(method="static", levels=0, **{"sparse.densities": (0.5, 0.3)})
    run_method(config, runs_root=tmp_path / "a", wandb="disabled", progress=False)
    original = load_run(config, root=tmp_path / "a")
    path = ex.export_from_run(original, 1, out=tmp_path / "t.safetensors")["path"]
    header = ex.load(path).metadata
    assert (header["data_level"], header["retrained"], header["start_step"]) == (0, False, 0)
    imp = replace(config, method="imp", **{"sparse.densities": ()})
    records = run_lottery(imp, ticket=path, runs_root=tmp_path / "b", wandb="disabled", progress=False)
    (again,) = (tmp_path / "b").iterdir()
    assert evaluations(again, 0) == evaluations(original.path, 1)
    same = ("test_accuracy", "early_stop_test_accuracy", "best_test_accuracy", "weights_remaining", "train_flops")
    assert {k: records[0][k] for k in same} == {k: original.records[0][1][k] for k in same}

    rigl = replace(config, method="rigl", **{"sparse.dt": 10})
    run_method(rigl, runs_root=tmp_path / "c", wandb="disabled", progress=False)
    with pytest.raises(LthError, match="density 1 of a rigl run has no ticket to export: its mask changed"):
        ex.export_from_run(load_run(rigl, root=tmp_path / "c"), 1, out=tmp_path / "r.safetensors")
    assert not (tmp_path / "r.safetensors").exists()
    with pytest.raises(LthError, match="keeps no trained weights"):
        ex.export_from_run(original, 1, out=tmp_path / "s.safetensors", trained=True)


def test_out_paths_are_checked_before_anything_is_written(source, tmp_path, capsys):
    """--out never replaces a device, FIFO or a run's own records; a symlink is written through."""
    config, root, run = source
    records = run.path / "replicate_00" / "results.json"
    kept = records.read_bytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out, expect in ((fifo, "is not a regular file"), ("/dev/full", "is not a regular file"),
                        (records, "inside the run directory"),
                        (run.path / "mine.safetensors", "inside the run directory"),
                        (tmp_path, "is a directory")):
        code, _, err = cli(capsys, "ticket", "export", run.path, "--level", 1, "--out", out)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expect in err, err
        code, _, err = cli(capsys, "plot", run.path, "--out", out)
        assert code == 2 and expect in err, err
    assert records.read_bytes() == kept and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(LthError, match="inside the run directory"):
        ex.export_from_run(run, 1, out=records)
    target, link = tmp_path / "target.safetensors", tmp_path / "link.safetensors"
    link.symlink_to(target)
    code, out, _ = cli(capsys, "ticket", "export", run.path, "--level", 1, "--out", link)
    assert code == 0 and link.is_symlink() and ex.load(target).metadata["level"] == 1


def _rewrite_header(path, out, **fields):
    """The ticket at `path` with header `fields` changed and its header digest made consistent again
    (what a careful editor, not damage, produces)."""
    from safetensors.numpy import save as safetensors_bytes

    from lth.tickets.file import METADATA_KEY, read_safetensors
    from lth.tickets.header import header_digest

    metadata, tensors = read_safetensors(path, "ticket", "")
    header = {**json.loads(metadata[METADATA_KEY]), **fields}
    header["sha256"]["header"] = header_digest(header)
    out.write_bytes(safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(header)}))
    return out


def test_a_ticket_header_that_was_edited_or_is_out_of_range_is_refused(source, tmp_path, capsys):
    """Training reads header fields the tensors' digest does not cover (start iteration, data order
    level, schedule, model): a one-byte edit of one fails the header's own digest; a consistent header
    with a field of the wrong type or range fails its check; both before any run directory exists."""
    config, root, run = source
    good = ex.export_from_run(run, 1, out=tmp_path / "good.safetensors")["path"]
    data = good.read_bytes()
    field = b'\\"data_level\\":1'  # the header is a JSON string inside safetensors' JSON metadata
    assert data.count(field) == 1
    (tmp_path / "edited.safetensors").write_bytes(data.replace(field, field[:-1] + b"9"))
    cases = [(tmp_path / "edited.safetensors", "its header does not match the SHA-256 in it"),
             (_rewrite_header(good, tmp_path / "neg.safetensors", data_level=-3), "data_level is -3, not a int >= 0"),
             (_rewrite_header(good, tmp_path / "str.safetensors", start_step="0"), "start_step is '0'"),
             (_rewrite_header(good, tmp_path / "bool.safetensors", retrained=1), "retrained is 1, not a bool")]
    runs = tmp_path / "runs"
    for path, message in cases:
        run_it = ("run", "lenet300_mnist", "--variant", "smoke", "--runs", runs, "--set", "model=mlp_tiny", "--ticket")
        for argv in ((*run_it, path), ("ticket", "inspect", path)):
            code, out, err = cli(capsys, *argv)
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
    assert not runs.exists()
    code, out, _ = cli(capsys, "ticket", "inspect", good)
    assert code == 0 and "not covered" not in out
