"""Data-plane benchmark: what routing costs in Envoy as sandboxes accumulate on one host.

Side by side in one run and one Envoy (``--concurrency 1``, so the load generator gets the other core): for
N = 0, 10, 100, 1000 sandboxes forking the same workload, each host configuration is compiled by meshgen and served
on its own listener:

  (a) matcher tree: the Envoy backend's virtual host (``exact_match_map`` on the routing header);
  (b) linear table: the Istio backend's VirtualService for the host (fast path, one exact-header route per key,
      default route) translated route by route the way istiod does, in a plain ``routes`` list.

Both carry the same Lua normaliser first, as they do in production. Every route's action is replaced by a
``direct_response`` naming its cluster, so upstreams cost nothing and Envoy's routing is what is measured. Baseline
requests carry no key; sandbox requests carry, in ``baggage``, the key of the worst-placed sandbox (the last
route of the linear table; for the matcher tree every key costs the same). At N = 0 the "sandbox" request carries
a key nobody claims. Load: ``wrk -t1 -c16`` (HTTP/1.1 keep-alive); measurements are interleaved over rounds and
the median is kept, because the machine is shared. Ratios compare each row with N = 0 of the same variant and
request. Envoy CPU per request is from /proc (user+system time over the run), the figure least disturbed by noise.

Usage: python bench/dataplane.py [--duration 3] [--rounds 5] [--sandboxes 0,10,100,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from meshgen.backends import envoy, istio
from meshgen.backends.envoy import routes as envoy_routes
from meshgen.backends.envoy.clusters import Destinations
from meshgen.backends.localmesh import LocalMesh, addresses
from meshgen.baseline.loading import load_baseline
from meshgen.documents import Document
from meshgen.errors import Location
from meshgen.plan import virtual_services
from meshgen.plan.model import Plan
from meshgen.plan.planning import build_plan
from meshgen.plan.routes import default_route
from meshgen.plan.routing import Origin
from meshgen.spec.loading import load_specs
from meshgen.spec.models import DEFAULT_POLICY
from meshgen.testenv.envoy import envoy_binary
from meshgen.testenv.processes import Process, free_port, wait_until

HOST = "svc.bench.svc.cluster.local"
PORT = 8080
ROOT = Path(__file__).resolve().parent.parent
GOALS = {"baseline": 0.95, "sandbox": 0.90}


def plan_with(n: int, namespace: str = "bench") -> Plan:
    """A one-service baseline with ``n`` sandboxes forking its workload (keys k0000.., sorted by name)."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": namespace},
               "spec": {"selector": {"app": "svc"}, "ports": [{"name": "http", "port": PORT}]}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "svc-v1", "namespace": namespace},
                  "spec": {"selector": {"matchLabels": {"app": "svc"}},
                           "template": {"metadata": {"labels": {"app": "svc"}},
                                        "spec": {"containers": [{"name": "app", "image": "example/svc:1"}]}}}}
    baseline = load_baseline([Document(Location("bench", i), d) for i, d in enumerate([service, deployment])])
    sandboxes = [{"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": f"sb-{i:04d}"},
                  "spec": {"routingKey": f"k{i:04d}",
                           "forks": [{"forkOf": {"namespace": namespace, "name": "svc-v1"}}]}}
                 for i in range(n)]
    specs = load_specs([Document(Location("bench", i), s) for i, s in enumerate(sandboxes)])
    return build_plan(specs, baseline, DEFAULT_POLICY)


