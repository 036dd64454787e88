"""Signs and learning-rate rewinding: LeNet-300-100 on the embedded MNIST digits (Gadhikar &
Burkholz, "Masks, Signs, and Learning Rate Rewinding", ICLR 2024).

The README's LeNet-300-100 lottery (`lenet300_mnist --variant quick`: Adam 1.2e-3, batch 60,
layerwise 20 % per level, 10 % on the output layer) with a cosine learning rate over each level (so
that replaying the schedule differs from fine-tuning), 3,000 iterations per level (~51 epochs of the
3,500 training digits; the quick variant's 5,000 did not fit the 2 loaded cores), 12 levels (6.9 %
of the weights left; >= 90 % sparsity at levels 11 and 12). Two lines, both from iteration 0:

    wr   weight rewinding (`retraining="rewind"`, IMP): survivors reset to their initial values
    lrr  learning-rate rewinding (`retraining="lr_rewind"`): survivors keep level L-1's trained
         values, the cosine schedule is replayed from iteration 0

and after each line the `imp+signflip` control at levels 4, 8, 11, 12: the line's own
mask and start weights of level L (WR: the initial values; LRR: level L-1's trained values) with
the sign of each surviving weight flipped with probability 0.3 (`lth.lottery.controls.perturb_start`,
which says where this differs from the paper's code). Every level records `sign_agreement_with_init`
and `sign_agreement_with_previous` (1 - the fraction of surviving weights whose trained sign differs
from the init's / from level L-1's trained weights').

    lth sweep lenet300_signs                      # both lines x 3 seeds, the controls after each
    lth run lenet300_signs --replicates 3         # WR alone (the sweep's first cell)
    lth run lenet300_signs --variant lrr --replicates 3
    lth run lenet300_signs --variant smoke        # tests (also: lth sweep lenet300_signs --variant smoke)

Runtime on 2 CPU cores, under load (another session's test suite and a third experiment shared
the cores; load average ~11): 7 min 18 s for WR and 7 min 28 s for LRR, each `lth run ...
--replicates 3 --layout vmap` with its 4 control levels, both running at the same time (2026-12-07,
commit ff86a6e). The sweep runs the same 6 runs as Ray cells, one seed per cell, two cells at a
time: its first try here (14 levels of 5,000 iterations, this session's tests also running) took
~1 min per level and was stopped; the numbers below are from the two vmapped runs (vmapped and
single runs may differ in the last bits).

Expected outcome (the paper, on CIFAR / Tiny ImageNet / ImageNet ResNets with SGD): LRR beats WR at
high sparsity; LRR flips many signs in its first (overparameterised) levels and few later, WR's
signs stay close to the init's; flipping the signs of the start weights hurts WR markedly at high
sparsity while LRR recovers to about its unperturbed accuracy.

Measured (the runs above; end-of-training test accuracy on the 1,000 test digits, mean +- sample
std over 3 seeds; flips = 1 - sign agreement, in % of the surviving weights; dense 94.93 +- 0.40 %):

| level (% weights left) | WR | WR + signflip | LRR | LRR + signflip |
|---|---|---|---|---|
| 4 (41.1 %) | 94.57 +- 0.40 | 94.27 +- 0.25 | 94.70 +- 0.44 | 94.00 +- 0.46 |
| 8 (16.9 %) | 94.43 +- 0.31 | 93.67 +- 0.15 | 94.87 +- 0.65 | 93.93 +- 0.58 |
| 11 (8.7 %, 91.3 % sparse) | 94.37 +- 0.23 | 93.47 +- 0.38 | 94.53 +- 0.31 | 93.03 +- 0.49 |
| 12 (6.95 %, 93.0 % sparse) | 94.33 +- 0.45 | 93.20 +- 0.56 | 94.80 +- 0.10 | 92.70 +- 0.56 |

| sign flips, % of survivors | L1 | L2 | L3 | L4 | L8 | L12 |
|---|---|---|---|---|---|---|
| WR vs init | 4.64 | 1.69 | 0.57 | 0.22 | 0.05 | 0.07 |
| WR vs level L-1 | 1.59 | 0.19 | 0.04 | 0.01 | 0.00 | 0.01 |
| LRR vs init | 5.76 | 4.46 | 4.01 | 3.80 | 4.26 | 4.68 |
| LRR vs level L-1 | 1.56 | 0.61 | 0.27 | 0.05 | 0.01 | 0.00 |

What agrees with the paper: LRR is ahead of WR at >= 90 % sparsity (+0.16 at level 11, +0.47 at
level 12; the first within the seeds' spread), and it flips signs early: ~1.6 / 0.6 / 0.3 % of the
survivors change sign against the previous level in levels 1-3 and almost none after, and the flipped
signs persist (4-5 % of LRR's survivors differ from their init, against < 0.1 % of WR's from level 6
on: magnitude pruning keeps WR's weights that never flipped). What differs: the perturbation does
not break WR here and LRR does not survive it better -- the opposite. Flipping 30 % of the signs costs
WR 0.9 / 1.1 points at levels 11 / 12 and LRR 1.5 / 2.1 points, so the perturbed LRR ends below
the perturbed WR. Possible reasons, none tested: this is a per-level branch (the mask and the start
weights of the unperturbed line, one flip, then one level of training), while the paper's code
perturbs during every prune-train cycle of the whole run (the masks are then learnt under the
perturbation, and LRR inherits the recovered signs from level to level); for LRR the flip hits a
trained network, which 3,000 iterations of Adam on 3,500 digits only partly repair; LeNet-300-100
on MNIST is a small, easy case (the paper's are CIFAR / ImageNet ResNets with SGD).
"""

from lth.spec.config import replace
from lth.spec.experiments import load_config

VARIANTS = ("default", "lrr", "smoke", "smoke_lrr")
CONTROLS = ("imp+signflip",)
CONTROL_LEVELS = {"default": "4,8,11,12", "lrr": "4,8,11,12", "smoke": "2", "smoke_lrr": "2"}


def get_config(variant: str = "default"):
    smoke = variant.startswith("smoke")
    base = load_config("lenet300_mnist", "smoke" if smoke else "quick")
    config = replace(base, **{"name": "lenet300_signs", "optimizer.schedule": "cosine"})
    if not smoke:
        config = replace(config, **{"levels": 12, "training.length": "3000it"})
    if variant.endswith("lrr"):
        config = replace(config, retraining="lr_rewind")
    return config
