"""Rewinding to iteration 0 vs. to iteration k: LeNet-300-100 on the embedded MNIST digits.

The same lottery as `lenet300_controls` (5,000 iterations per level, 12 levels) once with the
survivors rewound to their initial values and once to their values at iteration 500, each with
learning-rate rewinding as a third line (Renda et al. 2020: keep the trained weights, replay the
schedule from k -- with a constant learning rate it equals continued training, so it is shown
with the default constant schedule only as a reference).

    lth run lenet300_rewind                       # rewind to 0 (init)
    lth run lenet300_rewind --variant rewind500   # rewind to iteration 500
    lth run lenet300_rewind --variant lr_rewind   # learning-rate rewinding from iteration 500
    lth plot lenet300_rewind-<hash> lenet300_rewind-<hash> lenet300_rewind-<hash>   # one chart
    lth run lenet300_rewind --variant smoke       # tests

Runtime on 2 CPU cores: about 30 s per variant (13 levels of ~2 s; estimated from the README run).

Expected outcome (Frankle et al. 2020): LeNet-300-100 is stable at initialisation, so rewinding
to 0 and to 500 give matching tickets alike (differences within the noise of a 500-image
validation set); deeper networks (resnet20_cifar10, vgg16_cifar10) need k > 0.
"""

from lth.spec.config import replace
from lth.spec.experiments import load_config

VARIANTS = ("default", "rewind500", "lr_rewind", "smoke")


def get_config(variant: str = "default"):
    base = load_config("lenet300_mnist", "smoke" if variant == "smoke" else "quick")
    config = replace(base, name="lenet300_rewind", levels=base.levels if variant == "smoke" else 12)
    if variant == "rewind500":
        config = replace(config, rewind="500it")
    elif variant == "lr_rewind":
        config = replace(config, rewind="500it", retraining="lr_rewind")
    return config
