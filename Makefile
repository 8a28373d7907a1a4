# Two entry points for a fresh machine: `make demo` and `make test`.
# Both set up .venv idempotently (re-run pip only when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SNAKEMAKE := $(BIN)/snakemake --workflow-profile workflow/profiles/default
STAMP := $(VENV)/.neurodissect-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-slurm bench gpu-check report lint format clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: pip takes it from this machine's local wheels
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: setup
	# a lock left by a killed run (no snakemake alive here) is cleared; a live one stops make
	$(BIN)/python -m neurodissect.locks --clear .
	$(SNAKEMAKE)
	@echo "demo done: see results/synthderm/ (make report writes report.html)"

# lint first: a formatting or workflow-lint failure fails CI in seconds, before pytest
test: lint
	$(BIN)/python -m pytest

test-slurm: setup
	$(BIN)/python -m pytest -m slurm -p no:cacheprovider -n 0

bench: setup
	$(BIN)/python tests/benchmarks/run_all.py

# on a CUDA machine: the tiny DAG on the GPU, the kill-and-resume tests, the GPU benchmarks
gpu-check: setup
	$(BIN)/python tests/gpu_check.py

report: setup
	$(SNAKEMAKE) --report results/report.html

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(SNAKEMAKE) --lint

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .
