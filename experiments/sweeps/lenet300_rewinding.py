"""Rewinding to iteration 0, 100 or 500, with the random-reinit control: a Frankle & Carbin study
of LeNet-300-100 on the embedded MNIST digits, as one sweep.

The base is `lenet300_mnist --variant quick` (Adam 1.2e-3, batch 60, 5,000 iterations per level,
layerwise 20 % per level, 10 % on the output layer) cut to 12 levels (6.9 % of the weights left).
Axes: rewind 0it / 100it / 500it, 3 seeds each (9 runs), and after every run's main line the
`imp+reinit` control (the ticket's mask, fresh initial weights) at every level.

    lth sweep lenet300_rewinding                        # a local Ray cluster on this machine
    lth sweep lenet300_rewinding --address auto         # a running cluster (docs/cluster.md)
    lth sweep lenet300_rewinding --variant smoke        # 2 x 2 cells of 60 iterations: tests

Runtime and outcome below were measured BEFORE issue 13's changes on main (every level now draws
its own data order, `data_order="per_level"`, the default; controls follow the main line's pruning
groups and retraining): not re-measured since, so the numbers of a run today will differ.

Runtime on 2 CPU cores: 59 min measured (2026-12-01, two cells at a time on a local Ray cluster)
on this project's shared 2-core machine while other test suites kept its load average at 5-13,
so the sweep got a fraction of the cores; alone it should take ~10 minutes (a cell is 13 levels
of the main line and 13 of the control at ~2.6 s each in the README run: ~70 s; 9 cells, two at a
time) -- an estimate, not measured.

Expected outcome (Frankle & Carbin 2019, Fig. 4; Frankle et al. 2020): LeNet-300-100 is stable at
initialisation, so the tickets rewound to 0, 100 and 500 are alike within the seeds' spread and
keep the dense accuracy down to a few % of the weights, while the randomly reinitialised tickets
learn slower (a later early-stop iteration) and lose accuracy early as weights are removed.

Measured (the run above; end-of-training test accuracy, mean +- sample std over the 3 seeds, from
the printed summary): dense 94.43 +- 0.59 %. At 21.1 % of the weights left the tickets rewound to
0 / 100 / 500 reach 94.60 +- 0.26 / 94.57 +- 0.23 / 94.63 +- 0.49 %, their reinitialised copies
93.73 +- 0.29 / 93.70 +- 0.20 / 93.53 +- 0.15 %; at 6.95 % the tickets 94.20 +- 0.70 / 94.40 +- 0.10 /
94.63 +- 0.57 %, the reinitialised 92.57 +- 0.15 / 93.03 +- 0.06 / 93.03 +- 0.35 %. The three rewind
points are within each other's spread at every level; random reinitialisation falls behind from
~40 % left (0.2-0.7 points), by ~1 point at 21 % and 1.4-1.6 points at 6.95 %, and it learns
slower: its early-stop iteration at 6.95 % is 933-1333 against 300-633 for the tickets.
"""

from lth.runs.sweep_file import Sweep

VARIANTS = ("default", "smoke")


def get_sweep(variant: str = "default") -> Sweep:
    if variant == "smoke":  # the test suite's: 2 rewind points x 2 seeds of 60 iterations, 2 levels
        return Sweep(name="lenet300_rewinding_smoke", experiment="lenet300_mnist", variant="smoke",
                     grid={"rewind": ["0it", "20it"]}, replicates=2, controls=("imp+reinit",), control_levels="2",
                     plot_axis="rewind")
    return Sweep(name="lenet300_rewinding", experiment="lenet300_mnist", variant="quick", set={"levels": 12},
                 grid={"rewind": ["0it", "100it", "500it"]}, replicates=3, controls=("imp+reinit",),
                 plot_axis="rewind")
