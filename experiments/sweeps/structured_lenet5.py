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

Runtime and outcome: see the section "Smaller and faster" of the README (filled from the run).
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