def direct(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same routes answering directly (the body names the cluster they would have used)."""
    out = []
    for route in routes:
        action = route.get("route") or {}
        target = action.get("cluster") or json.dumps(action.get("weighted_clusters"))
        out.append({**{k: v for k, v in route.items() if k != "route"},
                    "direct_response": {"status": 200, "body": {"inline_string": target}}})
    return out


def matcher_vhost(plan: Plan) -> dict[str, Any]:
    """(a) The Envoy backend's virtual host for the host, answering directly."""
    config = envoy.build(plan, LocalMesh(config_dir="/unused"))
    (route_config,) = [rc for rc in config.route_configs if rc["name"] == str(PORT)]
    vhost = dict(next(v for v in route_config["virtual_hosts"] if v["name"] == f"{HOST}:{PORT}"))
    if "matcher" in vhost:
        tree = vhost["matcher"]
        for entry in [*tree["matcher_tree"]["exact_match_map"]["map"].values(), tree["on_no_match"]]:
            typed = entry["action"]["typed_config"]
            typed["routes"] = direct(typed["routes"])
    else:
        vhost["routes"] = direct(vhost["routes"])
    return vhost


def linear_vhost(plan: Plan) -> dict[str, Any]:
    """(b) The Istio backend's VirtualService for the host as a linear route list, answering directly."""
    tables = [t for t in plan.tables if HOST in t.hosts]
    http = istio.virtual_service(plan, tables[0])["spec"]["http"] if tables else []
    read = [virtual_services.read_route(entry, Origin(None, i, entry), "bench", plan.policy.spec.cluster_domain)
            for i, entry in enumerate(http)] or [default_route(HOST)]
    destinations = Destinations(plan, addresses(plan))
    source = envoy_routes.RouteSource(PORT, lambda d: destinations.cluster_of(d, PORT))
    routes = [r for route in read for r in envoy_routes.translate(route, source)]
    return {"name": f"{HOST}:{PORT}", "domains": ["*"], "routes": direct(routes)}


def bootstrap(listeners: dict[tuple[str, int], tuple[int, dict[str, Any]]], filters: list[Any]) -> dict[str, Any]:
    """One Envoy: a listener per (variant, N), each with its own inline route configuration."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [
            {"name": f"{variant}-{n}", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
             "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                 "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                          "HttpConnectionManager",
                 "stat_prefix": f"{variant}_{n}", "http_filters": filters,
                 "route_config": {"name": f"{variant}-{n}", "virtual_hosts": [vhost]}}}]}]}
            for (variant, n), (port, vhost) in listeners.items()
        ]},
    }


def wrk_command() -> tuple[list[str], dict[str, str]]:
    """wrk from PATH, or the copy ``make wrk`` unpacked into .venv/wrk."""
    found = shutil.which("wrk")
    if found:
        return [found], dict(os.environ)
    local = ROOT / ".venv" / "wrk"
    if (local / "usr/bin/wrk").exists():
        libs = ":".join(str(p) for p in (local / "usr/lib").glob("*-linux-gnu"))
        return [str(local / "usr/bin/wrk")], {**os.environ, "LD_LIBRARY_PATH": libs}
    sys.exit("wrk is not installed: run `make wrk` (Debian package wrk)")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(wrk: tuple[list[str], dict[str, str]], pid: int, port: int, headers: list[str],
            duration: int, host: str = HOST, address: str = "127.0.0.1") -> tuple[float, float, float, float]:
    """(requests/s, p50 ms, p99 ms, Envoy CPU µs per request) of one wrk run."""
    argv = [*wrk[0], "-t1", "-c16", f"-d{duration}s", "--latency", "-H", f"Host: {host}"]
    for header in headers:
        argv += ["-H", header]
    before = cpu_seconds(pid)
    out = subprocess.run([*argv, f"http://{address}:{port}/"], capture_output=True, text=True, env=wrk[1],
                         check=True).stdout
    used = cpu_seconds(pid) - before
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    if re.search(r"Non-2xx or 3xx responses", out):
        sys.exit(f"non-2xx answers on port {port}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rate, _latency(out, "50%"), _latency(out, "99%"), used / max(count, 1) * 1e6


def _latency(out: str, pct: str) -> float:
    value, unit = re.search(rf"^\s+{pct}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def arguments(description: str, rounds: int) -> tuple[argparse.Namespace, list[int]]:
    """The command line both data-plane benchmarks take, and the sandbox counts it names."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved repetitions (median kept)")
    parser.add_argument("--sandboxes", default="0,10,100,1000", help="comma-separated N")
    args = parser.parse_args()
    return args, [int(n) for n in args.sandboxes.split(",")]


