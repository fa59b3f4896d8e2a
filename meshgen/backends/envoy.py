"""Plan -> plain Envoy configuration for a local mesh: Listeners, Clusters and RouteConfigurations (xDS v3).

**One shared mesh Envoy, not one per service.** In Istio every sidecar gets the same outbound configuration (no
``Sidecar`` scoping here), and all VirtualService routing happens on the caller's outbound path. One Envoy holding
that outbound configuration is therefore the same routing as N identical sidecars, for one process instead of N.
Like a sidecar with ``INTERCEPTION_MODE: NONE``, it has one listener per service port on the host's own loopback
address (:mod:`meshgen.backends.localmesh`); every listener of one port shares that port's route configuration
(named after the port, as istiod names it), with one virtual host per service host.

**Routes.** A host's baseline routes are its mesh VirtualService's, translated by
:mod:`meshgen.backends.envoy_routes` the way istiod translates them; a host without one gets istiod's default route.
**Sandbox selection** uses Envoy's matcher tree, not a linear table: a virtual host with claims gets
``matcher: exact_match_map`` on the routing header. ``on_no_match`` holds the baseline routes exactly as they are
without any sandbox (DESIGN invariant 1); each routing key maps to that key's own route table, the planned order of
its sandbox copies and every baseline route (invariant 3). Envoy never falls back from a matched key to
``on_no_match``, which is why a key's list carries the baseline routes too. Lookup is a hash of the key, so
routing cost does not grow with the number of sandboxes. Hosts without claims keep a plain ``routes`` list.

**The routing key** is normalised once per request by the same Lua program the Istio backend installs
(:mod:`meshgen.backends.normaliser`), first in every listener's filter chain. It is there even without claims,
so sandboxes coming and going never change an existing listener (only fork hosts add and remove their own).

**The edge.** One more listener per Service port, on the edge address, plays the ingress gateway: it runs the
edge filter (:mod:`meshgen.backends.edge`: routing keys from untrusted clients removed, as the Istio backend's
GATEWAY-context filter does) instead of the plain normaliser, and routes with the same route configuration
(a gateway whose routing is the mesh's, which is what a sandbox test through the edge needs).

**Delivery.** Each listener takes its routes over RDS from ``<config_dir>/rds-<port>.json`` in a watched
directory, so a deployment (``meshgen.testenv``, or an xDS server) changes routes without touching a listener.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

from meshgen.backends import edge, envoy_routes, istio, normaliser
from meshgen.backends.envoy_clusters import Destinations
from meshgen.backends.localmesh import DEFAULT_MESH, Addresses, LocalMesh, addresses, listen_port
from meshgen.baseline.model import VIRTUAL_SERVICE, Resource, host_matches, is_mesh_bound
from meshgen.documents import JsonObject, clone
from meshgen.errors import InvalidInput, Problem
from meshgen.plan.model import Host, Owner, Plan, RouteRole, RouteTable
from meshgen.plan.routes import DEFAULT_ROUTE, resolved_hosts

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
_HCM = "envoy.filters.network.http_connection_manager"
_HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTE_LIST_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteList"
_HEADER_INPUT_TYPE = "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput"
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

    def resources(self) -> list[JsonObject]:
        """Listeners, then clusters, then route configurations."""
        return [*self.listeners, *self.clusters, *self.route_configs]


def render(plan: Plan) -> list[JsonObject]:
    """The backend registry's entry point: the resources for ``plan`` on the default :class:`LocalMesh`."""
    return build(plan).resources()


def route_config_file(name: str) -> str:
    """The file (in the mesh's config directory) that holds the route configuration ``name``."""
    return f"rds-{name}.json"


def build(plan: Plan, mesh: LocalMesh = DEFAULT_MESH) -> EnvoyConfig:
    """Compile ``plan`` for ``mesh``; raises :class:`InvalidInput` naming every VirtualService or DestinationRule
    field the backend cannot translate."""
    laid_out = addresses(plan, mesh)
    destinations = Destinations(plan, laid_out)
    clusters, problems = destinations.clusters()
    ports = sorted({p.port for h in laid_out.hosts.values() for p in h.ports})
    builder = _VirtualHosts(plan, laid_out, destinations, problems)
    route_configs = [
        {"@type": ROUTE_CONFIG_TYPE, "name": str(port),
         "virtual_hosts": [builder.virtual_host(fqdn, host, port) for fqdn, host in laid_out.hosts.items()
                           if any(p.port == port for p in host.ports)]}
        for port in ports
    ]
    if problems:
        raise InvalidInput(problems)
    mesh_lua = normaliser.lua_source(plan.policy)
    listeners = [
        _listener(mesh, laid_out.listeners[fqdn], port.port, f"{fqdn}_{port.port}", mesh_lua)
        for fqdn, host in laid_out.hosts.items() for port in host.ports
    ]
    edge_lua = edge.edge_source(plan.policy, plan.edge)
    listeners += [_listener(mesh, laid_out.edge, port, f"edge_{port}", edge_lua) for port in ports]
    listeners.sort(key=lambda x: str(x["name"]))
    return EnvoyConfig(tuple(listeners), tuple(clusters), tuple(route_configs), laid_out)


