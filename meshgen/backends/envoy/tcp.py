"""Opaque and sniffed Service ports in Envoy's terms: a ``tcp_proxy`` per listener, from VirtualService ``tcp`` routes.

What istiod builds for a sidecar's outbound TCP listener (``buildSidecarOutboundTCPFilterChainOpts``,
``buildOutboundNetworkFilters`` in istio.io/istio ``pilot/pkg/networking/core``), restricted to one local mesh:

- the ``tcp`` routes of every mesh VirtualService covering the host are tried in istiod's order
  (:meth:`meshgen.plan.serving.Serving.tcp_covering`); the first with no ``match``, or with a match block that applies
  on this listener (``port`` unset or equal; ``gateways`` unset or naming ``mesh``), takes every connection;
- one destination is that destination's cluster (``destination.port``, else the host's only port, else the
  listener's); several are a weighted split over those with a positive weight;
- no such route: the host's own cluster on the listener's port (istiod's default);
- a TLS or HTTPS port is routed by ``tls`` routes (by SNI) and ignores ``tcp`` routes; without a ``tls`` route that
  applies, it too goes to the host's own cluster.

A match on what Envoy only knows at run time or from the calling workload (``destinationSubnets``,
``sourceSubnet``, ``sourceLabels``, ``sourceNamespace``), and ``tls`` routes (SNI matching), fail the compile with
the VirtualService and field named: the one Envoy of the local mesh serves every caller, and a TCP connection carries
nothing to tell them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meshgen.backends.envoy.clusters import cluster_name
from meshgen.baseline.model import MESH_GATEWAY, Resource
from meshgen.documents import JsonObject
from meshgen.errors import Problem
from meshgen.plan.model import ServicePort

TCP_PROXY = "envoy.filters.network.tcp_proxy"
_TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
_RUNTIME_MATCHES = ("destinationSubnets", "sourceSubnet", "sourceLabels", "sourceNamespace")
_FIX = "remove the field, or compile with --backend istio (the envoy backend does not translate it)"

ClusterOf = Callable[[Mapping[str, Any], str], str]
"""Names the cluster of a ``destination`` written in a VirtualService of the given namespace, or raises
ValueError saying why not."""


def _problem(vs: Resource, path: tuple[str | int, ...], message: str) -> Problem:
    dotted = ".".join(str(p) for p in path)
    return Problem(vs.at("spec", *path), f"VirtualService {vs.namespace}/{vs.name}: {dotted}: {message}", _FIX)


def _applies(match: Mapping[str, Any], port: int) -> bool:
    """Whether a match block applies to this listener, statically (istiod's ``matchTCP``/``matchTLS``)."""
    wanted = match.get("port")
    bound = match.get("gateways") or [MESH_GATEWAY]
    return (wanted in (None, 0) or int(wanted) == port) and MESH_GATEWAY in bound


def _chosen(covering: Sequence[Resource], port: ServicePort,
            problems: list[Problem]) -> tuple[Resource, int, Mapping[str, Any]] | None:
    """The first ``tcp`` route (VirtualService, index, route) that takes connections on ``port``."""
    field = "tls" if port.mesh_protocol.is_tls else "tcp"
    for vs in covering:
        for i, route in enumerate(vs.spec.get(field) or []):
            if not isinstance(route, Mapping) or not route.get("route"):
                continue  # istiod skips a route without destinations
            matches = [m for m in route.get("match") or [] if isinstance(m, Mapping)]
            if field == "tls":
                if any(_applies(m, port.port) for m in matches):
                    problems.append(_problem(vs, ("tls", i, "match"), "tls routes match the SNI of a connection, "
                                             "which the envoy backend does not model"))
                    return None
                continue
            if not matches:
                return vs, i, route
            for j, match in enumerate(matches):
                if not _applies(match, port.port):
                    continue
                runtime = [k for k in _RUNTIME_MATCHES if match.get(k)]
                if runtime:
                    problems.append(_problem(vs, (field, i, "match", j, runtime[0]), "matching a TCP connection "
                                             "by its source or destination address or workload is not supported "
                                             "by the envoy backend (one Envoy serves every caller of the local "
                                             "mesh)"))
                    return None
                return vs, i, route
    return None


def tcp_proxy(fqdn: str, port: ServicePort, covering: Sequence[Resource], cluster_of: ClusterOf,
              problems: list[Problem]) -> JsonObject:
    """The ``tcp_proxy`` network filter for connections to ``fqdn`` on ``port``; problems go to ``problems``."""
    default = cluster_name(fqdn, port.port)
    config: JsonObject = {"@type": _TCP_PROXY_TYPE, "stat_prefix": default, "cluster": default}
    chosen = _chosen(covering, port, problems)
    if chosen is not None:
        vs, i, route = chosen
        field = "tls" if port.mesh_protocol.is_tls else "tcp"
        destinations = [d for d in route["route"] if isinstance(d, Mapping)]
        try:
            clusters = [(cluster_of(d.get("destination") or {}, vs.namespace), int(d.get("weight") or 0))
                        for d in destinations]
        except ValueError as exc:
            problems.append(_problem(vs, (field, i, "route"), str(exc)))
            clusters = []
        if len(clusters) == 1:
            config.update(stat_prefix=clusters[0][0], cluster=clusters[0][0])
        elif clusters:
            weighted = [{"name": name, "weight": weight} for name, weight in clusters if weight > 0]
            if not weighted:
                problems.append(_problem(vs, (field, i, "route"), "every destination has weight 0"))
            else:
                del config["cluster"]
                config.update(stat_prefix=f"{vs.name}.{vs.namespace}", weighted_clusters={"clusters": weighted})
    return {"name": TCP_PROXY, "typed_config": config}
