"""The architecture holds: layers import only downwards (import-linter), ruff is clean, and modules
and functions stay small. A circle or an upward import fails here, so it fails CI."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODULE_LINES = 320  # "~300": every module of lth/ is at most this long
FUNCTION_LINES = 60  # code lines of a function, its docstring not counted


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_the_contracts_are_kept():
    """The layers, and jax-free `spec` and `plans`."""
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def _broken_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the package where `module` (a path under lth/) also has `line`."""
    shutil.copytree(ROOT / "lth", tmp_path / "lth", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "lth" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    return _lint_imports(tmp_path)


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract is not vacuous: a copy of the package where the sparsity layer imports a job (an
    upward import) fails it."""
    result = _broken_copy(tmp_path, "sparsity/masks.py", "import lth.jobs.lottery  # an upward import")
    assert result.returncode != 0
    assert "lth.sparsity.masks -> lth.jobs.lottery" in result.stdout


@pytest.mark.parametrize("module, line", [("spec/parse.py", "import jax.numpy"),
                                          ("spec/config.py", "from lth.rng import stream"),
                                          ("plans/__init__.py", "import lth.training.optim")])
def test_a_heavy_import_under_spec_or_plans_breaks_the_contract(tmp_path, module, line):
    """`spec` and `plans` stay jax-free by contract, directly or through another module."""
    result = _broken_copy(tmp_path, module, line)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and ("jax" in result.stdout or "lth.rng" in result.stdout)


def test_the_top_of_the_package_is_foundations_only():
    """Every concern lives in a layer folder: at the top of lth/ only `__init__`, `errors`, `rng` and
    `__main__` (`python -m lth`)."""
    assert sorted(p.name for p in (ROOT / "lth").glob("*.py")) == ["__init__.py", "__main__.py", "errors.py", "rng.py"]


def test_ruff_is_clean():
    result = subprocess.run([str(BIN / "ruff"), "check", "lth", "tests", "benchmarks", "experiments"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
            and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


@pytest.mark.parametrize("path", sorted((ROOT / "lth").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MODULE_LINES, f"{path.name}: split it by concern"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert _code_lines(node) <= FUNCTION_LINES, f"{path.name}:{node.lineno} {node.name}: split it"
