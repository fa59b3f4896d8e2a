"""Least privilege, on a real kube-apiserver: the RBAC `meshgen install --print-rbac` prints is exactly what
meshgen uses (proven from the apiserver's audit log), and a missing permission is reported as such."""

from __future__ import annotations

import json
import time
from pathlib import Path

from meshgen.documents import parse_documents
from tests.kube.conftest import Cluster


def sandbox(name: str, ttl: str | None = None) -> str:
    ttl_line = f"  ttl: {{duration: {ttl}}}\n" if ttl else ""
    return (f"apiVersion: meshgen.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: {name}}}\nspec:\n{ttl_line}"
            "  forks: [{forkOf: {namespace: NS, name: reviews-v1}}]\n")


def grant(cluster: Cluster, text: str, drop: tuple[str, str] | None = None) -> None:
    """Create the printed RBAC objects, renamed for this test (the control plane is shared by the session), and
    optionally without one verb on one resource."""
    for doc in parse_documents(text, "rbac"):
        body = doc.body
        body["metadata"]["name"] += f"-{cluster.namespace}"
        if "roleRef" in body:
            body["roleRef"]["name"] += f"-{cluster.namespace}"
        if drop is not None and body["kind"] == "ClusterRole":
            verb, resource = drop
            for rule in body["rules"]:
                if resource in rule["resources"]:
                    rule["verbs"] = [v for v in rule["verbs"] if v != verb]
        plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Role": "roles",
                  "RoleBinding": "rolebindings"}[body["kind"]]
        scope = f"namespaces/{body['metadata']['namespace']}/" if body["kind"].startswith("Role") else ""
        status, reply = cluster.plane.request("POST", f"/apis/rbac.authorization.k8s.io/v1/{scope}{plural}", body)
        assert status == 201, reply


def used_permissions(audit_log: Path, user: str) -> set[tuple[str, str, str]]:
    """(verb, apiGroup, resource) of every request ``user`` made, from the apiserver's audit log."""
    used = set()
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if event.get("user", {}).get("username") == user and ref.get("resource"):
            resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            used.add((event["verb"], ref.get("apiGroup", ""), resource))
    return used


def granted_permissions(text: str) -> set[tuple[str, str, str]]:
    granted = set()
    for doc in parse_documents(text, "rbac"):
        for rule in doc.body.get("rules") or []:
            granted |= {(v, g, r) for v in rule["verbs"] for g in rule["apiGroups"] for r in rule["resources"]}
    return granted


# A StatefulSet and one policy of each label-keyed kind selecting reviews: forks and copies meshgen writes.
GOVERNED = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: store, namespace: bookinfo}
spec:
  serviceName: store
  selector: {matchLabels: {app: store}}
  template: {metadata: {labels: {app: store}}, spec: {containers: [{name: store, image: "example/store:1"}]}}
