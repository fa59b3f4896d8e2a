"""Concurrent appliers and a crashing API server: nothing lost, nothing duplicated, nothing orphaned.

Each applier is a real ``meshgen apply`` process, as separate CI jobs would run it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from meshgen.documents import parse_documents
from meshgen.kube import indexes, kinds, statuses
from meshgen.kube.client import Client, NoAnswer
from meshgen.kube.diffing import Change
from meshgen.kube.reconciling import Report
from meshgen.ownership import is_owned
from tests.kube.conftest import Cluster
from tests.kube.test_reconcile import sandbox

pytestmark = pytest.mark.kube

CONCURRENT = 20


def run_all(procs: list[subprocess.Popen[str]], timeout: float = 300) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out, err))
    return results


def owned(cluster: Cluster, kind: kinds.Kind) -> list[str]:
    return sorted(o["metadata"]["name"] for o in cluster.client().list(kind, cluster.namespace).items
                  if is_owned(o))


def meshgen_routes(cluster: Cluster) -> list[str]:
    vs = cluster.get("VirtualService", "reviews")
    return [r["name"] for r in vs["spec"]["http"] if r.get("name", "").startswith("meshgen-")]


def test_concurrent_applies_of_different_sandboxes_on_one_host_lose_nothing(cluster: Cluster) -> None:
    cluster.create_baseline()
    names = [f"{cluster.namespace}-s{i:02d}" for i in range(CONCURRENT)]
    paths = [cluster.spec_file(sandbox(n)) for n in names]
    results = run_all([cluster.spawn("apply", "-f", str(p)) for p in paths])
    assert all(code == 0 for code, _, _ in results), [err for code, _, err in results if code]
    assert meshgen_routes(cluster) == [f"meshgen-{n}-0" for n in sorted(names)], "all routes, deterministic order"
    assert owned(cluster, kinds.DEPLOYMENT) == sorted(f"reviews-v1-{n}" for n in names)
    assert cluster.pending() == [], "converged: nothing left to change"
    listed = json.loads(cluster.meshgen("get", "sandboxes", "-o", "json").stdout)["items"]
    assert {o["metadata"]["name"] for o in listed} >= set(names)


def adds_and_deletes(cluster: Cluster, sandbox_of: Callable[[str], str], count: int) -> list[str]:
    """Apply ``count`` sandboxes, then delete each while applying a new one, every command its own process at
    once; every command succeeds. The new sandboxes' names, sorted."""
    old = [f"{cluster.namespace}-old{i}" for i in range(count)]
    new = [f"{cluster.namespace}-new{i}" for i in range(count)]
    setup = cluster.meshgen("apply", "-f", str(cluster.spec_file("---\n".join(sandbox_of(n) for n in old))))
    assert setup.returncode == 0, setup.stderr
    procs = []
    for gone, added in zip(old, new, strict=True):
        procs.append(cluster.spawn("delete", gone))
        procs.append(cluster.spawn("apply", "-f", str(cluster.spec_file(sandbox_of(added)))))
    results = run_all(procs)
    assert all(code == 0 for code, _, _ in results), [err for code, _, err in results if code]
    return sorted(new)


