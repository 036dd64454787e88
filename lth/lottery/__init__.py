"""The lottery: a run's setup, the pure IMP level generator (rewinding, retraining variants), the
controls (pure mask and start choices) and instability analysis (linear mode connectivity). Nothing
here writes a file: `lth.execution` wires these drivers to the run store, W&B and the terminal."""

from lth.lottery.levels import Hooks, LevelOutcome, Resume, level_record, lottery_levels, lottery_levels_together
from lth.lottery.setup import (
    RETRAINING,
    Setup,
    Start,
    build_setup,
    data_keys,
    data_level,
    init_params,
    initial_mask,
    prepare,
    retrained,
    start_step,
    validate_config,
    with_start,
)

__all__ = [
    "RETRAINING", "Hooks", "LevelOutcome", "Resume", "Setup", "Start", "build_setup", "data_keys", "data_level",
    "init_params", "initial_mask", "level_record", "lottery_levels", "lottery_levels_together", "prepare", "retrained",
    "start_step", "validate_config", "with_start",
]
