"""Rewinding to iteration 0, 100 or 500, with the random-reinit control: a Frankle & Carbin study
of LeNet-300-100 on the embedded MNIST digits, as one sweep.

The base is `lenet300_mnist --variant quick` (Adam 1.2e-3, batch 60, 5,000 iterations per level,
layerwise 20 % per level, 10 % on the output layer) cut to 12 levels (6.9 % of the weights left).
Axes: rewind 0it / 100it / 500it, 3 seeds each (9 runs), and after every run's main line the
`imp+reinit` control (the ticket's mask, fresh initial weights) at every level.

    lth sweep lenet300_rewinding                        # a local Ray cluster on this machine
    lth sweep lenet300_rewinding --address auto         # a running cluster (docs/cluster.md)
    lth sweep lenet300_rewinding --variant smoke        # 2 x 2 cells of 60 iterations: tests

Runtime on 2 CPU cores: 45 min 6 s measured (2026-12-02, commit af88160, `lth sweep
lenet300_rewinding --no-progress`, a local Ray cluster running two cells at a time, nothing else on
the machine). That day's machine was slow: a float32 1024 x 1024 matmul ran at 68 GFLOP/s, against
450-490 GFLOP/s measured on 2026-11-25; on the faster machine expect a fraction of this.

Expected outcome (Frankle & Carbin 2019, Fig. 4; Frankle et al. 2020): LeNet-300-100 is stable at
initialisation, so the tickets rewound to 0, 100 and 500 are alike within the seeds' spread and
keep the dense accuracy down to a few % of the weights, while the randomly reinitialised tickets
learn slower (a later early-stop iteration) and lose accuracy early as weights are removed.

Measured (the run above; end-of-training test accuracy, mean +- sample std over the 3 seeds, from
the printed summary): dense 95.03 +- 0.25 %.

| % weights left | ticket 0it | ticket 100it | ticket 500it | reinit 0it | reinit 100it | reinit 500it |
|---|---|---|---|---|---|---|
| 41.1 | 94.53 +- 0.12 | 95.00 +- 0.46 | 95.30 +- 0.36 | 94.03 +- 0.59 | 94.20 +- 0.10 | 94.13 +- 0.55 |
| 21.1 | 94.80 +- 0.30 | 94.77 +- 0.57 | 94.93 +- 0.59 | 93.17 +- 0.76 | 93.37 +- 0.06 | 93.87 +- 0.45 |
| 6.95 | 94.53 +- 0.38 | 94.97 +- 0.49 | 94.93 +- 0.40 | 92.73 +- 0.25 | 93.23 +- 0.42 | 93.33 +- 0.50 |

The tickets keep the dense accuracy to within 0.5 points down to 6.95 %. The three rewind points
agree within their spread at 21 % and 6.95 %; between 51 % and 33 % left the tickets rewound to
100 or 500 iterations sit 0.1-0.8 points above those rewound to 0 (beyond the spread at 41 %, one
seed-triple, not a claim). Random reinitialisation falls behind from ~50 % left (0.5-1.2 points at
41 %), by 1.1-1.6 points at 21 % and 1.6-1.8 points at 6.95 %, and it learns slower: at 6.95 % its
early-stop iteration is 867 / 933 / 1300 against 200 / 300 / 633 for the tickets with the same
rewind point (counted from iteration 0, so the rewound iterations are included).
"""

from lth.sweeps.file import Sweep

VARIANTS = ("default", "smoke")


def get_sweep(variant: str = "default") -> Sweep:
    if variant == "smoke":  # the test suite's: 2 rewind points x 2 seeds of 60 iterations, 2 levels
        return Sweep(name="lenet300_rewinding_smoke", experiment="lenet300_mnist", variant="smoke",
                     grid={"rewind": ["0it", "20it"]}, replicates=2, controls=("imp+reinit",), control_levels="2",
                     plot_axis="rewind")
    return Sweep(name="lenet300_rewinding", experiment="lenet300_mnist", variant="quick", set={"levels": 12},
                 grid={"rewind": ["0it", "100it", "500it"]}, replicates=3, controls=("imp+reinit",),
                 plot_axis="rewind")
