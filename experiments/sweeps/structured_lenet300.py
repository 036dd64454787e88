"""Structured vs unstructured tickets of LeNet-300-100 (embedded MNIST): accuracy against the measured
latency of the compact network, one sweep.

The base is `lenet300_mnist --variant quick` (Adam 1.2e-3, batch 60, 5,000 iterations per level, 20 %
per level, 10 % on the output layer's weights, rewind to init) cut to 12 levels. Axis
`pruning.granularity`: `weight` (unstructured IMP), `neuron` (IMP of whole hidden neurons by the L1
norm of their incoming weights and bias, 20 % of the units per level: 300/100 -> 21/7 at level 12),
`refill` (Chen et al. 2022: unstructured IMP, then the neurons with the most surviving weights
refilled dense), and `neuron` with fc1's neurons pruned at 30 % a level (fc1 reads the 784 pixels:
its units cost 8x fc2's MACs), and `neuron` retrained by learning-rate rewinding (Renda et al. 2020:
the trained weights kept, the schedule replayed) instead of weight rewinding, 3 seeds each; after every run the `random_layerwise` control at levels 4, 8 and 12:
at neuron and refill granularity random *units* with the ticket's unit counts per layer, at weight
granularity random weights with its weight counts.

    lth sweep structured_lenet300
    python benchmarks/structured.py --sweep structured_lenet300     # latency of every level, chart

Runtime and outcome: see the section "Smaller and faster" of the README (filled from the run).
"""

from lth.sweeps.file import Sweep

VARIANTS = ("default", "smoke")


def get_sweep(variant: str = "default") -> Sweep:
    if variant == "smoke":
        return Sweep(name="structured_lenet300_smoke", experiment="lenet300_mnist", variant="smoke",
                     grid={"pruning.granularity": ["weight", "neuron"]}, replicates=1,
                     controls=("random_layerwise",), control_levels="2", plot_axis="pruning.granularity")
    base = ((r"output/kernel", 0.1),)  # the quick variant's: the output layer's weights at 10 % a level
    return Sweep(name="structured_lenet300", experiment="lenet300_mnist", variant="quick", set={"levels": 12},
                 zip={"pruning.granularity": ["weight", "neuron", "refill", "neuron", "neuron"],
                      "pruning.layer_fractions": [base, base, base, ((r"fc1/kernel", 0.3), *base), base],
                      "retraining": ["rewind", "rewind", "rewind", "rewind", "lr_rewind"]},
                 replicates=3, controls=("random_layerwise",), control_levels="4,8,12")
