"""A non-editable install works outside the repository: `pip install <clone>` (not `-e`) into a fresh
venv ships the experiment files, and `lth experiments`, `lth.load_config`, `python -m lth` and `lth
--version` work from a directory that is not the repository.

Offline and fast (~10 s): the venv sees the dependencies of the running environment through a .pth
file, and pip builds lth with that environment's setuptools (--no-build-isolation --no-index --no-deps),
so nothing is downloaded. lth itself comes from the venv's own site-packages, never the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from helpers import ROOT

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# what `pip install <clone>` builds from: the files git tracks that the build reads
SOURCES = ["pyproject.toml", "setup.py", "README.md", "lth", "experiments"]


def _builds_wheels_alone() -> bool:
    """setuptools >= 70.1 builds a wheel without the `wheel` package (the `test` extra asks for it)."""
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)


def _dependency_dirs() -> list[str]:
    """The running environment's site-packages (where jax, numpy ... and setuptools are; `make`'s .venv
    lies inside the clone). Their .pth files are not read from a .pth line, so an editable install of
    lth there does not leak into the fresh venv (the test checks where lth comes from)."""
    return [p for p in sys.path if p and Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return {**env, "WANDB_MODE": "disabled", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ of a fresh venv with lth installed (not editable) from a copy of the repository."""
    if not _builds_wheels_alone():
        pytest.skip("building lth offline needs setuptools>=70.1 here (the test extra: pip install -e '.[test]')")
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "clone"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip()
    Path(purelib, "dependencies.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    proc = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--ignore-installed", str(source)],
                          capture_output=True, text=True, env=_clean_env(), cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    shutil.rmtree(source)  # nothing of the clone is left to find
    return env_dir / "bin"


def _run(bin_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], capture_output=True, text=True, env=_clean_env(),
                          cwd=cwd, timeout=120)


def test_the_installed_package_ships_the_experiments(installed, tmp_path):
    listed = _run(installed, ["lth", "experiments"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = listed.stdout.split()
    assert {"lenet300_mnist", "mlp_mnist1d", "pai_lenet300"} <= set(names)
    probe = ("import lth; from lth.spec.experiments import find_experiment, find_sweep\n"
             "print(lth.__file__); print(find_experiment('lenet300_mnist')); print(find_sweep('lenet300_rewinding'))\n"
             "print(lth.load_config('lenet300_mnist', 'quick').name)")
    proc = _run(installed, ["python", "-c", probe], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    package, experiment, sweep, name = proc.stdout.split("\n")[:4]
    venv_dir = installed.parent.resolve()
    assert Path(package).resolve().is_relative_to(venv_dir), package  # the installed copy, not the source tree
    assert Path(experiment).resolve().is_relative_to(venv_dir) and Path(sweep).resolve().is_relative_to(venv_dir)
    assert name == "lenet300_mnist"
    typo = _run(installed, ["lth", "run", "lenet300_mnsit", "--variant", "quick"], tmp_path)
    assert typo.returncode == 2 and "did you mean lenet300_mnist?" in typo.stderr, typo.stderr


def test_the_current_directorys_experiments_come_first(installed, tmp_path):
    mine = tmp_path / "experiments"
    mine.mkdir()
    (mine / "my_study.py").write_text("")
    (mine / "lenet300_mnist.py").write_text("")
    listed = _run(installed, ["lth", "experiments"], tmp_path)
    assert {"my_study", "lenet300_mnist", "mlp_mnist1d"} <= set(listed.stdout.split())
    probe = "from lth.spec.experiments import find_experiment; print(find_experiment('lenet300_mnist'))"
    proc = _run(installed, ["python", "-c", probe], tmp_path)
    assert Path(proc.stdout.strip()).resolve() == (mine / "lenet300_mnist.py").resolve(), proc.stderr


def test_python_dash_m_lth_and_the_version(installed, tmp_path):
    version = _run(installed, ["python", "-m", "lth", "--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"lth {VERSION}", version.stdout + version.stderr
    assert _run(installed, ["lth", "--version"], tmp_path).stdout.strip() == f"lth {VERSION}"
    listed = _run(installed, ["python", "-m", "lth", "experiments"], tmp_path)
    assert listed.returncode == 0 and "lenet300_mnist" in listed.stdout.split()


def test_no_experiments_found_is_said_not_silent(tmp_path, monkeypatch, capsys):
    """`lth experiments` where none are found: one line saying where it looked, exit 2 (not an empty list)."""
    import lth.spec.experiments as experiments
    from lth.cli import main

    monkeypatch.chdir(tmp_path)
    for where in ("REPO_EXPERIMENTS", "INSTALLED_EXPERIMENTS"):
        monkeypatch.setattr(experiments, where, tmp_path / "nowhere")
    assert main(["experiments"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("lth: error: no experiment files in ") and err.count("\n") == 1
    assert str(tmp_path / "nowhere") in err and str(tmp_path / "experiments") in err
