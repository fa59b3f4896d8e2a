"""The reconciler's pure parts: ordering rules, diffing and fencing, CRD schemas, TTLs, binary lookup."""

from __future__ import annotations

import datetime
import graphlib
import random
from typing import Any

import pytest

from meshgen.backends import BACKENDS
from meshgen.backends.backend import DELETE, UPSERT, Backend
from meshgen.kube import crds, diffing, discovery, indexes, ordering, storing
from meshgen.kube.diffing import Action, Change, ForeignObject
from meshgen.kube.kinds import Ref
from meshgen.ownership import (
    ANNOTATION_COMPUTED_FROM,
    ANNOTATION_DESIRED_HASH,
    ANNOTATION_ROUTES,
    ANNOTATION_UPDATED_AT,
    MANAGED_BY,
)
from meshgen.spec import names
from meshgen.testenv import binaries

OWNED = {MANAGED_BY: "meshgen"}


def obj(kind: str, name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": "5"}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, **extra}


def change(action: Action, kind: str, name: str = "x") -> Change:
    body = obj(kind, name, OWNED)
    return Change(action, Ref.of(body), None if action is Action.DELETE else body,
                  None if action is Action.CREATE else body)


# -- ordering ----------------------------------------------------------------------------------------------------

CLUSTER_BACKENDS = [b for b in BACKENDS.values() if b.cluster]


@pytest.mark.parametrize("backend", CLUSTER_BACKENDS, ids=[b.name for b in CLUSTER_BACKENDS])
@pytest.mark.parametrize("target", ["Deployment", "Service", "DestinationRule", "EnvoyFilter"])
def test_routes_are_added_after_and_removed_before_what_they_point_to(backend: Backend, target: str) -> None:
    rank = ordering.ranks(backend.order)
    assert backend.routes
    for routes in backend.routes:
        assert rank[(UPSERT, target)] < rank[(UPSERT, routes)]
        assert rank[(DELETE, routes)] < rank[(DELETE, target)]
        assert rank[(UPSERT, routes)] < rank[(DELETE, target)]


def test_ordering_is_deterministic_whatever_the_input_order() -> None:
    changes = [change(Action.CREATE, k, n) for k in ("VirtualService", "Service", "Deployment") for n in "ba"]
    changes += [change(Action.DELETE, k, "old") for k in ("Deployment", "VirtualService", "Service")]
    rules = BACKENDS["istio"].order
    expected = ordering.ordered(changes, rules)
    for seed in range(5):
        random.Random(seed).shuffle(changes)
        assert ordering.ordered(changes, rules) == expected
    assert [(c.action.value, c.ref.kind, c.ref.name) for c in expected] == [
        ("create", "Deployment", "a"), ("create", "Deployment", "b"), ("create", "Service", "a"),
        ("create", "Service", "b"), ("create", "VirtualService", "a"), ("create", "VirtualService", "b"),
        ("delete", "VirtualService", "old"), ("delete", "Service", "old"), ("delete", "Deployment", "old"),
    ]


def test_a_cyclic_rule_table_is_rejected() -> None:
    with pytest.raises(graphlib.CycleError):
        ordering.ranks([(("upsert", "A"), ("upsert", "B")), (("upsert", "B"), ("upsert", "A"))])


# -- diffing and fencing -------------------------------------------------------------------------------------------

def test_owned_objects_compare_by_desired_hash_not_by_server_defaults() -> None:
    desired = diffing.decorate(obj("Deployment", "f", OWNED, spec={"replicas": 1}), "10")
    live = diffing.decorate(obj("Deployment", "f", OWNED, spec={"replicas": 1}), "7")
    live["spec"]["revisionHistoryLimit"] = 10  # a server default
    assert diffing.change_for(desired, live) is None, "defaults and the fencing annotation are not changes"
    assert ANNOTATION_DESIRED_HASH in desired["metadata"]["annotations"]
    wanted_less = diffing.decorate(obj("Deployment", "f", OWNED, spec={}), "10")
    found = diffing.change_for(wanted_less, live)
    assert found is not None and found.action is Action.UPDATE, "a field meshgen stops setting is a change"


def test_an_existing_object_meshgen_does_not_own_is_never_overwritten() -> None:
    with pytest.raises(ForeignObject, match="not managed by meshgen"):
        diffing.change_for(diffing.decorate(obj("Service", "s", OWNED), "1"), obj("Service", "s"))
    assert diffing.change_for(None, obj("Service", "s")) is None, "prune skips what meshgen does not own"


def user_vs(http: list[dict[str, Any]], routes: str | None = None) -> dict[str, Any]:
    body = obj("VirtualService", "reviews", {"team": "a"}, spec={"hosts": ["reviews"], "http": http})
    body["metadata"]["annotations"] = {"owner": "team-a"}
    if routes is not None:
        body["metadata"]["annotations"].update({ANNOTATION_ROUTES: routes, ANNOTATION_COMPUTED_FROM: "9"})
    return body


def test_a_user_virtual_service_is_restored_exactly_and_only_meshgen_parts_change() -> None:
    user = [{"name": "split", "timeout": "2s", "route": [{"destination": {"host": "reviews"}}]}]
    mine = {"name": "meshgen-pr-1-0", "route": [{"destination": {"host": "reviews-pr-1"}}]}
    live = user_vs([mine, *user], "meshgen-pr-1-0")
    restore = diffing.change_for(None, live)
    assert restore is not None and restore.action is Action.UPDATE
    target = restore.target()
    assert target is not None
    assert target["spec"] == {"hosts": ["reviews"], "http": user}
    assert target["metadata"]["annotations"] == {"owner": "team-a"}
    assert target["metadata"]["labels"] == {"team": "a"}
    ops = restore.operations()
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "5"}
    assert all(op["path"].startswith(("/spec/http", "/metadata/annotations")) for op in ops[1:])


