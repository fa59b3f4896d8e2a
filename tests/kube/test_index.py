"""The index of stored specs against a real kube-apiserver: a command reads only what its specs share hosts with,
and what it leaves is what reading everything would leave (``cluster.pending()`` plans the whole store: an empty
answer means no stale route, no missing one, anywhere).

Hosts added and removed, a sandbox moving between hosts, route groups re-matching, specs stored without the index
(by kubectl, or an older meshgen), and concurrent moves.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from meshgen.kube import indexes, kinds
from meshgen.ownership import LABEL_INDEXED
from tests.kube.conftest import Cluster

pytestmark = pytest.mark.kube

def sandbox(name: str, *workloads: str, team: str = "checkout") -> str:
    """A Sandbox forking ``workloads`` of this test's namespace (JSON: a YAML document)."""
    return json.dumps({"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox",
                       "metadata": {"name": name, "labels": {"team": team}},
                       "spec": {"routingKey": key(name),
                                "forks": [{"forkOf": {"namespace": "NS", "name": w}} for w in workloads]}}) + "\n"


def group(name: str, team: str) -> str:
    return json.dumps({"apiVersion": "meshgen.dev/v1alpha1", "kind": "RouteGroup", "metadata": {"name": name},
                       "spec": {"routingKey": key(name), "match": {"all": [{"label": {"key": "team",
                                                                                    "value": team}}]}}}) + "\n"


def key(name: str) -> str:
    return name.replace("-", "")


def routed(cluster: Cluster, routing_key: str) -> set[str]:
    """The hosts of this test's namespace whose VirtualServices (the user's or meshgen's) route ``routing_key``."""
    found = set()
    for vs in cluster.client().list(kinds.VIRTUAL_SERVICE, cluster.namespace).items:
        if routing_key in json.dumps(vs["spec"].get("http") or []):
            found.update(h.split(".")[0] for h in vs["spec"]["hosts"])  # short names: the user's and meshgen's
    return found


