"""Data-plane benchmark through istiod-generated configuration, side by side with the Envoy backend, in one run.

For N = 0, 10, 100, 1000 sandboxes forking the one workload of namespace ``bench-N``:

  (a) envoy backend: an Envoy fed from files with the Envoy backend's output for that plan (matcher tree on the
      routing header);
  (b) istiod: an Envoy sidecar fed over ADS by real istiod, from the Istio backend's output for that plan (the
      VirtualService's linear route list: fast path, one exact-header route per key, default route; the fork
      Services; the EnvoyFilter) stored in a local kube-apiserver (meshgen.testenv.istiomesh.running).

Each variant has its own Envoy per N (``--concurrency 1``), holding that one plan. Both send upstream to the same
static Envoy, which answers directly on two loopback addresses: the baseline workload, and the fork of the
worst-placed key (every other fork Service has no endpoint), so the upstream costs next to nothing and the
difference between rows is routing. Baseline requests carry no key; sandbox requests carry the worst-placed key in
``baggage`` (the last route of the linear table). Objects are created from the compiled output directly (the
reconciler is not what is measured here). Load: ``wrk -t1 -c16``; rounds are interleaved and the median is kept.
Ratios compare each row with N = 0 of the same variant and request; "Envoy CPU µs/req" is the measured Envoy's
user+system time per request, the figure least disturbed by a shared machine.

Usage: python bench/dataplane_istio.py [--duration 3] [--rounds 5] [--sandboxes 0,10,100,1000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dataplane

from meshgen import compiler, traffic
from meshgen.backends import envoy as envoy_backend
from meshgen.backends.localmesh import LocalMesh, proxy_addresses
from meshgen.baseline.model import pod_labels
from meshgen.documents import JsonObject
from meshgen.kube.client import AlreadyExists, Client
from meshgen.plan.model import Plan
from meshgen.testenv import istiomesh, sidecars, workloads
from meshgen.testenv import networks as testenv_networks
from meshgen.testenv.envoy import Envoy, EnvoyProcess
from meshgen.testenv.sidecars import Proxy, SidecarEnvoy

PORT = dataplane.PORT
Cell = dataplane.Cell
NAMES = {"envoy": "(a) envoy backend, matcher tree", "istiod": "(b) istiod, Istio backend's VirtualService"}


def host(n: int) -> str:
    return f"svc.bench-{n}.svc.cluster.local"


def worst_fork(plan: Plan) -> tuple[str, JsonObject] | None:
    """The routing key placed last and its fork's (fqdn, Deployment), or None without sandboxes."""
    if not plan.owners:
        return None
    key = plan.owners[-1].routing_key
    fork = next(f for f in plan.forks if f.routing_key == key)
    return fork.services[0].fork.fqdn, fork.body


class Upstream(EnvoyProcess):
    """One static Envoy answering 200 directly on the baseline's and the fork's address."""

    def __init__(self, workdir: Path, answers: dict[str, str]) -> None:
        super().__init__(workdir, "upstream", concurrency=1, log_level="error")
        self.answers = answers

    def bootstrap(self) -> dict[str, Any]:
        listeners = [{"name": body, "address": {"socket_address": {"address": address, "port_value": PORT}},
                      "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                      "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                     "HttpConnectionManager",
            "stat_prefix": body, "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            "route_config": {"virtual_hosts": [{"name": body, "domains": ["*"], "routes": [{
                "match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": body}}}]}]},
        }}]}]} for address, body in self.answers.items()]
        return {"static_resources": {"listeners": listeners}}


