"""Grokking tickets: Minegishi, Iwasawa & Matsuo (2023, arXiv 2310.19470), the MLP on (a + b) mod 67.

    lth run grokking_tickets --replicates 3 --root /work/exp/grok   # dense, ticket, five controls
    lth run grokking_tickets --variant smoke                        # tests: seconds

Setup (the reference code, gouki510/Grokking-Tickets: config/config.py, config/config_pruning.py,
train.py, prune.py, pruner.py, model.py, data_module.py):
  data      (a + b) mod 67 on the 2,278 unordered pairs a <= b, 40 % (911) train, 1,367 test, one
            fixed split (`lth.data.modular`; the reference reshuffles the split per seed)
  model     embed 67 -> 500, project 500 -> 48, ReLU, 48 -> 500, unembed 500 -> 67, no biases, all
            four matrices N(0, 1/fan_in) and prunable (`lth.models.modular`)
  training  AdamW lr 1e-3, betas (0.9, 0.98), decoupled weight decay 1.0, full batch (911), 10,000
            iterations per level, test accuracy every 100 iterations
  ticket    one level of global magnitude pruning over the four matrices at the end of the dense
            run (the generalised network, test accuracy ~100 %), rewound to init (iteration 0) and
            trained again with the same optimiser
  record    `first_test_95_iteration`: the first evaluated iteration with test accuracy >= 95 %
            (None: never within the 10,000)
Controls (`lth run` trains them at level 1, after the main line), each at the ticket's density:
  oneshot_early  magnitude pruning of the dense network at iteration 2,000 (memorised: train loss
                 ~1e-3, test accuracy < 1 %), rewound to init: the paper's memorisation-phase mask
  random_global  random pruning with the ticket's overall count (the reference's `Rand`, global)
  snip, grasp, synflow
                 pruning at initialisation, trained from init (the reference's SNIP, GraSP, SynFlow)

Where lth differs from the paper and its code:
  - The prune keeps 40 % of the weights (pruning.fraction 0.6). The reference's `sparsity = 0.4` is
    the fraction *kept*: its pruner (Tanaka et al.'s SynFlow code) zeroes the (1 - 0.4) N smallest
    scores. The issue's "40 % prune" would be pruning.fraction 0.4 (`--set pruning.fraction=0.4`).
  - The ticket trains with weight decay 1.0 like the dense network; the reference's
    config_pruning.py defaults to weight decay 0 for the pruned network (the paper also shows tickets
    grokking without weight decay).
  - SNIP and GraSP score on all 911 training pairs (score_samples_per_class 911: every pair of every
    class), as the reference scores its full-batch loader; SynFlow is lth's iterative SynFlow
    (`lth.sparsity.scores`), the reference runs one round (prune_loop with epochs=1).
  - The loss is float32 cross-entropy (the reference computes log-softmax in float64).
  - One split for all seeds; the seed changes the initialisation only.

Runtime on 2 CPU cores: see the measured outcome below.

Expected outcome (paper, Fig. 1 and its controls): the ticket reaches full test accuracy far sooner
than the dense network; masks from the memorisation phase and pruning at initialisation do not
speed generalisation up.
"""

from lth.spec.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig, replace

VARIANTS = ("default", "long", "smoke")
CONTROLS = ("oneshot_early", "random_global", "snip", "grasp", "synflow")
CONTROL_LEVELS = {"default": "1", "long": "1", "smoke": "1"}
TRAIN_PAIRS = 911  # 40 % of the 2,278 pairs a <= b of (a + b) mod 67: full batch


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="grokking_tickets",
        model="embed_mlp",
        data=DataConfig(name="modular_addition"),
        training=TrainingConfig(batch_size=TRAIN_PAIRS, length="10000it", eval_every="100it"),
        optimizer=OptimizerConfig(name="adamw", learning_rate=1e-3, weight_decay=1.0, b1=0.9, b2=0.98),
        pruning=PruningConfig(strategy="global", fraction=0.6, prunable=(r".*kernel",),
                              score_samples_per_class=TRAIN_PAIRS, oneshot_early_at="2000it"),
        levels=1,
        rewind="0it",
        seed=0,
    )
    if variant == "long":  # 20,000 iterations a level: for seeds whose dense network groks after 10,000
        config = replace(config, **{"training.length": "20000it"})
    elif variant == "smoke":
        config = replace(config, **{"training.length": "40it", "training.eval_every": "10it", "levels": 2,
                                    "pruning.oneshot_early_at": "20it"})
    return config
