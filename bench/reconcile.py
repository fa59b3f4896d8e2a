"""Reconcile benchmark against a real kube-apiserver: 1,000 stored sandboxes over 100 hosts.

Starts its own etcd + kube-apiserver (meshgen.testenv; audit log at Metadata level), creates a baseline of 100
Services + Deployments in 10 namespaces (half of the hosts with a user VirtualService), stores 1,000 sandboxes
(10 per host), then measures three applies of one spec file each, the way a CI job runs them:

  (a) no-op: a stored sandbox applied again unchanged;
  (b) one changed sandbox (a new image);
  (c) one new sandbox.

For each: wall time of the reconcile (in-process, without interpreter start-up), requests by verb counted by the
client, and the same counted from the API server's audit log. Goal: (a) zero writes; (b)/(c) writes only to the
objects that change; reads are LIST calls, a fixed number per apply, never a GET per object.

Usage: python bench/reconcile.py [--sandboxes 1000] [--hosts 100]   (or: make bench-reconcile)

Measured on 2 cores (kube-apiserver v1.37.2, etcd v3.7.3; lists are paged 500 items at a time):

| scenario                |   wall   | writes | client                       | audit log                    |
|-------------------------|----------|--------|------------------------------|------------------------------|
| (a) no-op apply         |   1.37 s |      0 | list:12                      | list:12                      |
| (b) one changed sandbox |   2.85 s |      2 | list:18 patch:2              | list:18 patch:2              |
| (c) one new sandbox     |   2.93 s |      4 | list:20 create:3 patch:1     | list:20 create:3 patch:1     |
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from meshgen.documents import Document
from meshgen.errors import Location
from meshgen.kube import installing
from meshgen.kube.client import Client
from meshgen.kube.reconciling import NewSpecs, Reconciler
from meshgen.spec.loading import load_specs
from meshgen.spec.models import DEFAULT_POLICY
from meshgen.testenv import binaries, controlplane

NAMESPACES = 10
VERBS = ("list", "get", "create", "patch", "update", "delete")


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


def sandbox(i: int, hosts: int, image: str = "pr") -> dict[str, Any]:
    host = i % hosts
    return {"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox",
            "metadata": {"name": f"sb-{i:04d}", "labels": {"team": f"t{i % 20}"}},
            "spec": {"forks": [{"forkOf": {"namespace": f"ns-{host % NAMESPACES}", "name": f"svc-{host}-v1"},
                                "customizations": {"images": [{"image": f"example/svc-{host}:{image}-{i}"}]}}]}}


def new_specs(bodies: list[dict[str, Any]]) -> NewSpecs:
    docs = [Document(Location("bench.yaml", i), b) for i, b in enumerate(bodies)]
    return NewSpecs(load_specs(docs), tuple(bodies))


def audit_counts(log: Path, start: int) -> tuple[collections.Counter[str], int]:
    """Requests by verb that meshgen's user made after byte offset ``start`` of the audit log."""
    counts: collections.Counter[str] = collections.Counter()
    with open(log, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    for line in data.splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") == "meshgen-admin":
            counts[event["verb"]] += 1
    return counts, start + len(data)


def measure(name: str, plane: controlplane.ControlPlane, specs: list[dict[str, Any]]) -> dict[str, Any]:
    client = Client.from_kubeconfig(str(plane.kubeconfig))
    offset = plane.audit_log.stat().st_size
    started = time.perf_counter()
    report = Reconciler(client, DEFAULT_POLICY).apply(new_specs(specs))
    wall = time.perf_counter() - started
    time.sleep(0.5)  # let the audit backend flush
    audit, _ = audit_counts(plane.audit_log, offset)
    return {"name": name, "wall": wall, "client": dict(client.counts), "audit": dict(audit),
            "changes": [c.summary for c in report.changes], "rounds": report.rounds}


def row(result: dict[str, Any]) -> str:
    def fmt(counts: dict[str, int]) -> str:
        return " ".join(f"{v}:{counts.get(v, 0)}" for v in VERBS if counts.get(v))

    writes = sum(result["client"].get(v, 0) for v in ("create", "patch", "update", "delete"))
    return (f"| {result['name']:<23} | {result['wall']:6.2f} s | {writes:6} | {fmt(result['client']):<28} "
            f"| {fmt(result['audit']):<28} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sandboxes", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plane = controlplane.ControlPlane(Path(tmp), binaries.ensure())
        plane.start()
        try:
            client = Client.from_kubeconfig(str(plane.kubeconfig))
            installing.install(client, None)
            for i in range(NAMESPACES):
                plane.create_namespace(f"ns-{i}")
            for body in baseline(args.hosts):
                client.create(body)
            started = time.perf_counter()
            setup = Reconciler(client, DEFAULT_POLICY).apply(
                new_specs([sandbox(i, args.hosts) for i in range(args.sandboxes)]))
            print(f"setup: stored {args.sandboxes} sandboxes over {args.hosts} hosts and wrote "
                  f"{len(setup.changes)} objects in {time.perf_counter() - started:.1f} s")
            results = [
                measure("(a) no-op apply", plane, [sandbox(7, args.hosts)]),
                measure("(b) one changed sandbox", plane, [sandbox(7, args.hosts, image="v2")]),
                measure("(c) one new sandbox", plane, [sandbox(args.sandboxes, args.hosts)]),
            ]
        finally:
            plane.stop()
    print(f"\n{args.sandboxes} stored sandboxes over {args.hosts} hosts; requests by verb (client counter | "
          "kube-apiserver audit log)")
    print("| scenario                |   wall   | writes | client                       | audit log"
          "                    |")
    print("|-------------------------|----------|--------|------------------------------|----------"
          "--------------------|")
    for result in results:
        print(row(result))
    for result in results:
        print(f"\n{result['name']}: {result['rounds']} round(s); changed: "
              + ("; ".join(result["changes"]) or "nothing"))


if __name__ == "__main__":
    main()
