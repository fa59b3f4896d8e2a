"""Reconcile benchmark against a real kube-apiserver: apply cost as the store grows; many appliers on one host.

Starts its own etcd + kube-apiserver (meshgen.testenv; audit log at Metadata level) and creates a baseline of
``--hosts`` Services + Deployments in 10 namespaces (half of the hosts with a user VirtualService).

**Scaling** (``--sandboxes 1000,4000,10000``): stores sandboxes, 10 per host (``--per-host``), in applies of 500,
up to each size in turn on the same cluster, and at each size measures three applies of one spec file each, the
way a CI job runs them, all on host 0 (which holds ``--per-host`` sandboxes at every size):

  (a) no-op: a stored sandbox applied again unchanged;
  (b) one changed sandbox (a new image);
  (c) one new sandbox.

For each: wall time of the reconcile (in-process, without interpreter start-up), requests by verb counted by the
client, and the same counted from the API server's audit log; then, per scenario, t(largest)/t(smallest). Goal:
at most 1.3 for (b) and (c), and request counts that do not grow with the store.

**Contention** (``--contention 50``; ``--contention-at 5000``): once the store holds 5,000, 50 appliers (threads,
each its own client) each apply a new sandbox forking the same hot workload (a host no stored sandbox uses), all
at once. Checks that every one converged (its fork exists, the hot host's VirtualService routes its key) and that a
no-op apply afterwards writes nothing; prints total writes, conflicts (409 and failed ``test`` ops, 422) and
p50/p99 apply time.

Usage: python bench/reconcile.py [--sandboxes 1000,4000,10000] [--contention 50 [--contention-at 5000]]
(or: make bench-reconcile)

Measured on 2 cores: see README.md (Apply cost).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from meshgen.documents import Document
from meshgen.errors import Location
from meshgen.kube import installing, kinds, vetting
from meshgen.kube.client import Client
from meshgen.kube.reconciling import NewSpecs, Reconciler
from meshgen.spec import names as spec_names
from meshgen.spec.loading import load_specs
from meshgen.spec.models import DEFAULT_POLICY
from meshgen.testenv import binaries, controlplane

NAMESPACES = 10
VERBS = ("list", "get", "create", "patch", "update", "delete")
WRITES = ("create", "patch", "update", "delete")


def baseline(hosts: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for i in range(hosts):
        ns, name = f"ns-{i % NAMESPACES}", f"svc-{i}"
        labels = {"app": name, "version": "v1"}
        objects.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080}]}})
        objects.append({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": f"{name}-v1", "namespace": ns},
                        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                                     {"name": "app", "image": f"example/{name}:1",
                                      "ports": [{"containerPort": 8080}]}]}}}})
        if i % 2 == 0:
            to_host = [{"destination": {"host": name}}]
            objects.append({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                            "metadata": {"name": name, "namespace": ns},
                            "spec": {"hosts": [name], "http": [
                                {"name": "api", "match": [{"uri": {"prefix": "/api"}}], "timeout": "2s",
                                 "route": to_host},
                                {"name": "default", "route": to_host}]}})
    return objects


def sandbox(name: str, host: int, image: str = "pr") -> dict[str, Any]:
    return {"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox",
            "metadata": {"name": name, "labels": {"team": f"t{host % 20}"}},
            "spec": {"forks": [{"forkOf": {"namespace": f"ns-{host % NAMESPACES}", "name": f"svc-{host}-v1"},
                                "customizations": {"images": [{"image": f"example/svc-{host}:{image}-{name}"}]}}]}}


def new_specs(bodies: list[dict[str, Any]]) -> NewSpecs:
    docs = [Document(Location("bench.yaml", i), b) for i, b in enumerate(bodies)]
    return NewSpecs(load_specs(docs), tuple(bodies))


def audit_counts(log: Path, start: int) -> collections.Counter[str]:
    """Requests by verb that meshgen's user made after byte offset ``start`` of the audit log; also, as
    ``<verb> ok``, the writes that succeeded and were not dry runs (what was written)."""
    counts: collections.Counter[str] = collections.Counter()
    with open(log, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    for line in data.splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") == "meshgen-admin":
            counts[event["verb"]] += 1
            code = int((event.get("responseStatus") or {}).get("code") or 0)
            if event["verb"] in WRITES and code < 300 and "dryRun" not in str(event.get("requestURI")):
                counts[f"{event['verb']} ok"] += 1
    return counts


def measure(name: str, plane: controlplane.ControlPlane, specs: list[dict[str, Any]]) -> dict[str, Any]:
    client = Client.from_kubeconfig(str(plane.kubeconfig))
    offset = plane.audit_log.stat().st_size
    started = time.perf_counter()
    report = Reconciler(client, DEFAULT_POLICY).apply(new_specs(specs))
    wall = time.perf_counter() - started
    time.sleep(0.5)  # let the audit backend flush
    return {"name": name, "wall": wall, "client": dict(client.counts),
            "audit": dict(audit_counts(plane.audit_log, offset)),
            "changes": [c.summary for c in report.changes], "rounds": report.rounds}


def fmt(counts: dict[str, int]) -> str:
    return " ".join(f"{v}:{counts.get(v, 0)}" for v in VERBS if counts.get(v))


def writes(counts: dict[str, int], suffix: str = "") -> int:
    """Write requests (``suffix=" ok"``: of an audit count, those that wrote)."""
    return sum(counts.get(v + suffix, 0) for v in WRITES)


def seed(plane: controlplane.ControlPlane, start: int, stop: int, per_host: int, workers: int = 4) -> None:
    """Store sandboxes ``start``..``stop - 1`` (sandbox i on host i // per_host), 500 per apply, ``workers``
    applies at once (on disjoint hosts). Seeding skips the API server dry run every apply sends before its first
    write (meshgen.kube.vetting): these specs are known good, and it halves the requests; the measured applies
    send it."""
    chunks = [(first, min(stop, first + 500)) for first in range(start, stop, 500)]

    def run(chunk: tuple[int, int]) -> None:
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        bodies = [sandbox(f"sb-{i:05d}", i // per_host) for i in range(*chunk)]
        Reconciler(client, DEFAULT_POLICY).apply(new_specs(bodies))

    vet = vetting.vet
    vetting.vet = lambda *args, **kwargs: None
    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, chunks))
    finally:
        vetting.vet = vet


def scaling(plane: controlplane.ControlPlane, sizes: list[int], per_host: int, hot: int,
            contended: tuple[int, int] | None) -> None:
    """Seed up to each size and measure there; ``contended``: (appliers, size) runs the contention once the store
    holds that size (on its own hot host, so the other measurements are unaffected)."""
    stored, results, image = 0, {}, "pr"
    steps = sorted({*sizes, *([contended[1]] if contended else [])})
    for size in steps:
        started = time.perf_counter()
        seed(plane, stored, size, per_host)
        print(f"seeding: stored {size - stored} more sandboxes (now {size}) in {time.perf_counter() - started:.1f} s",
              flush=True)
        stored = size
        if contended and size == contended[1]:
            contention(plane, size, contended[0], hot)
        if size not in sizes:
            continue
        results[size] = [
            measure("(a) no-op apply", plane, [sandbox("sb-00007", 0, image=image)]),
            measure("(b) one changed sandbox", plane, [sandbox("sb-00007", 0, image=f"v{size}")]),
            measure("(c) one new sandbox", plane, [sandbox(f"new-{size}", 0)]),
        ]
        image = f"v{size}"
        for r in results[size]:  # as measured, too (the tables follow at the end)
            print(f"measured at {size}: {r['name']}: {r['wall']:.2f} s, client {fmt(r['client'])}, "
                  f"audit {fmt(r['audit'])}", flush=True)
    print(f"\n{per_host} stored sandboxes per host; requests by verb (client counter | kube-apiserver audit log)")
    print("| stored | scenario                |   wall   | writes | client                            | audit log"
          "                         |")
    print("|--------|-------------------------|----------|--------|-----------------------------------|----------"
          "-------------------------|")
    for size, rows in results.items():
        for r in rows:
            print(f"| {size:6} | {r['name']:<23} | {r['wall']:6.2f} s | {writes(r['client']):6} "
                  f"| {fmt(r['client']):<33} | {fmt(r['audit']):<33} |")
    low, high = sizes[0], sizes[-1]
    print(f"\n| scenario                | t({high})/t({low}) |")
    print("|-------------------------|------------|")
    for i, r in enumerate(results[low]):
        print(f"| {r['name']:<23} | {results[high][i]['wall'] / r['wall']:10.2f} |")
    for size, rows in results.items():
        for r in rows:
            print(f"{size} {r['name']}: {r['rounds']} round(s); changed: " + ("; ".join(r["changes"]) or "nothing"))


def contention(plane: controlplane.ControlPlane, stored: int, appliers: int, hot: int) -> None:
    """``appliers`` new sandboxes forking host ``hot``'s workload, applied at once (module docstring)."""
    client = Client.from_kubeconfig(str(plane.kubeconfig))
    barrier = threading.Barrier(appliers)
    outcomes: list[dict[str, Any]] = [{} for _ in range(appliers)]

    def run(i: int) -> None:
        own = Client.from_kubeconfig(str(plane.kubeconfig))
        barrier.wait()
        began = time.perf_counter()
        try:
            report = Reconciler(own, DEFAULT_POLICY).apply(new_specs([sandbox(f"hot-{i:02d}", hot)]))
            outcomes[i] = {"rounds": report.rounds, "fenced": report.fenced}
        except Exception as exc:  # reported, not raised: every applier's outcome is counted
            outcomes[i] = {"error": f"{type(exc).__name__}: {exc}"}
        outcomes[i].update(wall=time.perf_counter() - began, counts=dict(own.counts), failures=dict(own.failures))

    offset = plane.audit_log.stat().st_size
    threads = [threading.Thread(target=run, args=(i,)) for i in range(appliers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.5)
    audit = audit_counts(plane.audit_log, offset)
    errors = [o["error"] for o in outcomes if "error" in o]
    walls = sorted(o["wall"] for o in outcomes)
    total = sum(writes(o["counts"]) for o in outcomes)
    conflicts = sum(o["failures"].get(409, 0) for o in outcomes)
    failed_tests = sum(o["failures"].get(422, 0) for o in outcomes)
    # Converged: every applier's fork exists, the hot host's VirtualService (or meshgen's) routes every key, and
    # one more apply of the hot host writes nothing.
    names = [f"hot-{i:02d}" for i in range(appliers)]
    ns = f"ns-{hot % NAMESPACES}"
    forks = {o["metadata"]["name"] for o in client.list(kinds.DEPLOYMENT, ns).items}
    missing = [n for n in names if f"svc-{hot}-v1-{n}" not in forks]
    routes = json.dumps([o.get("spec") for o in client.list(kinds.VIRTUAL_SERVICE, ns).items])
    unrouted = [n for n in names if spec_names.derive_routing_key("Sandbox", n) not in routes]
    check = Client.from_kubeconfig(str(plane.kubeconfig))
    again = Reconciler(check, DEFAULT_POLICY).apply(new_specs([sandbox(names[0], hot)]))
    print(f"\n{appliers} concurrent appliers forking one hot host over {stored} stored sandboxes (threads; "
          "each its own client)")
    written = writes(dict(audit), " ok")
    print("| appliers | errors | not converged | write requests | written | written/sandbox | 409 | failed test "
          "| p50 apply | p99 apply |")
    print("|----------|--------|---------------|----------------|---------|-----------------|-----|-------------"
          "|-----------|-----------|")
    print(f"| {appliers:8} | {len(errors):6} | {len(set(missing) | set(unrouted)):13} | {total:14} | {written:7} "
          f"| {written / appliers:15.2f} | {conflicts:3} | {failed_tests:11} | {walls[len(walls) // 2]:7.2f} s "
          f"| {walls[min(len(walls) - 1, int(len(walls) * 0.99))]:7.2f} s |")
    print("written (audit log: succeeded, not dry runs): " + ", ".join(
        f"{v}: {audit.get(v + ' ok', 0)}" for v in WRITES))
    print(f"no-op apply afterwards: {len(again.changes)} changes, {writes(dict(check.counts))} writes")
    rounds = collections.Counter(o.get("rounds") for o in outcomes)
    print("rounds per applier: " + ", ".join(f"{k}: {v}" for k, v in sorted(rounds.items(), key=str)))
    for error in errors[:5]:
        print("error:", error)
    if missing or unrouted:
        print("not converged: forks missing", missing, "; keys not routed", unrouted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sandboxes", default="1000", help="stored sizes, comma-separated (1000,4000,10000)")
    parser.add_argument("--per-host", type=int, default=10, help="stored sandboxes per host")
    parser.add_argument("--hosts", type=int, default=0, help="hosts in the baseline (default: enough for the "
                        "largest size, plus one hot host)")
    parser.add_argument("--contention", type=int, default=0, metavar="N",
                        help="also: N concurrent appliers on one hot host, once the store holds --contention-at")
    parser.add_argument("--contention-at", type=int, default=5000, metavar="SIZE")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sandboxes.split(","))
    largest = max(sizes[-1], args.contention_at if args.contention else 0)
    hosts = args.hosts or -(-largest // args.per_host) + 1
    with tempfile.TemporaryDirectory() as tmp:
        plane = controlplane.ControlPlane(Path(tmp), binaries.ensure())
        plane.start()
        try:
            client = Client.from_kubeconfig(str(plane.kubeconfig))
            installing.install(client, None)
            for i in range(NAMESPACES):
                plane.create_namespace(f"ns-{i}")
            started = time.perf_counter()
            for body in baseline(hosts):
                client.create(body)
            print(f"baseline: {hosts} hosts in {time.perf_counter() - started:.1f} s", flush=True)
            scaling(plane, sizes, args.per_host, hosts - 1,
                    (args.contention, args.contention_at) if args.contention else None)
        finally:
            plane.stop()


if __name__ == "__main__":
    main()
