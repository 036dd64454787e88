"""What a record cost to train: iterations, training FLOPs, and the cumulative cost of reaching it.

FLOPs are counted from the model's layer shapes and the mask, as Evci et al. (2020, RigL, appendix H)
count them, not measured from the program XLA runs (which computes dense products and masks them):

* the forward pass of one example costs ``2 * sum_l kept_l * positions_l`` FLOPs (a multiply and an
  add per kept weight of every dense and conv kernel, times the layer's output positions: 1 for a
  dense layer, H_out * W_out for a convolution), plus one add per kept bias and position where biases
  are prunable (their mask says which are kept); unprunable biases, normalisation, activations,
  pooling and the loss are not counted (well under 1 % of the kernels' FLOPs on the shipped models);
* the backward pass costs twice the forward (the gradients with respect to the activations and to the
  kept weights), so a training iteration costs ``3 * forward * batch``;
* a method that needs the *dense* weight gradient at an iteration (RigL at its mask updates) pays the
  weight-gradient pass over every weight there: ``(forward_dense - forward_sparse) * batch`` more;
* gradual pruning pays, at every iteration, the forward of the mask in force then (dense before t0);
* an Early-Bird ticket's search trains the dense network for `earlybird_iteration` iterations first.

Evaluation passes (validation and test) are not counted: they do not change with the method.

The *cumulative* cost of a record is what it took to reach it from nothing (`cumulative`): a lottery
level L sums levels 0..L (every level before it trained to produce its mask); a method run's density
its own training (and search); a control of level L its own training plus what its mask or start
weights came from (`control_base`): the main line through level L-1 for a transform of the main line's
mask or a start from trained weights (lr_rewind, finetune), level 0 for one-shot pruning, and the
dense iterations that produced the rewind point k for a branch rewound to k > 0.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from lth.models.graph import model_graph
from lth.sparsity import gradual
from lth.sparsity.alive import output_positions
from lth.sparsity.masks import Mask, kept_counts, layer_counts
from lth.training.mask_updates import resolve_schedule  # the schedule as the compiled loop resolves it

COST_FIELDS = ("iterations", "train_flops")  # a record's own cost
CUMULATIVE_FIELDS = ("cumulative_iterations", "cumulative_train_flops")  # the cost of reaching it


@functools.lru_cache(maxsize=32)
def _positions(model: str, input_shape: tuple[int, ...]) -> dict[str, int]:
    return dict(output_positions(model_graph(model), input_shape))


def layer_positions(setup: Any) -> dict[str, int]:
    """{layer path: output positions per example} of the run's model and input shape."""
    return _positions(setup.config.model, tuple(setup.dataset.input_shape))


def forward_flops(counts: Mapping[str, int], positions: Mapping[str, int]) -> int:
    """FLOPs of one example's forward with `counts[leaf]` entries kept per prunable leaf: 2 per kept
    kernel weight and output position (a multiply-add), 1 per kept bias and output position (an add;
    a model whose biases are prunable, e.g. the MNIST-1D MLP)."""
    total = 0
    for name, k in counts.items():
        layer, _, leaf = name.rpartition("/")
        if layer not in positions:
            raise ValueError(f"no output positions for the prunable leaf {name!r}: not a dense or conv layer's")
        total += (2 if leaf == "kernel" else 1) * int(k) * positions[layer]
    return total


def total_counts(mask: Mask) -> dict[str, int]:
    """{layer: all its weights} of a mask (the dense network's counts)."""
    return {name: size for name, (_, size) in layer_counts(mask).items()}


def gradual_iteration_flops(setup: Any, full: Mask, start_counts: Mapping[str, int],
                            final_counts: Mapping[str, int], start: int, end: int) -> int:
    """Forward FLOPs per example summed over iterations [start, end) of gradual pruning: the mask of
    `full` before t0, then each update step's counts (`lth.sparsity.gradual.counts_at`) until the next."""
    s = resolve_schedule(setup.config.sparse, setup.total_steps)
    positions = layer_positions(setup)
    steps = [u for u in gradual.update_steps(s.t0, s.n, s.dt) if u < end]
    flops = [forward_flops(kept_counts(full), positions)]
    bounds = [start]
    for u in steps:
        counts = gradual.counts_at(u, dict(start_counts), dict(final_counts), s.t0, s.n, s.dt)
        flops.append(forward_flops({k: int(v) for k, v in counts.items()}, positions))
        bounds.append(max(u, start))
    bounds.append(end)
    return sum(f * (b - a) for f, a, b in zip(flops, bounds[:-1], bounds[1:]) if b > a)


