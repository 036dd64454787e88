"""lth.analysis on a tiny finished run (2 replicates, levels 0-2), and the figures of lth.plots built on it."""

import shutil

import jax
import numpy as np
import pytest
from helpers import tiny_config

import lth
import lth.analysis as la
from lth.errors import LthError
from lth.sparsity.masks import mask_leaves, overlap
from lth.store import RunDir, aggregate, load_mask, run_name
from lth.store.records import accuracy


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis-runs")
    config = tiny_config()
    lth.run_lottery(config, runs_root=root, replicates=2, wandb="disabled", progress=False)
    return root, config


@pytest.fixture(scope="module")
def run(tiny_run):
    root, config = tiny_run
    return la.load_run(config, root=root)


def _arrays(run, level, replicate=0):
    with np.load(run.replicate(replicate).mask_path(level)) as f:
        return {k: f[k] for k in f.files}


# --------------------------------------------------------------------------- loading


def test_load_run_by_path_name_hash_experiment_and_config(tiny_run, run):
    root, config = tiny_run
    path = RunDir(root, config).path
    assert run.path == path
    for ref in (path, str(path), run_name(config), run.hash, "tiny", config):
        assert la.load_run(ref, root=root).path == path
    assert la.load_run(run) is run
    assert run.name == run_name(config) and run.experiment == "tiny"
    assert run.experiment_config == config


def test_load_run_errors(tiny_run, tmp_path):
    root, config = tiny_run
    with pytest.raises(LthError, match="no run"):
        la.load_run("nothing-here", root=root)
    with pytest.raises(LthError, match="run it first"):
        la.load_run(tiny_config(seed=7), root=root)
    # two runs of one experiment: the experiment name is ambiguous, the hash is not
    other = tmp_path / "runs"
    for name in ("tiny-00000001", "tiny-00000002"):
        shutil.copytree(RunDir(root, config).path, other / name)
    with pytest.raises(LthError, match="2 runs match 'tiny'"):
        la.load_run("tiny", root=other)
    assert la.load_run("00000002", root=other).name == "tiny-00000002"


def test_records_and_aggregate(tiny_run, run):
    root, config = tiny_run
    assert len(run.records) == 2 and all(len(r) == config.levels + 1 for r in run.records)
    assert run.records[1] == run.replicate(1).read_results()
    assert run.aggregate == aggregate(run.records)
    assert run.aggregate == run.saved_aggregate
    assert [r["replicates"] for r in run.aggregate] == [2, 2, 2]
    assert run.levels_done(0) == 3 and run.controls == {}


def test_metrics_rows_and_training_curves(run):
    rows = run.metrics(1)
    assert {r["level"] for r in rows} == {0, 1, 2}
    assert [r["level"] for r in rows if r.get("event") == "level_done"] == [0, 1, 2]
    for level in range(3):
        curves = la.training_curves(run, level, replicate=1)
        evaluations = [r for r in rows if r["level"] == level and "iteration" in r]
        assert list(curves["iteration"]) == [10, 20, 30, 35]  # every 10 iterations, and the last
        assert list(curves["iteration"]) == [r["iteration"] for r in evaluations]
        for key in la.CURVE_KEYS[1:]:
            np.testing.assert_allclose(curves[key], [r[key] for r in evaluations])
        # the curves reproduce the level's record: early stop at the first minimum of the validation loss
        record = run.records[1][level]
        stop = la.early_stop_index(curves)
        assert curves["iteration"][stop] == record["early_stop_iteration"]
        assert curves["test_accuracy"][stop] == pytest.approx(record["early_stop_test_accuracy"])
        assert curves["test_accuracy"][-1] == pytest.approx(record["test_accuracy"])
    with pytest.raises(LthError, match="no evaluations of level 7"):
        la.training_curves(run, 7)


# --------------------------------------------------------------------------- tables


def test_layer_density_table_matches_the_records(run):
    records = run.records[0]
    table = la.layer_density_table(records)
    layers = ["fc1/kernel", "fc2/kernel", "output/kernel"]
    assert table.columns == ("level", "percent_remaining", *layers)
    assert len(table) == 3
    for row, record in zip(table.to_records(), records):
        assert row["level"] == record["level"]
        assert row["percent_remaining"] == record["percent_remaining"]
        for layer in layers:
            assert row[layer] == record["layer_density"][layer]
    # and the records' densities are those of the saved masks
    for level in range(3):
        arrays = _arrays(run, level)
        for layer in layers:
            assert table.column(layer)[level] == pytest.approx(arrays[layer].mean())
    # layerwise: hidden layers lose 30 % per level, the output layer 15 %
    np.testing.assert_allclose(table.column("fc1/kernel"), [1.0, 0.7, 0.49], atol=1e-3)
    np.testing.assert_allclose(table.column("output/kernel"), [1.0, 0.85, 0.725], atol=1e-2)
    with pytest.raises(LthError, match="layer_density"):
        la.layer_density_table(run.aggregate)


