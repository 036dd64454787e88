"""Ticket vs. random reinitialisation vs. random pruning: LeNet-300-100 on the embedded MNIST digits.

The main line is Frankle & Carbin's LeNet-300-100 lottery (Adam 1.2e-3, batch 60, layerwise 20 %
per level, 10 % on the output layer, rewind to init) on the 5,000 MNIST digits that ship with the
install (3,500 train), 5,000 iterations per level, 12 levels (6.9 % of the weights left). After it,
`lth run` trains the controls of Frankle & Carbin's Figure 4 at every level:

    imp+reinit        the ticket's mask with fresh initial weights
    random_layerwise  random masks with the ticket's per-layer densities
    random_global     random masks with the ticket's overall density

    lth run lenet300_controls                  # main line, then the three controls, one chart
    lth run lenet300_controls --variant smoke  # tests

Runtime on 2 CPU cores: ~13 levels x 4 lines of ~2 s = about 2 minutes (estimated from the
README run's per-level time).

Expected outcome (Frankle & Carbin 2019, Fig. 4): the tickets keep (or improve) the dense accuracy
down to a few % of the weights, while the randomly reinitialised and the randomly pruned networks
lose accuracy steadily as weights are removed; the gap opens below ~20 % remaining.
"""

from lth.spec.config import replace
from lth.spec.experiments import load_config

VARIANTS = ("default", "smoke")
CONTROLS = ("imp+reinit", "random_layerwise", "random_global")


def get_config(variant: str = "default"):
    base = load_config("lenet300_mnist", "quick" if variant == "default" else "smoke")
    changes = {"name": "lenet300_controls"}
    if variant == "default":
        changes["levels"] = 12
    return replace(base, **changes)
