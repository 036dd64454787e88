"""`lth ticket bench`: a ticket's forward measured on the device at hand, four ways.

- ``dense``: the network at full width with the pruned weights zero (what training runs; what a
  ticket costs on hardware built for dense layers);
- ``compact``: the smaller dense network of `lth.tickets.compact` (same function, fewer units);
- ``bcoo``: the dense layers' kernels as ``jax.experimental.sparse.BCOO`` matrices of their kept
  weights (conv layers stay dense: JAX has no general sparse convolution);
- ``scipy_csr``: NumPy with scipy.sparse CSR kernels, for networks of dense layers only;
- ``dense_shifted_conv``, ``compact_shifted_conv`` (networks with convs): the first two with every
  convolution computed as a sum of shifted matmuls (`lth.models.graph_forward.conv_shifted`), which
  XLA:CPU runs many times faster than its own convolution when channels are few.

Every variant runs on the same random inputs; timing is `lth.tickets.timing.time_calls` (warm-up,
rounds in a rotating order, median and minimum of blocked calls). Per dense layer of the compact
network (its nonzero weights: a structured ticket's compact kernels are dense, an unstructured
ticket's keep its zeros), the dense, BCOO and CSR products are also timed alone at each batch: the
fastest kernel of each layer is reported by measurement, a sparse kernel only where it measured
faster than the dense one.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse

from lth.models.graph import Layer, leaf_at, model_graph, weighted_layers
from lth.models.graph_forward import forward
from lth.sparsity.alive import output_positions
from lth.sparsity.masks import named_leaves, nest
from lth.tickets.compact import compact_network, compact_runner, ticket_network
from lth.tickets.compact_file import encode_compact
from lth.tickets.file import load
from lth.tickets.sizes import dense_sizes, masked_params
from lth.tickets.timing import repeats_for, time_calls

VARIANTS = ("dense", "compact", "bcoo", "scipy_csr", "dense_shifted_conv", "compact_shifted_conv")
DEFAULT_BATCHES = (1, 64, 1024)


def device_description() -> str:
    """The device jax runs on, in words: a GPU's / TPU's kind; for a CPU its model name and cores."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        return f"{device.platform}: {device.device_kind}"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"cpu: {name}, {os.cpu_count()} cores"


def _with_leaves(tree: Any, leaves: dict[str, Any]) -> Any:
    """A copy of nested dict `tree` with the leaves at `leaves`' paths replaced."""
    return nest(list({**named_leaves(tree), **leaves}.items()))


def bcoo_params(graph: list[Layer], params: Any, mask: Any) -> Any:
    """`params` (masked, NumPy) with every dense layer's kernel a BCOO of its kept entries."""
    masks = named_leaves(mask)
    kernels = {}
    for layer in weighted_layers(graph):
        path = f"{layer['params']}/kernel"
        if layer["op"] != "dense":
            continue
        kernel = np.asarray(leaf_at(params, path))
        keep = np.ones(kernel.shape, bool) if masks.get(path) is None else np.asarray(masks[path], bool)
        rows, cols = np.nonzero(keep)
        indices = jnp.asarray(np.stack([rows, cols], axis=1).astype(np.int32))
        kernels[path] = sparse.BCOO((jnp.asarray(kernel[rows, cols]), indices), shape=kernel.shape,
                                    indices_sorted=True, unique_indices=True)
    return _with_leaves(params, kernels)


