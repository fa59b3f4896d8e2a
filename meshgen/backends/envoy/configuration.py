"""Plan -> plain Envoy configuration for a local mesh: Listeners, Clusters and RouteConfigurations (xDS v3).

**One shared mesh Envoy, not one per service.** In Istio every sidecar gets the same outbound configuration (no
``Sidecar`` scoping here), and all VirtualService routing happens on the caller's outbound path. One Envoy holding
that outbound configuration is therefore the same routing as N identical sidecars, for one process instead of N.
Like a sidecar with ``INTERCEPTION_MODE: NONE``, it has one listener per service port on the host's own loopback
address (:mod:`meshgen.backends.localmesh`); every listener of one port shares that port's route configuration
(named after the port, as istiod names it), with one virtual host per service host.

**Ports by protocol**, as Istio reads them (:mod:`meshgen.baseline.protocols`) and istiod builds a sidecar's
listeners: an HTTP port's listener routes requests (the rest of this module); a TCP, TLS or database port's
proxies connections (:mod:`meshgen.backends.envoy.tcp`: VirtualService ``tcp`` routes, else the host's cluster);
a port Istio sniffs has both chains and Envoy's HTTP inspector picks one per connection; a UDP port has no
listener and no cluster (Istio does not proxy UDP).

**Routes.** Which routes serve a host is the planner's answer (:mod:`meshgen.plan.serving`: the mesh VirtualService
istiod applies there, or istiod's default route); they are translated by :mod:`meshgen.backends.envoy.routes` the
way istiod translates them. **Sandbox selection** uses Envoy's matcher tree, not a linear table
(:mod:`meshgen.backends.envoy.vhosts`): a key maps to that key's own route list, requests without a claimed key
take exactly the sandbox-free list, and routing cost does not grow with the number of sandboxes.

**The routing key** is normalised once per request by the same Lua program the Istio backend installs
(:mod:`meshgen.backends.normaliser`), first in every listener's filter chain. It is there even without claims,
so sandboxes coming and going never change an existing listener (only fork hosts add and remove their own). A
target without the normaliser (``MeshPolicy.spec.target``: ambient waypoints, Linkerd) gets neither it nor the edge
filter, as istiod gives its proxies no EnvoyFilter there: the sandbox routes match each propagation source themselves.

**The edge** plays the ingress gateway: one listener on the edge address, on the gateway's HTTP port
(:data:`~meshgen.backends.localmesh.EDGE_PORT`), running the edge filter (:mod:`meshgen.backends.edge`: routing keys
from untrusted clients removed, as the Istio backend's GATEWAY-context filter does) instead of the plain normaliser.
Like an Istio gateway it routes by the gateway-bound VirtualServices, not by the mesh's
(:meth:`~meshgen.backends.envoy.vhosts.VirtualHosts.edge_virtual_hosts`: route configuration ``http.<port>``, as
istiod names a gateway's), with sandbox copies placed the same way, and it takes the client's address from the
connection (``use_remote_address``, as istiod sets for gateways), which is what ``allowCidrs`` trusts.

**Delivery.** Each listener takes its routes over RDS from ``<config_dir>/rds-<route configuration>.json`` in a
watched directory, so a deployment (``meshgen.testenv``, or an xDS server) changes routes without touching a listener.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from meshgen.backends import edge, normaliser
from meshgen.backends.backend import Backend, Rendering
from meshgen.backends.envoy import callers
from meshgen.backends.envoy import routes as envoy_routes
from meshgen.backends.envoy import tcp as envoy_tcp
from meshgen.backends.envoy.clusters import Destinations
from meshgen.backends.envoy.vhosts import VirtualHosts
from meshgen.backends.localmesh import DEFAULT_MESH, EDGE_PORT, Addresses, LocalMesh, addresses, listen_port
from meshgen.baseline.protocols import Protocol
from meshgen.documents import JsonObject
from meshgen.errors import InvalidInput
from meshgen.plan import targets, virtual_services
from meshgen.plan.model import Diagnostic, Plan, ServicePort
from meshgen.plan.serving import Serving

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
_HCM = "envoy.filters.network.http_connection_manager"
_HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
EDGE_LISTENER = "edge"
EDGE_ROUTE_CONFIG = f"http.{EDGE_PORT}"
_HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
_HTTP_INSPECTOR_TYPE = "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
# What the HTTP inspector reports for plaintext HTTP (istiod's plaintextHTTPALPNs): a sniffed port's HTTP chain.
_SNIFFED_HTTP = ("http/1.0", "http/1.1", "h2c")
_HTTP_FILTERS = (
    (envoy_routes.FAULT_FILTER, "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"),
    (envoy_routes.CORS_FILTER, "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"),
    ("envoy.filters.http.router", "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"),
)


@dataclass(frozen=True)
class EnvoyConfig:
    """The Envoy resources for one plan on one local mesh, each list sorted by name."""

    listeners: tuple[JsonObject, ...]
    clusters: tuple[JsonObject, ...]
    route_configs: tuple[JsonObject, ...]
    addresses: Addresses
    warnings: tuple[Diagnostic, ...] = ()  # fields accepted without translation, once per field and object

    def resources(self) -> list[JsonObject]:
        """Listeners, then clusters, then route configurations."""
        return [*self.listeners, *self.clusters, *self.route_configs]


def render(plan: Plan) -> list[JsonObject]:
    """The backend registry's entry point: the resources for ``plan`` on the default :class:`LocalMesh`."""
    return build(plan).resources()


