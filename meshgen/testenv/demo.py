"""The live local mesh demo: the baseline, then sandboxes applied to the running Envoy, then requests.

1. starts Envoy and an echo workload per baseline Deployment, routing the baseline alone;
2. applies the sandboxes and route groups to the running Envoy (new routes and clusters, no restart) and starts
   the forks;
3. sends the entry service one request without a key and one per sandbox and route group key (in baggage, as an
   instrumented client would), and returns each hop path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meshgen import compiler, traffic
from meshgen.baseline.model import SERVICE, resolve_host
from meshgen.errors import InvalidInput, Problem
from meshgen.plan.model import OwnerKind, Plan
from meshgen.plan.planning import build_plan
from meshgen.spec.loading import Specs
from meshgen.testenv.mesh import RunningMesh
from meshgen.testenv.workloads import resolve_calls


@dataclass(frozen=True)
class Row:
    """One demo request and what answered it."""

    label: str
    key: str | None
    status: int
    hops: str


def entry_host(plan: Plan, topology: traffic.Topology) -> str:
    """The service requests enter at: the first caller in the topology that nobody calls."""
    domain = plan.policy.spec.cluster_domain
    callees = {c for targets in topology.calls.values() for c in targets}
    roots = [caller for caller in topology.calls if caller not in callees]
    for name in roots or list(topology.calls):
        for service in plan.baseline.of_kind(SERVICE):
            if name in (service.name, f"{service.name}.{service.namespace}"):
                return resolve_host(service.name, service.namespace, domain)
    raise InvalidInput([Problem(None, "the topology names no service of the baseline to send requests to",
                                "add calls: {<entry service>: [...]} to the topology file")])


def key_headers(plan: Plan, key: str) -> dict[str, str | list[str]]:
    """How an instrumented client carries ``key``: in baggage when the policy reads baggage, else its header."""
    sources = plan.policy.spec.propagation
    member = next((s.key for s in sources if s.kind == "baggage"), None)
    if member is not None:
        return {"baggage": f"{member}={key}"}
    return {next(s.key for s in sources if s.kind == "header") if any(s.kind == "header" for s in sources)
            else plan.routing_header: key}


def run(inputs: compiler.Inputs, topology: traffic.Topology, progress: Callable[[str], None]) -> list[Row]:
    """Run the demo; ``progress`` gets one line per step. Every process is stopped before this returns."""
    plan = compiler.plan_of(inputs)
    baseline_plan = build_plan(Specs(), inputs.baseline, inputs.policy)
    resolve_calls(plan, topology)  # a wrong topology fails here, before any process starts
    entry = entry_host(plan, topology)
    with RunningMesh(progress=progress) as mesh:
        progress("1/3 baseline only")
        mesh.apply(baseline_plan, topology)
        progress(f"2/3 applying {len(plan.owners)} routing key(s) and {len(plan.forks)} fork(s) to the running "
                 "envoy (no restart)")
        mesh.apply(plan, topology)
        progress(f"3/3 sending requests to {entry}")
        rows = []
        keys: list[tuple[str, str | None]] = [("no key", None)]
        keys += [(f"{'route group' if o.kind is OwnerKind.ROUTE_GROUP else 'sandbox'} {o.name}", o.routing_key)
                 for o in plan.owners]
        for label, key in keys:
            request = traffic.Request(host=entry, headers=key_headers(plan, key) if key else {})
            response = mesh.send(request)
            rows.append(Row(label, key, response.status, traffic.hops(response.body)))
    return rows


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table."""
    header = ("request", "routing key", "status", "hop path")
    cells = [header, *((r.label, r.key or "-", str(r.status), r.hops) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = ["  ".join([*(c[i].ljust(widths[i]) for i in range(3)), c[3]]).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in [*widths, len(header[3])]))
    return "\n".join(lines)