def csr_forward(graph: list[Layer], params: Any, state: Any) -> tuple[Any, int] | None:
    """A NumPy forward with scipy CSR kernels for a graph of dense layers, and its bytes in memory
    (None if the graph has convs)."""
    import scipy.sparse as sp

    if any(layer["op"] == "conv" for layer in weighted_layers(graph)):
        return None
    mats = {layer["params"]: sp.csr_matrix(np.asarray(leaf_at(params, f"{layer['params']}/kernel")).T)
            for layer in weighted_layers(graph)}

    def dense(layer: Layer, h: np.ndarray) -> np.ndarray:
        path = layer["params"]
        h = (mats[path] @ h.T).T
        if path in params and "bias" in params[path]:
            h = h + np.asarray(params[path]["bias"])
        if layer.get("norm"):
            norm, stats = layer["norm"], leaf_at(state, f"batch_stats/{layer['norm']['params']}")
            h = (h - stats["mean"]) / np.sqrt(np.asarray(stats["var"]) + norm["epsilon"])
            bn = leaf_at(params, norm["params"])
            h = h * np.asarray(bn["scale"]) + np.asarray(bn["bias"])
        return np.maximum(h, 0) if layer.get("activation") == "relu" else h

    def run(layers: list[Layer], h: np.ndarray) -> np.ndarray:
        for layer in layers:
            if layer["op"] == "dense":
                h = dense(layer, h)
            elif layer["op"] == "flatten":
                h = h.reshape(h.shape[0], -1)
            elif layer["op"] == "residual":
                h = run(layer["body"], h) + run(layer["shortcut"], h)
                h = np.maximum(h, 0) if layer.get("activation") == "relu" else h
        return h

    memory = sum(int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) for m in mats.values())
    memory += sum(int(np.asarray(leaf).nbytes) for path, leaf in named_leaves(params).items()
                  if not path.endswith("/kernel"))
    return (lambda x: run(graph, np.asarray(x, np.float32))), memory


def weight_counts(graph: list[Layer], params: Any, mask: Any, positions: dict[str, int]) -> dict[str, int]:
    """Parameters and MACs (one input) of the full-width network, dense and effective (kept weights
    only): {"params", "macs", "kept_params", "kept_macs"}. Every leaf of `params` counts as a
    parameter (BatchNorm scales and biases included, running statistics not)."""
    masks = named_leaves(mask)
    leaves = named_leaves(params)
    kept = {path: int(np.size(leaf)) if masks.get(path) is None else int(np.count_nonzero(masks[path]))
            for path, leaf in leaves.items()}
    macs = kept_macs = 0
    for layer in weighted_layers(graph):
        path = f"{layer['params']}/kernel"
        macs += int(np.size(leaves[path])) * positions[layer["params"]]
        kept_macs += kept[path] * positions[layer["params"]]
    return {"params": sum(int(np.size(v)) for v in leaves.values()), "macs": macs,
            "kept_params": sum(kept.values()), "kept_macs": kept_macs}


def layer_kernels(graph: list[Layer], params: Any, mask: Any, batches: tuple[int, ...], budget: float
                  ) -> list[dict[str, Any]]:
    """Per dense layer and batch: the median ms of the dense, BCOO and CSR products of its kernel
    (kept entries: `mask`, None for all) alone on random inputs, and the fastest of them."""
    import scipy.sparse as sp

    masks = named_leaves(mask) if mask else {}
    rows = []
    rng = np.random.default_rng(0)
    for layer in weighted_layers(graph):
        if layer["op"] != "dense":
            continue
        path = f"{layer['params']}/kernel"
        kernel = np.asarray(leaf_at(params, path), np.float32)
        keep = np.asarray(masks[path], bool) if masks.get(path) is not None else kernel != 0
        bcoo = bcoo_params([layer], {layer["params"]: {"kernel": kernel}}, {layer["params"]: {"kernel": keep}})
        bcoo_kernel = bcoo[layer["params"]]["kernel"]
        csr = sp.csr_matrix(kernel.T)
        dense_kernel = jnp.asarray(kernel)
        matmul = jax.jit(lambda h, k: h @ k)
        for batch in batches:
            x_np = rng.standard_normal((batch, kernel.shape[0])).astype(np.float32)
            x = jnp.asarray(x_np)
            fns = {"dense": lambda: matmul(x, dense_kernel), "bcoo": lambda: matmul(x, bcoo_kernel),
                   "scipy_csr": lambda: (csr @ x_np.T).T}
            one = time_calls(fns, repeats=2, rounds=1)
            repeats = repeats_for(max(t["median"] for t in one.values()), budget / 3)
            times = time_calls(fns, repeats)
            medians = {name: 1e3 * t["median"] for name, t in times.items()}
            rows.append({"layer": layer["params"], "batch": batch, "shape": list(kernel.shape),
                         "density": float(keep.mean()), **{f"{k}_ms": v for k, v in medians.items()},
                         "fastest": min(medians, key=medians.get)})
    return rows


