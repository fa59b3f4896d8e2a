"""The reconciler with the Gateway API backend against a real kube-apiserver (with the Gateway API's CRDs, read
from the Go module cache): a user's HTTPRoute edited in place and restored exactly, no-op applies, foreign edits
kept, concurrent appliers, the route-size limit, and least privilege. The same contract as the VirtualService
path's tests (test_reconcile.py, test_concurrency.py), for the backend the stored MeshPolicy names."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from meshgen.documents import parse_documents
from meshgen.kube import installing, kinds
from meshgen.kube.client import Client
from meshgen.kube.reconciling import NewSpecs, Reconciler, Report
from meshgen.ownership import is_owned
from meshgen.spec import names
from meshgen.spec.loading import load_specs
from meshgen.spec.models import Backend, MeshPolicy
from tests.kube.conftest import BOOKINFO, Cluster, EditsFirst, assert_restored
from tests.kube.test_concurrency import adds_and_deletes, owned, run_all
from tests.kube.test_rbac import grant, granted_permissions, used_permissions

pytestmark = pytest.mark.kube

GAMMA = MeshPolicy.model_validate({"apiVersion": "meshgen.dev/v1alpha1", "kind": "MeshPolicy",
                                   "metadata": {"name": "gamma"}, "spec": {"backend": "gateway-api"}})
# The example baseline without its VirtualServices (an HTTPRoute routes reviews instead), plus a Service per
# version of reviews for the route to split between.
BASELINE = "\n---\n".join(d for d in BOOKINFO.split("\n---\n") if "kind: VirtualService" not in d) + """
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2, namespace: bookinfo}
spec:
  selector: {app: reviews, version: v2}
  ports: [{name: http, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: bookinfo, annotations: {team: reviews}}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - name: split
    backendRefs: [{name: reviews, port: 9080, weight: 90}, {name: reviews-v2, port: 9080, weight: 10}]
    filters:
    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-via, value: route}]}}
"""
SANDBOX = """\
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {name: NAME}
spec:
  forks: [{forkOf: {namespace: NS, name: reviews-v1}}]
