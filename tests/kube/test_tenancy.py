"""Many tenants on one cluster (DESIGN invariants 8 and 9), on a real kube-apiserver.

- The policy is the platform's: CI identities bound to the printed RBAC cannot write it, cannot bring their own
  (``--policy``, or a MeshPolicy among ``-f``), and the API server itself refuses a Sandbox that breaks a
  guardrail, whoever writes it (the ValidatingAdmissionPolicy ``meshgen install`` generates).
- Failures stay with their tenant: sandboxes poisoned in every way that reaches a cluster are stored around
  meshgen; then 19 other tenants apply at once, as separate processes, and every one of them is routed, while
  each poisoned one is left out (no fork, no route) and says why in its status; ``get``, ``gc`` and ``delete``
  work throughout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from meshgen.kube import discovery, kinds, policies
from meshgen.kube.client import Forbidden, Invalid
from meshgen.kube.kinds import Ref
from meshgen.ownership import is_owned
from meshgen.plan import guardrails
from tests.kube.conftest import Cluster
from tests.kube.test_concurrency import run_all
from tests.kube.test_rbac import grant

pytestmark = pytest.mark.kube

TENANTS = 19
POLICY = """apiVersion: meshgen.dev/v1alpha1
kind: MeshPolicy
metadata: {name: platform}
spec:
  guardrails:
    allowedNamespaces: [NS]
    allowedRegistries: [registry.example.com]
    maxTTL: 1d
    requiredLabels: [team]