def _nbytes(tree: Any) -> int:
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, sparse.BCOO):
            total += int(leaf.data.nbytes + leaf.indices.nbytes)
        else:
            total += int(np.asarray(leaf).nbytes)
    return total


Variant = tuple[Any, int, int, int]  # (forward of x, params, MACs, bytes in memory)


def bench_variants(graph: list[Layer], masked: Any, state: Any, net: Any, mask: Any, counts: dict[str, int]
                   ) -> tuple[dict[str, Variant], dict[str, str]]:
    """The forwards `bench_ticket` times ({name: Variant}) and those it cannot run ({name: why})."""
    compact = compact_runner(net)
    dense_fn = jax.jit(lambda p, s, x: forward(graph, p, s, x))
    sparse_params = jax.device_put(bcoo_params(graph, masked, mask))
    csr = csr_forward(graph, masked, state)
    on_device, state = jax.device_put(masked), jax.device_put(state)
    variants: dict[str, Variant] = {
        "dense": (lambda x: dense_fn(on_device, state, x), counts["params"], counts["macs"], _nbytes(masked)),
        "compact": (compact, net.report["params"], net.report["macs"], _nbytes(net.params)),
        "bcoo": (lambda x: dense_fn(sparse_params, state, x), counts["kept_params"], counts["kept_macs"],
                 _nbytes(sparse_params)),
    }
    if any(layer["op"] == "conv" for layer in weighted_layers(graph)):  # convolutions as shifted matmuls too
        shifted = jax.jit(lambda p, s, x: forward(graph, p, s, x, conv="shifted"))
        variants["dense_shifted_conv"] = (lambda x: shifted(on_device, state, x), *variants["dense"][1:])
        variants["compact_shifted_conv"] = (compact_runner(net, "shifted"), *variants["compact"][1:])
    if csr is None:
        return variants, {"scipy_csr": "the network has conv layers: scipy has no sparse convolution"}
    variants["scipy_csr"] = (csr[0], counts["kept_params"], counts["kept_macs"], csr[1])
    return variants, {}


