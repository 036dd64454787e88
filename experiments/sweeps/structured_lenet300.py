"""Structured vs unstructured tickets of LeNet-300-100 (embedded MNIST): accuracy against the measured
latency of the compact network, one sweep.

The base is `lenet300_mnist --variant quick` (Adam 1.2e-3, batch 60, 5,000 iterations per level, 20 %
per level, 10 % on the output layer's weights, rewind to init) cut to 12 levels. Axis
`pruning.granularity`: `weight` (unstructured IMP), `neuron` (IMP of whole hidden neurons by the L1
norm of their incoming weights and bias, 20 % of the units per level: 300/100 -> 21/7 at level 12),
`refill` (Chen et al. 2022: unstructured IMP, then the neurons with the most surviving weights
refilled dense), `neuron` with fc1's neurons pruned at 30 % a level (fc1 reads the 784 pixels: its
units cost 8x fc2's MACs), and `neuron` retrained by learning-rate rewinding (Renda et al. 2020: the
trained weights kept, the schedule replayed) instead of weight rewinding; 3 seeds each. After every
run the `random_layerwise` control at levels 4, 8 and 12: at neuron and refill granularity random
*units* with the ticket's unit counts per layer, at weight granularity random weights with its
weight counts.

    lth sweep structured_lenet300
    python benchmarks/structured.py --sweep structured_lenet300     # latency of every level, chart

Runtime on 2 CPU cores (2026-12-07, a local Ray cluster running two cells at a time, test runs
beside it part of the time): 12 min 47 s for the first three arms, 3 min 44 s and 3 min 40 s for the
fc1-at-30 % and LR-rewinding arms (each added later; the finished cells were not run again).

Expected outcome: unstructured tickets keep the dense accuracy far below the density at which whole
neurons can go, but their compact network is the dense one (no neuron loses every weight), so they
run no faster; neuron tickets shrink the network itself and run faster in proportion, at a cost in
accuracy that depends on how they are retrained.

Measured (end-of-training test accuracy, mean +- sample std over seeds 0-2; dense 95.03 +- 0.21 %):
weight tickets 94.53 +- 0.38 % at 7.0 % of the weights (compact = dense); neuron tickets 94.17 +- 0.23
at 38.3 % (123 / 41 of 300 / 100 neurons), 93.90 +- 0.52 at 30.2 %, 89.87 +- 0.60 at 6.3 %; refill
94.37 +- 0.47 at 38.3 %; random neurons with the tickets' counts 93.90 +- 0.66 / 92.20 +- 0.30 /
89.50 +- 0.36 at 38.3 / 15.1 / 6.3 % (the tickets' edge: 0.3-1 point); fc1 at 30 % a level: 94.57
+- 0.23 at 47.1 %, 93.97 +- 0.40 at 32.5 %; neuron tickets with LR rewinding 95.40 +- 0.30 at 38.3 %,
94.30 +- 0.26 at 15.1 % (50 / 17 neurons), 91.03 +- 1.06 at 6.3 %. Latency of each level's compact
network and the table: README, "Smaller and faster" (`benchmarks/structured.py`). Under LR rewinding
the random-neuron control is degenerate (random units of an already pruned trained network are
mostly zero and a ReLU unit with zero weights gets no gradient: 17 % accuracy at 6.3 %).
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
