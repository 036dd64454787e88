"""Signs and learning-rate rewinding (Gadhikar & Burkholz 2024): the per-level sign records against
NumPy, the sign-perturbation control's start weights against a hand-worked and a NumPy
recomputation, its refusals, and the experiment's smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from lth import rng
from lth.errors import ConfigError
from lth.lottery import init_params, lottery_levels, prepare
from lth.lottery.controls import LevelInputs, control_start, parse_control
from lth.sparsity.masks import named_leaves
from lth.sparsity.signs import SIGN_FLIP_FRACTION, flip_signs, perturb_signs, sign_flip_draws


def np_leaves(tree):
    return {k: np.asarray(v) for k, v in named_leaves(tree).items() if v is not None}


def np_agreement(a, b, mask):
    """Fraction of kept weights with the same sign in a and b, pooled over the prunable leaves."""
    a, b = np_leaves(a), np_leaves(b)
    same = [np.sign(a[k][m]) == np.sign(b[k][m]) for k, m in np_leaves(mask).items()]
    return np.concatenate(same).mean()


@pytest.fixture(scope="module", params=["rewind", "lr_rewind"])
def line(request):
    setup = prepare(tiny_config(levels=2, retraining=request.param))
    return setup, list(lottery_levels(setup)), init_params(setup)


def test_levels_record_sign_agreement_with_init_and_with_the_previous_level(line):
    setup, outcomes, (params0, _) = line
    assert "sign_agreement_with_previous" not in outcomes[0].record
    for level in (1, 2):
        record, mask = outcomes[level].record, outcomes[level].mask
        final, previous = outcomes[level].state.params, outcomes[level - 1].state.params
        assert record["sign_agreement_with_previous"] == pytest.approx(np_agreement(previous, final, mask), abs=1e-12)
        assert record["sign_agreement_with_init"] == pytest.approx(np_agreement(params0, final, mask), abs=1e-12)
        assert 0.5 < record["sign_agreement_with_previous"] < 1.0  # some flips in 35 iterations, not most


def test_hand_worked_flip():
    params = {"l": {"kernel": jnp.array([1.0, -2.0, 3.0, 4.0]), "bias": jnp.array([5.0])}}
    mask = {"l": {"kernel": jnp.array([True, True, True, False]), "bias": None}}
    flips = {"l": {"kernel": jnp.array([False, True, True, False]), "bias": None}}
    out = flip_signs(params, flips)
    np.testing.assert_array_equal(out["l"]["kernel"], [1.0, 2.0, -3.0, 4.0])
    np.testing.assert_array_equal(out["l"]["bias"], [5.0])
    # a draw never touches a pruned weight or an unmasked leaf
    draws = sign_flip_draws(mask, 1.0, jax.random.key(0))
    np.testing.assert_array_equal(draws["l"]["kernel"], [True, True, True, False])
    assert draws["l"]["bias"] is None
    np.testing.assert_array_equal(perturb_signs(params, mask, jax.random.key(0), 1.0)["l"]["kernel"],
                                  [-1.0, 2.0, -3.0, 4.0])


def test_draws_flip_about_the_fraction_of_kept_weights_only():
    mask = {"a": {"kernel": jnp.arange(20_000).reshape(100, 200) % 3 != 0}, "b": {"kernel": jnp.ones((50, 40), bool)}}
    draws = np_leaves(sign_flip_draws(mask, SIGN_FLIP_FRACTION, jax.random.key(3)))
    for name, m in np_leaves(mask).items():
        assert not draws[name][~m].any()
        n = m.sum()  # binomial: within 5 standard deviations of 0.3 n
        assert abs(draws[name][m].sum() - 0.3 * n) < 5 * np.sqrt(0.3 * 0.7 * n), name
    # the leaves draw independently (not one pattern repeated)
    assert not np.array_equal(draws["a/kernel"][:50, :40], draws["b/kernel"])


@pytest.mark.parametrize("level", [1, 2])
def test_signflip_start_is_the_lines_start_with_flipped_signs(line, level):
    """WR: the rewind point under level L's mask; LRR: level L-1's trained weights under it; then
    exactly the drawn kept weights negated (NumPy), biases untouched, a fresh optimiser."""
    setup, outcomes, (params0, state0) = line
    mask = outcomes[level].mask
    lrr = setup.config.retraining == "lr_rewind"
    start_from = (outcomes[level - 1].state.params, outcomes[level - 1].state.model_state) if lrr else (params0, state0)
    inputs = LevelInputs(level, mask, outcomes[0].mask, start=start_from)
    start = control_start(setup, parse_control("imp+signflip"), level, mask, params0, state0, (params0, state0), inputs)
    draws = np_leaves(sign_flip_draws(mask, 0.3, rng.stream(setup.config.seed, "signflip", level)))
    source, got, masks = np_leaves(start_from[0]), np_leaves(start.params), np_leaves(mask)
    for name, value in got.items():
        if name in masks:
            expected = np.where(masks[name], np.where(draws[name], -source[name], source[name]), 0.0)
            np.testing.assert_array_equal(value, expected)
            assert 0.2 < draws[name][masks[name]].mean() < 0.4
        else:
            np.testing.assert_array_equal(value, source[name])
    assert int(start.step) == setup.rewind_step
    # the unperturbed control start (same mask, same start) differs only by these signs
    plain = control_start(setup, parse_control("imp+shuffle"), level, mask, params0, state0, (params0, state0), inputs)
    agreement = np_agreement(plain.params, start.params, mask)
    flipped = sum(int(draws[k][m].sum()) for k, m in masks.items()) / sum(int(m.sum()) for m in masks.values())
    assert agreement == pytest.approx(1 - flipped)


@pytest.mark.parametrize("text", ["imp+reinit+signflip", "snip+signflip", "magnitude_init+signflip"])
def test_signflip_of_fresh_weights_is_refused_in_one_line(text):
    with pytest.raises(ConfigError, match="random signs already") as error:
        parse_control(text)
    assert "\n" not in str(error.value)


def test_signflip_is_allowed_with_lr_rewinding():
    from lth.spec.controls import check_retraining

    for retraining in ("rewind", "lr_rewind", "finetune"):
        check_retraining(parse_control("signflip"), retraining)  # no error
    assert parse_control("signflip").name == "imp+signflip"


def test_the_experiments_lrr_smoke_runs_with_the_control(tmp_path, capsys):
    """The LRR line (its control starts from trained weights); the WR smoke runs in test_experiments."""
    from lth.cli import main
    from lth.spec.experiments import load_experiment

    assert load_experiment("lenet300_signs").controls == ("imp+signflip",)
    for variant in ("smoke_lrr",):
        code = main(["run", "lenet300_signs", "--variant", variant, "--runs", str(tmp_path / variant),
                     "--no-progress", "--wandb", "disabled"])
        assert code == 0, capsys.readouterr().err
        (run,) = list((tmp_path / variant).iterdir())
        main_records = json.loads((run / "replicate_00" / "results.json").read_text())
        assert all("sign_agreement_with_previous" in r for r in main_records[1:])
        (control,) = json.loads((run / "replicate_00" / "controls" / "imp+signflip" / "results.json").read_text())
        assert control["level"] == 2 and control["weights_remaining"] == main_records[2]["weights_remaining"]


def test_the_sweep_is_wr_against_lrr_with_the_control_three_seeds():
    from lth.sweeps.file import load_sweep

    plan = load_sweep("lenet300_signs")
    assert len(plan.cells) == 6 and plan.controls == ("imp+signflip",) and plan.control_levels == "4,8,11,12"
    assert sorted({(c.config.retraining, c.config.seed) for c in plan.cells}) == [
        (r, s) for r in ("lr_rewind", "rewind") for s in (0, 1, 2)]
    setups = {(c.config.levels, c.config.optimizer.schedule, c.config.rewind) for c in plan.cells}
    assert setups == {(12, "cosine", "0it")}
    smoke = load_sweep("lenet300_signs", "smoke")
    assert len(smoke.cells) == 2 and smoke.control_levels == "2"
