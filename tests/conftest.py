"""Test setup: offline, W&B mode set explicitly, data cached in a per-session directory."""

import os

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("XLA_FLAGS", "")
# the user's compilation cache stays untouched: the suite shares one of its own (`_compile_cache`)
os.environ["LTH_CACHE"] = "off"

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run slow reproduction tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("LTH_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow reproduction run: set LTH_SLOW=1 or pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory):
    """One dataset cache for the session; the user's cache is never touched."""
    path = tmp_path_factory.mktemp("lth-data")
    old = os.environ.get("LTH_DATA")
    os.environ["LTH_DATA"] = str(path)
    yield path
    if old is None:
        os.environ.pop("LTH_DATA", None)
    else:
        os.environ["LTH_DATA"] = old


@pytest.fixture(scope="session", autouse=True)
def _compile_cache(tmp_path_factory):
    """One persistent compilation cache for the whole suite, its worker processes (pytest-xdist) and
    the processes tests start: a program compiled once is loaded after (as on a user's machine)."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "lth-compile-cache"
    os.environ["LTH_CACHE"] = str(path)
    yield path
    os.environ["LTH_CACHE"] = "off"


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("LTH_RUNS", str(path))
    return path


@pytest.fixture(scope="session")
def finished_tiny_run(tmp_path_factory, _data_dir, _compile_cache):
    """(run directory, records) of one finished run of `helpers.tiny_config()` (2 levels, wandb disabled),
    trained once per test process for the tests that only read it: a test that changes a run copies
    it first (`copy_run`)."""
    from helpers import tiny_config

    from lth.jobs.lottery import run_lottery

    root = tmp_path_factory.mktemp("finished-tiny-run")
    records = run_lottery(tiny_config(), runs_root=root, progress=False, wandb="disabled")
    (run,) = list(root.iterdir())
    return run, records