def test_fencing_compares_list_revisions_as_integers() -> None:
    newer = diffing.decorate(obj("Service", "s", OWNED), "100")
    assert diffing.is_newer(newer, 99) and not diffing.is_newer(newer, 100) and not diffing.is_newer(newer, 101)
    assert not diffing.is_newer(newer, None), "unknown revision: no fencing, preconditions still hold"
    garbage = obj("Service", "s", OWNED)
    garbage["metadata"]["annotations"] = {ANNOTATION_COMPUTED_FROM: "not-a-number"}
    assert diffing.computed_from(garbage) == 0
    assert discovery.revision("12") == 12 and discovery.revision("abc") is None


def test_route_delta_in_summaries() -> None:
    before = user_vs([], "meshgen-a-0")
    after = user_vs([], "meshgen-a-0,meshgen-b-0,meshgen-c-0")
    assert diffing.route_delta(before, after) == " (2 routes added)"
    assert diffing.route_delta(after, user_vs([])) == " (3 routes removed)"


# -- stored specs ----------------------------------------------------------------------------------------------------

def stored_sandbox(name: str, ttl: dict[str, str] | None = None, created: str = "2026-01-01T00:00:00Z",
                   updated: str | None = None, rv: str = "1") -> dict[str, Any]:
    spec: dict[str, Any] = {"forks": [{"forkOf": {"namespace": "ns", "name": "d"}}]}
    if ttl:
        spec["ttl"] = ttl
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created, "resourceVersion": rv}
    if updated:
        meta["annotations"] = {ANNOTATION_UPDATED_AT: updated}
    body = {"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox", "metadata": meta, "spec": spec}
    meta["labels"] = indexes.labels(body)  # as meshgen stores it: with its index
    return body


