"""Pure maths on params pytrees: mask pytrees, exact top-k selection, magnitude pruning, and the
pruning-at-initialisation scores and masks. No files, no training loop."""

from lth.sparsity.masks import (
    apply_mask,
    check_mask,
    count_prunable,
    count_remaining,
    density,
    layer_counts,
    layer_densities,
    make_mask,
    mask_digest,
    mask_from_arrays,
    mask_leaves,
    mask_to_arrays,
    named_leaves,
    overlap,
    sign_agreement,
)
from lth.sparsity.pruning import Group, magnitude_scores, plan_groups, prune_by_scores, prune_magnitude

__all__ = [
    "Group", "apply_mask", "check_mask", "count_prunable", "count_remaining", "density", "layer_counts",
    "layer_densities", "magnitude_scores", "make_mask", "mask_digest", "mask_from_arrays", "mask_leaves",
    "mask_to_arrays", "named_leaves", "overlap", "plan_groups", "prune_by_scores", "prune_magnitude",
    "sign_agreement",
]
