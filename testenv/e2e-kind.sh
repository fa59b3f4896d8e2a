#!/usr/bin/env bash
# make e2e-kind: one golden case's traffic on a real cluster (kind) with Istio installed by istioctl, for machines
# that have a Docker engine. Everything else in meshgen needs no Docker: `make test` already sends every golden
# case's traffic through real istiod (meshgen.testenv.istiomesh).
#
# UNVERIFIED: written without a Docker engine (meshgen's development and CI machines have none); it has never run.
# What it does: kind create cluster; istioctl install --set profile=minimal; sidecar injection on the case's
# namespaces; the case's baseline as written, then `meshgen install` + `meshgen apply` of its sandboxes; every
# Deployment (baseline and forks) re-pointed at the public python:3.11-slim image running meshgen's echo workload
# (mounted from a ConfigMap); a client pod with a sidecar; each traffic.yaml request sent from that client and
# compared with its expectation (testenv/e2e_kind.py). The cluster is deleted afterwards unless KEEP=1.
#
#   make e2e-kind                 # CASE=single-fork by default
#   CASE=route-group-three KEEP=1 make e2e-kind
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
skip() { echo "e2e-kind: skipped: $*"; exit 0; }
command -v docker >/dev/null 2>&1 || skip "docker is not installed (make test needs no Docker: it runs istiod locally)"
docker info >/dev/null 2>&1 || skip "no Docker engine answers ('docker info' failed); make test needs none"
for tool in kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not on PATH (https://kind.sigs.k8s.io, https://kubernetes.io/docs/tasks/tools/)"
done
PYTHON="${PYTHON:-.venv/bin/python}"
ISTIOCTL="$(command -v istioctl || "$PYTHON" -c 'from meshgen.testenv import binaries; print(binaries.find(binaries.ISTIOCTL) or "")')"
[[ -n "$ISTIOCTL" ]] || skip "istioctl not found (put it on PATH, or run make testenv)"
CLUSTER="${CLUSTER:-meshgen-e2e}"
CASE="${CASE:-single-fork}"
export KUBECONFIG="${TMPDIR:-/tmp}/meshgen-e2e-kind.kubeconfig"

kind create cluster --name "$CLUSTER" --wait 180s
[[ "${KEEP:-0}" == 1 ]] || trap 'kind delete cluster --name "$CLUSTER"' EXIT
"$ISTIOCTL" install --set profile=minimal -y
"$PYTHON" testenv/e2e_kind.py "golden/$CASE"
