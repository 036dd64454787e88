"""The notebooks run top to bottom (a failing cell fails the test) on the embedded data, with W&B
disabled and the runs in a temporary root; they are committed without outputs, and compute only
through the package (no functions of their own)."""

import ast
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lth.store import list_runs

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT = 300  # seconds, per notebook (and per cell)
ALLOWED_IMPORTS = {"lth", "IPython", "tempfile", "pathlib"}


def _ids(path: Path) -> str:
    return path.name


def test_the_notebooks_are_there_and_each_is_in_the_readme_table():
    assert {"01_quickstart.ipynb", "02_explore_runs.ipynb"} <= {p.name for p in NOTEBOOKS}
    table = (ROOT / "notebooks" / "README.md").read_text()
    assert [p.name for p in NOTEBOOKS if f"| `{p.name}` |" not in table] == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs(path, tmp_path, monkeypatch, record_property):
    runs = tmp_path / "runs"
    monkeypatch.setenv("LTH_RUNS", str(runs))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert os.environ.get("LTH_DATA"), "conftest sets the session's data cache"
    nb = nbformat.read(path, as_version=4)
    # which interpreter and environment the kernel got
    nb.cells.append(nbformat.v4.new_code_cell("import os, sys\nprint(sys.prefix)\nprint(os.environ['LTH_RUNS'])"))
    client = NotebookClient(nb, kernel_name="python3", timeout=TIMEOUT, resources={"metadata": {"path": str(tmp_path)}})
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError at the first cell that fails
    seconds = time.perf_counter() - started
    record_property("seconds", round(seconds, 1))
    print(f"{path.name}: {seconds:.1f} s")

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream").split()
    assert printed == [sys.prefix, str(runs)], "the kernel must be this environment's Python, with LTH_RUNS set"
    assert list_runs(runs), "the notebook's runs went to $LTH_RUNS"
    assert seconds < TIMEOUT


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count: clear outputs"
    assert "widgets" not in nb.metadata, f"{path.name} holds widget state: clear outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_computes_only_through_the_package(path):
    """No functions or classes defined in a notebook, and imports only of lth (plus display helpers)."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)), (
                f"{path.name} cell {i} defines a function or class: move it into lth/ (with a test)")
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, f"{path.name} cell {i} imports {roots - ALLOWED_IMPORTS}"


def test_what_a_notebook_opened_in_place_writes_is_ignored_by_git():
    """A notebook opened in notebooks/ without LTH_RUNS writes notebooks/runs/ (and W&B files)."""
    import subprocess

    ignored = subprocess.run(["git", "check-ignore", "notebooks/runs/x/config.json", "notebooks/wandb/x"],
                             cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == ["notebooks/runs/x/config.json", "notebooks/wandb/x"], ignored.stderr