def rendering(plan: Plan) -> Rendering:
    """The backend registry's entry point: the resources for ``plan`` on the default :class:`LocalMesh`, with the
    fields accepted without translation."""
    config = build(plan)
    return Rendering(config.resources(), config.warnings)


def route_config_file(name: str) -> str:
    """The file (in the mesh's config directory) that holds the route configuration ``name``."""
    return f"rds-{name}.json"


def rds_version_stat(name: str) -> str:
    """The Envoy stat holding the version of route configuration ``name`` that its listeners serve."""
    return f"http.{_stat_prefix(name)}.rds.{name}.version_text"


def _stat_prefix(route_config: str) -> str:
    # One stat prefix per route configuration: every listener of a port shares one RDS subscription, whose stats
    # (rds.<name>.version_text) carry the prefix of whichever listener created it.
    return f"outbound_{route_config}"


def build(plan: Plan, mesh: LocalMesh = DEFAULT_MESH) -> EnvoyConfig:
    """Compile ``plan`` for ``mesh``; raises :class:`InvalidInput` naming every VirtualService or DestinationRule
    field the backend cannot translate."""
    laid_out = addresses(plan, mesh)
    serving = Serving(plan)
    destinations = Destinations(plan, laid_out)
    clusters, problems = destinations.clusters()
    builder = VirtualHosts(plan, serving, laid_out, destinations, problems)
    # One route configuration per port number some host serves HTTP on (or sniffs); a host's virtual host is in it
    # only if its own port of that number routes requests, as istiod builds RDS. Where routes match callers
    # (sourceLabels, sourceNamespace), each group of callers that sees other routes gets its own (callers.py).
    http_ports = sorted({p.port for h in laid_out.hosts.values() for p in h.ports if p.mesh_protocol.routes_requests})
    views = callers.views(serving, laid_out)
    route_configs: list[JsonObject] = []
    # validate_clusters off, as for every route configuration istiod sends over RDS: a route may name a cluster that
    # does not exist (a destination that is not a Service, a subset no DestinationRule defines), and Envoy then
    # answers it with 503 instead of refusing the whole table.
    for view in (callers.DEFAULT_VIEW, *views):
        viewed = VirtualHosts(plan, serving, laid_out, destinations, problems, view.caller) if view.caller else builder
        route_configs.extend(
            {"@type": ROUTE_CONFIG_TYPE, "name": view.route_config(port), "validate_clusters": False,
             "virtual_hosts": [viewed.virtual_host(fqdn, host, port) for fqdn, host in laid_out.hosts.items()
                               if any(p.port == port and p.mesh_protocol.routes_requests for p in host.ports)]}
            for port in http_ports)
    # istiod's gateway route configuration matches Host without its port; the edge is its own caller.
    edge_builder = VirtualHosts(plan, serving, laid_out, destinations, problems, laid_out.edge_caller())
    route_configs.append({"@type": ROUTE_CONFIG_TYPE, "name": EDGE_ROUTE_CONFIG, "validate_clusters": False,
                          "virtual_hosts": edge_builder.edge_virtual_hosts(), "ignore_port_in_host_matching": True})
    domain = plan.policy.spec.cluster_domain
    tcp: dict[tuple[str, int], JsonObject] = {}
    for fqdn, host in laid_out.hosts.items():
        covering = serving.tcp_covering(fqdn, host.namespace)
        for port in host.ports:
            if port.mesh_protocol.is_opaque or port.mesh_protocol.is_sniffed:
                cluster_of = partial(_tcp_cluster, destinations, domain, port.port)
                tcp[(fqdn, port.port)] = envoy_tcp.tcp_proxy(fqdn, port, covering, cluster_of, problems)
    if problems:
        raise InvalidInput(problems)
    filtered = targets.capabilities(plan.policy).normaliser
    mesh_lua = normaliser.lua_source(plan.policy) if filtered else None
    listeners = [
        _service_listener(mesh, laid_out.listeners[fqdn], port, f"{fqdn}_{port.port}", mesh_lua,
                          tcp.get((fqdn, port.port)), views)
        for fqdn, host in laid_out.hosts.items() for port in host.ports
        if port.mesh_protocol is not Protocol.UDP  # istiod builds no listener for UDP: it is not proxied
    ]
    listeners.append(_listener(mesh, laid_out.edge, EDGE_PORT, EDGE_LISTENER,
                               [_http_chain(mesh, edge.edge_source(plan.policy, plan.edge) if filtered else None,
                                            EDGE_ROUTE_CONFIG,
                                            {"use_remote_address": True})]))
    listeners.sort(key=lambda x: str(x["name"]))
    return EnvoyConfig(tuple(listeners), tuple(clusters), tuple(route_configs), laid_out, destinations.warnings)


