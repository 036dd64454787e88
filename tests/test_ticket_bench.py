"""`lth ticket bench`: every variant computes the ticket's function, the counts are the ticket's, the
JSON holds what the issue names, and bad arguments are one line with nothing written."""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from helpers import run_cli, ticket_file
from lth.tickets.bench import bcoo_params, bench_ticket, csr_forward, weight_counts
from lth.models.graph import model_graph
from lth.sparsity.alive import output_positions
from lth.tickets.sizes import masked_params

os.environ.setdefault("WANDB_MODE", "disabled")


def test_sparse_variants_compute_the_masked_function(tmp_path):
    _, mask, params, state, _ = ticket_file(tmp_path, density=0.2)
    graph = model_graph("mlp_tiny")
    masked = masked_params(params, mask)
    x = np.random.default_rng(0).standard_normal((5, 28, 28, 1)).astype(np.float32)
    reference = x.reshape(5, -1)
    for name in ("fc1", "fc2", "output"):
        reference = reference @ np.asarray(masked[name]["kernel"]) + np.asarray(masked[name]["bias"])
        reference = np.maximum(reference, 0) if name != "output" else reference
    forward, memory = csr_forward(graph, masked, state)
    np.testing.assert_allclose(forward(x), reference, rtol=1e-4, atol=1e-4)
    kept = sum(int(np.count_nonzero(mask[n]["kernel"])) for n in ("fc1", "fc2", "output"))
    assert memory > kept * 4  # values, column indices and row pointers
    from lth.models.graph_forward import forward as graph_forward

    sparse = bcoo_params(graph, masked, mask)
    assert int(sparse["fc1"]["kernel"].nse) == int(np.count_nonzero(mask["fc1"]["kernel"]))
    out = graph_forward(graph, sparse, state, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), reference, rtol=1e-4, atol=1e-4)
    counts = weight_counts(graph, masked, mask, output_positions(graph, (28, 28, 1)))
    assert counts["macs"] == 784 * 32 + 32 * 16 + 16 * 10 and counts["kept_macs"] == kept
    assert counts["kept_params"] == kept + 32 + 16 + 10  # the biases are not masked


def test_csr_is_skipped_for_conv_networks_with_the_reason(tmp_path):
    path, *_ = ticket_file(tmp_path, model="lenet5", density=0.3, trained=True)
    result = bench_ticket(path, batches=(2,), budget=0.02)
    assert {r["variant"] for r in result["rows"]} == {"dense", "compact", "bcoo", "dense_shifted_conv",
                                                      "compact_shifted_conv"}
    assert "conv" in result["skipped"]["scipy_csr"] and result["weights"] == "trained"
    assert result["max_abs_diff"] < 1e-3 and max(result["max_abs_diff_by_variant"].values()) < 1e-3
    assert [row["layer"] for row in result["layers"]] == ["fc1", "fc2", "output"]  # dense layers only


def test_cli_writes_the_json_the_issue_names(tmp_path, capsys):
    path, mask, *_ = ticket_file(tmp_path, density=0.05)
    out = tmp_path / "bench.json"
    code, text, err = run_cli(capsys, "ticket", "bench", str(path), "--batch", "1,8", "--budget", "0.02",
                              "--json", str(out))
    assert code == 0, err
    result = json.loads(out.read_text())
    assert {"device", "rows", "max_abs_diff"} <= set(result) and result["device"].startswith("cpu")
    assert {(r["variant"], r["batch"]) for r in result["rows"]} == {
        (v, b) for v in ("dense", "compact", "bcoo", "scipy_csr") for b in (1, 8)}
    for row in result["rows"]:
        assert {"variant", "batch", "median_ms", "min_ms", "params", "macs"} <= set(row)
        assert 0 < row["min_ms"] <= row["median_ms"]
    compact = next(r for r in result["rows"] if r["variant"] == "compact")
    dense = next(r for r in result["rows"] if r["variant"] == "dense")
    assert compact["macs"] < dense["macs"] and result["max_abs_diff"] < 1e-4
    for row in result["layers"]:  # the fastest kernel is the measured minimum
        assert row[f"{row['fastest']}_ms"] == min(row[f"{k}_ms"] for k in ("dense", "bcoo", "scipy_csr"))
    assert "| compact | 8 |" in text and "fastest kernel per dense layer" in text


@pytest.mark.parametrize("args, message", [
    (("--batch", "0"), "positive integer"), (("--batch", "1,1"), "twice"), (("--budget", "nan"), "budget"),
    (("--budget", "-1"), "budget"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    path, *_ = ticket_file(tmp_path)
    code, out, err = run_cli(capsys, "ticket", "bench", str(path), *args, "--json", str(tmp_path / "b.json"))
    assert code == 2 and message in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "b.json").exists()
