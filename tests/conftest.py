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
