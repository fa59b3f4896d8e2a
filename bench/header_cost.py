"""Header-cost benchmark: what one request costs Envoy as its routing-key headers grow to the size Envoy admits.

One local mesh (the Envoy backend in real Envoy, echo workloads; ``meshgen.testenv``), one sandbox. Side by side in
one run, for each shape below at about 60,000 bytes, against a short request of the same kind: the Envoy worker
CPU time per request (summed over Envoy's threads from /proc/<pid>/task/*/schedstat, nanoseconds on the CPU), sent
into the mesh (the normaliser runs) and through the edge (the edge filter runs, then the normaliser). Requests are
sent one at a time, interleaved short/long over rounds, and the median of the rounds is kept (the machine is
shared). The ratio is what matters: linear filters keep every 60 KB request within a few times a short one; the
former trim pattern made ``spaces inside a value`` cost seconds.

Usage: python bench/header_cost.py [--requests 40] [--rounds 5] [--size 60000] [--shape NAME]... [--via mesh|edge]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshgen import traffic  # noqa: E402
from meshgen.baseline.loading import load_baseline  # noqa: E402
from meshgen.documents import parse_documents  # noqa: E402
from meshgen.plan.planning import build_plan  # noqa: E402
from meshgen.spec.loading import load_specs  # noqa: E402
from meshgen.spec.models import DEFAULT_POLICY  # noqa: E402
from meshgen.testenv.mesh import RunningMesh  # noqa: E402

HOST = "reviews.bookinfo.svc.cluster.local"
SHARED = ROOT / "golden" / "_shared"
SANDBOX = """apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1}
spec:
  routingKey: pr1
  forks: [{forkOf: {namespace: bookinfo, name: reviews-v1}}]
"""

# name -> (short baggage, long baggage of about n bytes)
SHAPES: dict[str, Callable[[int], str]] = {
    "spaces inside a value": lambda n: "meshgen-routing-key=pr1" + " " * n + "x",
    "spaces around the key": lambda n: "u=1," + " " * (n // 2) + "meshgen-routing-key=pr1" + " " * (n // 2),
    "many members": lambda n: "a=1," * (n // 4) + "meshgen-routing-key=pr1",
    "many routing-length names": lambda n: "meshgen-routing-kez=1," * (n // 22) + "meshgen-routing-key=pr1",
    "many encoded names": lambda n: "%6Deshgen-routing-kez=1," * (n // 24) + "meshgen-routing-key=pr1",
    "percent escapes": lambda n: "meshgen-routing-key=" + "%41" * (n // 3),
    "plus signs in a name": lambda n: "meshgen-routing-key" + "+" * n + "=pr1",
    "a member without =": lambda n: "x" * n,
}
SHORT = "meshgen-routing-key=pr1"


def cpu_ns(pid: int) -> int:
    """Nanoseconds every thread of process ``pid`` has run on a CPU."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that just ended
    return total


def per_request(mesh: RunningMesh, pid: int, request: traffic.Request, count: int) -> float:
    """Envoy CPU microseconds per request, over ``count`` requests (each must be answered)."""
    before = cpu_ns(pid)
    for _ in range(count):
        response = mesh.send(request)
        if response.status != 200:
            raise SystemExit(f"bench: {request.via} request answered {response.status}")
    return (cpu_ns(pid) - before) / count / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=60_000, help="bytes of the long baggage (Envoy admits 60 KiB)")
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="only these shapes (repeatable)")
    parser.add_argument("--via", action="append", choices=["mesh", "edge"], help="only these paths (repeatable)")
    args = parser.parse_args()
    shapes = {name: SHAPES[name] for name in args.shape or SHAPES}
    files = [SHARED / "bookinfo.yaml", SHARED / "edge-gateway.yaml"]
    baseline = load_baseline([d for f in files for d in parse_documents(f.read_text(), str(f))])
    plan = build_plan(load_specs(parse_documents(SANDBOX, "bench")), baseline, DEFAULT_POLICY)
    with RunningMesh() as mesh:
        mesh.apply(plan)
        assert mesh.envoy.process is not None and mesh.envoy.process.pid is not None
        pid = mesh.envoy.process.pid
        rows = []
        for via in args.via or ("mesh", "edge"):
            short = traffic.Request(host=HOST, via=via, headers={"baggage": SHORT})
            per_request(mesh, pid, short, args.requests)  # warm: connections, Lua state, JIT traces
            for name, make in shapes.items():
                long = traffic.Request(host=HOST, via=via, headers={"baggage": make(args.size)})
                short_us, long_us = [], []
                for _ in range(args.rounds):
                    short_us.append(per_request(mesh, pid, short, args.requests))
                    long_us.append(per_request(mesh, pid, long, args.requests))
                a, b = statistics.median(short_us), statistics.median(long_us)
                rows.append((via, name, len(make(args.size)), a, b, b / a))
                print(f"{via:4}  {name:26} {rows[-1][2]:>6} B  short {a:8.1f} us  long {b:8.1f} us  "
                      f"ratio {b / a:5.2f}", flush=True)
    print(f"\nworst ratio: {max(r[5] for r in rows):.2f} (Envoy CPU per request, {args.size:,}-byte baggage vs "
          f"{len(SHORT)} bytes; median of {args.rounds} rounds of {args.requests})")


if __name__ == "__main__":
    main()
