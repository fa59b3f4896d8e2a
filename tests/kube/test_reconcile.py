"""The reconciler against a real kube-apiserver: apply, no-op, diff, delete/restore, ownership, bad input, RBAC."""

from __future__ import annotations

import json
import time

import pytest

from meshgen.kube import kinds
from meshgen.kube.reconciling import DryRun
from tests.kube.conftest import Cluster, EditsFirst, assert_restored

pytestmark = pytest.mark.kube

SANDBOX = """\
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {name: NAME, labels: {team: checkout}}
spec:
  routingKey: KEY
  forks:
  - forkOf: {namespace: NS, name: reviews-v1}
    customizations:
      env: [{name: RANKING, value: "new"}]
"""


def sandbox(name: str, workload: str = "reviews-v1") -> str:
    return SANDBOX.replace("NAME", name).replace("KEY", name.replace("-", "")).replace("reviews-v1", workload)


def route_names(vs: dict) -> list[str]:
    return [r.get("name", "") for r in vs["spec"]["http"]]


def test_apply_creates_forks_and_routes_then_a_second_apply_writes_nothing(cluster: Cluster) -> None:
    cluster.create_baseline()
    name = f"{cluster.namespace}-a"
    first = cluster.apply(sandbox(name))
    summaries = [c.summary for c in first.changes]
    assert summaries[0] == f"sandbox.meshgen.dev/{name} created"
    assert f"deployment.apps/reviews-v1-{name} -n {cluster.namespace} created" in summaries
    assert f"virtualservice.networking.istio.io/reviews -n {cluster.namespace} configured (1 route added)" in summaries
    vs = cluster.get("VirtualService", "reviews")
    assert route_names(vs) == [f"meshgen-{name}-0", "split"]
    assert vs["metadata"]["annotations"]["meshgen.dev/routes"] == f"meshgen-{name}-0"

    client = cluster.client()
    again = cluster.apply(sandbox(name), client=client)
    assert again.changes == []
    assert client.writes == 0, client.counts
    # Reads are LISTs plus a fixed few GETs (the applied spec's stored version, the routing filter, the user's
    # VirtualService its host concerns), never one per stored object: the same no-op against a cluster with more
    # sandboxes elsewhere sends the same requests.
    assert set(client.counts) <= {"list", "get"} and client.counts["get"] <= 3, client.counts
    assert cluster.pending() == []
    for i in range(3):  # sandboxes on other hosts: not read by a command on reviews
        cluster.apply(sandbox(f"{name}{i}", "ratings-v1"))
    bigger = cluster.client()
    assert cluster.apply(sandbox(name), client=bigger).changes == []
    assert bigger.counts == client.counts, "a no-op's reads do not grow with the sandboxes stored elsewhere"


def test_make_before_break_order(cluster: Cluster) -> None:
    cluster.create_baseline()
    name = f"{cluster.namespace}-o"
    created = [c.ref.kind for c in cluster.apply(sandbox(name)).changes]
    assert created.index("Deployment") < created.index("Service") < created.index("VirtualService")
    assert created.index("EnvoyFilter") < created.index("VirtualService")
    removed = [c.ref.kind for c in cluster.reconciler().delete("Sandbox", [name]).changes]
    assert removed[0] == "Sandbox"
    assert removed.index("VirtualService") < removed.index("Service") < removed.index("Deployment")
    assert removed.index("VirtualService") < removed.index("EnvoyFilter")


def test_removing_the_last_sandbox_restores_the_user_virtual_service_exactly(cluster: Cluster) -> None:
    cluster.create_baseline()
    original = cluster.get("VirtualService", "reviews")
    names = [f"{cluster.namespace}-r{i}" for i in range(2)]
    for name in names:
        cluster.apply(sandbox(name))
    edited = cluster.get("VirtualService", "reviews")
    assert route_names(edited) == [f"meshgen-{n}-0" for n in names] + ["split"]
    result = cluster.meshgen("delete", *names)
    assert result.returncode == 0, result.stderr
    restored = cluster.get("VirtualService", "reviews")
    assert_restored(restored, original)
    assert not cluster.exists("Deployment", f"reviews-v1-{names[0]}")


