# `make run` / `make test` bootstrap .venv on a fresh machine (Python 3.11+, PyPI), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow bench clean-venv

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)  ## the README's run command: LeNet-300-100 lottery on the embedded MNIST digits
	$(BIN)/lth run lenet300_mnist --variant quick

TEST_WORKERS ?= 2
test: $(STAMP)  ## the README's test command (slow reproduction runs skipped; test files spread over TEST_WORKERS processes)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

test-slow: $(STAMP)
	WANDB_MODE=disabled LTH_SLOW=1 $(BIN)/python -m pytest -q -m slow

bench: $(STAMP)  ## the speed figures side by side (~2 min): peak and throughput, PyTorch (if installed), level time
	$(BIN)/python benchmarks/throughput.py
	@if $(BIN)/python -c "import torch" 2>/dev/null; then $(BIN)/python benchmarks/torch_baseline.py; \
	else echo "(PyTorch comparison skipped: install it with  $(BIN)/pip install -e '.[torch]')"; fi
	$(BIN)/python benchmarks/level_time.py --variant quick --levels 6

.PHONY: notebook
NB_STAMP := $(VENV)/.notebook-installed

$(NB_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[notebook]'
	touch $(NB_STAMP)

notebook: $(NB_STAMP)  ## JupyterLab on notebooks/ in the project's venv (the `notebook` extra, installed on first use)
	LTH_RUNS="$${LTH_RUNS:-$(CURDIR)/runs}" $(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
