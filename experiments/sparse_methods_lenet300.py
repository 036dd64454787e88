"""IMP tickets vs. the other ways to a sparse network of the same size: LeNet-300-100, embedded MNIST.

Main line: the README's LeNet-300-100 lottery (Adam 1.2e-3, batch 60, 5,000 iterations per level,
rewind to init) down to level 16, under ONE layer distribution shared by every branch but two: the
hidden layers pruned alike (20 % per level), the output layer kept dense (as the RigL reference's
MNIST code; 1,000 of the 266,200 weights). At levels 3, 7, 10, 13 and 16 (51.4, 21.3, 11.1, 5.9 and
3.2 % of the weights) `lth run` trains, from the same initialisation and data order for the same
final training length (5,000 iterations), at exactly the level's per-layer counts:

    gradual          dense at init, magnitude-pruned on Zhu & Gupta's cubic schedule every dt = 100
                     iterations from t0 = 0 until 75 % of training
    rigl             a random mask, RigL every 100 iterations (drop fraction 0.3/2 (1 + cos(pi t /
                     T_end)), T_end = 75 %), regrowth by |grad|
    set              as rigl with random regrowth (the same cosine drop fraction, the rigl reference's
                     default for SET; `sparse.set_drop=constant` for Mocanu et al.'s fixed 0.3)
    static_uniform   a fixed random mask, the same counts
    static_erk       a fixed random mask, the level's density spread over fc1 and fc2 by ERK (its own
                     distribution: fc2 denser, fc1 sparser)
    snip             SNIP at init, one threshold over fc1 and fc2 (its own distribution; the output
                     layer dense, as on the main line)

all drawn with the main line on the run's accuracy_vs_sparsity.png and accuracy_vs_cost.png. A mask
that changes during training (gradual, rigl, set) takes its early stop only from the first
evaluation under its final mask (`final_mask_from`).

    lth run sparse_methods_lenet300 --replicates 3
    lth run sparse_methods_lenet300 --variant smoke   # tests

Runtime: 5 min 51 s measured for 3 replicates (2026-12-07, 2 CPU cores, nothing else running; 10 min
21 s earlier that day with test runs beside it).

Expected outcome (Frankle & Carbin 2019; Evci et al. 2020; Frankle et al. 2021): at moderate
densities everything matches the dense network on this small problem; going sparser, random static
masks fall first, SNIP a little above them, while IMP tickets, gradual pruning and RigL stay close to
dense the longest; SET between static and RigL. Only the sparse methods train once: IMP's ticket at
level L cost L + 1 trainings.

Measured outcome (that run, 2026-12-07, after the update's `lax.cond` took the params and moments:
gradual, RigL and SET moved within their seeds' spread from the run before, whose rounding of the
moments differed in the last bits; IMP, static and SNIP are unchanged; test accuracy %, seeds 0-2).
Dense: 95.0 +- 0.3 at the end of training, 93.7 +- 0.4 at the early stop.

    end of training (mean+-sample std):
    % weights          imp      gradual         rigl          set  static_unif   static_erk         snip
         51.4    94.6+-0.2    94.8+-0.1    94.8+-0.2    95.2+-0.3    94.3+-0.2    94.3+-0.3    94.6+-0.3
         21.3    94.8+-0.3    94.5+-0.4    94.7+-0.5    94.7+-0.3    93.8+-0.8    93.8+-0.4    94.2+-0.1
         11.1    94.2+-0.6    94.7+-0.8    94.1+-0.6    93.8+-0.4    92.9+-0.6    93.4+-0.3    93.8+-0.1
          5.9    94.2+-0.7    94.6+-0.5    93.7+-0.4    93.1+-0.8    92.7+-0.4    92.7+-0.3    92.8+-0.6
          3.2    94.0+-0.3    94.4+-0.3    93.3+-0.5    92.7+-0.7    91.1+-1.2    91.4+-0.5    92.4+-0.3

    at the early stop (mean):
    % weights          imp      gradual         rigl          set  static_unif   static_erk         snip
         51.4         93.1         94.8         94.8         95.1         93.1         93.3         93.1
         21.3         93.6         94.5         94.7         94.7         93.0         93.0         93.6
         11.1         93.8         94.6         94.0         93.7         91.9         91.7         92.6
          5.9         93.7         94.6         93.7         93.2         91.3         91.6         91.8
          3.2         93.5         94.1         93.3         92.6         90.3         90.9         92.1

Cumulative training FLOPs of reaching each (the records' `cumulative_train_flops`): at 3.2 % IMP
2.36 T (17 trainings), gradual 0.11 T (it starts dense), every other method 0.02 T; at 21.3 % IMP
2.00 T, gradual 0.18 T, the others 0.10 T.

Under one distribution, at the end of training: IMP and gradual pruning stay within ~1 point of
dense down to 3.2 % (94.0 and 94.4), RigL 0.7 point below IMP there (93.3), SET 1.3 points (92.7),
SNIP 1.6 (92.4), the static masks ~3 points (91.1 uniform, 91.4 ERK: at this density the two
distributions of fc1 / fc2 differ by less than the seeds do). Gradual pruning matches IMP's ticket
at ~1/20 of its training FLOPs, RigL comes within a point at ~1/100. The early-stop column of
gradual, RigL and SET is the first evaluation under the final mask (at 3.2 %: iteration 3,800 for
gradual pruning, 3,700 for RigL and SET) in every seed: on 3,500 training examples the validation
loss rises from a few hundred iterations on, so the earliest allowed evaluation is the lowest; their
early-stop accuracies therefore say little more than their final ones. An earlier one-seed run
(2026-12-02) compared the methods under different distributions and let gradual pruning early-stop
while it was still denser; its table is superseded by this one.
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
