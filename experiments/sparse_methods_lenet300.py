"""IMP tickets vs. the other ways to a sparse network of the same size: LeNet-300-100, embedded MNIST.

Main line: the README's LeNet-300-100 lottery (Adam 1.2e-3, batch 60, 5,000 iterations per level,
layerwise 20 % per level, 10 % on the output layer, rewind to init) down to level 16 (2.9 % of the
weights). At levels 3, 7, 10, 13 and 16 (51.3, 21.1, 10.8, 5.6 and 2.9 % of the weights) `lth run`
trains, from the same initialisation, data order and budget (5,000 iterations), at exactly the
level's density:

    gradual          dense at init, magnitude-pruned on Zhu & Gupta's cubic schedule every dt = 100
                     iterations from t0 = 0 until 75 % of training, to the level's per-layer counts
    rigl             a random mask with the level's per-layer counts, RigL every 100 iterations
                     (drop fraction 0.3/2 (1 + cos(pi t / T_end)), T_end = 75 %), regrowth by |grad|
    set              as rigl with random regrowth and a constant drop fraction 0.3
    static_uniform   a fixed random mask, every layer at the level's density
    static_erk       a fixed random mask, the level's density spread by Erdős–Rényi–Kernel
    snip             SNIP at init (one threshold over all layers), fixed

all drawn with the main line on the run's accuracy_vs_sparsity.png.

    lth run sparse_methods_lenet300
    lth run sparse_methods_lenet300 --variant smoke   # tests

Runtime: 26 min 42 s measured (2026-12-02, seed 0, one replicate) on the 2 CPU cores shared with
other sessions' test suites and benchmarks (the process got 67 % of one core on average: 1,070 s of
CPU time); alone it should take a fraction of that -- not measured.

Expected outcome (Frankle & Carbin 2019; Evci et al. 2020; Frankle et al. 2021): at moderate
densities everything matches the dense network on this small problem; going sparser, the random
static masks fall first (uniform before ERK, which keeps the small output layer denser), SNIP in
between, while IMP tickets, gradual pruning and RigL stay close to dense the longest; SET sits
between static and RigL.

Measured outcome (that run; test accuracy % at the end of training / at the early-stop iteration;
one seed, so differences under ~0.5 points are within the seed-to-seed spread of this setup). The
dense network: 94.8 / 93.6.

    % weights   imp         gradual     rigl        set         static_uniform  static_erk  snip
    51.3        94.9/92.9   94.4/93.2   94.8/93.8   94.2/93.5   93.8/93.2       94.2/93.0   94.7/93.4
    21.1        94.8/93.9   94.6/94.1   94.2/93.1   93.8/92.8   92.7/91.7       93.9/92.8   94.1/93.0
    10.8        94.1/94.2   94.3/93.9   94.1/92.2   93.4/92.1   91.7/91.3       93.6/91.9   93.4/92.7
     5.6        94.5/93.9   94.6/94.3   93.1/92.1   93.0/92.0   91.5/91.4       92.4/91.7   92.5/91.5
     2.9        93.8/93.2   93.8/93.7   93.7/92.0   92.4/91.6   87.5/88.2       92.4/91.4   91.4/91.1

As expected, IMP tickets and gradual pruning stay within ~1 point of dense down to 2.9 %, RigL close
behind (93.7 at 2.9 %); the uniform static mask falls first (87.5 at 2.9 %), ERK keeps its static
mask 5 points above uniform there, SET sits with static ERK (between static and RigL from 10.8 %
down), and SNIP ends between the two static masks (91.4 at 2.9 %). One seed: a claim needs
`--replicates 3` or more.
"""

from lth.spec.config import replace
from lth.spec.experiments import load_config

VARIANTS = ("default", "smoke")
CONTROLS = ("gradual", "rigl", "set", "static_uniform", "static_erk", "snip")
CONTROL_LEVELS = {"default": "3,7,10,13,16", "smoke": "2"}


def get_config(variant: str = "default"):
    base = load_config("lenet300_mnist", "smoke" if variant == "smoke" else "quick")
    # one layer distribution for every branch but static_erk and snip: the hidden layers at one density,
    # the output layer dense (as the RigL reference's MNIST code); the lottery prunes the hidden layers alike
    changes = {"name": "sparse_methods_lenet300", "sparse.dt": 100, "pruning.layer_fractions": (),
               "pruning.exclude": (r"output/kernel",)}
    if variant == "smoke":  # 60 iterations: update every 10 so that gradual pruning and RigL run at all
        changes["sparse.dt"] = 10
    else:
        changes["levels"] = 16
    return replace(base, **changes)