def test_level_table_and_its_rendering(run):
    single = la.level_table(run.records[0])
    assert single.columns == la.LEVEL_COLUMNS
    assert list(single.column("weights_remaining")) == [r["weights_remaining"] for r in run.records[0]]
    agg = la.level_table(run.aggregate)
    assert "early_stop_test_accuracy_sample_std" in agg.columns and "replicates" in agg.columns
    assert "percent_remaining_sample_std" not in agg.columns  # zero throughout: layerwise densities are fixed
    text, html = str(agg), agg._repr_html_()
    assert text.splitlines()[0].split() == list(agg.columns)
    assert len(text.splitlines()) == 2 + len(run.aggregate)
    assert html.count("<tr>") == 1 + len(run.aggregate) and "early_stop_test_accuracy" in html
    assert la.Table.from_records([{"a": 1, "b": 0.123456}]).to_text().splitlines()[-1].split() == ["1", "0.1235"]


def test_mask_table_and_runs_table(tiny_run, run):
    root, _ = tiny_run
    table = la.mask_table(run.mask(2))
    rows = {r["layer"]: r for r in table.to_records()}
    assert rows["total"]["kept"] == run.records[0][2]["weights_remaining"]
    assert rows["total"]["weights"] == run.records[0][2]["prunable_weights"]
    assert rows["fc1/kernel"]["density"] == run.records[0][2]["layer_density"]["fc1/kernel"]
    listed = la.runs_table(root).to_records()
    assert [(r["directory"], r["levels"], r["replicates"]) for r in listed] == [(run.name, "3/3", 2)]


# --------------------------------------------------------------------------- masks and weights


def test_masks_load_as_pytrees(run):
    params0 = run.init_params()
    for level, mask in enumerate(run.masks(1)):
        expected = load_mask(run.replicate(1).mask_path(level), params0)
        assert jax.tree.structure(mask, is_leaf=lambda x: x is None) == \
            jax.tree.structure(expected, is_leaf=lambda x: x is None)
        assert lth.density(mask) == pytest.approx(run.records[1][level]["density"])
        for name, bits in mask_leaves(mask).items():
            np.testing.assert_array_equal(np.asarray(bits), _arrays(run, level, 1)[name])
    with pytest.raises(LthError, match="no level 5"):
        run.mask_arrays(5)
    with pytest.raises(LthError, match="no replicate 3"):
        run.mask(0, replicate=3)


def test_mask_overlap_matrix_against_a_hand_computation(run):
    masks = [_arrays(run, level) for level in range(3)]
    matrix = la.mask_overlap_matrix(run.masks())
    for i in range(3):
        for j in range(3):
            a = np.concatenate([masks[i][k].ravel() for k in sorted(masks[i])])
            b = np.concatenate([masks[j][k].ravel() for k in sorted(masks[j])])
            assert matrix[i, j] == pytest.approx(np.sum(a & b) / np.sum(a | b))
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    # IMP masks are nested: the overlap of levels i < j is the ratio of their kept counts
    kept = [r["weights_remaining"] for r in run.records[0]]
    assert matrix[0, 2] == pytest.approx(kept[2] / kept[0])
    assert matrix[1, 2] == pytest.approx(kept[2] / kept[1])
    # a mapping works too (its values), and {path: array} masks give the same numbers as pytrees
    np.testing.assert_allclose(la.mask_overlap_matrix({f"L{i}": m for i, m in enumerate(masks)}), matrix)
    # across replicates (different seeds) at one level
    cross = la.mask_overlap_matrix([run.mask(2, 0), run.mask(2, 1)])
    assert cross[0, 1] == pytest.approx(overlap(run.mask(2, 0), run.mask(2, 1))) and cross[0, 1] < 1


