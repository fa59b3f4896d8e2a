# meshgen developer entry points. `make test` and `make demo` work on a fresh clone: they create .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test testenv demo lint typecheck golden golden-update bench bench-reconcile clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## test: lint, layering contract, and the whole test suite (real Envoy / kube-apiserver tests included).
## The first run builds etcd + kube-apiserver with Go (~17 min cold on 2 cores; then cached in ~/.cache/meshgen).
test: $(STAMP) lint
	$(BIN)/python -m meshgen.testenv.binaries --if-possible
	$(BIN)/python -m pytest

## testenv: build (once) etcd and kube-apiserver and fetch Istio's CRDs into ~/.cache/meshgen (needs Go then)
testenv: $(STAMP)
	$(BIN)/python -m meshgen.testenv.binaries

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

## bench-reconcile: apply against a real kube-apiserver with 1,000 stored sandboxes over 100 hosts
bench-reconcile: $(STAMP) testenv
	$(BIN)/python bench/reconcile.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
