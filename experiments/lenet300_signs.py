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

Runtime on 2 CPU cores: see "Measured" below.

Expected outcome (the paper, Figs. 3-5, on CIFAR / ImageNet ResNets with SGD): LRR beats WR at
high sparsity; LRR flips many signs in its first (overparameterised) levels and few later, WR's
signs stay close to the init's; flipping the signs of the start weights hurts WR markedly at high
sparsity while LRR recovers to about its unperturbed accuracy.
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