"""


def sandbox(name: str, workload: str = "reviews-v1", extra: str = "", labels: str = "{team: t}") -> str:
    return (f"apiVersion: meshgen.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: {name}, labels: {labels}}}\n"
            f"spec:\n  forks:\n  - forkOf: {{namespace: NS, name: {workload}}}\n{extra}")


def stored(cluster: Cluster, name: str, spec: dict[str, Any]) -> None:
    """Store a Sandbox around meshgen, as `kubectl apply` would (the API server's own checks still apply)."""
    cluster.client().create({"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox",
                             "metadata": {"name": name, "labels": {"team": "t"}}, "spec": spec})


def fork_of(cluster: Cluster, workload: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"forks": [{"forkOf": {"namespace": cluster.namespace, "name": workload}, **(extra or {})}]}


def reconciled(cluster: Cluster, name: str) -> dict[str, Any]:
    [condition] = cluster.get("Sandbox", name, "")["status"]["conditions"]
    return condition


# -- the policy is the platform's ----------------------------------------------------------------------------------

def test_ci_identities_neither_write_nor_choose_the_policy_and_the_api_server_enforces_it(cluster: Cluster,
                                                                                          tmp_path: Path) -> None:
    cluster.create_baseline()
    ns = cluster.namespace
    policy_file = tmp_path / "platform.yaml"
    policy_file.write_text(POLICY.replace("NS", ns))
    installed = cluster.meshgen("install", "--policy", str(policy_file))  # as the platform
    assert installed.returncode == 0, installed.stderr
    rbac = cluster.meshgen("install", "--print-rbac", "--group", "tenancy-ci")
    grant(cluster, rbac.stdout)
    bots = [str(cluster.plane.kubeconfig_for(f"{who}-{ns}", "tenancy-ci")) for who in ("job-a", "agent-b")]
    from meshgen.kube.client import Client

    for i, bot in enumerate(bots):
        client = Client.from_kubeconfig(bot)
        with pytest.raises(Forbidden, match='cannot create resource "meshpolicies"'):
            client.create({"apiVersion": "meshgen.dev/v1alpha1", "kind": "MeshPolicy", "metadata": {"name": "mine"},
                           "spec": {}})
        live = client.list(kinds.MESH_POLICY).items[0]  # reading it is allowed
        with pytest.raises(Forbidden, match='cannot patch resource "meshpolicies"'):
            client.patch(Ref.of(live), [{"op": "replace", "path": "/spec/guardrails", "value": {}}])
        with pytest.raises(Forbidden, match='cannot delete resource "meshpolicies"'):
            client.delete(Ref.of(live))

        mine = cluster.spec_file(sandbox(f"{ns}-ci{i}"))
        own_policy = cluster.spec_file("apiVersion: meshgen.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: mine}\n"
                                       "spec: {guardrails: {deniedNamespaces: []}}\n---\n" + mine.read_text())
        before = cluster.versions()
        in_specs = cluster.meshgen("apply", "-f", str(own_policy), kubeconfig=bot)
        assert in_specs.returncode == 2
        assert f"{own_policy}:2: kind: MeshPolicy mine cannot be applied with -f" in in_specs.stderr, in_specs.stderr
        lax = tmp_path / "lax.yaml"
        lax.write_text(POLICY.replace("NS", ns).replace("maxTTL: 1d", "maxTTL: 1w"))
        chosen = cluster.meshgen("apply", "-f", str(mine), "--policy", str(lax), kubeconfig=bot)
        assert chosen.returncode == 2
        assert "is not the cluster's MeshPolicy platform" in chosen.stderr
        assert "-    maxTTL: 1d\n+    maxTTL: 1w" in chosen.stderr, chosen.stderr  # the difference, stored -> given
        assert cluster.versions() == before, "nothing written"
        same = cluster.meshgen("apply", "-f", str(mine), "--policy", str(policy_file), kubeconfig=bot)
        assert same.returncode == 2 and "guardrail maxTTL (MeshPolicy platform): a sandbox must set spec.ttl" \
            in same.stderr, "insisting on the stored policy is allowed: then its guardrails apply"

        # kubectl-style: straight to the API server, around meshgen. Each violation is refused by the API server
        # with the message meshgen's own check gives.
        good = {"ttl": {"duration": "2h"}, **fork_of(cluster, "reviews-v1", {"customizations": {
            "images": [{"image": "registry.example.com/reviews:pr"}]}})}
        violations = [
            ({**good, "ttl": {"duration": "2d"}}, guardrails.ttl_too_long_message("platform", "2d", "1d")),
            ({k: v for k, v in good.items() if k != "ttl"}, guardrails.ttl_missing_message("platform")),
            ({**good, **fork_of(cluster, "reviews-v1", {"customizations": {"images": [
                {"image": "registry.example.com.evil.io/reviews:pr"}]}})},
             guardrails.registry_message("platform", "registry.example.com.evil.io/reviews:pr",
                                         ["registry.example.com"])),
            ({**good, "forks": [{"forkOf": {"namespace": "kube-system", "name": "coredns"}}]},
             guardrails.denied_namespace_message("platform", "kube-system")),
            ({**good, "virtual": [{"name": "v", "workload": {"namespace": "elsewhere", "name": "x"}}]},
             guardrails.namespace_not_allowed_message("platform", "elsewhere", [ns])),
        ]
        for spec, message in violations:
            body = {"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox",
                    "metadata": {"name": f"{ns}-raw{i}", "labels": {"team": "t"}}, "spec": spec}
            with pytest.raises(Invalid) as refused:
                client.create(body)
            assert "ValidatingAdmissionPolicy 'meshgen-guardrails'" in str(refused.value)
            assert message in str(refused.value), str(refused.value)
        unlabelled = {"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": f"{ns}-raw{i}"},
                      "spec": good}
        with pytest.raises(Invalid, match=re.escape(guardrails.missing_labels_message("platform", "sandbox",
                                                                                    f"{ns}-raw{i}", "team"))):
            client.create(unlabelled)
        assert not cluster.exists("Sandbox", f"{ns}-raw{i}", "")
        group = {"apiVersion": "meshgen.dev/v1alpha1", "kind": "RouteGroup", "metadata": {"name": f"{ns}-rg{i}"},
                 "spec": {"match": {"all": [{"label": {"key": "team", "value": "t"}}]}}}
        with pytest.raises(Invalid) as refused:
            client.create(group)
        assert "ValidatingAdmissionPolicy 'meshgen-guardrails-route-groups'" in str(refused.value)
        assert guardrails.missing_labels_message("platform", "route group", f"{ns}-rg{i}", "team") \
            in str(refused.value), str(refused.value)
        labelled = {**group, "metadata": {"name": f"{ns}-rg{i}", "labels": {"team": "t"}}}
        client.create(labelled, dry_run=True)  # the same route group with the label is admitted

        # meshgen refuses the same thing first, with the same words, file:line and nothing written
        too_long = cluster.spec_file(sandbox(f"{ns}-ci{i}", extra="  ttl: {duration: 2d}\n"))
        local = cluster.meshgen("apply", "-f", str(too_long), kubeconfig=bot)
        assert local.returncode == 2 and guardrails.ttl_too_long_message("platform", "2d", "1d") in local.stderr
        fine = cluster.spec_file(sandbox(f"{ns}-ci{i}", extra="  ttl: {duration: 2h}\n"))
        ok = cluster.meshgen("apply", "-f", str(fine), kubeconfig=bot)
        assert ok.returncode == 0, ok.stderr
    assert cluster.exists("Deployment", f"reviews-v1-{ns}-ci0") and cluster.exists("Deployment", f"reviews-v1-{ns}-ci1")