def timed_rows(variants: dict[str, Variant], batches: tuple[int, ...], input_shape: tuple[int, ...], budget: float,
               seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """(rows, max |output - dense output| per variant): every variant timed at every batch on the same
    random inputs (scipy's as NumPy)."""
    rng = np.random.default_rng(seed)
    rows, diffs = [], dict.fromkeys(variants, 0.0)
    for batch in batches:
        x_np = rng.standard_normal((batch, *input_shape)).astype(np.float32)
        inputs = {name: x_np if name == "scipy_csr" else jnp.asarray(x_np) for name in variants}
        reference = np.asarray(variants["dense"][0](inputs["dense"]))
        for name, (fn, *_) in variants.items():
            diffs[name] = max(diffs[name], float(np.max(np.abs(np.asarray(fn(inputs[name])) - reference))))
        fns = {name: (lambda fn=fn, x=inputs[name]: fn(x)) for name, (fn, *_) in variants.items()}
        once = time_calls(fns, repeats=2, rounds=1)
        repeats = repeats_for(max(t["median"] for t in once.values()), budget)
        for name, t in time_calls(fns, repeats).items():
            _, params, macs, memory = variants[name]
            rows.append({"variant": name, "batch": batch, "median_ms": 1e3 * t["median"], "min_ms": 1e3 * t["min"],
                         "max_ms": 1e3 * t["max"], "repeats": t["repeats"], "params": int(params), "macs": int(macs),
                         "memory_bytes": int(memory)})
    return rows, diffs


def bench_ticket(path: str | os.PathLike, batches: tuple[int, ...] = DEFAULT_BATCHES, budget: float = 0.5,
                 seed: int = 0) -> dict[str, Any]:
    """Measure the ticket file at `path` on this device (see the module docstring): the JSON of
    `lth ticket bench`, {"device", "ticket", "weights", "rows": [{"variant", "batch", "median_ms",
    "min_ms", "max_ms", "params", "macs", "memory_bytes"}], "max_abs_diff" (compact vs dense outputs),
    "max_abs_diff_by_variant", "layers", "files", "skipped"}.
    `budget`: about how many seconds of timed calls per variant and batch."""
    path = Path(path)
    ticket = load(path)
    model, input_shape, weights, which = ticket_network(ticket, path)
    graph = model_graph(model)
    state = ticket.model_state or {}
    masked = masked_params(weights, ticket.mask)
    counts = weight_counts(graph, masked, ticket.mask, output_positions(graph, input_shape))
    net = compact_network(model, weights, state, ticket.mask, input_shape)
    variants, skipped = bench_variants(graph, masked, state, net, ticket.mask, counts)
    rows, diffs = timed_rows(variants, batches, input_shape, budget, seed)
    files = {"ticket_bytes": path.stat().st_size, "compact_bytes": len(encode_compact(net)),
             **{k: v for k, v in dense_sizes(masked).items() if k != "dense_array_bytes"}}
    return {"device": device_description(), "ticket": str(path), "model": model, "weights": which,
            "density": ticket.metadata.get("density"), "rows": rows, "max_abs_diff": diffs["compact"],
            "max_abs_diff_by_variant": diffs,
            "layers": layer_kernels(net.graph, net.params, {}, batches, budget), "files": files,
            "compact_units": net.report.get("units"), "skipped": skipped}


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def bench_text(result: dict[str, Any]) -> str:
    """`bench_ticket`'s result as the terminal tables of `lth ticket bench`."""
    kept = f", {100 * result['density']:.2f} % of the weights kept" if result.get("density") is not None else ""
    lines = [f"device: {result['device']}",
             f"ticket: {result['ticket']} ({result['model']}, {result['weights']} weights{kept})",
             "", "| variant | batch | median ms (min) | vs dense | params | MACs per example | memory |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    dense = {r["batch"]: r["median_ms"] for r in result["rows"] if r["variant"] == "dense"}
    for r in result["rows"]:
        speed = dense[r["batch"]] / r["median_ms"] if r["median_ms"] > 0 else float("inf")
        lines.append(f"| {r['variant']} | {r['batch']} | {_ms(r['median_ms'])} ({_ms(r['min_ms'])}) | {speed:.2f}x "
                     f"| {r['params']:,} | {r['macs']:,} | {r['memory_bytes'] / 1000:,.1f} kB |")
    for name, reason in result.get("skipped", {}).items():
        lines.append(f"{name}: not measured ({reason})")
    if result.get("layers"):
        lines += ["", "fastest kernel per dense layer of the compact network (its nonzero weights; each product "
                  "timed alone; a sparse kernel only where it measured faster):"]
        for row in result["layers"]:
            times = ", ".join(f"{k} {_ms(row[f'{k}_ms'])} ms" for k in ("dense", "bcoo", "scipy_csr"))
            lines.append(f"  {row['layer']} {row['shape'][0]}x{row['shape'][1]} at {100 * row['density']:.1f} %, "
                         f"batch {row['batch']}: {row['fastest']} ({times})")
    files = result["files"]
    lines += ["", f"files: ticket {files['ticket_bytes']:,} B, compact network {files['compact_bytes']:,} B, "
              f"dense (np.savez_compressed) {files['dense_compressed']:,} B, dense raw {files['dense_raw']:,} B",
              f"compact vs dense outputs: max |difference| {result['max_abs_diff']:.3g}"]
    return "\n".join(lines)