def test_concurrent_adds_and_deletes_converge(cluster: Cluster) -> None:
    cluster.create_baseline()
    new = adds_and_deletes(cluster, sandbox, CONCURRENT // 2)
    assert meshgen_routes(cluster) == [f"meshgen-{n}-0" for n in new]
    assert owned(cluster, kinds.DEPLOYMENT) == sorted(f"reviews-v1-{n}" for n in new)
    assert owned(cluster, kinds.SERVICE) == sorted(f"reviews-{n}" for n in new)
    assert cluster.pending() == []


def _writes_seen(cluster: Cluster, resource: str) -> int:
    count = 0
    with open(cluster.plane.audit_log) as log:
        for line in log:
            if f'"resource":"{resource}"' in line and '"verb":"create"' in line and cluster.namespace in line:
                count += 1
    return count


def test_api_server_killed_mid_apply_then_a_second_apply_converges(cluster: Cluster) -> None:
    cluster.create_baseline()
    names = [f"{cluster.namespace}-k{i:02d}" for i in range(30)]
    path = cluster.spec_file("---\n".join(sandbox(n, "reviews-v1" if i % 2 else "ratings-v1")
                                          for i, n in enumerate(names)))
    proc = cluster.spawn("apply", "-f", str(path))
    deadline = time.monotonic() + 120
    while _writes_seen(cluster, "deployments") < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the apply finished before the API server could be killed; make it bigger"
    cluster.plane.stop_apiserver(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "cannot reach the API server" in err
    cluster.plane.start_apiserver()

    second = cluster.meshgen("apply", "-f", str(path))
    assert second.returncode == 0, second.stderr
    assert cluster.pending() == []
    deployments = owned(cluster, kinds.DEPLOYMENT)
    expected = sorted(f"{'reviews' if i % 2 else 'ratings'}-v1-{n}" for i, n in enumerate(names))
    assert deployments == expected, "every fork once, none orphaned"
    vs = cluster.get("VirtualService", "reviews")
    names_in_vs = [r["name"] for r in vs["spec"]["http"]]
    assert len(names_in_vs) == len(set(names_in_vs)), "no duplicated route"


def test_a_stale_applier_never_prunes_or_replaces_what_a_newer_list_wrote(cluster: Cluster) -> None:
    """The fencing rule, made deterministic: an applier whose sandbox list predates sandbox B sees B's fork
    and route in the live objects. Without fencing it would prune them; with it, every such write is skipped,
    and its loop backs off (whoever wrote the newer objects read B: nothing is left for it to write) with B
    intact."""
    from meshgen.kube import discovery, patching
    from meshgen.kube.reconciling import Report

    cluster.create_baseline()
    a, b = f"{cluster.namespace}-a", f"{cluster.namespace}-b"
    cluster.apply(sandbox(a))
    stale = cluster.reconciler()
    before_b = discovery.list_specs(stale.client)
    cluster.apply(sandbox(b, "ratings-v1") + "---\n" + sandbox(f"{b}2"))
    state = stale.observe().with_stored(before_b)
    changes = stale.changes(state, discovery.specs_of(before_b), {})
    assert {c.action.value for c in changes} == {"update", "delete"}, "B's objects look like orphans to it"
    outcomes = {patching.write(stale.client, c, before_b.revision)[0] for c in changes}
    assert outcomes == {patching.Outcome.FENCED}
    assert cluster.exists("Deployment", f"ratings-v1-{b}")
    report = stale.converge(state, Report())
    assert report.fenced and report.rounds == 1 and report.changes == []
    assert meshgen_routes(cluster) == [f"meshgen-{a}-0", f"meshgen-{b}2-0"]
    assert cluster.exists("Deployment", f"ratings-v1-{b}") and cluster.pending() == []


def test_a_concurrent_conflicting_spec_makes_apply_take_its_own_spec_back(cluster: Cluster) -> None:
    """Both specs were valid alone; stored together they claim one routing key. The junior one (stored later, or
    in the same second and later by name) yields: the apply that stored it finds this after storing, removes its
    own spec and exits with the error; the senior one is untouched. So the cluster's stored set stays valid."""
    import copy

    from meshgen.errors import InvalidInput
    from meshgen.kube.client import Client

    cluster.create_baseline()
    mine, theirs = f"{cluster.namespace}-mine", f"{cluster.namespace}-first"  # theirs: senior by time and name
    admin = cluster.client()

    class RacedBy(Client):
        def create(self, body, dry_run=False):  # type: ignore[no-untyped-def]
            if body["kind"] == "Sandbox" and not dry_run:
                other = copy.deepcopy(body)
                other["metadata"] = {"name": theirs}
                admin.create(other)  # stored between my checks and my write
            return super().create(body, dry_run)

    with pytest.raises(InvalidInput, match="routing key"):
        cluster.apply(sandbox(mine).replace(f"routingKey: {mine.replace('-', '')}", "routingKey: shared"),
                      client=RacedBy(admin.api))
    assert not cluster.exists("Sandbox", mine, "")
    assert cluster.exists("Sandbox", theirs, "")


def stored_as_meshgen_stores(cluster: Cluster, text: str) -> None:
    """Store a spec as ``meshgen apply`` stores it (with the index), and do nothing more: its command is still under
    way (or was stopped before its first object)."""
    body = parse_documents(text.replace("NS", cluster.namespace), "spec.yaml")[0].body
    body["metadata"]["labels"] = indexes.with_index(body)
    cluster.client().create(body)


def test_an_applier_meeting_objects_another_applier_made_meanwhile_reads_them_instead_of_racing(
        cluster: Cluster) -> None:
    """A plans the objects of B, stored just before (B's command not yet at its writes). B's command makes them
    while A writes: A meets the first one made (one 409), reads what B made in one LIST per kind, and tries to
    create none of the rest. Before, every other applier's object was one 409 more (with 50 appliers: thousands)."""
    cluster.create_baseline()
    a, b = f"{cluster.namespace}-ra", f"{cluster.namespace}-rb"
    stored_as_meshgen_stores(cluster, sandbox(b))
    ran: list[Report] = []

    def b_writes(change: Change) -> None:
        if not ran and change.ref.kind == "Deployment":  # A's own fork: its objects come first
            assert change.ref.name.endswith(a), change.summary
            ran.append(cluster.apply(sandbox(b)))

    mine = cluster.client()
    report = cluster.apply(sandbox(a), client=mine, on_change=b_writes)
    assert ran and any(c.ref.kind == "Deployment" and c.ref.name.endswith(b) for c in ran[0].changes)
    assert not any(c.sandbox == b for c in report.changes), "B's objects are B's command's"
    assert mine.failures[409] == 1, mine.failures
    assert meshgen_routes(cluster) == sorted([f"meshgen-{a}-0", f"meshgen-{b}-0"])
    assert cluster.pending() == []


def test_an_applier_makes_a_stopped_applier_s_objects_and_leaves_its_status_to_gc(cluster: Cluster) -> None:
    """B's command stored B and stopped. A's apply on the same host makes B's fork and route too (nothing lost),
    but writes only its own status: B's is its command's, or gc's, which finds B unreconciled."""
    cluster.create_baseline()
    a, b = f"{cluster.namespace}-sa", f"{cluster.namespace}-sb"
    stored_as_meshgen_stores(cluster, sandbox(b))
    report = cluster.apply(sandbox(a))
    assert cluster.exists("Deployment", f"reviews-v1-{b}") and meshgen_routes(cluster) == sorted(
        [f"meshgen-{a}-0", f"meshgen-{b}-0"])
    assert [line.split(" ")[0] for line in report.statuses] == [f"sandbox.meshgen.dev/{a}"]
    assert "status" not in cluster.get("Sandbox", b, "")
    cluster.reconciler().gc()
    assert statuses.reconciled(cluster.get("Sandbox", b, ""))["status"] == "True"
    assert cluster.pending() == []


class AnswersLost(Client):
    """A client that loses the answer to its first create and its first patch (sent, and carried out by the API
    server, but the reply never arrives: a read timeout under load)."""

    def __init__(self, admin: Client) -> None:
        super().__init__(admin.api)
        self.lost: list[str] = []

    def create(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        answer = super().create(body, dry_run)
        if not dry_run and "create" not in self.lost and body["kind"] == "Deployment":
            self.lost.append("create")
            raise NoAnswer(f"{body['metadata']['name']}: no answer (the test lost it)")
        return answer

    def patch(self, target: kinds.Ref, operations: Any, dry_run: bool = False) -> dict[str, Any]:
        answer = super().patch(target, operations, dry_run)
        if not dry_run and "patch" not in self.lost and target.kind == "VirtualService":
            self.lost.append("patch")
            raise NoAnswer(f"{target}: no answer (the test lost it)")
        return answer


def test_a_write_whose_answer_was_lost_is_re_read_and_the_apply_goes_on(cluster: Cluster) -> None:
    """With many appliers the API server may answer after the client's timeout: the write happened (or not). The
    apply re-reads and goes on from what is there instead of failing (it failed before: 9 of 50 appliers in
    bench/reconcile.py --contention 50)."""
    cluster.create_baseline()
    name = f"{cluster.namespace}-lost"
    client = AnswersLost(cluster.client())
    report = cluster.apply(sandbox(name), client=client)
    assert client.lost == ["create", "patch"]
    assert cluster.exists("Deployment", f"reviews-v1-{name}")
    assert meshgen_routes(cluster) == [f"meshgen-{name}-0"]
    assert any(c.ref.kind == "VirtualService" for c in report.changes)
    assert cluster.pending() == []
