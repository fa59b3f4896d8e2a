"""Which of a fork's hosts a routing key can reach: only ports where Istio applies ``http`` routes.

A routing key travels in a request; Istio routes requests only on HTTP ports and on ports it sniffs (see
:mod:`meshgen.baseline.protocols`). On a TCP, TLS, HTTPS, Mongo, MySQL or Redis port it routes connections, by
``tcp``/``tls`` routes that never see a header, so a sandbox route there would never apply: a fork behind only
such ports would run while nothing could reach it, and compile would say ok (DESIGN invariant 11). So:

- a fork whose Services have ports, none of which routes requests, is an error naming each port and why;
- a fork behind some ports that route requests and some that do not gets routes on the first and a warning
  naming the others (their connections reach the baseline);
- a claim is made only for a host with at least one port that routes requests: an opaque-only host gets no
  route table (its fork Service still exists, for the fork's own callers).
"""

from __future__ import annotations

from meshgen.errors import Location, Problem
from meshgen.plan.model import Diagnostic, Fork, Host, ServicePort


def _describe(port: ServicePort) -> str:
    reading = port.reading
    name = f" {port.name!r}" if port.name else ""
    return f"port {port.port}{name} is {reading.protocol.value} ({reading.reason})"


def _ports(host: Host, ports: list[ServicePort]) -> str:
    return f"Service {host.namespace}/{host.name}: " + ", ".join(_describe(p) for p in ports)


def unreachable(fork: Fork, where: Location) -> Problem | None:
    """The error for a fork no routing key can reach (every port of every fronting Service opaque), else None."""
    hosts = [s.baseline for s in fork.services if s.baseline.ports]
    if not hosts or any(h.routes_requests for h in hosts):
        return None
    listed = "; ".join(_ports(h, list(h.ports)) for h in hosts)
    return Problem(
        where,
        f"{fork.workload} is reached only through ports where Istio routes no requests ({listed}), so no routing "
        "key can ever reach a fork of it: Istio proxies TCP, TLS and database protocols one connection at a time "
        "by tcp/tls routes, and UDP not at all",
        "if a port carries HTTP or gRPC, declare it (name it http-..., http2-... or grpc-..., or set appProtocol: "
        "http); otherwise fork a workload that is called over HTTP instead",
    )


def partly_opaque(fork: Fork) -> list[Diagnostic]:
    """A warning per fronting Service port that does not route requests, when the fork is reachable elsewhere."""
    hosts = [s.baseline for s in fork.services if s.baseline.ports]
    if not any(h.routes_requests for h in hosts):
        return []
    out = []
    for host in hosts:
        opaque = [p for p in host.ports if not p.mesh_protocol.routes_requests]
        if opaque:
            out.append(Diagnostic(
                f"Sandbox {fork.sandbox}",
                f"{_ports(host, opaque)}: Istio routes no requests there, so connections on "
                f"{'that port' if len(opaque) == 1 else 'those ports'} reach {fork.workload.name} and never its "
                "fork; the fork is reached by routing key on the HTTP ports only"))
    return out