def test_a_changed_sandbox_updates_only_its_own_objects(cluster: Cluster) -> None:
    cluster.create_baseline()
    a, b = f"{cluster.namespace}-c1", f"{cluster.namespace}-c2"
    cluster.apply(sandbox(a) + "---\n" + sandbox(b, "ratings-v1"))
    unchanged = cluster.client()
    cluster.apply(sandbox(a), client=unchanged)  # what a no-op reads here (users' routing objects included)
    client = cluster.client()
    report = cluster.apply(sandbox(a).replace('value: "new"', 'value: "newer"'), client=client)
    assert sorted(c.summary for c in report.changes) == sorted([
        f"sandbox.meshgen.dev/{a} configured",
        f"deployment.apps/reviews-v1-{a} -n {cluster.namespace} configured",
    ])
    assert client.counts["patch"] == 2 and client.counts["create"] == 0
    # GETs: what a no-op reads (the spec's stored version, the routing filter, users' VirtualServices whose hosts
    # only their body tells), then the changed Deployment whole before its patch (it is read as metadata only)
    # and the spec again, in the round planned before storing and in each round after: none per stored object.
    assert client.counts["get"] <= unchanged.counts["get"] + 2 * (report.rounds + 1), (client.counts, report.rounds)
    env = cluster.get("Deployment", f"reviews-v1-{a}")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "RANKING", "value": "newer"} in env


VERSIONED_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  selector: {app: reviews, version: v1}
  ports: [{name: http, port: 9080}]