def stored(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    return cluster.get(kind, name, "")


def test_hosts_added_and_removed_move_the_sandbox_between_indexes(cluster: Cluster) -> None:
    cluster.create_baseline()
    name = f"{cluster.namespace}-m"
    cluster.apply(sandbox(name, "reviews-v1"))
    assert routed(cluster, key(name)) == {"reviews"}
    ns = cluster.namespace
    by_workload = {w: indexes.workload_key(("Deployment", ns, w)) for w in ("reviews-v1", "ratings-v1")}
    assert by_workload["reviews-v1"] in stored(cluster, "Sandbox", name)["metadata"]["labels"]

    cluster.apply(sandbox(name, "reviews-v1", "ratings-v1"))  # a host added
    assert routed(cluster, key(name)) == {"reviews", "ratings"}
    assert cluster.exists("Deployment", f"ratings-v1-{name}")
    assert cluster.pending() == []

    cluster.apply(sandbox(name, "ratings-v1"))  # a host removed: its old host's routes go, in the same apply
    assert routed(cluster, key(name)) == {"ratings"}
    assert not cluster.exists("Deployment", f"reviews-v1-{name}")
    labels = stored(cluster, "Sandbox", name)["metadata"]["labels"]
    assert by_workload["ratings-v1"] in labels and by_workload["reviews-v1"] not in labels
    assert cluster.pending() == []

    # A later command on the old host finds nothing of the moved sandbox there, and leaves nothing of it.
    other = f"{cluster.namespace}-o"
    client = cluster.client()
    cluster.apply(sandbox(other, "reviews-v1"), client=client)
    assert routed(cluster, key(name)) == {"ratings"} and routed(cluster, key(other)) == {"reviews"}
    assert cluster.pending() == []


def test_route_groups_follow_their_members_as_labels_and_matches_change(cluster: Cluster) -> None:
    cluster.create_baseline()
    a, b, flow = f"{cluster.namespace}-ga", f"{cluster.namespace}-gb", f"{cluster.namespace}-flow"
    cluster.apply(sandbox(a, "reviews-v1", team="alpha") + "---\n" + sandbox(b, "ratings-v1", team="beta"))
    cluster.apply(group(flow, "alpha"))
    assert routed(cluster, key(flow)) == {"reviews"}

    cluster.apply(sandbox(b, "ratings-v1", team="alpha"))  # a sandbox joins by its labels
    assert routed(cluster, key(flow)) == {"reviews", "ratings"}
    assert cluster.pending() == []

    cluster.apply(sandbox(a, "reviews-v1", team="gamma"))  # and leaves by them
    assert routed(cluster, key(flow)) == {"ratings"}
    assert cluster.pending() == []

    cluster.apply(group(flow, "gam*"))  # the group re-matches: a glob, the old member out, the other in
    assert routed(cluster, key(flow)) == {"reviews"}
    status = stored(cluster, "RouteGroup", flow)["status"]
    assert status["sandboxes"] == [a]
    assert cluster.pending() == []

    # A member relabelled around meshgen (`kubectl label`): the index needs nothing (labels are selected live), and
    # a command on the group's other host alone removes the group's route from the member's host, which only
    # the group's status still names.
    cluster.apply(group(flow, "gamma"))
    cluster.apply(sandbox(b, "ratings-v1", team="gamma"))
    assert routed(cluster, key(flow)) == {"reviews", "ratings"}
    cluster.client().patch(kinds.Ref("Sandbox", "", b), [{"op": "replace", "path": "/metadata/labels/team",
                                                          "value": "delta"}])
    cluster.apply(sandbox(f"{cluster.namespace}-gc", "reviews-v1", team="omega"))  # reviews only
    assert routed(cluster, key(flow)) == {"reviews"}, "no stale route of the group on the old member's host"
    assert stored(cluster, "RouteGroup", flow)["status"]["sandboxes"] == [a]
    assert cluster.pending() == []


def test_specs_stored_without_the_index_are_found_and_indexed(cluster: Cluster) -> None:
    """A store written by kubectl (or a meshgen before the index): a scoped command still finds those specs."""
    cluster.create_baseline()
    old, new = f"{cluster.namespace}-u", f"{cluster.namespace}-n"
    admin = cluster.client()
    body = {"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox",
            "metadata": {"name": old, "labels": {"team": "checkout"}},
            "spec": {"routingKey": key(old), "forks": [{"forkOf": {"namespace": cluster.namespace,
                                                                   "name": "reviews-v1"}}]}}
    admin.create(body)  # as `kubectl apply` would: no index labels
    assert LABEL_INDEXED not in (stored(cluster, "Sandbox", old)["metadata"].get("labels") or {})

    cluster.apply(sandbox(new, "reviews-v1"))  # another sandbox on the same host
    assert routed(cluster, key(old)) == {"reviews"} and routed(cluster, key(new)) == {"reviews"}
    assert indexes.is_current(stored(cluster, "Sandbox", old)), "indexed by the first command that read it"
    assert stored(cluster, "Sandbox", old)["metadata"]["labels"]["team"] == "checkout", "user labels kept"
    assert cluster.pending() == []

    # Edited around meshgen to fork another workload (`kubectl edit`; `kubectl apply` over it likewise keeps the
    # labels it does not mention): its workload labels still name the old one, but the API server drops its
    # indexed label (meshgen's MutatingAdmissionPolicy). So a command on the new host alone, which shares nothing
    # with the stale index, finds it (unindexed), re-indexes it and removes its route from the old host (its
    # status says it was reconciled there).
    live = stored(cluster, "Sandbox", old)
    edited = admin.patch(kinds.Ref("Sandbox", "", old), [
        {"op": "replace", "path": "/spec/forks/0/forkOf/name", "value": "ratings-v1"},
        {"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]}])
    assert LABEL_INDEXED not in edited["metadata"]["labels"], "unindexed by the API server"
    assert indexes.workload_key(("Deployment", cluster.namespace, "reviews-v1")) in edited["metadata"]["labels"]
    third = f"{cluster.namespace}-t"
    cluster.apply(sandbox(third, "ratings-v1"))
    assert routed(cluster, key(old)) == {"ratings"}, "no stale route on the old host"
    assert not cluster.exists("Deployment", f"reviews-v1-{old}") and cluster.exists("Deployment", f"ratings-v1-{old}")
    assert indexes.is_current(stored(cluster, "Sandbox", old))
    assert stored(cluster, "Sandbox", old)["status"]["hosts"] == [f"ratings.{cluster.namespace}.svc.cluster.local"]
    assert cluster.pending() == []

    # meshgen's own write of a changed spec keeps its index (the label's value changes with the spec), and a
    # label edited around meshgen (no spec change) leaves it too.
    cluster.apply(sandbox(third, "ratings-v1", "details-v1"))
    assert indexes.is_current(stored(cluster, "Sandbox", third))
    relabelled = admin.patch(kinds.Ref("Sandbox", "", third), [
        {"op": "add", "path": "/metadata/labels/owner", "value": "someone"}])
    assert indexes.is_current(relabelled)


def test_concurrent_moves_leave_no_stale_route(cluster: Cluster) -> None:
    """Two sandboxes swap hosts at the same time, each by its own process, while a third applier adds one to
    each host: every command reads only its hosts, yet the result is what planning everything gives."""
    cluster.create_baseline()
    ns = cluster.namespace
    a, b, c = f"{ns}-ca", f"{ns}-cb", f"{ns}-cc"
    cluster.apply(sandbox(a, "reviews-v1") + "---\n" + sandbox(b, "ratings-v1"))
    files = [cluster.spec_file(sandbox(a, "ratings-v1")), cluster.spec_file(sandbox(b, "reviews-v1")),
             cluster.spec_file(sandbox(c, "reviews-v1", "ratings-v1"))]
    procs = [cluster.spawn("apply", "-f", str(f)) for f in files]
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 1), err
    assert routed(cluster, key(a)) == {"ratings"}
    assert routed(cluster, key(b)) == {"reviews"}
    assert routed(cluster, key(c)) == {"reviews", "ratings"}
    assert not cluster.exists("Deployment", f"reviews-v1-{a}") and not cluster.exists("Deployment", f"ratings-v1-{b}")
    assert cluster.pending() == []


def test_gc_pages_through_the_store_and_repairs_what_was_left_half_done(cluster: Cluster) -> None:
    """gc reads the store a page at a time (here: one object per page) and, per page, collects expired sandboxes,
    specs stored but never reconciled, and the objects of a sandbox deleted around meshgen."""
    cluster.create_baseline()
    ns = cluster.namespace
    expire, orphan, raw = f"{ns}-gx", f"{ns}-go", f"{ns}-gr"
    cluster.apply(sandbox(expire, "ratings-v1").replace('"spec": {', '"spec": {"ttl": {"duration": "1s"}, ')
                  + sandbox(orphan, "reviews-v1"))
    admin = cluster.client()
    admin.delete(kinds.Ref("Sandbox", "", orphan))  # `kubectl delete`: its fork and route stay behind
    admin.create({"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": raw},
                  "spec": {"routingKey": key(raw), "forks": [{"forkOf": {"namespace": ns, "name": "details-v1"}}]}})
    assert routed(cluster, key(orphan)) == {"reviews"} and routed(cluster, key(raw)) == set()
    time.sleep(1.5)

    client = cluster.client()
    client.page = 1
    report = cluster.reconciler(client).gc()
    summaries = [c.summary for c in report.changes]
    assert f"sandbox.meshgen.dev/{expire} deleted" in summaries
    assert not cluster.exists("Deployment", f"ratings-v1-{expire}")
    assert not cluster.exists("Deployment", f"reviews-v1-{orphan}") and routed(cluster, key(orphan)) == set()
    assert cluster.exists("Deployment", f"details-v1-{raw}") and routed(cluster, key(raw)) == {"details"}
    assert client.counts["list"] > 3, "the store was read a page at a time"
    assert cluster.pending() == []

    listed = cluster.meshgen("get", "sandboxes", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert raw in [o["metadata"]["name"] for o in json.loads(listed.stdout)["items"]]


def unedited(names: range) -> str:
    """Users' VirtualServices meshgen has no reason to edit (external hosts routed to details, which no sandbox
    forks here): their hosts only their bodies tell."""
    return "\n---\n".join(
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: external-{i}, namespace: bookinfo}}\n"
        f"spec: {{hosts: [external-{i}.example.com], http: [{{route: [{{destination: {{host: details}}}}]}}]}}\n"
        for i in names)


def test_users_routing_objects_meshgen_has_not_edited_are_read_in_one_list(cluster: Cluster) -> None:
    """Their number is the baseline's: reading them costs the same requests however many there are (one LIST of
    those without meshgen's edited label, not a GET each); the one meshgen edits carries the label while it does."""
    from meshgen.ownership import LABEL_EDITED

    cluster.create_baseline()
    cluster.create_baseline(unedited(range(2)))
    name = f"{cluster.namespace}-u"
    cluster.apply(sandbox(name, "reviews-v1"))
    assert cluster.get("VirtualService", "reviews")["metadata"]["labels"][LABEL_EDITED] == "true"
    assert LABEL_EDITED not in (cluster.get("VirtualService", "external-0")["metadata"].get("labels") or {})
    few = cluster.client()
    cluster.apply(sandbox(name, "reviews-v1"), client=few)
    cluster.create_baseline(unedited(range(2, 12)))
    many = cluster.client()
    cluster.apply(sandbox(name, "reviews-v1"), client=many)
    assert few.writes == many.writes == 0
    assert (many.counts["get"], many.counts["list"]) == (few.counts["get"], few.counts["list"]), (few.counts,
                                                                                                 many.counts)
    assert cluster.pending() == []
