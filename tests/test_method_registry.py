"""The contract of the method registry (`lth.spec.methods`): every entry runs in the compiled loop
without recompiling for a second density, keeps exact counts, refuses bad settings in one line, and
what derives from the registry (names, controls, mask updates, the CLI's help) matches it."""

from __future__ import annotations

import pytest
from helpers import backend_compiles, tiny_config

from lth.cli.parser import build_parser
from lth.errors import ConfigError
from lth.spec.checks import validate_config
from lth.spec.controls import SOURCES, parse_control
from lth.spec.methods import DYNAMIC, METHODS, REGISTRY, SPARSE_TRAINING, method_of_control

SPARSE = [name for name in METHODS if name != "imp"]
FAST = {"training.length": "40it", "sparse.dt": 10}


def test_what_derives_from_the_registry_matches_it():
    from lth.training.mask_updates import UPDATES

    assert set(UPDATES) == set(DYNAMIC) == {name for name, m in REGISTRY.items() if m.dynamic}
    assert set(SPARSE_TRAINING) <= set(SOURCES)
    for control in SPARSE_TRAINING:
        assert control in REGISTRY[method_of_control(control)].controls
        assert parse_control(control).source == control
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    assert all(f"{name}:" in help_text for name in METHODS)


@pytest.mark.parametrize("method", SPARSE)
def test_every_method_runs_compiled_once_with_exact_counts(method):
    """Two target densities in one process: the second compiles nothing, and each keeps exactly the
    counts its layer distribution asks for."""
    from lth.lottery import prepare
    from lth.lottery.methods import method_levels, target_counts
    from lth.lottery.setup import initial_mask, init_params

    config = tiny_config(method=method, **FAST, **{"sparse.densities": (0.3, 0.1)})
    setup = prepare(config)
    full = initial_mask(setup, init_params(setup)[0])
    outcomes = method_levels(setup)
    first = next(outcomes)
    with backend_compiles() as compiles:
        second = next(outcomes)
    assert compiles == [], f"{method} compiled {len(compiles)} program(s) for its second density"
    for outcome, density in ((first, 0.3), (second, 0.1)):
        want = target_counts(setup, full, density)
        assert outcome.record["weights_remaining"] == sum(want.values())
        assert outcome.record["method"] == method


@pytest.mark.parametrize("method", SPARSE)
@pytest.mark.parametrize("change, message", [
    ({"sparse.densities": (1.5,)}, "target density must be in (0, 1]"),
    ({"sparse.densities": ()}, "needs target densities"),
    ({"sparse.dt": 0, "sparse.densities": (0.2,)}, "mask update period dt"),
])
def test_every_method_refuses_bad_settings_in_one_line(method, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")) as caught:
        validate_config(tiny_config(method=method, **change))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("method", SPARSE)
def test_n_m_structure_only_where_the_registry_allows_it(method):
    config = tiny_config(method=method, **{"sparse.structure": "2:4"})
    if REGISTRY[method].structured:
        validate_config(config)
    else:
        with pytest.raises(ConfigError, match="N:M structure is not supported"):
            validate_config(config)
