# meshgen developer entry points. `make test` and `make demo` work on a fresh clone: they create .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck golden golden-update bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## test: lint, layering contract, and the whole test suite (real Envoy / kube-apiserver tests included)
test: $(STAMP) lint
	$(BIN)/python -m pytest

## demo: compile the bundled example and print the resources
demo: $(STAMP)
	$(BIN)/meshgen compile -f examples/sandboxes.yaml --baseline examples/baseline

## lint: ruff, mypy --strict and the import-layer contract (cli > golden/kube/testenv > compiler > backends > plan > spec)
lint: $(STAMP)
	$(BIN)/ruff check meshgen tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy meshgen

typecheck: $(STAMP)
	$(BIN)/mypy meshgen

golden: $(STAMP)
	$(BIN)/meshgen golden

## golden-update: rewrite golden expectations from the current compiler; review with git diff
golden-update: $(STAMP)
	$(BIN)/meshgen golden --update

## bench: compile-speed benchmark (10,000 sandboxes over 500 services)
bench: $(STAMP)
	$(BIN)/python bench/compile.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