def _tcp_cluster(destinations: Destinations, domain: str, listener_port: int, written: Mapping[str, Any],
                 namespace: str) -> str:
    """The cluster of a ``tcp`` route's Istio destination, written in a VirtualService of ``namespace``."""
    return destinations.cluster_of(virtual_services.destination(written, namespace, domain), listener_port)


def _service_listener(mesh: LocalMesh, address: str, port: ServicePort, name: str, lua: str | None,
                      tcp_proxy: JsonObject | None, views: tuple[callers.View, ...]) -> JsonObject:
    """A Service port's listener, by its protocol (as istiod builds a sidecar's): HTTP, opaque TCP, or sniffed
    (``http_inspector`` picks the HTTP chain for HTTP, the TCP chain for anything else). An HTTP chain per caller
    view, picked by the caller's address, then the default one."""
    protocol = port.mesh_protocol
    tcp_chain: JsonObject = {"filters": [tcp_proxy]} if tcp_proxy is not None else {}
    if protocol.is_opaque:
        return _listener(mesh, address, port.port, name, [tcp_chain])
    sniffed = {"application_protocols": list(_SNIFFED_HTTP)} if protocol.is_sniffed else {}
    http: list[JsonObject] = []
    for view in (*views, callers.DEFAULT_VIEW):
        chain = _http_chain(mesh, lua, view.route_config(port.port))
        match = {**sniffed, **view.chain_match()}
        http.append({**chain, "filter_chain_match": match} if match else chain)
    if not protocol.is_sniffed:
        return _listener(mesh, address, port.port, name, http)
    listener = _listener(mesh, address, port.port, name, [*http, tcp_chain])
    listener["listener_filters"] = [{"name": _HTTP_INSPECTOR, "typed_config": {"@type": _HTTP_INSPECTOR_TYPE}}]
    return listener


def _listener(mesh: LocalMesh, address: str, port: int, name: str, chains: list[JsonObject]) -> JsonObject:
    return {
        "@type": LISTENER_TYPE,
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": listen_port(port)}},
        "filter_chains": chains,
    }


def _http_chain(mesh: LocalMesh, lua: str | None, route_config: str, options: JsonObject | None = None) -> JsonObject:
    """An HTTP connection manager taking ``route_config`` over RDS, running the Lua program ``lua`` first (None:
    the target runs no routing-key filter)."""
    config_source = {
        "resource_api_version": "V3",
        "path_config_source": {"path": f"{mesh.config_dir}/{route_config_file(route_config)}",
                               "watched_directory": {"path": mesh.config_dir}},
    }
    filters = [*([normaliser.lua_filter(lua)] if lua is not None else []),
               *({"name": name, "typed_config": {"@type": kind}} for name, kind in _HTTP_FILTERS)]
    return {"filters": [{"name": _HCM, "typed_config": {
        "@type": _HCM_TYPE,
        "stat_prefix": _stat_prefix(route_config),
        "rds": {"route_config_name": route_config, "config_source": config_source},
        "http_filters": filters,
        **(options or {}),
    }}]}


# Renders one local Envoy's configuration: nothing for a cluster.
BACKEND = Backend(name="envoy", render=rendering, cluster=False)
