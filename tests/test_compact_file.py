"""The compact network file and `lth ticket compact`: round trip, the README's NumPy-only recipe in a
process without jax or lth, one-line errors for damaged and foreign files, and the command's exit
codes, output paths and what it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lth.tickets as ex
from helpers import run_cli, ticket_file
from lth.errors import LthError
from lth.models import get_model
from lth.sparsity.masks import apply_mask, named_leaves

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_keeps_every_tensor_and_the_function(tmp_path):
    path, mask, params, state, _ = ticket_file(tmp_path)
    net = ex.compact_network("mlp_tiny", params, state, mask, (28, 28, 1))
    out = ex.save_compact(net, tmp_path / "c.safetensors", {"ticket": "abc"})
    back = ex.load_compact(out)
    assert back.report["source"] == {"ticket": "abc"} and back.input_shape == (28, 28, 1)
    for p, v in named_leaves(net.params).items():
        assert np.array_equal(named_leaves(back.params)[p], v), p
    assert np.array_equal(back.input_index, net.input_index)
    x = np.random.default_rng(2).standard_normal((3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(ex.compact_forward(back, x)), np.asarray(ex.compact_forward(net, x)))


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Compact networks"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_recipe_runs_with_numpy_alone(tmp_path):
    """The README's snippet, in `python -I` where jax, flax and lth cannot be imported."""
    path, mask, params, state, _ = ticket_file(tmp_path, density=0.03)
    net = ex.compact_network("mlp_tiny", params, state, mask, (28, 28, 1))
    assert net.input_index is not None  # the gather runs
    ex.save_compact(net, tmp_path / "level_13.compact.safetensors")
    guard = "import sys\nfor name in ('jax', 'flax', 'lth'):\n    sys.modules[name] = None\n"
    check = "\ntry:\n    import jax\n    sys.exit('jax imported')\nexcept ImportError:\n    pass\n"
    save = "\nnp.save('out.npy', compact_mlp_forward('level_13.compact.safetensors', x))\n"
    script = tmp_path / "reader.py"
    script.write_text(guard + check + _readme_snippet() + save)
    proc = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    x = np.random.default_rng(0).random((4, 28, 28, 1), np.float32)
    expected = np.asarray(ex.compact_forward(net, x))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-5)
    model = get_model("mlp_tiny", (28, 28, 1), 10)
    masked, _ = model.apply(apply_mask(params, mask), state, x, False)
    np.testing.assert_allclose(expected, np.asarray(masked), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("damage", ("truncated", "foreign", "ticket", "version", "shapes"))
def test_damaged_or_foreign_files_are_one_line(tmp_path, damage):
    ticket, mask, params, state, _ = ticket_file(tmp_path)
    net = ex.compact_network("mlp_tiny", params, state, mask, (28, 28, 1))
    path = ex.save_compact(net, tmp_path / "c.safetensors")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-50])
    elif damage == "ticket":
        path = ticket
    else:
        from safetensors.numpy import save_file
        import json
        from safetensors import safe_open
        with safe_open(path, framework="np") as f:
            header = json.loads(f.metadata()["lth_compact"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if damage == "foreign":
            header = {"format": "other"}
        elif damage == "version":
            header["version"] = 99
        else:
            tensors["fc1/kernel"] = tensors["fc1/kernel"][:-1]
        save_file(tensors, str(path), metadata={"lth_compact": json.dumps(header)})
    with pytest.raises(LthError) as err:
        ex.load_compact(path)
    assert "\n" not in str(err.value)


def test_cli_compacts_a_lenet5_ticket_beside_it(tmp_path, capsys):
    path, mask, params, state, _ = ticket_file(tmp_path, model="lenet5", density=0.2, name="level_04.safetensors")
    code, out, err = run_cli(capsys, "ticket", "compact", path)
    assert code == 0, err
    target = tmp_path / "level_04.compact.safetensors"
    net = ex.load_compact(target)
    assert net.report["source"]["weights"] == "start" and "START weights" in out
    assert re.search(r"conv2\s+\d+ / 16", out) and "MACs per example: 416,520 dense ->" in out
    assert f"{target.stat().st_size:,} bytes" in out
    x = np.random.default_rng(3).standard_normal((2, 28, 28, 1)).astype(np.float32)
    reference, _ = get_model("lenet5", (28, 28, 1), 10).apply(apply_mask(params, mask), state, x, False)
    np.testing.assert_allclose(np.asarray(ex.compact_forward(net, x)), np.asarray(reference), rtol=1e-5, atol=1e-5)


def test_cli_uses_trained_weights_and_align(tmp_path, capsys):
    path, mask, params, state, final = ticket_file(tmp_path, trained=True)
    code, out, err = run_cli(capsys, "ticket", "compact", path, "--align", "8", "--out", tmp_path / "sub" / "c.st")
    assert code == 0, err
    net = ex.load_compact(tmp_path / "sub" / "c.st")
    assert net.report["source"]["weights"] == "trained" and "note:" not in out
    assert net.report["align"] == 8 and net.params["fc1"]["kernel"].shape[1] % 8 == 0
    x = np.random.default_rng(3).standard_normal((2, 28, 28, 1)).astype(np.float32)
    reference, _ = get_model("mlp_tiny", (28, 28, 1), 10).apply(apply_mask(final, mask), state, x, False)
    np.testing.assert_allclose(np.asarray(ex.compact_forward(net, x)), np.asarray(reference), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("argv", (("--align", "0"), ("--align", "-1"), ("--align", "x")))
def test_cli_bad_align_exits_2(tmp_path, capsys, argv):
    path = ticket_file(tmp_path)[0]
    code, out, err = run_cli(capsys, "ticket", "compact", path, *argv)
    assert code == 2 and "--align" in err and "positive integer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.compact.safetensors").exists()


def test_cli_refuses_bad_paths_and_writes_nothing(tmp_path, capsys):
    path = ticket_file(tmp_path)[0]
    before = sorted(tmp_path.iterdir())
    (tmp_path / "dir").mkdir()
    for argv, words in (((tmp_path / "missing.safetensors",), "not found"),
                        ((path, "--out", tmp_path), "is a directory"),
                        ((path, "--out", path), "the ticket file itself"),
                        ((path, "--out", path / "c.safetensors"), "not a writable directory"),  # under a file
                        ((tmp_path / "dir",), "is a directory")):
        code, out, err = run_cli(capsys, "ticket", "compact", *argv)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert sorted(p for p in tmp_path.iterdir() if p.name != "dir") == before
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"not a safetensors file")
    code, out, err = run_cli(capsys, "ticket", "compact", foreign)
    assert code == 2 and "damaged" in err and not (tmp_path / "foreign.compact.safetensors").exists()
