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

Runtime: 10 min 51 s (2026-12-07, 17:16-17:27, 2 CPU cores, a local Ray cluster running two cells at
a time, nothing else running; 18 min 21 s earlier that day at load ~4).

Expected outcome: IMP's tickets cost a training per level (at 10 % per level, ~40 trainings to reach 2 %);
pruning more per level or once saves most of that at some cost in accuracy at high sparsity; the
methods that train once (gradual, RigL, SNIP, static, Early-Bird after its short search) cost about one
training (gradual more: it starts dense), and give up accuracy in that order of increasing loss:
gradual and RigL close to IMP, SNIP and static below.

Measured outcome (that run, after the mask update's `lax.cond` took the params and moments: the
gradual and RigL rows moved within their seeds' spread from the run before, whose rounding of the
moments differed in the last bits, every other row is identical; test accuracy %, mean +- sample std
over seeds 0-2; IMP at the levels nearest the targets; dense 95.0 +- 0.3 at the end of training,
93.7 +- 0.4 at the early stop):

    route        % weights   final acc      early-stop acc   FLOPs to reach it
    imp_p10         20.89   94.6 +- 0.6    93.7 +- 0.9        3.92T
    imp_p10          5.07   94.4 +- 0.1    93.7 +- 0.1        4.63T
    imp_p10          2.01   93.6 +- 0.2    93.0 +- 0.2        4.78T
    imp_p20         21.27   94.8 +- 0.3    93.6 +- 0.5           2T
    imp_p20          5.85   94.2 +- 0.7    93.7 +- 0.6        2.31T
    imp_p20          2.17   93.9 +- 0.1    93.7 +- 0.2        2.39T
    imp_p40         21.89   94.6 +- 0.6    93.6 +- 1.0        1.05T
    imp_p40          5.02   94.3 +- 0.4    93.8 +- 0.8        1.17T
    imp_p40          2.05   93.5 +- 0.7    93.0 +- 0.8         1.2T
    oneshot         20.00   94.8 +- 0.4    94.1 +- 0.6         575G
    oneshot          5.00   93.8 +- 0.3    92.8 +- 0.5         503G
    oneshot          2.00   92.0 +- 0.8    91.1 +- 0.5         489G
    earlybird       20.00   94.2 +- 0.5    93.6 +- 0.8         118G
    earlybird        5.00   92.9 +- 0.4    92.0 +- 1.0        46.2G
    earlybird        2.00   90.9 +- 0.9    90.4 +- 1.4        31.8G
    gradual         20.00   94.9 +- 0.4    95.0 +- 0.4         171G
    gradual          5.00   94.6 +- 0.1    94.5 +- 0.1         113G
    gradual          2.00   93.9 +- 0.8    94.0 +- 0.7         101G
    rigl            20.00   94.8 +- 0.2    94.8 +- 0.3        96.8G
    rigl             5.00   93.1 +- 0.5    93.0 +- 0.4        25.1G
    rigl             2.00   92.7 +- 0.5    92.7 +- 0.5        10.8G
    snip            20.00   94.0 +- 0.4    93.3 +- 0.7        95.8G
    snip             5.00   92.8 +- 0.5    91.7 +- 0.5          24G
    snip             2.00   90.8 +- 0.8    90.6 +- 0.2        9.58G
    static          20.00   93.6 +- 0.1    92.7 +- 1.0        95.8G
    static           5.00   92.4 +- 0.9    91.0 +- 0.9          24G
    static           2.00   91.0 +- 0.4    90.5 +- 0.6        9.58G

The reference route is the paper's, IMP at 20 % a level: 93.9 % at 2.2 % of the weights for 2.39 T
FLOPs. Against it, at ~2 %: IMP at 10 % a level costs twice as much (4.78 T) for no gain (93.6); at
40 % a level half as much (1.20 T) for 0.4 point (93.5); one-shot pruning a fifth (0.49 T) for 1.9
points (92.0; it keeps up at 20 %: 94.8, and loses 0.4-0.6 at 5 %); RigL 1/220 of it (0.011 T) for 1.2
points (92.7); SNIP and the static random mask (0.0096 T) ~3 points (90.8, 91.0). Gradual pruning
gives up nothing here: 93.9 +- 0.8 at 2 % for 0.10 T, 1/24 of IMP's cost, the best or tied best at
every density on this small problem (a 3,500-image training set, where IMP's rewinding to init is no advantage).
Early-Bird, with the reference's rule (epsilon 0.1 over a window of 5 masks, one per epoch), stops
at the earliest possible check, iteration 232 (4 epochs), at every density and seed: the normalised
Hamming distance of two masks of density d is at most 2d, and the window's largest distance was
0.073 / 0.024 / 0.010 at 20 / 5 / 2 %. Its mask from 4 epochs of dense training is then worth no
more than SNIP's or a random one (90.9 at 2 %) for 3x their cost (0.032 T); a useful epsilon would
have to scale with the density. The early-stop column of gradual and RigL is the first evaluation
under their final mask (`final_mask_from`), as the validation loss rises from a few hundred
iterations on here.
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
