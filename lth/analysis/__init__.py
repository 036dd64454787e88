"""Exploring lottery runs: load a run directory and turn its files into tables, arrays and figures.

    import lth.analysis as la

    run = la.load_run("mlp_mnist1d-1a2b3c4d")   # a directory name, a hash, a path, an experiment name or a config
    la.level_table(run.aggregate)               # mean (and std) per level over the replicates
    la.training_curves(run, level=3)            # {"iteration": array, "val_loss": array, ...}
    la.layer_density_table(run.records[0])      # levels x layers, from the records' layer_density
    la.mask_overlap_matrix(run.masks())         # Jaccard overlap between every pair of levels
    la.plot_training_curves({"level 3": la.training_curves(run, 3)})   # a matplotlib Figure
    la.accuracy_figure({run.name: run.records})                     # accuracy vs. % of weights remaining

Everything here reads files and computes; nothing writes but the figure files asked for. The
notebooks in `notebooks/` only call these functions and the rest of the public API.
"""

from lth.analysis.figures import (
    plot_layer_density_heatmap,
    plot_overlap_matrix,
    plot_training_curves,
    plot_weight_histogram,
)
from lth.analysis.instability_plots import plot_instability, plot_paths
from lth.analysis.masks import mask_overlap_matrix, random_overlap, sign_agreement, split_by_mask
from lth.analysis.plots import accuracy_figure, plot_accuracy_vs_sparsity, plot_run, plot_runs, save_figure
from lth.analysis.runs import (
    CURVE_KEYS,
    Run,
    early_stop_index,
    legend_labels,
    load_run,
    load_runs,
    run_labels,
    training_curves,
)
from lth.analysis.tables import LEVEL_COLUMNS, Table, layer_density_table, level_table, mask_table, runs_table

__all__ = [
    "CURVE_KEYS", "LEVEL_COLUMNS", "Run", "Table", "accuracy_figure", "early_stop_index", "layer_density_table",
    "legend_labels", "level_table", "load_run", "load_runs", "mask_overlap_matrix", "mask_table",
    "plot_accuracy_vs_sparsity", "plot_instability", "plot_paths", "plot_layer_density_heatmap",
    "plot_overlap_matrix", "plot_run", "plot_runs", "plot_training_curves", "plot_weight_histogram",
    "random_overlap", "run_labels", "runs_table", "save_figure", "sign_agreement", "split_by_mask",
    "training_curves",
]