"""


def test_a_fork_whose_selector_must_change_is_recreated(cluster: Cluster) -> None:
    """Found by the corpus (bookinfo-versions.yaml applied under live sandboxes): a Service that selects on one
    more label (version) changes the fork's pod selector, which the API server never lets change in place (422
    "field is immutable"); the next apply deletes the fork and creates it again instead of failing."""
    cluster.create_baseline()
    name = f"{cluster.namespace}-s"
    cluster.apply(sandbox(name))
    fork = f"reviews-v1-{name}"
    before = cluster.get("Deployment", fork)
    assert before["spec"]["selector"]["matchLabels"]["version"] == "v1"  # no Service selected on it
    cluster.create_baseline(VERSIONED_SERVICE)
    report = cluster.apply(sandbox(name))
    assert f"deployment.apps/{fork} -n {cluster.namespace} configured" in [c.summary for c in report.changes]
    after = cluster.get("Deployment", fork)
    assert after["spec"]["selector"]["matchLabels"]["version"] != "v1"  # no baseline Service selects the fork
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert cluster.pending() == []


def test_a_server_dry_run_delete_deletes_nothing(cluster: Cluster) -> None:
    """The API server reads a DELETE's options from its body, not from ``?dryRun=All`` beside one: a dry-run delete
    that sent its options only in the query deleted for real (found through the corpus, by a recreated fork's dry
    run)."""
    cluster.create_baseline()
    name = f"{cluster.namespace}-d"
    cluster.apply(sandbox(name))
    fork = kinds.Ref("Deployment", cluster.namespace, f"reviews-v1-{name}")
    live = cluster.client().get(fork)
    cluster.client().delete(fork, live["metadata"]["resourceVersion"], dry_run=True)
    assert cluster.exists("Deployment", fork.name)
    report = cluster.reconciler().delete("Sandbox", [name], dry_run=DryRun.SERVER)
    assert f"deployment.apps/{fork.name} -n {cluster.namespace} deleted" in [c.summary for c in report.changes]
    assert cluster.exists("Deployment", fork.name) and cluster.exists("Sandbox", name, "")


def test_diff_exit_codes_json_and_server_dry_run(cluster: Cluster) -> None:
    cluster.create_baseline()
    name = f"{cluster.namespace}-d"
    path = cluster.spec_file(sandbox(name))
    before = cluster.versions()
    shown = cluster.meshgen("diff", "-f", str(path))
    assert shown.returncode == 1, shown.stderr
    assert f"+++ desired/deployment.apps/reviews-v1-{name} -n {cluster.namespace}" in shown.stdout
    assert "\x1b[" not in shown.stdout, "no colour when stdout is not a terminal"
    machine = cluster.meshgen("diff", "-f", str(path), "-o", "json", "--server")
    assert machine.returncode == 1, machine.stderr
    actions = {(c["kind"], c["action"]) for c in json.loads(machine.stdout)}
    assert ("Sandbox", "create") in actions and ("VirtualService", "update") in actions
    dry = cluster.meshgen("apply", "-f", str(path), "--dry-run=server")
    assert dry.returncode == 0 and "(server dry run)" in dry.stdout, dry.stderr
    assert cluster.versions() == before, "diff and dry runs write nothing"
    assert cluster.meshgen("apply", "-f", str(path)).returncode == 0
    same = cluster.meshgen("diff", "-f", str(path))
    assert (same.returncode, same.stdout) == (0, "")


def test_server_dry_run_catches_what_only_the_api_server_validates(cluster: Cluster) -> None:
    cluster.create_baseline()
    name = f"{cluster.namespace}-s"
    # A resource quantity is checked by the apiserver only (meshgen's offline checks cover what pods are made of:
    # containers, images, replicas, env, labels; a replicas of -1 is refused before any request now).
    patch = ('\n      patch: {type: merge, value: {spec: {template: {spec: {containers: [{name: reviews, image: '
             '"example/reviews:v1", resources: {limits: {cpu: lots}}}]}}}}}')
    bad = sandbox(name).replace('value: "new"}]', 'value: "new"}]' + patch)
    path = cluster.spec_file(bad)
    assert cluster.meshgen("diff", "-f", str(path)).returncode == 1
    before = cluster.versions()
    checked = cluster.meshgen("diff", "--server", "-f", str(path))
    assert checked.returncode == 2
    assert f"deployment.apps/reviews-v1-{name}" in checked.stderr and "quantities must match" in checked.stderr
    assert cluster.versions() == before


def test_invalid_spec_writes_nothing_and_names_file_and_line(cluster: Cluster) -> None:
    cluster.create_baseline()
    cluster.apply(sandbox(f"{cluster.namespace}-ok"))
    bad = sandbox(f"{cluster.namespace}-bad").replace("name: reviews-v1}", "name: reveiws-v1}")
    path = cluster.spec_file(sandbox(f"{cluster.namespace}-good") + "---\n" + bad)
    before = cluster.versions()
    result = cluster.meshgen("apply", "-f", str(path))
    assert result.returncode == 2
    assert f"{path}:17: spec.forks[0].forkOf" in result.stderr and "did you mean reviews-v1" in result.stderr
    assert cluster.versions() == before


def test_generated_name_owned_by_someone_else_is_an_error_never_overwritten(cluster: Cluster) -> None:
    cluster.create_baseline()
    name = f"{cluster.namespace}-f"
    theirs = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
              "metadata": {"name": f"reviews-{name}", "namespace": cluster.namespace},
              "spec": {"host": "someone-else"}}
    cluster.client().create(theirs)
    before = cluster.versions()
    result = cluster.meshgen("apply", "-f", str(cluster.spec_file(sandbox(name))))
    assert result.returncode == 2
    assert "is not managed by meshgen" in result.stderr and f"reviews-{name}" in result.stderr
    assert cluster.versions() == before
    assert cluster.get("DestinationRule", f"reviews-{name}")["spec"] == {"host": "someone-else"}


def test_prune_never_deletes_an_object_without_the_meshgen_label(cluster: Cluster) -> None:
    cluster.create_baseline()
    name = f"{cluster.namespace}-p"
    cluster.apply(sandbox(name))
    # Someone strips meshgen's label from the fork Service: it is theirs now, and must survive the delete.
    service = cluster.get("Service", f"reviews-{name}")
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": service["metadata"]["resourceVersion"]},
           {"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1managed-by"}]
    cluster.client().patch(kinds.Ref("Service", cluster.namespace, f"reviews-{name}"), ops)
    cluster.reconciler().delete("Sandbox", [name])
    assert cluster.exists("Service", f"reviews-{name}")
    assert not cluster.exists("Deployment", f"reviews-v1-{name}")


def test_a_foreign_edit_to_the_user_virtual_service_during_an_apply_survives(cluster: Cluster) -> None:
    cluster.create_baseline()
    client = EditsFirst(cluster.client(), kinds.Ref("VirtualService", cluster.namespace, "reviews"))
    name = f"{cluster.namespace}-e"
    cluster.apply(sandbox(name), client=client)
    assert client.edited and client.counts["get"] >= 1, "the guarded patch conflicted and was recomputed"
    vs = cluster.get("VirtualService", "reviews")
    assert route_names(vs) == [f"meshgen-{name}-0", "split"]
    assert vs["spec"]["http"][1]["timeout"] == "7s", "the user's edit survived"
    assert vs["spec"]["http"][0]["timeout"] == "7s", "the sandbox route copies the baseline route as it is now"
    cluster.reconciler().delete("Sandbox", [name])
    assert cluster.get("VirtualService", "reviews")["spec"]["http"][0]["timeout"] == "7s"


def test_get_and_gc(cluster: Cluster) -> None:
    cluster.create_baseline()
    keep, expire = f"{cluster.namespace}-k", f"{cluster.namespace}-x"
    short_lived = sandbox(expire, "ratings-v1").replace("spec:\n", "spec:\n  ttl: {duration: 1s}\n")
    cluster.apply(sandbox(keep) + "---\n" + short_lived)
    listed = cluster.meshgen("get", "sandboxes")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split() == ["NAME", "ROUTING", "KEY", "STATUS", "REASON", "FORKS", "AGE",
                                                      "EXPIRES"]
    rows = listed.stdout.splitlines()
    row = next(line.split() for line in rows if line.startswith(keep))
    assert row[:5] == [keep, keep.replace("-", ""), "Reconciled", "Reconciled", f"{cluster.namespace}/reviews-v1"]
    as_json = json.loads(cluster.meshgen("get", "sandbox", keep, "-o", "json").stdout)
    assert [o["metadata"]["name"] for o in as_json["items"]] == [keep]
    status = as_json["items"][0]["status"]
    assert status["routingKey"] == keep.replace("-", "")
    assert status["hosts"] == [f"reviews.{cluster.namespace}.svc.cluster.local"]
    assert {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": cluster.namespace,
            "name": f"reviews-v1-{keep}"} in status["objects"]
    assert {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "namespace": cluster.namespace,
            "name": "reviews"} in status["objects"]
    [condition] = status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Reconciled", "True", "Reconciled")
    assert condition["observedGeneration"] == as_json["items"][0]["metadata"]["generation"]

    time.sleep(1.5)
    gc = cluster.meshgen("gc")
    assert gc.returncode == 0, gc.stderr
    assert f"sandbox.meshgen.dev/{expire} deleted" in gc.stdout
    assert not cluster.exists("Deployment", f"ratings-v1-{expire}")
    assert cluster.exists("Deployment", f"reviews-v1-{keep}")


def test_the_bundled_example_with_a_route_group_applies_and_deletes_cleanly(cluster: Cluster) -> None:
    cluster.create_baseline()
    from tests.kube.conftest import ROOT

    text = (ROOT / "examples" / "sandboxes.yaml").read_text().replace("bookinfo", "NS")
    for name in ("pr-1234", "pr-1240", "checkout-flow"):
        text = text.replace(f"name: {name}", f"name: {cluster.namespace}-{name}")
    path = cluster.spec_file(text)
    applied = cluster.meshgen("apply", "-f", str(path), "-n", cluster.namespace, "-n", "istio-system")
    assert applied.returncode == 0, applied.stderr
    assert f"routegroup.meshgen.dev/{cluster.namespace}-checkout-flow created" in applied.stdout
    vs = cluster.get("VirtualService", "reviews")
    assert [r["name"] for r in vs["spec"]["http"]] == [
        f"meshgen-{cluster.namespace}-pr-1234-0", f"meshgen-rg-{cluster.namespace}-checkout-flow-0", "split"]
    assert cluster.meshgen("apply", "-f", str(path)).stdout == "no changes\n"
    unknown = cluster.meshgen("delete", f"{cluster.namespace}-pr-9999")
    assert unknown.returncode == 2 and f"sandbox.meshgen.dev/{cluster.namespace}-pr-9999 not found" in unknown.stderr
    assert "fix: stored sandboxes: " in unknown.stderr  # (the session's cluster holds other tests' too)
    gone = cluster.meshgen("delete", "--kind", "RouteGroup", f"{cluster.namespace}-checkout-flow")
    assert gone.returncode == 0 and "(1 route removed)" in gone.stdout, gone.stderr


HELM_SANDBOX = """\
# Rendered by a chart whose optional values are unset: empty annotations and a label without a value.
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata:
  name: NAME
  labels: {team: checkout, tier: }
  annotations:
spec:
  routingKey: KEY
  forks:
  - forkOf: {namespace: NS, name: reviews-v1}
"""


def test_a_spec_with_helm_shaped_nulls_applies_and_then_has_no_changes(cluster: Cluster) -> None:
    """The API server drops null metadata fields and stores a null label value as "": meshgen reads the file the
    same way, so the stored spec equals the applied one and a second apply writes nothing."""
    cluster.create_baseline()
    name = f"{cluster.namespace}-h"
    path = cluster.spec_file(HELM_SANDBOX.replace("NAME", name).replace("KEY", name.replace("-", "")))
    first = cluster.meshgen("apply", "-f", str(path))
    assert first.returncode == 0, first.stderr
    assert f"deployment.apps/reviews-v1-{name} -n {cluster.namespace} created" in first.stdout
    again = cluster.meshgen("apply", "-f", str(path))
    assert (again.returncode, again.stdout) == (0, "no changes\n"), again.stderr