"""
CONCURRENT = 12  # an HTTPRoute holds at most 16 rules: the user's one and a copy per sandbox


@pytest.fixture
def gamma(cluster: Cluster) -> Iterator[Cluster]:
    """A test namespace with the baseline above, and the Gateway API backend stored as the platform's choice (the
    cluster fixture deletes every sandbox with it afterwards, then stores the default policy again)."""
    installing.ensure_policy(cluster.client(), GAMMA)
    cluster.create_baseline(BASELINE)
    yield cluster


def sandbox(name: str) -> str:
    return SANDBOX.replace("NAME", name)


def apply(cluster: Cluster, text: str, client: Client | None = None) -> Report:
    docs = parse_documents(text.replace("NS", cluster.namespace), "test.yaml")
    return Reconciler(client or cluster.client(), GAMMA).apply(NewSpecs(load_specs(docs), tuple(d.body for d in docs)))


def pending(cluster: Cluster) -> list[str]:
    from meshgen.kube import discovery

    reconciler = Reconciler(cluster.client(), GAMMA)
    state = reconciler.observe()
    return [c.summary for c in reconciler.changes(state, discovery.specs_of(state.stored), {})]


def rules(cluster: Cluster, name: str = "reviews") -> list[str]:
    return [str(r.get("name", "")) for r in cluster.get("HTTPRoute", name)["spec"]["rules"]]


def test_the_backend_is_the_stored_policys(gamma: Cluster) -> None:
    assert GAMMA.spec.backend is Backend.GATEWAY_API
    name = f"{gamma.namespace}-b"
    report = apply(gamma, sandbox(name))
    summaries = [c.summary for c in report.changes]
    assert f"httproute.gateway.networking.k8s.io/reviews -n {gamma.namespace} configured (1 route added)" in summaries
    assert not [s for s in summaries if "virtualservice" in s], "the Gateway API backend writes no VirtualService"
    assert gamma.exists("EnvoyFilter", "meshgen-routing-key", "istio-system"), "the normaliser, on Istio sidecars"


def test_an_httproute_is_edited_in_place_then_a_second_apply_writes_nothing(gamma: Cluster) -> None:
    name = f"{gamma.namespace}-a"
    apply(gamma, sandbox(name))
    route = gamma.get("HTTPRoute", "reviews")
    assert rules(gamma) == [f"meshgen-{name}-0", "split"]
    copy, split = route["spec"]["rules"]
    assert copy["filters"] == split["filters"], "the copy keeps the rule's filters"
    assert [b["name"] for b in copy["backendRefs"]] == [f"reviews-{name}", "reviews-v2"]
    key = names.derive_routing_key("Sandbox", name)
    assert copy["matches"] == [{"path": {"type": "PathPrefix", "value": "/"},
                                "headers": [{"name": "x-meshgen-routing-key", "type": "Exact", "value": key}]}]
    assert route["metadata"]["annotations"]["team"] == "reviews", "the user's annotations are kept"
    assert route["metadata"]["annotations"]["meshgen.dev/routes"] == f"meshgen-{name}-0"
    # Only reviews fronts the fork, and the user's route covers it: meshgen owns no route.
    assert not [o for o in gamma.client().list(kinds.HTTP_ROUTE, gamma.namespace).items if is_owned(o)]

    client = gamma.client()
    assert apply(gamma, sandbox(name), client=client).changes == []
    assert client.writes == 0, client.counts
    assert pending(gamma) == []


def test_removing_the_last_sandbox_restores_the_user_httproute_exactly(gamma: Cluster) -> None:
    original = gamma.get("HTTPRoute", "reviews")
    names = [f"{gamma.namespace}-r{i}" for i in range(2)]
    for name in names:
        apply(gamma, sandbox(name))
    assert rules(gamma) == [f"meshgen-{n}-0" for n in names] + ["split"]
    result = gamma.meshgen("delete", *names)
    assert result.returncode == 0, result.stderr
    restored = gamma.get("HTTPRoute", "reviews")
    assert_restored(restored, original)
    assert not [o for o in gamma.client().list(kinds.HTTP_ROUTE, gamma.namespace).items if is_owned(o)]


def test_a_foreign_edit_to_the_user_httproute_during_an_apply_survives(gamma: Cluster) -> None:
    client = EditsFirst(gamma.client(), kinds.Ref("HTTPRoute", gamma.namespace, "reviews"), "/spec/rules/0/timeouts",
                        {"request": "7s"})
    name = f"{gamma.namespace}-e"
    apply(gamma, sandbox(name), client=client)
    assert client.edited and client.counts["get"] >= 1, "the guarded patch conflicted and was recomputed"
    route = gamma.get("HTTPRoute", "reviews")
    assert rules(gamma) == [f"meshgen-{name}-0", "split"]
    assert route["spec"]["rules"][1]["timeouts"] == {"request": "7s"}, "the user's edit survived"
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "7s"}, "the copy copies the rule as it is now"
    Reconciler(gamma.client(), GAMMA).delete("Sandbox", [name])
    assert gamma.get("HTTPRoute", "reviews")["spec"]["rules"][0]["timeouts"] == {"request": "7s"}


def test_diff_shows_the_route_change_then_nothing(gamma: Cluster) -> None:
    path = gamma.spec_file(sandbox(f"{gamma.namespace}-d"))
    before = gamma.meshgen("diff", "-f", str(path))
    assert before.returncode == 1, before.stderr
    assert "httproute.gateway.networking.k8s.io/reviews" in before.stdout
    assert gamma.meshgen("apply", "-f", str(path)).returncode == 0
    after = gamma.meshgen("diff", "-f", str(path))
    assert after.returncode == 0, after.stdout + after.stderr


def test_concurrent_applies_of_different_sandboxes_on_one_route_lose_nothing(gamma: Cluster) -> None:
    names = [f"{gamma.namespace}-s{i:02d}" for i in range(CONCURRENT)]
    results = run_all([gamma.spawn("apply", "-f", str(gamma.spec_file(sandbox(n)))) for n in names])
    assert all(code == 0 for code, _, _ in results), [err for code, _, err in results if code]
    assert rules(gamma) == [f"meshgen-{n}-0" for n in sorted(names)] + ["split"], "all copies, deterministic order"
    assert owned(gamma, kinds.DEPLOYMENT) == sorted(f"reviews-v1-{n}" for n in names)
    assert pending(gamma) == []


def test_concurrent_adds_and_deletes_converge(gamma: Cluster) -> None:
    new = adds_and_deletes(gamma, sandbox, CONCURRENT // 2)
    assert rules(gamma) == [f"meshgen-{n}-0" for n in new] + ["split"]
    assert pending(gamma) == []


def test_a_sandbox_past_the_route_size_limit_is_refused_and_the_others_stay(gamma: Cluster) -> None:
    """The user's route has one rule; 15 copies fill it to the Gateway API's 16. The 16th sandbox's apply fails
    before any write, saying why; the route the others need is untouched."""
    names = [f"{gamma.namespace}-l{i:02d}" for i in range(15)]
    assert gamma.meshgen("apply", "-f", str(gamma.spec_file("---\n".join(sandbox(n) for n in names)))).returncode == 0
    before = gamma.get("HTTPRoute", "reviews")["metadata"]["resourceVersion"]
    result = gamma.meshgen("apply", "-f", str(gamma.spec_file(sandbox(f"{gamma.namespace}-over"))))
    assert result.returncode == 2
    assert "the Gateway API allows at most 16 rules" in result.stderr and "Traceback" not in result.stderr
    assert not gamma.exists("Sandbox", f"{gamma.namespace}-over", "")
    assert gamma.get("HTTPRoute", "reviews")["metadata"]["resourceVersion"] == before
    assert len(rules(gamma)) == 16


def test_the_printed_rbac_for_the_gateway_api_backend_is_exactly_what_meshgen_uses(gamma: Cluster, tmp_path) -> None:
    policy = tmp_path / "gamma.yaml"
    policy.write_text("apiVersion: meshgen.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: gamma}\n"
                      "spec: {backend: gateway-api}\n")
    rbac = gamma.meshgen("install", "--print-rbac", "--policy", str(policy), "--group", "rbac-gamma")
    assert rbac.returncode == 0, rbac.stderr
    assert "httproutes" in rbac.stdout and "virtualservices" in rbac.stdout
    grant(gamma, rbac.stdout)
    user = f"gamma-{gamma.namespace}"
    bot = str(gamma.plane.kubeconfig_for(user, "rbac-gamma"))
    path = gamma.spec_file(sandbox(f"{gamma.namespace}-p"))
    for args in (("apply", "-f", str(path)), ("diff", "-f", str(path)), ("get", "sandboxes"),
                 ("delete", f"{gamma.namespace}-p")):
        result = gamma.meshgen(*args, kubeconfig=bot)
        assert result.returncode in (0, 1), f"{args}: {result.stderr}"
    import time

    time.sleep(1)  # the audit log is written asynchronously
    used = used_permissions(gamma.plane.audit_log, user)
    granted = granted_permissions(rbac.stdout)
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    # EnvoyFilters are listed only when a command reads everything (meshgen.kube.scoping; tests/kube/test_rbac.py).
    listed = {p for p in granted if p[0] == "list"} - {("list", "networking.istio.io", "envoyfilters")}
    assert listed <= used, f"listed kinds never read: {sorted(listed - used)}"
    assert ("patch", "gateway.networking.k8s.io", "httproutes") in used, "the user's route is what it edits"
    assert not {p for p in used if p[2] == "virtualservices" and p[0] != "list"}, "VirtualServices are only read"


def test_the_platform_switching_the_backend_moves_every_route_and_leaves_nothing_behind(cluster: Cluster) -> None:
    """meshgen install with another spec.backend reconciles every host with it: the old backend's routes are
    removed (owned ones deleted, a user's restored) after the new one's are written."""
    from meshgen.spec.models import DEFAULT_POLICY

    cluster.create_baseline()  # the example baseline: a VirtualService for reviews, none for ratings
    reviews = cluster.get("VirtualService", "reviews")
    name = f"{cluster.namespace}-sw"
    cluster.apply(SANDBOX.replace("NAME", name).replace("reviews-v1", "ratings-v1"))
    assert cluster.exists("VirtualService", "meshgen-ratings")
    installing.install(cluster.client(), GAMMA)
    assert not cluster.exists("VirtualService", "meshgen-ratings")
    route = cluster.get("HTTPRoute", "meshgen-ratings")
    assert [r["name"] for r in route["spec"]["rules"]] == [f"meshgen-{name}-0", "meshgen-default"]
    assert cluster.get("VirtualService", "reviews")["spec"] == reviews["spec"], "a host no sandbox forks: untouched"
    installing.install(cluster.client(), DEFAULT_POLICY)
    assert not cluster.exists("HTTPRoute", "meshgen-ratings")
    assert cluster.exists("VirtualService", "meshgen-ratings")


def test_a_stale_applier_never_prunes_the_copies_a_newer_list_wrote_into_the_user_httproute(gamma: Cluster) -> None:
    """The fencing rule of tests/kube/test_concurrency.py on a user's HTTPRoute: an applier whose sandbox list
    predates sandbox B would remove B's copy from the route and B's fork; every such write is fenced, and its loop
    backs off (whoever wrote the newer objects read B: nothing is left for it to write) with B intact."""
    from meshgen.kube import discovery, patching

    a, b = f"{gamma.namespace}-a", f"{gamma.namespace}-b"
    apply(gamma, sandbox(a))
    stale = Reconciler(gamma.client(), GAMMA)
    before_b = discovery.list_specs(stale.client)
    apply(gamma, sandbox(b))
    assert rules(gamma) == [f"meshgen-{a}-0", f"meshgen-{b}-0", "split"]
    state = stale.observe().with_stored(before_b)
    changes = stale.changes(state, discovery.specs_of(before_b), {})
    assert {(c.action.value, c.ref.kind) for c in changes} >= {("update", "HTTPRoute")}, "B's copy looks orphaned"
    outcomes = {patching.write(stale.client, c, before_b.revision)[0] for c in changes}
    assert outcomes == {patching.Outcome.FENCED}
    assert rules(gamma) == [f"meshgen-{a}-0", f"meshgen-{b}-0", "split"]
    report = stale.converge(state, Report())
    assert report.fenced and report.rounds == 1 and report.changes == []
    assert rules(gamma) == [f"meshgen-{a}-0", f"meshgen-{b}-0", "split"]
    assert owned(gamma, kinds.DEPLOYMENT) == sorted([f"reviews-v1-{a}", f"reviews-v1-{b}"]) and pending(gamma) == []


def routed_by_httproutes(cluster: Cluster, routing_key: str) -> set[str]:
    """The Services of this test's namespace whose HTTPRoutes (the user's or meshgen's) route ``routing_key``."""
    return {p["name"] for route in cluster.client().list(kinds.HTTP_ROUTE, cluster.namespace).items
            if routing_key in json.dumps(route["spec"].get("rules") or []) for p in route["spec"]["parentRefs"]}


def test_a_sandbox_moving_between_hosts_routed_by_httproutes_leaves_no_stale_route(gamma: Cluster) -> None:
    """The index for the Gateway API backend (tests/kube/test_index.py for VirtualServices): each apply reads only
    what its sandbox shares hosts with, found through the HTTPRoutes; a sandbox moving from the host of the user's
    HTTPRoute to one meshgen owns a route for leaves the user's route exactly as it was, in the same apply."""
    from meshgen.kube import indexes

    original = gamma.get("HTTPRoute", "reviews")
    moving, staying = f"{gamma.namespace}-m", f"{gamma.namespace}-s"
    key = {n: names.derive_routing_key("Sandbox", n) for n in (moving, staying)}
    apply(gamma, sandbox(moving))
    apply(gamma, sandbox(staying).replace("reviews-v1", "ratings-v1"))
    assert routed_by_httproutes(gamma, key[moving]) == {"reviews"}
    assert routed_by_httproutes(gamma, key[staying]) == {"ratings"}

    apply(gamma, sandbox(moving).replace("reviews-v1", "ratings-v1"))
    assert routed_by_httproutes(gamma, key[moving]) == {"ratings"}
    assert routed_by_httproutes(gamma, key[staying]) == {"ratings"}, "the other sandbox of the new host is kept"
    assert_restored(gamma.get("HTTPRoute", "reviews"), original)
    assert not gamma.exists("Deployment", f"reviews-v1-{moving}")
    labels = gamma.get("Sandbox", moving, "")["metadata"]["labels"]
    assert indexes.workload_key(("Deployment", gamma.namespace, "ratings-v1")) in labels
    assert indexes.workload_key(("Deployment", gamma.namespace, "reviews-v1")) not in labels
    assert pending(gamma) == []
