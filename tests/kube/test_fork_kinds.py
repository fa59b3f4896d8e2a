"""Forks of every workload kind, and the policy copies that govern them, against a real kube-apiserver: the API
server stores what meshgen writes (Istio's CRD schemas, NetworkPolicy validation), the reconciler writes a fork's
policies before its pods and removes them with the sandbox, and a cluster without Argo Rollouts reads fine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshgen.kube import kinds
from meshgen.testenv import rollouts
from tests.kube.conftest import Cluster

pytestmark = pytest.mark.kube

SANDBOX = """\
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {name: NAME}
spec:
  routingKey: KEY
  forks: [FORKS]
"""

POLICIES = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-no-admin, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-strict, namespace: bookinfo}
spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: reviews-jwt, namespace: bookinfo}
spec: {selector: {matchLabels: {app: reviews}}, jwtRules: [{issuer: "https://issuer.example.com"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ratings-in, namespace: bookinfo}
spec:
  podSelector: {matchLabels: {app: ratings}}
  ingress: [{from: [{podSelector: {matchLabels: {app: reviews}}}], ports: [{port: 9080}]}]
"""

STORE = """\
apiVersion: v1
kind: Service
metadata: {name: store, namespace: bookinfo}
spec: {selector: {app: store}, ports: [{name: http, port: 8080}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: store, namespace: bookinfo}
spec:
  replicas: 3
  serviceName: store
  selector: {matchLabels: {app: store}}
  template:
    metadata: {labels: {app: store}}
    spec: {containers: [{name: store, image: "example/store:1"}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"""

ROLLOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: cart, namespace: bookinfo}
spec:
  replicas: 3
  selector: {matchLabels: {app: cart}}
  strategy: {canary: {steps: [{setWeight: 20}]}}
  template:
    metadata: {labels: {app: cart}}
    spec: {containers: [{name: cart, image: "example/cart:1"}]}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: bookinfo}