IMAGES = {  # allowedRegistries: registry.example.com, registry.example.com:5000/team, docker.io/library/nginx
    "registry.example.com/app:1": True,
    "registry.example.com.evil.io/app:1": False,     # another host that starts alike
    "registry.example.com:5000/app:1": False,        # another port
    "registry.example.com:5000/team/app:1": True,
    "registry.example.com:5000/team:1": True,        # the repository itself, tagged
    "registry.example.com:5000/teamx/app:1": False,
    "nginx:1.27": True,                              # Docker Hub's official image: docker.io/library/nginx
    "docker.io/nginx": True,
    "index.docker.io/library/nginx@sha256:" + "a" * 64: True,
    "library/nginx": True,
    "nginxx:1": False,
    "example/reviews": False,                        # docker.io/example/reviews
    "registry.example.com/App:1": False,             # not a reference: upper case in the repository path
    "registry.example.com/app:bad tag": False,
}


def test_the_api_server_matches_registries_on_reference_boundaries(cluster: Cluster, tmp_path: Path) -> None:
    policy = tmp_path / "registries.yaml"
    policy.write_text("apiVersion: meshgen.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: registries}\n"
                      'spec: {guardrails: {allowedRegistries: [registry.example.com, "registry.example.com:5000/team",'
                      " docker.io/library/nginx]}}\n")
    assert cluster.meshgen("install", "--policy", str(policy)).returncode == 0
    admin = cluster.client()
    verdicts = {}
    for i, image in enumerate(IMAGES):
        body = {"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox",
                "metadata": {"name": f"{cluster.namespace}-i{i}"},
                "spec": fork_of(cluster, "reviews-v1", {"customizations": {"images": [{"image": image}]}})}
        try:
            admin.create(body, dry_run=True)
            verdicts[image] = True
        except Invalid as exc:
            assert guardrails.registry_message("registries", image, ["registry.example.com",
                                               "registry.example.com:5000/team", "docker.io/library/nginx"]) in str(exc)
            verdicts[image] = False
    assert verdicts == IMAGES
    rules = policies.stored_policy(discovery.list_specs(admin))
    assert rules is not None
    assert {image: guardrails.image_allowed(rules.spec.guardrails, image) for image in IMAGES} == IMAGES, \
        "meshgen's own check agrees"


# -- failures stay with their tenant -------------------------------------------------------------------------------

def routes_point_at_forks(cluster: Cluster) -> list[str]:
    """The meshgen routes of every VirtualService in the namespace, each checked to send to a fork Service that
    exists and selects a fork Deployment that exists."""
    client = cluster.client()
    deployments = client.list(kinds.DEPLOYMENT, cluster.namespace).items
    names = []
    for vs in client.list(kinds.VIRTUAL_SERVICE, cluster.namespace).items:
        for route in vs["spec"]["http"]:
            if not str(route.get("name", "")).startswith("meshgen-") or route["name"] in ("meshgen-no-key",
                                                                                         "meshgen-default"):
                continue
            names.append(route["name"])
            for destination in route["route"]:
                host = destination["destination"]["host"].split(".")[0]
                if host in ("reviews", "ratings"):
                    continue  # a destination the sandbox does not fork (the v2 share of the split)
                service = cluster.get("Service", host)
                selector = service["spec"]["selector"]
                assert is_owned(service) and any(
                    selector.items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments
                ), f"route {route['name']} sends to {host}, which selects no fork"
    return sorted(names)


def test_poisoned_sandboxes_never_block_the_other_tenants(cluster: Cluster) -> None:
    cluster.create_baseline()
    ns = cluster.namespace
    admin = cluster.client()
    refuse_label = f"tenancy-{ns}/poison"
    admission = {  # a platform's own admission rule on Deployments, which meshgen knows nothing of
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": f"no-poison-{ns}"},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                         "operations": ["CREATE", "UPDATE"],
                                                         "resources": ["deployments"]}]},
                 "validations": [{"expression": f"!has(object.spec.template.metadata.labels) || !('{refuse_label}' "
                                                "in object.spec.template.metadata.labels)",
                                  "message": "poisoned pods are not allowed here"}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
               "metadata": {"name": f"no-poison-{ns}"},
               "spec": {"policyName": f"no-poison-{ns}", "validationActions": ["Deny"]}}
    admin.create(admission)
    admin.create(binding)
    try:
        _poison_then_19_tenants(cluster, refuse_label)
    finally:
        admin.delete(Ref.of(binding))
        admin.delete(Ref.of(admission))