def main() -> None:
    args, counts = arguments(__doc__.splitlines()[0], rounds=5)
    wrk = wrk_command()

    print(f"compiling N = {counts} ...", flush=True)
    listeners: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
    keys: dict[int, str] = {}
    filters: list[Any] = []
    for n in counts:
        plan = plan_with(n)
        keys[n] = plan.owners[-1].routing_key if plan.owners else "nobody"
        if not filters:
            built = envoy.build(plan, LocalMesh(config_dir="/unused")).listeners
            listener = next(x for x in built if x["name"] != envoy.EDGE_LISTENER)  # a mesh listener's filters
            filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        for variant, vhost in (("matcher", matcher_vhost(plan)), ("linear", linear_vhost(plan))):
            vhost["domains"] = ["*"]
            listeners[(variant, n)] = (free_port(), vhost)  # fixed ports met ephemeral ones in use

    with tempfile.TemporaryDirectory(prefix="meshgen-bench-") as tmp:
        config = Path(tmp) / "bench.json"
        config.write_text(json.dumps(bootstrap(listeners, filters)))
        address_file = Path(tmp) / "admin"
        proxy = Process("envoy", [envoy_binary(), "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
                                  "-l", "error", "--admin-address-path", str(address_file)], Path(tmp) / "envoy.log")
        proxy.start()
        try:
            def ready() -> bool:
                try:
                    admin = address_file.read_text().strip()
                    return bool(admin) and urllib.request.urlopen(f"http://{admin}/ready", timeout=1).status == 200
                except OSError:
                    return False

            wait_until(ready, "Envoy", [proxy], 60)
            assert proxy.pid is not None
            results = run_all(wrk, proxy.pid, listeners, keys, counts, args)
        finally:
            proxy.stop()
    report(results, counts, keys)


Cell = tuple[str, int, str]


def run_all(wrk: tuple[list[str], dict[str, str]], pid: int,
            listeners: dict[tuple[str, int], tuple[int, dict[str, Any]]], keys: dict[int, str], counts: list[int],
            args: argparse.Namespace) -> dict[Cell, list[tuple[float, float, float, float]]]:
    cells: list[Cell] = [(v, n, kind) for v in ("matcher", "linear") for n in counts
                         for kind in ("baseline", "sandbox")]
    results: dict[Cell, list[tuple[float, float, float, float]]] = {c: [] for c in cells}
    total = len(cells) * args.rounds * args.duration
    print(f"measuring {len(cells)} cells x {args.rounds} rounds x {args.duration:g}s (about {total / 60:.1f} min)",
          flush=True)
    for port, _ in listeners.values():  # warm up each listener once
        measure(wrk, pid, port, [], 1)
    for r in range(args.rounds):
        started = time.monotonic()
        for variant, n, kind in cells:
            headers = [f"baggage: userid=7,meshgen-routing-key={keys[n]};p=1"] if kind == "sandbox" else []
            results[(variant, n, kind)].append(measure(wrk, pid, listeners[(variant, n)][0], headers, args.duration))
        print(f"  round {r + 1}/{args.rounds} done in {time.monotonic() - started:.0f}s", flush=True)
    return results


def print_table(results: dict[Cell, list[tuple[float, float, float, float]]], counts: list[int],
                names: dict[str, str]) -> None:
    """The markdown table: one row per (variant, N, request), medians, ratios against N = counts[0]."""
    print()
    print("| variant | N | request | req/s | ratio vs N=0 | p50 ms | p99 ms | Envoy CPU µs/req | CPU ratio |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for variant, name in names.items():
        for n in counts:
            for kind in ("baseline", "sandbox"):
                cell = (variant, n, kind)
                ratio = median(results, cell, 0) / median(results, (variant, counts[0], kind), 0)
                cpu_ratio = median(results, (variant, counts[0], kind), 3) / median(results, cell, 3)
                print(f"| {name} | {n} | {kind} | {median(results, cell, 0):.0f} | {ratio:.2f} | "
                      f"{median(results, cell, 1):.2f} | {median(results, cell, 2):.2f} | "
                      f"{median(results, cell, 3):.1f} | {cpu_ratio:.2f} |")
    print()


def median(results: dict[Cell, list[tuple[float, float, float, float]]], cell: Cell, i: int) -> float:
    return statistics.median(x[i] for x in results[cell])


def report(results: dict[Cell, list[tuple[float, float, float, float]]], counts: list[int],
           keys: dict[int, str]) -> None:
    print_table(results, counts, {"matcher": "(a) envoy backend, matcher tree",
                                  "linear": "(b) linear table (Istio VS shape)"})
    print(f"sandbox requests carry the worst-placed key in baggage (N={counts[-1]}: {keys[counts[-1]]}). "
          "CPU ratio = Envoy CPU per request at N=0 / at N (1.00 = no extra cost).")
    top = counts[-1]
    for kind, goal in GOALS.items():
        ratio = median(results, ("matcher", top, kind), 0) / median(results, ("matcher", counts[0], kind), 0)
        verdict = "meets" if ratio >= goal else "MISSES"
        print(f"goal (a) at N={top}, {kind}: ratio {ratio:.2f} {verdict} >= {goal:.2f}")


if __name__ == "__main__":
    main()