def test_random_overlap_is_the_chance_level():
    rng = np.random.default_rng(0)
    counts = {"a/kernel": (300, 1000), "b/kernel": (50, 400)}

    def random_mask():
        out = {}
        for name, (k, n) in counts.items():
            bits = np.zeros(n, bool)
            bits[rng.choice(n, k, replace=False)] = True
            out[name] = bits
        return out

    expected = la.random_overlap(random_mask())
    inter = 300 * 300 / 1000 + 50 * 50 / 400
    assert expected == pytest.approx(inter / (2 * 350 - inter))
    sampled = np.mean([overlap(random_mask(), random_mask()) for _ in range(200)])
    assert sampled == pytest.approx(expected, rel=0.03)
    full = {name: np.ones(n, bool) for name, (_, n) in counts.items()}
    assert la.random_overlap(full) == 1.0


def test_trained_params_respect_the_mask_and_magnitude_pruning(run):
    for level in range(3):
        params, mask = run.params(level, 1), run.mask(level, 1)
        for name, (kept, pruned) in la.split_by_mask(params, mask).items():
            assert np.all(pruned == 0), f"{name}: pruned weights are exactly zero"
            assert kept.size == int(np.asarray(mask_leaves(mask)[name]).sum())
    # level 2's mask removes, per layer, the smallest trained weights of level 1 among those alive
    split = la.split_by_mask(run.params(1, 1), run.mask(2, 1), alive=run.mask(1, 1))
    for name, (kept, pruned) in split.items():
        assert pruned.size > 0 and np.abs(kept).min() >= np.abs(pruned).max(), name
        alive = int(_arrays(run, 1, 1)[name].sum())
        assert kept.size + pruned.size == alive


def test_init_params_follow_the_replicate_seed(run):
    a, b = run.init_params(0), run.init_params(1)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert not np.allclose(np.asarray(a["fc1"]["kernel"]), np.asarray(b["fc1"]["kernel"]))
    # level 0 trains from init: the rewound survivors of level 1 started there too
    np.testing.assert_array_equal(np.asarray(run.init_params(1)["fc1"]["kernel"]),
                                  np.asarray(lth.lottery.init_params(lth.prepare(tiny_config(seed=1)))[0]["fc1"]["kernel"]))


def test_sign_agreement():
    init = {"l": {"kernel": np.array([[1.0, -2.0], [3.0, -4.0]])}, "o": {"kernel": np.array([1.0, 1.0])}}
    final = {"l": {"kernel": np.array([[2.0, 2.0], [-1.0, -1.0]])}, "o": {"kernel": np.array([-1.0, 5.0])}}
    mask = {"l": {"kernel": np.array([[True, True], [False, True]])}, "o": {"kernel": np.array([True, True])}}
    # kept: l: (1,2) same, (-2,2) flipped, (-4,-1) same; o: flipped, same -> 3 of 5
    assert la.sign_agreement(init, final, mask) == pytest.approx(3 / 5)
    assert la.sign_agreement(init, final, mask, per_layer=True) == pytest.approx({"l/kernel": 2 / 3, "o/kernel": 0.5})
    assert la.sign_agreement(init, init, mask) == 1.0
    negated = jax.tree.map(lambda x: -x, init)
    assert la.sign_agreement(init, negated, mask) == 0.0


def test_sign_agreement_on_the_run(run):
    value = la.sign_agreement(run.init_params(), run.params(1), run.mask(1))
    assert 0.5 < value <= 1.0  # 35 iterations move few weights across zero


# --------------------------------------------------------------------------- figures


def test_figures(run, tmp_path):
    from matplotlib.figure import Figure

    figures = {
        "curves": la.plot_training_curves({f"level {lv}": la.training_curves(run, lv) for lv in range(3)},
                                                 metrics=("val_loss", "val_accuracy", "test_accuracy")),
        "heatmap": la.plot_layer_density_heatmap(run.records[0], title="t"),
        "heatmap_table": la.plot_layer_density_heatmap(la.layer_density_table(run.records[0])),
        "overlap": la.plot_overlap_matrix(la.mask_overlap_matrix(run.masks()), ["a", "b", "c"]),
        "histogram": la.plot_weight_histogram(run.params(1), run.mask(2), alive=run.mask(1)),
    }
    axes = {name: len(fig.axes) for name, fig in figures.items()}
    assert axes == {"curves": 3, "heatmap": 2, "heatmap_table": 2, "overlap": 2, "histogram": 3}  # + colour bars
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    image = figures["heatmap"].axes[0].images[0].get_array()
    np.testing.assert_allclose(image, 100 * np.array([row[2:] for row in la.layer_density_table(run.records[0]).rows]))


def _drawn(fig):
    """The figure laid out and drawn (Agg), so that its artists have their final positions and texts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return fig


def _without_validation(records):
    """A replicate's records as a run without a validation set writes them: no early stop."""
    return [{**r, "early_stop_iteration": None, "early_stop_test_accuracy": None, "early_stop_val_loss": None}
            for r in records]


