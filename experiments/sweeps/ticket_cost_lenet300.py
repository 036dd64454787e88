"""What a ticket costs: LeNet-300-100 on embedded MNIST, every route to ~20 %, ~5 % and ~2 % of the
weights, accuracy against the training FLOPs it took to get there. One sweep.

Every cell is `lenet300_mnist --variant quick` (Adam 1.2e-3, batch 60, 5,000 iterations per training,
embedded MNIST-5k) under ONE layer distribution: the hidden layers (fc1, fc2) at one density, the
output layer kept dense (the RigL reference's MNIST setup; 1,000 of the 266,200 weights), so that
the routes differ only in how they choose the weights, not in how many each layer keeps:

    imp_p10 / imp_p20 / imp_p40   IMP, rewind to init, 10 / 20 / 40 % of the hidden weights per level,
                                  39 / 18 / 8 levels (down to 1.8 / 2.2 / 2.1 % of all weights)
    oneshot_20 / _5 / _2          one-shot: train dense, prune the hidden layers once to 20 / 5 / 2 %
                                  overall, rewind to init, train (IMP with one level)
    earlybird                     Early-Bird (You et al. 2020): dense training, a magnitude mask at the
                                  target density drawn every epoch, stopped when the last 5 masks are
                                  within 0.1 (normalised Hamming distance) of each other; the mask
                                  trained from init
    gradual                       Zhu & Gupta: dense at init, magnitude-pruned every 100 iterations on
                                  the cubic schedule to 75 % of training
    rigl                          RigL: a random mask, drop/grow every 100 iterations to 75 %
    snip                          SNIP at init, per-layer counts of the distribution (layerwise)
    static                        a random mask, fixed (the floor)

each at densities 0.2, 0.05, 0.02, 3 seeds (0, 1, 2). Every record carries its training FLOPs and the
cumulative FLOPs of reaching it (`lth.lottery.cost`: forward + 2x backward over the kept weights,
plus RigL's dense gradients and Early-Bird's dense search; an IMP level sums every level before it).

    lth sweep ticket_cost_lenet300
    lth sweep ticket_cost_lenet300 --variant smoke      # a tiny wiring check

Its charts: accuracy_vs_sparsity.png and accuracy_vs_cost.png (accuracy against % of weights and
against cumulative training FLOPs, log x) in the sweep directory; summary.csv holds the numbers.

Runtime: not yet measured.

Expected outcome: IMP's tickets cost a training per level (at 10 % per level, ~40 trainings to reach 2 %);
pruning more per level or once saves most of that at some cost in accuracy at high sparsity; the
methods that train once (gradual, RigL, SNIP, static, Early-Bird after its short search) cost about one
training (gradual more: it starts dense), and give up accuracy in that order of increasing loss:
gradual and RigL close to IMP, SNIP and static below.

Measured outcome: not yet measured.
"""

from lth.sweeps.file import Sweep

VARIANTS = ("default", "smoke")

DENSITIES = (0.2, 0.05, 0.02)
ONESHOT = (0.8030, 0.9536, 0.9837)  # the hidden layers' fraction pruned at once for 20, 5, 2 % of all weights
IMP = ((0.1, 39), (0.2, 18), (0.4, 8))  # (fraction per level, levels)
METHODS = ("earlybird", "gradual", "rigl", "snip", "static")
ONE_DISTRIBUTION = {"pruning.layer_fractions": (), "pruning.exclude": (r"output/kernel",),  # IMP's layers
                    "sparse.distribution": "uniform", "sparse.dense": "output"}  # every method's


def _cells(imp, oneshot, methods, densities) -> dict:
    """The zip axes: one entry per cell (name, method, fraction, levels, densities)."""
    names = ([f"imp_p{round(100 * f)}" for f, _ in imp] + [f"oneshot_{round(100 * d, 1):g}" for d in densities]
             + list(methods))
    return {
        "name": names,
        "method": ["imp"] * (len(imp) + len(oneshot)) + list(methods),
        "pruning.fraction": [f for f, _ in imp] + list(oneshot) + [0.2] * len(methods),
        "levels": [n for _, n in imp] + [1] * len(oneshot) + [1] * len(methods),
        "sparse.densities": [()] * (len(imp) + len(oneshot)) + [tuple(densities)] * len(methods),
    }


def get_sweep(variant: str = "default") -> Sweep:
    if variant == "smoke":  # 60 iterations: updates every 10, Early-Bird checks every 10
        return Sweep(name="ticket_cost_lenet300_smoke", experiment="lenet300_mnist", variant="smoke",
                     set={**ONE_DISTRIBUTION, "sparse.dt": 10, "sparse.eb_every": "10it"},
                     zip=_cells(((0.5, 2),), (0.75,), METHODS, (0.25,)), replicates=1, controls=(),
                     plot_axis="name")
    return Sweep(name="ticket_cost_lenet300", experiment="lenet300_mnist", variant="quick",
                 set={**ONE_DISTRIBUTION, "sparse.dt": 100},
                 zip=_cells(IMP, ONESHOT, METHODS, DENSITIES), replicates=3, controls=(), plot_axis="name")
