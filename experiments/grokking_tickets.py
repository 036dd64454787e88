"""Grokking tickets: Minegishi, Iwasawa & Matsuo (2023, arXiv 2310.19470), the MLP on (a + b) mod 67.

    lth run grokking_tickets --replicates 3                 # dense, ticket, five controls (~30 min)
    lth run grokking_tickets --variant long --replicates 3  # 40,000 iterations a level, dense and ticket
    lth run grokking_tickets --variant smoke                # tests: seconds

Setup (the reference code, gouki510/Grokking-Tickets: config/config.py, config/config_pruning.py,
train.py, prune.py, pruner.py, model.py, data_module.py, utils.py):
  data      (a + b) mod 67 on the 2,278 unordered pairs a <= b, 40 % (911) train, 1,367 test, one
            fixed split (`lth.data.modular`; the reference reshuffles the split per seed)
  model     embed 67 -> 500, project 500 -> 48, ReLU, 48 -> 500, unembed 500 -> 67, no biases, all
            four matrices N(0, 1/fan_in) and prunable (`lth.models.modular`)
  training  AdamW lr 1e-3, betas (0.9, 0.98), decoupled weight decay 1.0, full batch (911), 10,000
            iterations per level (config.py's num_epochs for the MLP), test accuracy every 100
  ticket    one level of global magnitude pruning over the four matrices at the end of the dense
            run, rewound to init (iteration 0) and trained again with the same optimiser
  record    `first_test_95_iteration`: the first evaluated iteration with test accuracy >= 95 %
            (None: never within the level)
Controls (`lth run` trains them at level 1, after the main line), each at the ticket's density:
  oneshot_early  magnitude pruning of the dense network at iteration 2,000 (memorised: train loss
                 ~1e-3, test accuracy < 1 %), rewound to init: the paper's memorisation-phase mask
  random_global  random pruning with the ticket's overall count (the reference's `Rand`, global)
  snip, grasp, synflow
                 pruning at initialisation, trained from init (the reference's SNIP, GraSP, SynFlow)

Where lth differs from the paper and its code:
  - The prune keeps 40 % of the weights (pruning.fraction 0.6). The reference's `sparsity = 0.4` is
    the fraction *kept*: its pruner (Tanaka et al.'s SynFlow code) zeroes the (1 - 0.4) N smallest
    scores. The issue's "40 % prune" is pruning.fraction 0.4 (`--set pruning.fraction=0.4`).
  - The loss is float32 cross-entropy; the reference casts the logits to float64 first
    (utils.py `cross_entropy_high_precision`: float32 log-softmax "underflows on overly confident
    data"). Here the training loss reaches exactly 0.0 at times (seen in the metrics), when only the
    weight decay moves the weights. A suspect for the differences below, not tested.
  - The ticket trains with weight decay 1.0 like the dense network; the reference's
    config_pruning.py defaults to weight decay 0 for the pruned network.
  - The prune happens at the end of the level; the paper prunes its Fig. 1 network at ~48,000 of
    50,000 epochs, well after it generalised. Here that is the long variant.
  - SNIP and GraSP score on all 911 training pairs (score_samples_per_class 911), as the reference
    scores its full-batch loader; SynFlow is lth's iterative SynFlow (100 rounds), the reference's
    prune_loop runs one round. One data split for all seeds (the seed changes the init only).

Expected outcome (the paper's Fig. 1, in the reference's README, read off the plot, one run): the
dense network reaches ~full test accuracy at ~25,000 epochs; the grokking ticket (pruned at ~48,000)
within ~6,000; a ticket from the transition phase (~15,000) only at ~38,000.

Runtime and measured outcome (2 CPU cores shared with two other sessions, 2026-12-07;
first_test_95_iteration per seed 0 / 1 / 2, in brackets the final test accuracy where 95 % was never reached):
  default, 10,000 a level, 28.5 min for all 3 seeds and controls (load average 8-10):
    dense          7,400 / never (9.2 %) / never (1.1 %)
    ticket           400 / never (43.2 %) / never (9.3 %)
    oneshot_early  never (18.1 %) / never (1.5 %) / never (0.2 %)
    random_global, snip, grasp, synflow: never, <= 0.6 % in every seed
  --set training.length=20000it --seed 1 --replicates 2 --no-controls (seeds 1, 2; ~4 min):
    dense         19,200 / never (92.5 %);  ticket never (79.7 %) / never (93.3 %, best 94.6 %)
  long, 40,000 a level (dense and ticket; 11.9 min for 3 seeds, load average ~3):
    dense          7,400 / 19,200 / 21,600
    ticket         8,400 / never (1.9 %: it does not even fit the training set, train loss 0.02) /
                   23,400
  long --set pruning.fraction=0.4 --replicates 2 (the issue's 40 % prune, 60 % kept; 6.9 min, load ~3):
    dense          7,400 / 19,200;  ticket 5,100 / never (90.5 %)

Outcome: the paper's speed-up appears clearly once: seed 0's ticket, pruned 2,600 iterations after
its dense network generalised, reaches 95 % at iteration 400 instead of 7,400 (18x sooner), and no
control (memorisation-phase mask, random, SNIP, GraSP, SynFlow) generalises within 10,000 iterations
in any seed, as the paper reports. It is not robust here: pruned at 40,000 (well after every seed
generalised, as the paper's Fig. 1) the tickets are no faster (8,400 vs 7,400; 23,400 vs 21,600) or
never generalise (seed 1, whose 40 %-kept ticket does not even fit its training set; keeping 60 % it
fits, 90.5 %, and seed 0 gains a little, 5,100 vs 7,400). With 10,000 iterations (the reference
config's length) seeds 1 and 2 never generalise, so their "tickets" come from memorising networks
(the paper's non-grokking tickets) and do not generalise either. One run per seed and setting:
grokking times vary a lot between seeds (7,400 to 21,600 for the dense network).
"""

from lth.spec.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig, replace

VARIANTS = ("default", "long", "smoke")
_CONTROLS = ("oneshot_early", "random_global", "snip", "grasp", "synflow")
CONTROLS = {"default": _CONTROLS, "smoke": _CONTROLS}  # the long variant: dense and ticket only
CONTROL_LEVELS = {"default": "1", "smoke": "1"}
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
    if variant == "long":  # 40,000 iterations a level: pruned well after every seed's dense network generalised
        config = replace(config, **{"training.length": "40000it"})
    elif variant == "smoke":
        config = replace(config, **{"training.length": "40it", "training.eval_every": "10it", "levels": 2,
                                    "pruning.oneshot_early_at": "20it"})
    return config