def _poison_then_19_tenants(cluster: Cluster, refuse_label: str) -> None:
    ns = cluster.namespace
    admin = cluster.client()
    emptied, absurd, orphan, blocked, refused = (f"{ns}-{p}" for p in ("emptied", "absurd", "orphan", "blocked",
                                                                      "refused"))
    emptied_patch = {"customizations": {"patch": {"type": "merge", "value": {"spec": {"template": {"spec": {
        "containers": []}}}}}}}
    refused_patch = {"customizations": {"patch": {"type": "merge", "value": {"spec": {"template": {"metadata": {
        "labels": {refuse_label: "yes"}}}}}}}}

    # Through meshgen, the poisons that reach the cluster are refused before anything is stored: exit 2, the API
    # server's message (or meshgen's own), file:line.
    for name, extra in ((emptied, emptied_patch), (refused, refused_patch)):
        path = cluster.spec_file(sandbox(name, extra=f"    customizations: {json.dumps(extra['customizations'])}\n"))
        before = cluster.versions()
        result = cluster.meshgen("apply", "-f", str(path))
        assert result.returncode == 2, result.stderr
        assert f"{path}:" in result.stderr and "Traceback" not in result.stderr
        assert cluster.versions() == before, f"{name}: nothing stored, nothing written"
    assert "poisoned pods are not allowed here" in result.stderr

    # Around meshgen (kubectl, or valid when stored and broken since), each poison is stored.
    stored(cluster, emptied, fork_of(cluster, "reviews-v1", emptied_patch))          # a fork without containers
    stored(cluster, absurd, {"ttl": {"duration": "10000000w"}, **fork_of(cluster, "reviews-v1")})
    assert cluster.meshgen("apply", "-f", str(cluster.spec_file(sandbox(orphan, "ratings-v1")))).returncode == 0
    admin.delete(Ref("Deployment", ns, "ratings-v1"))                                # its workload deleted
    admin.create({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",  # an object in the way
                  "metadata": {"name": f"reviews-{blocked}", "namespace": ns}, "spec": {"host": "someone-else"}})
    stored(cluster, blocked, fork_of(cluster, "reviews-v1"))
    stored(cluster, refused, fork_of(cluster, "reviews-v1", refused_patch))          # refused by admission

    listed = cluster.meshgen("get", "sandboxes")
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith(absurd) for line in listed.stdout.splitlines())

    tenants = [f"{ns}-tenant{i:02d}" for i in range(TENANTS)]
    results = run_all([cluster.spawn("apply", "-f", str(cluster.spec_file(sandbox(t)))) for t in tenants])
    assert all(code == 0 for code, _, _ in results), [err for code, _, err in results if code]
    assert any("is not reconciled" in err for _, _, err in results), "the poisoned ones are named, as warnings"
    # The orphan's workload was deleted on a host no tenant shares: an apply reads only its own hosts, so the
    # orphan is left out by the next command on ratings, or by gc (from a CronJob), which finds it by its name.
    collected = cluster.meshgen("gc")
    assert collected.returncode == 0, collected.stderr

    assert routes_point_at_forks(cluster) == sorted(f"meshgen-{t}-0" for t in tenants)
    forks = sorted(o["metadata"]["name"] for o in admin.list(kinds.DEPLOYMENT, ns).items if is_owned(o))
    assert forks == sorted(f"reviews-v1-{t}" for t in tenants), "no fork of a poisoned sandbox"
    assert not cluster.exists("VirtualService", "meshgen-ratings"), "the orphan's routes are withheld"
    assert cluster.get("DestinationRule", f"reviews-{blocked}")["spec"] == {"host": "someone-else"}, "not touched"
    for tenant in tenants:
        assert reconciled(cluster, tenant)["status"] == "True"

    expected = {orphan: ("CompileFailed", "Deployment " + ns + "/ratings-v1 is not in the baseline"),
                blocked: ("ForeignObject", "is not managed by meshgen"),
                refused: ("WriteRefused", "poisoned pods are not allowed here"),
                absurd: ("InvalidSpec", "spec.ttl.duration: ")}
    for name, (reason, words) in expected.items():
        condition = reconciled(cluster, name)
        assert (condition["status"], condition["reason"]) == ("False", reason), condition
        assert words in condition["message"] and "routes withheld" in condition["message"]
        assert condition["observedGeneration"] == cluster.get("Sandbox", name, "")["metadata"]["generation"]
    emptied_condition = reconciled(cluster, emptied)  # meshgen's own pod-template check finds it before writing
    assert (emptied_condition["status"], emptied_condition["reason"]) == ("False", "CompileFailed")
    assert "containers" in emptied_condition["message"]

    table = cluster.meshgen("get", "sandboxes").stdout.splitlines()
    row = next(line.split() for line in table if line.startswith(refused + " "))
    assert row[2:4] == ["Failed", "WriteRefused"]
    as_yaml = cluster.meshgen("get", "sandbox", blocked, "-o", "yaml")
    assert "reason: ForeignObject" in as_yaml.stdout

    gc = cluster.meshgen("gc")
    assert gc.returncode == 0, gc.stderr
    deleted = cluster.meshgen("delete", emptied, absurd, orphan, blocked, refused)
    assert deleted.returncode == 0, deleted.stderr
    assert routes_point_at_forks(cluster) == sorted(f"meshgen-{t}-0" for t in tenants)
    assert cluster.pending() == []

