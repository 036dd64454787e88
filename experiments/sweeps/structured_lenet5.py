"""Channel vs unstructured tickets of LeNet-5 (embedded MNIST): accuracy against the measured latency
of the compact network, one sweep.

The base is `lenet5_mnist --variant quick` (Adam 1.2e-3, batch 60, 1,000 iterations per level, 20 %
per level, 10 % on the output layer's weights, rewind to init), 6 levels. Axis `pruning.granularity`:
`weight` (unstructured IMP), `channel` (IMP of whole conv channels by the L1 norm of their filter and
bias, 20 % of the channels per level: 6/16 -> 2/4 at level 6; the dense layers keep their neurons and
lose only the rows of pruned channels), `refill` (Chen et al. 2022: unstructured IMP, then the
channels and neurons with the most surviving weights refilled dense), 3 seeds each; after every run
the `random_layerwise` control at levels 3 and 6 (random channels / units with the ticket's counts
at channel and refill granularity, random weights at weight granularity).

    lth sweep structured_lenet5
    python benchmarks/structured.py --sweep structured_lenet5     # latency of every level, chart

Runtime on 2 CPU cores: 18 min 49 s (2026-12-07, a local Ray cluster running two cells at a time,
test runs beside it part of the time).

Expected outcome: channel tickets remove whole filters, so their compact networks are smaller and
should run faster; channels are few (6 and 16), so each level removes a large share of the work and
accuracy falls sooner than with unstructured pruning.

Measured (end-of-training test accuracy, mean +- sample std over seeds 0-2; dense 97.50 +- 0.10 %):
weight tickets 97.47 +- 0.35 at 51.5 % and 97.30 +- 0.26 at 26.6 %; channel tickets 96.37 +- 0.42 at
57.9 % (3 / 8 of 6 / 16 channels), 96.50 +- 0.56 at 52.6 % (2 / 7 channels), 95.73 +- 0.35 at 37.7 %
(2 / 4 channels); random channels with the same counts 96.60 +- 0.10 and 95.93 +- 0.51 at 57.9 and
37.7 %: no better than the tickets' channels, no worse; refill 96.63 +- 0.29 at 18.7 %, 94.47 +- 0.85
at 8.6 %. The channel ticket's compact network has 3.9x fewer MACs but runs only 1.06-1.16x faster
on this CPU (XLA:CPU's convolution of the one-channel input dominates): README, "Smaller and faster".
"""

from lth.sweeps.file import Sweep

VARIANTS = ("default", "smoke")


def get_sweep(variant: str = "default") -> Sweep:
    if variant == "smoke":
        return Sweep(name="structured_lenet5_smoke", experiment="lenet5_mnist", variant="smoke",
                     grid={"pruning.granularity": ["weight", "channel"]}, replicates=1,
                     controls=("random_layerwise",), control_levels="2", plot_axis="pruning.granularity")
    return Sweep(name="structured_lenet5", experiment="lenet5_mnist", variant="quick",
                 grid={"pruning.granularity": ["weight", "channel", "refill"]}, replicates=3,
                 controls=("random_layerwise",), control_levels="3,6", plot_axis="pruning.granularity")
