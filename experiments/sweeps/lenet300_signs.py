"""Signs and learning-rate rewinding as one sweep: weight rewinding vs. learning-rate rewinding on
LeNet-300-100, each with the sign-perturbation control (`experiments/lenet300_signs.py` says what
and what was measured).

    lth sweep lenet300_signs                   # 2 lines x 3 seeds, imp+signflip after each
    lth sweep lenet300_signs --variant smoke   # 2 cells of 60 iterations: tests
"""

from lth.sweeps.file import Sweep

VARIANTS = ("default", "smoke")


def get_sweep(variant: str = "default") -> Sweep:
    smoke = variant == "smoke"
    return Sweep(name="lenet300_signs" + ("_smoke" if smoke else ""), experiment="lenet300_signs",
                 variant=variant, grid={"retraining": ["rewind", "lr_rewind"]}, replicates=1 if smoke else 3,
                 plot_axis="retraining")
