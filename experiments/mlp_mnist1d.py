"""An MLP on MNIST-1D: the lottery experiment of the MNIST-1D paper, as its notebook runs it
(greydanus/mnist1d, notebooks/lottery-tickets.ipynb; Greydanus & Kobak, ICML 2024).

As the notebook: MLP 40-500-500-10 with a residual middle layer and torch's default initialisation
(U(+-1/sqrt(fan_in)) for the weights and the biases of every Linear layer: `init="pytorch"`); Adam
2e-2, batch 100, 1,500 iterations per round, test accuracy every 100 iterations and reported at the
end of training (the notebook has no validation set: all 4,000 training sequences are trained on,
so the records have no early stop); magnitude pruning of each layer's weights *and biases together*
(one threshold per layer: `strategy="modulewise"`), rewinding to init. MNIST-1D is generated in
process (4,000 train / 1,000 test), no download.

Variants:

  default   5 % of the remaining weights per level, 45 levels (9.9 % left)
  notebook  the notebook's schedule: round L prunes L/99 of each layer (np.linspace(0, 1, 100)),
            98 rounds (the 99th and 100th would leave the output layer empty)
  quick     20 % per level, 10 levels
  smoke     tests: a few iterations, 2 levels

    lth run mlp_mnist1d --replicates 3           # 3 seeds, with the random-mask control
    lth run mlp_mnist1d --variant notebook

Departures from the notebook: batches are drawn in a fresh random order per epoch and level
(the notebook cycles through the training set in its stored order); pruned weights get no
gradient (the notebook re-zeroes them before every forward pass, so Adam's moments of pruned
weights move; the forward computation is the same).

Expected outcome (measured here: `lth run mlp_mnist1d --replicates 3`, seeds 0-2, with its
random_layerwise control; test accuracy at the end of training, mean +- sample std over the seeds):

  % weights left   ticket          random mask (same layer counts)
  100   (level 0)   64.1 +- 1.7 %   66.2 +- 0.7 %
   21.5 (level 30)  73.3 +- 0.5 %   71.3 +- 2.3 %
   12.9 (level 40)  71.1 +- 0.9 %   71.9 +- 2.5 %
    9.9 (level 45)  72.5 +- 0.9 %   67.7 +- 1.5 %

so around 90 % sparsity the tickets beat both the dense network (64.1 %) and random masks of the
same sparsity (67.7 %), the notebook's finding. The level-0 "control" is the dense network again:
its 2-point gap to level 0 is float rounding (the replicates trained in one-thread workers, the
controls in the two-thread main process; the losses agree to 1e-6 after 100 iterations, then
1,500 iterations of Adam at 2e-2 amplify the difference) and shows the seed-level noise of a
single round: compare tickets and controls over seeds, not one run.

Runtime (2 CPU cores, both measured beside a running test suite): a level of 1,500 iterations
takes ~3.3 s after the first (`--variant quick --levels 3`: 7.9, 5.8, 3.4, 3.3 s); the 3-seed run
above with its controls took 28 min wall (816 s of CPU).
"""

from lth.spec.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig, replace

VARIANTS = ("default", "notebook", "quick", "smoke")
# the notebook's random pruning is random_modulewise (each layer's weights and biases pooled);
# random_layerwise (the ticket's kernel/bias split) beside it shows what that choice is worth
CONTROLS = {"default": ("random_layerwise",), "notebook": ("random_modulewise", "random_layerwise"),
            "quick": ("random_layerwise",), "smoke": ("random_modulewise", "random_layerwise")}
# notebook: rounds 79, 89, 94, 96 are its "sparsity 0.80 / 0.90 / 0.95 / 0.97" rows (retrain #80, ...)
CONTROL_LEVELS = {"default": "0,20,30,40,44,45", "notebook": "0,79,89,94,96", "quick": "0,5,10", "smoke": "2"}


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="mlp_mnist1d",
        model="mlp_mnist1d",
        init="pytorch",
        data=DataConfig(name="mnist1d", validation_size=0),
        training=TrainingConfig(batch_size=100, length="1500it", eval_every="100it"),
        optimizer=OptimizerConfig(name="adam", learning_rate=2e-2),
        pruning=PruningConfig(strategy="modulewise", fraction=0.05, prunable=(r".*kernel", r".*bias")),
        levels=45,
        rewind="0it",
        seed=0,
    )
    if variant == "notebook":
        config = replace(config, **{"pruning.schedule": "linear", "pruning.fraction": 1 / 99, "levels": 98})
    elif variant == "quick":
        config = replace(config, **{"pruning.fraction": 0.2, "levels": 10})
    elif variant == "smoke":
        config = replace(config, **{"training.length": "30it", "training.eval_every": "10it", "levels": 2})
    return config
