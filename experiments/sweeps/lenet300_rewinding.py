"""Rewinding to iteration 0, 100 or 500, with the random-reinit control: a Frankle & Carbin study
of LeNet-300-100 on the embedded MNIST digits, as one sweep.

The base is `lenet300_mnist --variant quick` (Adam 1.2e-3, batch 60, 5,000 iterations per level,
layerwise 20 % per level, 10 % on the output layer) cut to 12 levels (6.9 % of the weights left).
Axes: rewind 0it / 100it / 500it, 3 seeds each (9 runs), and after every run's main line the
`imp+reinit` control (the ticket's mask, fresh initial weights) at every level.

    lth sweep lenet300_rewinding                        # a local Ray cluster on this machine
    lth sweep lenet300_rewinding --address auto         # a running cluster (docs/cluster.md)
    lth sweep lenet300_rewinding --variant smoke        # 2 x 2 cells of 60 iterations: tests

Runtime on 2 CPU cores: RUNTIME_PLACEHOLDER

Expected outcome (Frankle & Carbin 2019, Fig. 4; Frankle et al. 2020): LeNet-300-100 is stable at
initialisation, so the tickets rewound to 0, 100 and 500 are alike within the seeds' spread and
keep the dense accuracy down to a few % of the weights, while the randomly reinitialised tickets
lose accuracy as weights are removed, the gap opening below ~20 % remaining.
MEASURED_PLACEHOLDER
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