spec: {selector: {app: cart}, ports: [{name: http, port: 8080}]}
"""


def sandbox(name: str, *forks: str) -> str:
    return SANDBOX.replace("NAME", name).replace("KEY", name.replace("-", "")).replace("FORKS", ", ".join(forks))


def fork_of(kind: str, name: str) -> str:
    return f"{{forkOf: {{kind: {kind}, namespace: NS, name: {name}}}}}"


@pytest.fixture
def without_rollouts(cluster: Cluster) -> Iterator[Cluster]:
    """A cluster that does not serve Argo Rollouts (its CRD deleted if a case installed it)."""
    rollouts.uninstall(cluster.client())
    yield cluster


def test_policy_copies_are_stored_before_the_fork_and_removed_with_it(cluster: Cluster) -> None:
    cluster.create_baseline()
    cluster.create_baseline(POLICIES)
    name = f"{cluster.namespace}-p"
    report = cluster.apply(sandbox(name, fork_of("Deployment", "reviews-v1")))
    order = [c.ref.kind for c in report.changes]
    copies = {"AuthorizationPolicy": f"reviews-no-admin-reviews-v1-{name}",
              "PeerAuthentication": f"reviews-strict-reviews-v1-{name}",
              "RequestAuthentication": f"reviews-jwt-reviews-v1-{name}",
              "NetworkPolicy": f"ratings-in-peer-reviews-v1-{name}"}
    for kind, copy in copies.items():
        assert order.index(kind) < order.index("Deployment"), order  # governed before its pods exist
        stored = cluster.get(kind, copy)
        assert stored["metadata"]["labels"]["meshgen.dev/sandbox"] == name
    fork = cluster.get("Deployment", f"reviews-v1-{name}")
    selector = fork["spec"]["selector"]["matchLabels"]
    assert cluster.get("AuthorizationPolicy", copies["AuthorizationPolicy"])["spec"]["selector"]["matchLabels"] \
        == selector
    peer = cluster.get("NetworkPolicy", copies["NetworkPolicy"])["spec"]
    assert peer["podSelector"] == {"matchLabels": {"app": "ratings"}}
    assert peer["ingress"] == [{"from": [{"podSelector": {"matchLabels": selector}}], "ports": [{"port": 9080,
                                                                                                  "protocol": "TCP"}]}]
    assert cluster.pending() == []  # the server's defaults (NetworkPolicy protocol) are no change

    removed = [c.ref.kind for c in cluster.reconciler().delete("Sandbox", [name]).changes]
    for kind, copy in copies.items():
        assert removed.index(kind) > removed.index("Deployment"), removed  # removed after its pods
        assert not cluster.exists(kind, copy)


def test_a_statefulsets_fork_is_written_and_removed(cluster: Cluster) -> None:
    cluster.create_baseline()
    cluster.create_baseline(STORE)
    name = f"{cluster.namespace}-s"
    cluster.apply(sandbox(name, fork_of("StatefulSet", "store")))
    fork = cluster.get("StatefulSet", f"store-{name}")
    assert fork["spec"]["replicas"] == 1 and fork["spec"]["serviceName"] == f"store-{name}"
    assert fork["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    assert cluster.get("StatefulSet", "store")["spec"]["replicas"] == 3
    assert cluster.pending() == []
    cluster.reconciler().delete("Sandbox", [name])
    assert not cluster.exists("StatefulSet", f"store-{name}")


def test_a_cluster_without_rollouts_reads_and_applies(without_rollouts: Cluster) -> None:
    cluster = without_rollouts
    cluster.create_baseline()
    name = f"{cluster.namespace}-n"
    cluster.apply(sandbox(name, fork_of("Deployment", "reviews-v1")))
    assert cluster.exists("Deployment", f"reviews-v1-{name}")


def test_a_rollouts_fork_is_a_deployment(without_rollouts: Cluster) -> None:
    cluster = without_rollouts
    client = cluster.client()
    rollouts.install(client)
    try:
        cluster.create_baseline()
        cluster.create_baseline(ROLLOUT)
        name = f"{cluster.namespace}-r"
        cluster.apply(sandbox(name, fork_of("Rollout", "cart")))
        fork = cluster.get("Deployment", f"cart-{name}")
        assert fork["spec"]["replicas"] == 1
        assert fork["spec"]["template"]["spec"]["containers"][0]["image"] == "example/cart:1"
        assert cluster.exists("Service", f"cart-{name}")
        assert cluster.pending() == []
        cluster.reconciler().delete("Sandbox", [name])
        assert not cluster.exists("Deployment", f"cart-{name}")
        assert cluster.get(kinds.ROLLOUT.kind, "cart")["spec"]["replicas"] == 3  # never written
    finally:
        rollouts.uninstall(client)


def test_cluster_commands_default_a_namespace_like_kubectl(cluster: Cluster, tmp_path) -> None:
    """A forkOf without a namespace is in the kubeconfig context's namespace, or the first -n; meshgen apply
    stores the spec with it filled in, so every later reader finds the same workload."""
    import json

    cluster.create_baseline()
    config = json.loads(cluster.plane.kubeconfig.read_text())
    config["contexts"][0]["context"]["namespace"] = cluster.namespace
    scoped = tmp_path / "kubeconfig-scoped"
    scoped.write_text(json.dumps(config))
    name = f"{cluster.namespace}-d"
    spec = cluster.spec_file(sandbox(name, "{forkOf: {name: reviews-v1}}"))

    result = cluster.meshgen("apply", "-f", str(spec), kubeconfig=str(scoped))
    assert result.returncode == 0, result.stderr
    assert cluster.exists("Deployment", f"reviews-v1-{name}")
    stored = cluster.client().get(kinds.Ref("Sandbox", "", name))
    assert stored["spec"]["forks"][0]["forkOf"] == {"name": "reviews-v1", "namespace": cluster.namespace}

    # -n wins over the context (and the admin kubeconfig's context has no namespace: default, where nothing is)
    elsewhere = cluster.meshgen("diff", "-f", str(spec), "-n", "default")
    assert elsewhere.returncode == 2 and "Deployment default/reviews-v1 is not in the baseline" in elsewhere.stderr
    same = cluster.meshgen("diff", "-f", str(spec), "-n", cluster.namespace)
    assert same.returncode == 0, same.stdout + same.stderr