---
apiVersion: v1
kind: Service
metadata: {name: store, namespace: bookinfo}
spec: {selector: {app: store}, ports: [{name: http, port: 8080}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap, namespace: bookinfo}
spec: {selector: {matchLabels: {app: reviews}}, action: DENY, rules: [{to: [{operation: {paths: [/a]}}]}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa, namespace: bookinfo}
spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ra, namespace: bookinfo}
spec: {selector: {matchLabels: {app: reviews}}, jwtRules: [{issuer: "https://a.example.com"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: bookinfo}
spec: {podSelector: {matchLabels: {app: reviews}}, ingress: [{ports: [{port: 9080}]}]}
"""
# How the baseline's policies change under the sandboxes (their copies are patched).
EDITS = {"AuthorizationPolicy": ("ap", "/spec/rules", [{"to": [{"operation": {"paths": ["/b"]}}]}]),
         "PeerAuthentication": ("pa", "/spec/mtls", {"mode": "PERMISSIVE"}),
         "RequestAuthentication": ("ra", "/spec/jwtRules", [{"issuer": "https://b.example.com"}]),
         "NetworkPolicy": ("np", "/spec/ingress", [{"ports": [{"port": 9081}]}])}

GROUP = """apiVersion: meshgen.dev/v1alpha1
kind: RouteGroup
metadata: {{name: {name}}}
spec: {{match: {{all: [{{label: {{key: flow, value: {value}}}}}]}}}}
"""


def test_the_printed_rbac_is_exactly_what_meshgen_uses(cluster: Cluster, tmp_path: Path) -> None:
    """A whole life cycle as a CI identity bound only to the printed role: every request is allowed, and every
    permission the role grants is used (but `get`, which serves re-reads after write conflicts)."""
    cluster.create_baseline()
    cluster.create_baseline(GOVERNED)
    rbac = cluster.meshgen("install", "--print-rbac", "--group", "rbac-exact")
    assert rbac.returncode == 0, rbac.stderr
    grant(cluster, rbac.stdout)
    user = f"exact-{cluster.namespace}"
    bot = str(cluster.plane.kubeconfig_for(user, "rbac-exact"))
    ns = cluster.namespace

    def run(*args: str) -> None:
        result = cluster.meshgen(*args, kubeconfig=bot)
        assert result.returncode in (0, 1), f"{args}: {result.stderr}"

    a, b, group = f"{ns}-a", f"{ns}-b", f"{ns}-g"
    specs = cluster.spec_file(
        sandbox(a).replace("metadata: {", "metadata: {labels: {flow: x}, ").replace(
            "name: reviews-v1}}]", "name: reviews-v1}}, {forkOf: {kind: StatefulSet, namespace: NS, name: store}}]")
        + "---\n"
        + sandbox(b, ttl="1s").replace("reviews-v1", "ratings-v1") + "---\n" + GROUP.format(name=group, value="x"))
    run("apply", "-f", str(specs))                         # creates: specs, forks, DR, owned VS, EnvoyFilter
    run("diff", "-f", str(specs))
    # (not "y": unquoted, kubectl reads y as the boolean true)
    changed = specs.read_text().replace("value: x}", "value: z}").replace(
        "name: reviews-v1}}", "name: reviews-v1}, customizations: {images: [{image: \"r:2\"}]}}").replace(
        "name: store}}", "name: store}, customizations: {images: [{image: \"s:2\"}]}}")
    run("apply", "-f", str(cluster.spec_file(changed)))     # patches: sandbox, route group, workloads, VS
    client = cluster.client()                               # the baseline changes under the sandboxes
    from meshgen.kube.kinds import Ref
    service = client.get(Ref("Service", ns, "reviews"))
    client.patch(Ref("Service", ns, "reviews"), [
        {"op": "test", "path": "/metadata/resourceVersion", "value": service["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/spec/ports/-", "value": {"name": "grpc", "port": 9090}}])
    for kind, (name, path, value) in EDITS.items():          # copies of the label-keyed policies are patched
        live = client.get(Ref(kind, ns, name))
        client.patch(Ref(kind, ns, name), [
            {"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
            {"op": "replace", "path": path, "value": value}])
    rule = client.get(Ref("DestinationRule", ns, "reviews"))
    client.patch(Ref("DestinationRule", ns, "reviews"), [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rule["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/spec/trafficPolicy", "value": {"loadBalancer": {"simple": "RANDOM"}}}])
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: meshgen.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: p2}\n"
                      "spec: {propagation: [{header: x-meshgen-routing-key}, {baggage: other-key}]}\n")
    # The platform changes the policy, and its install is cut short right after storing it: the next apply
    # carries the change to every host.
    from meshgen.compiler import read_policy
    from meshgen.kube import discovery, policies
    from meshgen.spec.loading import Specs
    policies.store(client, read_policy(str(policy), Specs())[0], discovery.list_specs(client))
    run("apply", "-f", str(cluster.spec_file(changed)), "--policy", str(policy))  # patches Service, DR, EnvoyFilter
    run("get", "sandboxes")
    run("get", "sandbox", a, "-o", "yaml")
    time.sleep(1.5)
    run("gc", "--policy", str(policy))                     # deletes b: its fork, DR-less Service, owned VS
    run("delete", "--kind", "RouteGroup", group, "--policy", str(policy))
    run("delete", a, "--policy", str(policy))              # restores the user VS, deletes the EnvoyFilter
    time.sleep(1)  # the audit log is written asynchronously

    used = used_permissions(cluster.plane.audit_log, user)
    granted = granted_permissions(rbac.stdout)
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    conflict_rereads = {p for p in granted if p[0] == "get"}
    assert granted - used <= conflict_rereads, f"granted but never used: {sorted(granted - used - conflict_rereads)}"


def test_a_missing_permission_is_named_not_a_traceback(cluster: Cluster) -> None:
    cluster.create_baseline()
    rbac = cluster.meshgen("install", "--print-rbac", "--group", "rbac-partial")
    grant(cluster, rbac.stdout, drop=("create", "deployments"))
    bot = str(cluster.plane.kubeconfig_for(f"partial-{cluster.namespace}", "rbac-partial"))
    path = cluster.spec_file(sandbox(f"{cluster.namespace}-c"))
    result = cluster.meshgen("apply", "-f", str(path), kubeconfig=bot)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert 'cannot create resource "deployments" in API group "apps"' in result.stderr
    assert "meshgen install --print-rbac" in result.stderr


def test_the_platform_rbac_is_enough_to_change_the_policy_and_reconcile_every_host(cluster: Cluster,
                                                                                   tmp_path: Path) -> None:
    """`meshgen install --print-rbac --platform` is what the platform's identity needs: storing a new MeshPolicy,
    the admission policy generated from it (and the dry-run probe that proves it enforced), and reconciling the
    stored sandboxes with it. Everything it uses is granted."""
    cluster.create_baseline()
    kept = sandbox(f"{cluster.namespace}-kept").replace("metadata: {", "metadata: {labels: {team: a}, ")
    cluster.apply(sandbox(f"{cluster.namespace}-p") + "---\n" + kept.replace("reviews-v1", "ratings-v1"))
    rbac = cluster.meshgen("install", "--print-rbac", "--platform", "--group", "rbac-platform")
    assert rbac.returncode == 0, rbac.stderr
    assert "name: meshgen-platform" in rbac.stdout and "name: rbac-platform" in rbac.stdout
    grant(cluster, rbac.stdout)
    user = f"platform-{cluster.namespace}"
    platform = str(cluster.plane.kubeconfig_for(user, "rbac-platform"))
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: meshgen.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: platform}\n"
                      "spec: {propagation: [{header: x-meshgen-routing-key}, {baggage: team-key}],\n"
                      "       guardrails: {requiredLabels: [team]}}\n")
    installed = cluster.meshgen("install", "--policy", str(policy), kubeconfig=platform)
    assert installed.returncode == 0, installed.stderr
    assert "meshpolicy.meshgen.dev/platform created" in installed.stderr
    assert "envoyfilter.networking.istio.io/meshgen-routing-key -n istio-system configured" in installed.stderr
    # a stored sandbox without a team label: the new guardrail leaves it out, with a warning, its routes withheld
    assert f"Sandbox {cluster.namespace}-p is not reconciled (GuardrailViolated)" in installed.stderr
    assert f"deployment.apps/reviews-v1-{cluster.namespace}-p -n {cluster.namespace} deleted" in installed.stderr
    assert f"Sandbox {cluster.namespace}-kept" not in installed.stderr
    time.sleep(1)  # the audit log is written asynchronously

    used = used_permissions(cluster.plane.audit_log, user)
    granted = granted_permissions(rbac.stdout)
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    assert {("create", "meshgen.dev", "meshpolicies"), ("delete", "meshgen.dev", "meshpolicies"),
            ("patch", "admissionregistration.k8s.io", "validatingadmissionpolicies"),
            ("create", "meshgen.dev", "sandboxes"),  # the admission probe (a dry run)
            ("update", "meshgen.dev", "sandboxes/status")} <= used