def _listener(mesh: LocalMesh, address: str, port: int, name: str, lua: str) -> JsonObject:
    config_source = {
        "resource_api_version": "V3",
        "path_config_source": {"path": f"{mesh.config_dir}/{route_config_file(str(port))}",
                               "watched_directory": {"path": mesh.config_dir}},
    }
    filters = [normaliser.lua_filter(lua),
               *({"name": name, "typed_config": {"@type": kind}} for name, kind in _HTTP_FILTERS)]
    return {
        "@type": LISTENER_TYPE,
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": listen_port(port)}},
        "filter_chains": [{"filters": [{"name": _HCM, "typed_config": {
            "@type": _HCM_TYPE,
            # One stat prefix per port: every listener of a port shares one RDS subscription, whose stats
            # (rds.<port>.version_text) carry the prefix of whichever listener created it.
            "stat_prefix": f"outbound_{port}",
            "rds": {"route_config_name": str(port), "config_source": config_source},
            "http_filters": filters,
        }}]}],
    }


class _VirtualHosts:
    """Builds virtual hosts, translating each VirtualService route once per port."""

    def __init__(self, plan: Plan, laid_out: Addresses, destinations: Destinations, problems: list[Problem]) -> None:
        self.plan = plan
        self.laid_out = laid_out
        self.destinations = destinations
        self.problems = problems
        domain = plan.policy.spec.cluster_domain
        self.mesh_services = [(vs, resolved_hosts(vs, domain)) for vs in plan.baseline.of_kind(VIRTUAL_SERVICE)
                              if is_mesh_bound(vs)]
        self.tables = {t.key: t for t in plan.tables if not t.owned}
        self.owned = {t.hosts[0]: t for t in plan.tables if t.owned}

    def virtual_host(self, fqdn: str, host: Host, port: int) -> JsonObject:
        """The virtual host for ``fqdn`` in the route configuration of ``port``."""
        address = self.laid_out.listeners[fqdn]
        short = f"{host.name}.{host.namespace}"
        out: JsonObject = {"name": f"{fqdn}:{port}",
                           "domains": [fqdn, f"{fqdn}:{port}", short, f"{short}:{port}", address, f"{address}:{port}"]}
        vs = self._virtual_service(fqdn)
        table = self.tables.get(vs.key) if vs is not None else self.owned.get(fqdn)
        if table is None:
            http = list(vs.spec.get("http") or []) if vs is not None else [default_route(fqdn)]
            namespace = vs.namespace if vs is not None else host.namespace
            out["routes"] = [r for i, route in enumerate(http) for r in self._translate(route, i, vs, namespace, port)]
            return out
        baseline = [self._translate(route, i, table.source, table.namespace, port)
                    for i, route in enumerate(table.baseline_routes)]
        keys = {key.routing_key: self._key_routes(table, key, baseline, port) for key in _owners(table)}
        out["matcher"] = {
            "matcher_tree": {
                "input": {"name": "routing-key", "typed_config": {"@type": _HEADER_INPUT_TYPE,
                                                                  "header_name": self.plan.routing_header}},
                "exact_match_map": {"map": {k: _route_list(k, routes) for k, routes in sorted(keys.items())}},
            },
            "on_no_match": _route_list("baseline", [r for planned in table.routes if planned.role is RouteRole.BASELINE
                                                    for r in baseline[planned.baseline_index]]),
        }
        return out

    def _key_routes(self, table: RouteTable, owner: Owner, baseline: list[list[JsonObject]],
                    port: int) -> list[JsonObject]:
        routes: list[JsonObject] = []
        domain = self.plan.policy.spec.cluster_domain
        for planned in table.routes:
            if planned.role is RouteRole.BASELINE:
                routes.extend(baseline[planned.baseline_index])
            elif planned.role is RouteRole.SANDBOX and planned.owner == owner:
                base = table.baseline_routes[planned.baseline_index]
                copy = clone(base)
                copy["name"] = planned.name
                copy["route"] = istio.redirect_destinations(base, planned.redirect_map, table.namespace, domain)
                routes.extend(self._translate(copy, planned.baseline_index, table.source, table.namespace, port))
        return routes

    def _translate(self, route: JsonObject, index: int, vs: Resource | None, namespace: str,
                   port: int) -> list[JsonObject]:
        source = envoy_routes.RouteSource(vs, port, partial(self.destinations.cluster_of, namespace=namespace,
                                                            listener_port=port))
        try:
            return envoy_routes.translate(route, index, source)
        except InvalidInput as exc:
            self.problems.extend(p for p in exc.problems if p not in self.problems)
            return []

    def _virtual_service(self, fqdn: str) -> Resource | None:
        """The mesh VirtualService that routes ``fqdn``: one naming it exactly, else the first wildcard match
        (Istio keeps only one VirtualService per host; sorted by namespace and name here, for determinism)."""
        exact = [vs for vs, hosts in self.mesh_services if fqdn in hosts]
        wild = [vs for vs, hosts in self.mesh_services if any(host_matches(h, fqdn) for h in hosts)]
        found = exact or wild
        return found[0] if found else None


def default_route(fqdn: str) -> JsonObject:
    """istiod's route for a host no VirtualService covers (the planner's default route has the same shape)."""
    return {"name": DEFAULT_ROUTE, "route": [{"destination": {"host": fqdn}}]}


def _owners(table: RouteTable) -> Iterable[Owner]:
    seen: dict[str, Owner] = {}
    for planned in table.sandbox_routes:
        if planned.owner is not None:
            seen.setdefault(planned.owner.routing_key, planned.owner)
    return seen.values()


def _route_list(name: str, routes: list[JsonObject]) -> JsonObject:
    return {"action": {"name": name, "typed_config": {"@type": _ROUTE_LIST_TYPE, "routes": routes}}}