def test_ttl_counts_from_creation_or_last_update() -> None:
    at = datetime.datetime(2026, 1, 1, 3, 0, tzinfo=datetime.UTC)
    stored = discovery.StoredSpecs((
        stored_sandbox("created-1h", {"duration": "1h"}),
        stored_sandbox("created-4h", {"duration": "4h"}),
        stored_sandbox("updated-1h", {"duration": "1h", "offsetFrom": "updatedAt"},
                       updated="2026-01-01T02:30:00Z"),
        stored_sandbox("forever"),
    ), (), "10")
    assert [s["metadata"]["name"] for s in storing.expired(stored, at)] == ["created-1h"]


def test_storing_an_identical_spec_is_no_change() -> None:
    written = {k: v for k, v in stored_sandbox("a").items()}
    written["metadata"] = {"name": "a"}
    stored = discovery.StoredSpecs((stored_sandbox("a", updated="2026-01-01T00:00:00Z"),), (), "3")
    now = datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC)
    assert storing.changes([written], stored, now) == []
    relabelled = {**written, "metadata": {"name": "a", "labels": {"team": "b"}}}
    [update] = storing.changes([relabelled], stored, now)
    assert update.action is Action.UPDATE
    target = update.target()
    assert target is not None and indexes.user_labels(target["metadata"]["labels"]) == {"team": "b"}
    assert indexes.is_current(target), "stored with its index beside the user's labels"


def test_a_spec_stored_without_the_index_is_relabelled_and_may_not_set_it() -> None:
    unlabelled = stored_sandbox("a", updated="2026-01-01T00:00:00Z")
    unlabelled["metadata"].pop("labels")
    written = {**unlabelled, "metadata": {"name": "a"}}
    now = datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC)
    [update] = storing.changes([written], discovery.StoredSpecs((unlabelled,), (), "3"), now)
    target = update.target()
    assert target is not None and indexes.is_current(target)
    assert indexes.workload_key(("Deployment", "ns", "d")) in target["metadata"]["labels"]
    assert names.spec_label_key_problem(indexes.workload_key(("Deployment", "ns", "d"))) is not None
    assert names.spec_label_key_problem("meshgen.dev/indexed") is not None
    assert names.spec_label_key_problem("example.com/team") is None


def test_fingerprint_sees_adds_deletes_and_edits_but_not_unrelated_writes() -> None:
    one = discovery.StoredSpecs((stored_sandbox("a"),), (), "10")
    assert one.fingerprint == discovery.StoredSpecs((stored_sandbox("a"),), (), "99").fingerprint
    status_written = {**stored_sandbox("a", rv="2"), "status": {"routingKey": "k"}}
    assert one.fingerprint == discovery.StoredSpecs((status_written,), (), "10").fingerprint, "status is no edit"
    edited = stored_sandbox("a", rv="2")
    edited["spec"] = {"forks": [{"forkOf": {"namespace": "ns", "name": "e"}}]}
    assert one.fingerprint != discovery.StoredSpecs((edited,), (), "10").fingerprint
    relabelled = stored_sandbox("a", rv="2")
    relabelled["metadata"]["labels"] = {"team": "x"}
    assert one.fingerprint != discovery.StoredSpecs((relabelled,), (), "10").fingerprint
    recreated = stored_sandbox("a")
    recreated["metadata"]["uid"] = "another"
    assert one.fingerprint != discovery.StoredSpecs((recreated,), (), "10").fingerprint, "a new object, a new age"
    assert one.fingerprint != discovery.StoredSpecs((), (), "10").fingerprint
    policy = {"apiVersion": "meshgen.dev/v1alpha1", "kind": "MeshPolicy", "metadata": {"name": "p"}, "spec": {}}
    assert one.fingerprint != discovery.StoredSpecs((stored_sandbox("a"),), (), "10", (policy,)).fingerprint


# -- CRDs --------------------------------------------------------------------------------------------------------------

def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key, child in (node.get("properties") or {}).items():
        out += walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("crd", crds.definitions(), ids=lambda c: c["metadata"]["name"])
