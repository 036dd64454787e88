"""Tiny configs shared by the tests."""

from lth.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig


def tiny_config(**changes) -> ExperimentConfig:
    """mlp_tiny on MNIST-1D: 35 iterations per level (3 epochs of batch 100 ... cut at 35), seconds."""
    config = ExperimentConfig(
        name="tiny",
        model="mlp_tiny",
        data=DataConfig(name="mnist1d"),
        training=TrainingConfig(batch_size=100, length="35it", eval_every="10it"),
        optimizer=OptimizerConfig(name="adam", learning_rate=1e-2),
        pruning=PruningConfig(fraction=0.3, layer_fractions=((r"output/kernel", 0.15),)),
        levels=2,
        rewind="0it",
        seed=0,
    )
    from lth.config import replace

    return replace(config, **changes) if changes else config