def training_cost(setup: Any, iterations: int, per_iteration_forward: int, *, dense_gradient_steps: int = 0,
                  dense_forward: int = 0, sparse_forward: int = 0, search_iterations: int = 0) -> dict[str, int]:
    """{"iterations", "train_flops"} of a record (see the module docstring): `per_iteration_forward` is
    the forward FLOPs per example summed over the trained iterations (`iterations * forward` for a
    fixed mask)."""
    batch = setup.config.training.batch_size
    flops = 3 * per_iteration_forward * batch
    flops += dense_gradient_steps * (dense_forward - sparse_forward) * batch
    flops += 3 * search_iterations * dense_forward * batch
    return {"iterations": int(iterations + search_iterations), "train_flops": int(flops)}


def fixed_mask_cost(setup: Any, mask: Mask, start: int, end: int) -> dict[str, int]:
    """The cost of training under a fixed `mask` from iteration `start` to `end`."""
    return training_cost(setup, end - start, (end - start) * forward_flops(kept_counts(mask), layer_positions(setup)))


def cumulative(record: dict[str, Any], base: Mapping[str, Any] | None) -> dict[str, Any]:
    """`record` with its cumulative cost: its own cost plus `base`'s cumulative cost (None: nothing
    before it). A record without its own cost, or a base without a cumulative cost (a run recorded
    before costs were), gets none."""
    if any(field not in record for field in COST_FIELDS):
        return record
    before = {"cumulative_iterations": 0, "cumulative_train_flops": 0} if base is None else base
    if any(before.get(field) is None for field in CUMULATIVE_FIELDS):
        return record
    return {**record, "cumulative_iterations": int(before["cumulative_iterations"]) + int(record["iterations"]),
            "cumulative_train_flops": int(before["cumulative_train_flops"]) + int(record["train_flops"])}


def main_line_base(records: Mapping[int, dict[str, Any]], record: dict[str, Any]) -> dict[str, Any] | None:
    """The base of a record of a run's main line: the previous level's record (a lottery level was
    reached through every level before it); None for level 0 and for a method run's densities, each
    trained from scratch."""
    level = int(record["level"])
    if "method" in record or level == 0:
        return None
    return records.get(level - 1, _UNKNOWN)


def control_base(kind: str, level: int, retraining: str, main: Mapping[int, dict[str, Any]], rewind_step: int,
                 dense_flops_per_iteration: int) -> dict[str, Any] | None:
    """The cost a control of `level` builds on (module docstring): `kind` its source's kind
    (`lth.spec.controls.KINDS`), `main` the main line's records by level, `rewind_step` the iterations
    of level 0 it starts from (the rewind point; for oneshot_early the later of that and the iteration
    whose weights it prunes), `dense_flops_per_iteration` the dense network's training FLOPs per iteration."""
    if kind == "at_init":  # a mask of the initial weights, trained from iteration 0
        return None
    if level > 0 and kind == "oneshot":
        return main.get(0, _UNKNOWN)
    if level > 0 and (kind == "main" or retraining != "rewind"):  # the main line's mask, or its trained weights
        return main.get(level - 1, _UNKNOWN)
    if rewind_step > 0:  # the rewind point: level 0's first k iterations
        return {"cumulative_iterations": rewind_step, "cumulative_train_flops": rewind_step * dense_flops_per_iteration}
    return None


_UNKNOWN = {"cumulative_iterations": None, "cumulative_train_flops": None}

__all__ = ["COST_FIELDS", "CUMULATIVE_FIELDS", "control_base", "cumulative", "fixed_mask_cost", "forward_flops",
           "gradual_iteration_flops", "kept_counts", "layer_positions", "main_line_base", "total_counts",
           "training_cost"]