def test_accuracy_figure_many_branches_legend_beside_the_axes(run):
    """pai_lenet300's chart: the main line and 19 controls (20 lines, more than the 10 colours). One
    legend entry per line (not two), each line's (colour, marker) distinct, the legend outside every
    panel so that no curve is covered."""
    sparse = [[r for r in records if r["level"] > 0] for records in run.records]
    series = {"main": run.records, **{f"control {i}": sparse for i in range(19)}}
    fig = _drawn(la.accuracy_figure(series, early_stop_panel=True, title="pai_lenet300 " * 20))
    assert len(fig.axes) == 2 and not fig.legends and not fig.axes[0].get_legend()
    legend = fig.axes[1].get_legend()
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent()) and box.x0 >= ax.get_window_extent().x1
    from matplotlib.text import Text

    (title,) = [t.get_window_extent() for t in fig.get_children() if isinstance(t, Text) and t.get_text()
                and t.get_text() == fig.get_suptitle()]
    assert not title.overlaps(box) and title.x0 >= 0 and title.x1 <= fig.bbox.x1  # wrapped, above the legend
    entries = {text.get_text(): handle for text, handle in zip(legend.get_texts(), legend.legend_handles)}
    lines = [label for label in entries if label.startswith(("main", "control"))]
    assert len(lines) == 20 and len(entries) == 20 + 3  # + early stop, end of training, dense network
    styles = {(entries[label].get_color(), entries[label].get_marker()) for label in lines}
    assert len(styles) == 20


def test_accuracy_figure_labels_a_sub_decade_span_and_draws_the_dense_baseline(run):
    """Levels 0-2 span 100 % to ~50 %, under a decade: every level's percent is a labelled tick (the 1-2-5
    ticks alone would label only 100 and 50); the dense network's accuracy is a labelled horizontal line."""
    fig = _drawn(la.accuracy_figure({"tiny": run.records}))
    (ax,) = fig.axes
    percents = [r["percent_remaining"] for r in run.records[0]]
    assert len(percents) == 3 and min(percents) > 10
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels == [f"{p:.3g}" for p in percents]
    dense = 100 * accuracy(aggregate(run.records)[0])
    (baseline,) = [line for line in ax.get_lines() if line.get_label().startswith("dense network (level 0)")]
    np.testing.assert_allclose(baseline.get_ydata(), [dense, dense])
    assert f"{dense:.1f} %" in baseline.get_label()


def test_accuracy_figure_without_a_validation_set_shows_the_end_of_training(run):
    """No early stop (no validation set): the solid line is the end-of-training accuracy, no dashed copy
    of it, and no empty early-stop panel."""
    records = [_without_validation(r) for r in run.records]
    fig = _drawn(la.accuracy_figure({"tiny": records}, early_stop_panel=True))
    (ax,) = fig.axes
    (solid,) = [line for line in ax.get_lines() if line.get_label().startswith("tiny")]
    np.testing.assert_allclose(solid.get_ydata(), [100 * r["test_accuracy"] for r in aggregate(records)])
    assert "end of training (no validation set)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert not [line for line in ax.get_lines() if line.get_linestyle() == "--"]


def test_training_curves_without_a_validation_set_have_no_empty_panel(run):
    """A run without a validation set records no validation loss or accuracy: those panels are left
    out (the title says so), the default shows the training loss instead, and no early-stop dot."""
    curves = {f"level {lv}": {**la.training_curves(run, lv), "val_loss": np.full(4, np.nan),
                              "val_accuracy": np.full(4, np.nan)} for lv in range(2)}
    assert la.early_stop_index(curves["level 0"]) is None
    fig = la.plot_training_curves(curves, metrics=("val_loss", "val_accuracy", "test_accuracy"))
    (ax,) = fig.axes
    assert ax.get_ylabel() == "test accuracy" and "not recorded: validation loss, validation accuracy" in \
        fig.get_suptitle()
    assert all(np.isfinite(line.get_ydata()).all() for line in ax.get_lines())
    assert len(ax.get_lines()) == 2  # one line per level, no early-stop dots
    fig = la.plot_training_curves(curves)
    assert [a.get_ylabel() for a in fig.axes] == ["training loss (last batch)", "test accuracy"]
    with pytest.raises(LthError, match="none of \\['val_loss'\\] was recorded"):
        la.plot_training_curves(curves, metrics=("val_loss",))