def test_crd_schemas_are_structural_and_default_nothing(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert "type" in node or node.get(crds.PRESERVE), f"{path} has no type"
        assert not {"$ref", "anyOf", "default", "title", "const"} & set(node), f"{path}: {sorted(node)}"
        extra = node.get("additionalProperties")
        assert extra is None or isinstance(extra, dict), f"{path}: additionalProperties must be a schema"
    specs_have_status = crd["spec"]["names"]["kind"] != "MeshPolicy"  # a policy is configuration: no status
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["versions"][0]["subresources"] == ({"status": {}} if specs_have_status else {})


def _granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(v, g, r) for rule in role["rules"] for v in rule["verbs"] for g in rule["apiGroups"]
            for r in rule["resources"]}


def test_the_rbac_covers_every_kind_meshgen_writes() -> None:
    granted = {(g, r) for _, g, r in _granted(crds.rbac()[0])}
    from meshgen.kube import kinds

    for kind in (*kinds.RENDERED, kinds.SANDBOX, kinds.ROUTE_GROUP):
        assert (kind.group, kind.plural) in granted
    assert ("meshgen.dev", "sandboxes/status") in granted and ("meshgen.dev", "routegroups/status") in granted


def test_ci_reads_the_policy_and_only_the_platform_writes_it() -> None:
    ci, platform = _granted(crds.rbac()[0]), _granted(crds.rbac(platform=True)[0])
    assert {v for v, g, r in ci if r == "meshpolicies"} == {"list"}
    assert {"create", "patch", "delete"} <= {v for v, g, r in platform if r == "meshpolicies"}
    assert ci < platform, "install reconciles every host, so the platform can do what CI does"
    admission = {r for v, g, r in platform if g == "admissionregistration.k8s.io"}
    assert admission == {"validatingadmissionpolicies", "validatingadmissionpolicybindings",
                         "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"}
    assert not {r for v, g, r in ci if g in ("admissionregistration.k8s.io", "apiextensions.k8s.io")}
    assert crds.rbac(platform=True)[1]["subjects"][0]["name"] == "meshgen-appliers", "the group is the caller's"


# -- binaries ----------------------------------------------------------------------------------------------------

def test_binaries_honour_meshgen_testenv_bin_then_kubebuilder_assets(tmp_path, monkeypatch) -> None:
    mine, envtest = tmp_path / "mine", tmp_path / "envtest"
    for directory, files in ((mine, ("etcd", binaries.ISTIO_CRDS, "pilot-discovery")),
                             (envtest, ("etcd", "kube-apiserver"))):
        directory.mkdir()
        for name in files:
            (directory / name).write_text("")
            (directory / name).chmod(0o755)
    monkeypatch.setenv("MESHGEN_TESTENV_BIN", str(mine))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(envtest))
    monkeypatch.setenv("MESHGEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    found = binaries.locate()
    assert found == binaries.Binaries(mine / "etcd", envtest / "kube-apiserver", mine / binaries.ISTIO_CRDS)
    assert binaries.locate_istio() is None and binaries.missing() == ["istioctl"]
    (mine / "istioctl").write_text("")
    (mine / "istioctl").chmod(0o755)
    assert binaries.locate_istio() == binaries.IstioBinaries(mine / "pilot-discovery", mine / "istioctl")
    monkeypatch.delenv("KUBEBUILDER_ASSETS")
    assert binaries.locate() is None and binaries.missing() == ["kube-apiserver"]


def test_pinned_versions_come_from_the_go_modules() -> None:
    assert (binaries.ETCD.version() or "").startswith("v3.")
    assert (binaries.KUBE_APISERVER.version() or "").startswith("v1.")
    assert binaries.ISTIO_CRDS_FILE.version() == binaries.PILOT_DISCOVERY.version() == binaries.ISTIOCTL.version()