def envoy_variant(plan: Plan, n: int, network: int, tmp: Path, upstream: dict[str, str]) -> tuple[Envoy, str]:
    """(a) The Envoy backend's configuration for ``plan``, its clusters' endpoints pointed at the upstream."""
    proxy = Envoy(tmp / f"envoy-{n}", concurrency=1)
    config = envoy_backend.build(plan, LocalMesh(network=network, config_dir=str(proxy.config_dir)))
    fork = worst_fork(plan)
    base, forked = (address for address, body in upstream.items() if body in ("baseline", "fork"))
    clusters = []
    for cluster in config.clusters:
        target = base if cluster["name"].endswith(f"|{host(n)}") else forked if fork and cluster["name"].endswith(
            f"|{fork[0]}") else None
        endpoints = [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": target, "port_value": PORT}}}}]}] if target else []
        clusters.append({**cluster, "load_assignment": {"cluster_name": cluster["name"], "endpoints": endpoints}})
    proxy.start()
    proxy.apply(dataclasses.replace(config, clusters=tuple(clusters)))
    return proxy, config.addresses.listener(host(n))[0]


def istiod_variant(mesh: istiomesh.IstioMesh, plan: Plan, n: int, address: str, tmp: Path,
                   upstream: dict[str, str]) -> SidecarEnvoy:
    """(b) The Istio backend's objects for ``plan`` in the cluster, and a sidecar for a client in bench-N."""
    namespace = f"bench-{n}"
    create(mesh.client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for resource in plan.baseline.resources:
        create(mesh.client, resource.body)
    for body in compiler.render(plan):
        create(mesh.client, body)
    base, forked = (a for a, body in upstream.items() if body in ("baseline", "fork"))
    deployment = plan.baseline.of_kind("Deployment")[0]
    create(mesh.client, sidecars.workload_entry("svc-v1", namespace, pod_labels(deployment), base, {"http": PORT}))
    fork = worst_fork(plan)
    if fork is not None:
        labels = fork[1]["spec"]["template"]["metadata"]["labels"]
        create(mesh.client, sidecars.workload_entry("worst-fork", namespace, labels, forked, {"http": PORT}))
    proxy = Proxy("bench-client", namespace, {"app": "bench-client"}, address)
    create(mesh.client, proxy.sidecar([namespace]))
    sidecar = SidecarEnvoy(tmp / f"istiod-{n}", proxy, mesh.istiod.xds_address, mesh.istio_version)
    sidecar.start(timeout=120)
    return sidecar


def create(client: Client, body: JsonObject) -> None:
    with contextlib.suppress(AlreadyExists):  # the EnvoyFilter: one per mesh, the same for every plan
        client.create(body)


def wait_routed(address: str, n: int, key: str, timeout: float = 180.0) -> None:
    """Until the baseline request gets "baseline" and the sandbox request gets "fork" (N = 0: "baseline")."""
    started = time.monotonic()
    wanted = [({}, "baseline"), ({"baggage": f"meshgen-routing-key={key}"}, "fork" if n else "baseline")]
    while True:
        got = [workloads.send(address, PORT, traffic.Request(host=host(n), headers=dict(h))).body for h, _ in wanted]
        if got == [body for _, body in wanted]:
            return
        if time.monotonic() - started > timeout:
            sys.exit(f"N={n} at {address}: expected {[b for _, b in wanted]}, got {got}")
        time.sleep(0.2)


def main() -> None:
    args, counts = dataplane.arguments(__doc__.splitlines()[0], rounds=5)
    wrk = dataplane.wrk_command()
    leases = testenv_networks.lease_many(len(counts) + 1)  # held until the process exits
    networks = [lease.network for lease in leases]
    upstream = {f"127.{networks[0]}.200.1": "baseline", f"127.{networks[0]}.200.2": "fork"}
    print(f"compiling N = {counts} ...", flush=True)
    plans = {n: dataplane.plan_with(n, f"bench-{n}") for n in counts}
    keys = {n: plan.owners[-1].routing_key if plan.owners else "nobody" for n, plan in plans.items()}
    clients = proxy_addresses([f"bench-{n}" for n in counts], LocalMesh(network=networks[0]))
    with tempfile.TemporaryDirectory(prefix="meshgen-bench-") as directory, \
            istiomesh.running(progress=lambda line: print(line, flush=True)) as mesh:
        tmp = Path(directory)
        started: list[EnvoyProcess] = [Upstream(tmp / "upstream", upstream)]
        try:
            started[0].start()
            targets: dict[tuple[str, int], tuple[EnvoyProcess, str]] = {}
            for n, network in zip(counts, networks[1:], strict=True):
                print(f"N={n}: envoy backend, then istiod objects and a sidecar", flush=True)
                proxy, address = envoy_variant(plans[n], n, network, tmp, upstream)
                started.append(proxy)
                targets[("envoy", n)] = (proxy, address)
                sidecar = istiod_variant(mesh, plans[n], n, clients[f"bench-{n}"], tmp, upstream)
                started.append(sidecar)
                targets[("istiod", n)] = (sidecar, sidecar.proxy.address)
            for (_, n), (_, address) in targets.items():
                wait_routed(address, n, keys[n])
            mesh.istiod.wait_synced([t.proxy.id for t, _ in targets.values() if isinstance(t, SidecarEnvoy)], 120)
            mesh.istiod.raise_nacks()
            results = run_all(wrk, targets, keys, counts, args)
        finally:
            for process in started:
                process.stop()
    report(results, counts, keys)


def run_all(wrk: tuple[list[str], dict[str, str]], targets: dict[tuple[str, int], tuple[EnvoyProcess, str]],
            keys: dict[int, str], counts: list[int],
            args: argparse.Namespace) -> dict[Cell, list[tuple[float, float, float, float]]]:
    cells: list[Cell] = [(v, n, kind) for v in NAMES for n in counts for kind in ("baseline", "sandbox")]
    results: dict[Cell, list[tuple[float, float, float, float]]] = {c: [] for c in cells}
    print(f"measuring {len(cells)} cells x {args.rounds} rounds x {args.duration}s", flush=True)
    for (_, n), (proxy, address) in targets.items():  # warm up
        assert proxy.process is not None and proxy.process.pid is not None
        dataplane.measure(wrk, proxy.process.pid, PORT, [], 1, host(n), address)
    for r in range(args.rounds):
        for variant, n, kind in cells:
            proxy, address = targets[(variant, n)]
            assert proxy.process is not None and proxy.process.pid is not None
            headers = [f"baggage: userid=7,meshgen-routing-key={keys[n]};p=1"] if kind == "sandbox" else []
            results[(variant, n, kind)].append(
                dataplane.measure(wrk, proxy.process.pid, PORT, headers, args.duration, host(n), address))
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    return results


def report(results: dict[Cell, list[tuple[float, float, float, float]]], counts: list[int],
           keys: dict[int, str]) -> None:
    dataplane.print_table(results, counts, NAMES)
    print(json.dumps({"worst-placed keys": keys}))
    print("Both variants include one upstream hop to a direct-response Envoy. CPU ratio = Envoy CPU per request at "
          "N=0 / at N (1.00 = no extra cost).")


if __name__ == "__main__":
    main()
