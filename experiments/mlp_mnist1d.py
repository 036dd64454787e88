"""An MLP on MNIST-1D: the lottery experiment of the MNIST-1D paper (Greydanus & Kobak, ICML 2024).

MLP 40-500-500-10 with a residual middle layer; Adam 2e-2, batch 100, 1,500 iterations per level;
layerwise magnitude pruning of weights *and biases*, rewinding to init. MNIST-1D is generated in
process (4,000 train of which 500 are held out for validation, 1,000 test), no download.

The notebook prunes gradually over about 100 rounds; here the default prunes 5 % of the remaining
weights per level for 45 levels (10 % left) -- the same end point in fewer rounds. Set
`--levels 100 --prune-fraction 0.023` for the notebook's schedule.

    lth run mlp_mnist1d                      # 45 levels of 5 %
    lth run mlp_mnist1d --variant quick      # 10 levels of 20 %
    lth run mlp_mnist1d --variant smoke      # tests: a few iterations, 2 levels

Runtime on 2 CPU cores: the quick variant took 23 s (measured, 11 levels of ~1.3 s, the first with
compilation); the default's 46 levels take about a minute (estimated from that).

Expected outcome (MNIST-1D README / notebook): the dense MLP reaches roughly 68 % test accuracy
(measured with the quick variant: 67.3 % at the end of training; tickets at 10.7 % of the weights
66.8 %);
tickets near 90 % sparsity beat both the dense network and random masks of the same sparsity.
"""

from lth.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig, replace

VARIANTS = ("default", "quick", "smoke")


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="mlp_mnist1d",
        model="mlp_mnist1d",
        data=DataConfig(name="mnist1d"),
        training=TrainingConfig(batch_size=100, length="1500it", eval_every="100it"),
        optimizer=OptimizerConfig(name="adam", learning_rate=2e-2),
        pruning=PruningConfig(strategy="layerwise", fraction=0.05, prunable=(r".*kernel", r".*bias")),
        levels=45,
        rewind="0it",
        seed=0,
    )
    if variant == "quick":
        config = replace(config, **{"pruning.fraction": 0.2, "levels": 10})
    elif variant == "smoke":
        config = replace(config, **{"training.length": "30it", "training.eval_every": "10it", "levels": 2})
    return config
