"""Pruning at initialisation vs. IMP, with the sanity checks of Frankle et al. (2021), "Pruning
Neural Networks at Initialization: Why are We Missing the Mark?" -- LeNet-300-100, embedded MNIST.

Main line: the LeNet-300-100 lottery of `lenet300_controls` (IMP, rewind to init, 12 levels). Then
at levels 3, 6, 9 and 12 (51 %, 26 %, 13 %, 6.9 % of the weights) the controls:

    magnitude_init, snip, grasp, synflow     pruned at init to that density (one threshold for all
                                             layers; SynFlow iterative, 100 rounds) and trained
    <method>+shuffle                         each layer's mask permuted within the layer
    <method>+reinit                          the mask with fresh initial weights
    <method>+invert                          the scores' order reversed (keep what it would prune)
    imp+shuffle, imp+reinit, imp+invert      the same checks on the IMP tickets

    lth run pai_lenet300
    lth run pai_lenet300 --variant smoke     # tests

Runtime on 2 CPU cores: the main line ~30 s plus 19 controls x 4 levels of ~2-3 s: about 4 minutes
(estimated from the README run's per-level time).

Expected outcome (Frankle et al. 2021): the at-init methods keep (or even improve) their accuracy
under shuffling and re-initialisation -- they only choose per-layer densities -- while the IMP
tickets lose accuracy under both; inverting the scores hurts most methods (for SNIP/SynFlow at
high sparsity it is much worse than the original); IMP beats the at-init methods at the smaller
densities.
"""

from lth.spec.config import replace
from lth.spec.experiments import load_config

VARIANTS = ("default", "smoke")
_METHODS = ("magnitude_init", "snip", "grasp", "synflow")
CONTROLS = tuple(f"{m}{t}" for m in _METHODS for t in ("", "+shuffle", "+reinit", "+invert")) + (
    "imp+shuffle", "imp+reinit", "imp+invert")
CONTROL_LEVELS = {"default": "3,6,9,12", "smoke": "2"}


def get_config(variant: str = "default"):
    base = load_config("lenet300_mnist", "smoke" if variant == "smoke" else "quick")
    return replace(base, name="pai_lenet300", levels=base.levels if variant == "smoke" else 12)
