"""Ingress mode token against a real kube-apiserver: meshgen reads the edge token from its Secret (by name, with a
Role granting exactly that), writes only its SHA-256, and never prints it — not in apply, diff or errors."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from meshgen.documents import parse_documents
from meshgen.errors import Location
from meshgen.kube import installing
from meshgen.kube.kinds import Ref
from meshgen.kube.reconciling import NewSpecs, Reconciler
from meshgen.spec.loading import load_specs
from meshgen.spec.models import MeshPolicy
from meshgen.validation import validate_model
from tests.kube.conftest import Cluster, EditsFirst
from tests.kube.test_rbac import grant, sandbox

TOKEN = "kube-edge-token-5e1f"


def test_the_edge_token_is_read_from_its_secret_and_never_printed(cluster: Cluster, tmp_path: Path) -> None:
    cluster.create_baseline()
    secret_name = f"edge-{cluster.namespace}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: meshgen.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: edge}\nspec:\n  ingress:\n"
        f"    mode: token\n    token: {{secretRef: {{namespace: istio-system, name: {secret_name}}}}}\n")
    spec = cluster.spec_file(sandbox(f"{cluster.namespace}-tok"))
    installed = cluster.meshgen("install", "--policy", str(policy))  # the platform's step
    assert installed.returncode == 0, installed.stderr
    missing = cluster.meshgen("apply", "-f", str(spec), "--policy", str(policy))
    assert missing.returncode == 2 and f"Secret istio-system/{secret_name}" in missing.stderr, missing.stderr

    cluster.client().create({"apiVersion": "v1", "kind": "Secret",
                             "metadata": {"name": secret_name, "namespace": "istio-system"},
                             "data": {"token": base64.b64encode(TOKEN.encode()).decode()}})
    rbac = cluster.meshgen("install", "--print-rbac", "--group", "edge-bots", "--policy", str(policy))
    assert f"resourceNames:\n  - {secret_name}" in rbac.stdout
    grant(cluster, rbac.stdout)
    bot = str(cluster.plane.kubeconfig_for(f"edge-{cluster.namespace}", "edge-bots"))

    outputs = []
    for args in (("diff", "-f", str(spec)), ("apply", "-f", str(spec)), ("diff", "-f", str(spec))):
        result = cluster.meshgen(*args, "--policy", str(policy), kubeconfig=bot)
        assert result.returncode in (0, 1), result.stderr
        outputs += [result.stdout, result.stderr]
    for text in outputs:
        assert TOKEN not in text and base64.b64encode(TOKEN.encode()).decode() not in text
    envoy_filter = cluster.client().get(Ref("EnvoyFilter", "istio-system", "meshgen-routing-key"))
    gateway = next(p for p in envoy_filter["spec"]["configPatches"] if p["match"]["context"] == "GATEWAY")
    lua = gateway["patch"]["value"]["typed_config"]["default_source_code"]["inline_string"]
    assert hashlib.sha256(TOKEN.encode()).hexdigest() in lua and TOKEN not in lua
    assert cluster.meshgen("delete", f"{cluster.namespace}-tok", "--policy", str(policy)).returncode == 0


def test_a_write_conflict_in_token_mode_recomputes_with_the_secret(cluster: Cluster) -> None:
    """The conflict path replans a user's VirtualService from its fresh live object; the edge token's Secret
    (read apart from the listed objects) must still be part of that baseline."""
    cluster.create_baseline()
    secret_name = f"edge2-{cluster.namespace}"
    admin = cluster.client()
    admin.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name, "namespace": "istio-system"},
                  "stringData": {"token": TOKEN}})
    policy = validate_model(MeshPolicy, {
        "apiVersion": "meshgen.dev/v1alpha1", "kind": "MeshPolicy", "metadata": {"name": "edge"},
        "spec": {"ingress": {"mode": "token", "token": {"secretRef": {"namespace": "istio-system",
                                                                      "name": secret_name}}}}}, Location("p"))
    installing.install(admin, policy)
    client = EditsFirst(admin, Ref("VirtualService", cluster.namespace, "reviews"))
    name = f"{cluster.namespace}-c"
    docs = parse_documents(sandbox(name).replace("NS", cluster.namespace), "s.yaml")
    Reconciler(client, policy).apply(NewSpecs(load_specs(docs), tuple(d.body for d in docs)))
    assert client.edited
    assert cluster.get("VirtualService", "reviews")["spec"]["http"][1]["timeout"] == "7s"
    Reconciler(admin, policy).delete("Sandbox", [name])
