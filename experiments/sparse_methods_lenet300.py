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

Runtime: not measured yet (17 levels + 30 control trainings of 5,000 iterations each; the main line
of the `smoke` variant runs in tests/test_experiments.py).

Expected outcome (Frankle & Carbin 2019; Evci et al. 2020; Frankle et al. 2021): at moderate
densities everything matches the dense network on this small problem; going sparser, the random
static masks fall first (uniform before ERK, which keeps the small output layer denser), SNIP in
between, while IMP tickets, gradual pruning and RigL stay close to dense the longest; SET sits
between static and RigL.

Measured outcome: not measured yet -- the paragraph above is what the papers lead one to expect, not
a result of this code. Run the default variant and replace this line with its numbers.
"""

from lth.config import replace
from lth.experiments import load_config

VARIANTS = ("default", "smoke")
CONTROLS = ("gradual", "rigl", "set", "static_uniform", "static_erk", "snip")
CONTROL_LEVELS = {"default": "3,7,10,13,16", "smoke": "2"}


def get_config(variant: str = "default"):
    base = load_config("lenet300_mnist", "smoke" if variant == "smoke" else "quick")
    changes = {"name": "sparse_methods_lenet300", "sparse.dt": 100}
    if variant == "smoke":  # 60 iterations: update every 10 so that gradual pruning and RigL run at all
        changes["sparse.dt"] = 10
    else:
        changes["levels"] = 16
    return replace(base, **changes)
