"""Virtual hosts of the Envoy backend: the mesh's (one per service host and port) and the edge's (one per host of
the gateway-bound VirtualServices), each a translation of VirtualService routes with sandbox copies placed.

**One shape for both.** A host's routes are :class:`RouteLists`: the list a request without a claimed key takes
(exactly the sandbox-free list, DESIGN invariant 1) and, per claiming key, that key's list: its sandbox copies in
their planned places among every baseline route (invariant 3). A virtual host with claims selects the list with
Envoy's matcher tree (``exact_match_map`` on the routing header, ``on_no_match`` the baseline list), so routing cost
does not grow with the number of sandboxes; one without claims keeps a plain ``routes`` list. Envoy never falls
back from a matched key to ``on_no_match``, which is why a key's list carries the baseline routes too.

**The mesh** routes a host by its mesh VirtualService (or istiod's default route), on each of its ports.

**The edge** is the ingress gateway: it routes by every VirtualService bound to a gateway other than ``mesh`` and
exported to the gateway proxy's namespace (:data:`~meshgen.backends.localmesh.EDGE_NAMESPACE`), the way istiod
builds a gateway's route configuration (``buildGatewayHTTPRouteConfig``):

- one virtual host per VirtualService host (``*`` included), whose only domain is that host; the route
  configuration ignores the port in Host matching;
- VirtualServices sharing a host have their routes concatenated, in istiod's order
  (:func:`meshgen.baseline.precedence.istiod_order`: the gateway namespace's own first, oldest first);
- only VirtualServices bound to a Gateway that exists count (:func:`~meshgen.backends.localmesh.edge_gateways`);
- catch-all routes (prefix ``/``, no header or query match) move behind the others, keeping their order
  (``SortVHostRoutes``). Sandbox copies carry a header match, so they are never catch-all;
- no gateway VirtualService at all leaves one virtual host for ``*`` with no route: every request gets 404, as
  from istiod's "blackhole" host; a host no virtual host matches gets 404 too.

A local mesh has one edge, standing for every Gateway that exists: ``istio-system/meshgen-edge`` (which both local
meshes always have) and each Gateway of the baseline; its one HTTP server is on
:data:`~meshgen.backends.localmesh.EDGE_PORT`, which is the listener port every edge route is translated for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from meshgen.backends import envoy_routes, istio
from meshgen.backends.envoy_clusters import Destinations
from meshgen.backends.localmesh import (
    EDGE_NAMESPACE,
    EDGE_PORT,
    Addresses,
    Caller,
    edge_gateways,
    served_at_edge,
)
from meshgen.baseline import delegation, precedence
from meshgen.baseline.model import VIRTUAL_SERVICE, Resource, is_mesh_bound
from meshgen.documents import JsonObject
from meshgen.errors import InvalidInput, Problem
from meshgen.plan.model import Host, Owner, Plan, RouteRole, RouteTable
from meshgen.plan.routes import DEFAULT_ROUTE, resolved_hosts

_ROUTE_LIST_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteList"
_HEADER_INPUT_TYPE = "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput"


@dataclass(frozen=True)
class RouteLists:
    """A virtual host's routes: ``baseline`` for requests without a claimed key, ``keys`` each claiming key's."""

    baseline: list[JsonObject]
    keys: dict[str, list[JsonObject]] = field(default_factory=dict)

    def then(self, other: RouteLists) -> RouteLists:
        """These routes followed by ``other``'s (a key one side does not claim takes that side's baseline)."""
        return RouteLists(self.baseline + other.baseline,
                          {key: self.keys.get(key, self.baseline) + other.keys.get(key, other.baseline)
                           for key in sorted({*self.keys, *other.keys})})

    def catch_all_last(self) -> RouteLists:
        """Every list with its catch-all routes moved to the end, in order (istiod's ``SortVHostRoutes``)."""
        return RouteLists(_catch_all_last(self.baseline), {k: _catch_all_last(v) for k, v in self.keys.items()})

    def place(self, vhost: JsonObject, routing_header: str) -> JsonObject:
        """``vhost`` with these routes: a plain list, or a matcher tree on the routing header."""
        if not self.keys:
            return {**vhost, "routes": self.baseline}
        return {**vhost, "matcher": {
            "matcher_tree": {
                "input": {"name": "routing-key", "typed_config": {"@type": _HEADER_INPUT_TYPE,
                                                                  "header_name": routing_header}},
                "exact_match_map": {"map": {k: _route_list(k, routes) for k, routes in sorted(self.keys.items())}},
            },
            "on_no_match": _route_list("baseline", self.baseline),
        }}


class VirtualHosts:
    """Builds virtual hosts, translating VirtualService routes for the port of the listener that serves them.
    Untranslatable fields are collected in ``problems`` (every one is reported, not just the first)."""

    def __init__(self, plan: Plan, laid_out: Addresses, destinations: Destinations, problems: list[Problem],
                 caller: Caller | None = None) -> None:
        self.caller = caller  # whose proxy these routes are for: what sourceLabels/sourceNamespace match
        self.plan = plan
        self.laid_out = laid_out
        self.destinations = destinations
        self.problems = problems
        domain = plan.policy.spec.cluster_domain
        services = plan.baseline.of_kind(VIRTUAL_SERVICE)
        self.mesh_services = [vs for vs in services if is_mesh_bound(vs)]
        # Bound to a Gateway that exists and exported to the gateway's namespace: what an ingress gateway routes by.
        existing = edge_gateways(plan.baseline)
        self.gateway_services = [(vs, resolved_hosts(vs, domain)) for vs in precedence.istiod_order(
            [vs for vs in services if served_at_edge(vs, existing)], EDGE_NAMESPACE)]
        self._seen: dict[str, list[Resource]] = {}
        self.tables = {t.key: t for t in plan.tables if not t.owned}
        self.owned = {t.hosts[0]: t for t in plan.tables if t.owned}

    def virtual_host(self, fqdn: str, host: Host, port: int) -> JsonObject:
        """The mesh virtual host for ``fqdn`` in the route configuration of ``port``."""
        address = self.laid_out.listeners[fqdn]
        short = f"{host.name}.{host.namespace}"
        out: JsonObject = {"name": f"{fqdn}:{port}",
                           "domains": [fqdn, f"{fqdn}:{port}", short, f"{short}:{port}", address, f"{address}:{port}"]}
        vs = self.mesh_virtual_service(fqdn, host.namespace, port)
        table = self.tables.get(vs.key) if vs is not None else self.owned.get(fqdn)
        if table is not None:
            lists = self._table_lists(table, port)
        elif vs is not None:
            lists = RouteLists(self._translate_all(vs.spec.get("http") or [], vs, vs.namespace, port))
        else:
            lists = RouteLists(self._translate_all([default_route(fqdn)], None, host.namespace, port))
        return lists.place(out, self.plan.routing_header)

    def edge_virtual_hosts(self) -> list[JsonObject]:
        """The edge gateway's virtual hosts, from the gateway-bound VirtualServices (sorted by name)."""
        by_host: dict[str, RouteLists] = {}
        for vs, hosts in self.gateway_services:
            table = self.tables.get(vs.key)
            lists = (self._table_lists(table, EDGE_PORT) if table is not None else
                     RouteLists(self._translate_all(vs.spec.get("http") or [], vs, vs.namespace, EDGE_PORT)))
            for host in dict.fromkeys(h.lower() for h in hosts):
                by_host[host] = by_host[host].then(lists) if host in by_host else lists
        if not by_host:
            return [{"name": f"blackhole:{EDGE_PORT}", "domains": ["*"], "routes": []}]
        return [lists.catch_all_last().place({"name": f"{host}:{EDGE_PORT}", "domains": [host]},
                                             self.plan.routing_header)
                for host, lists in sorted(by_host.items())]

    def _table_lists(self, table: RouteTable, port: int) -> RouteLists:
        """A planned table's routes: the baseline routes with the caller copies among them (they match forks as
        callers, with or without a key), and per claiming key its copies among those."""
        baseline = [self._translate(route, i, table.source, table.namespace, port)
                    for i, route in enumerate(table.baseline_routes)]
        copies = {i: self._translate(istio.copied_route(table, planned, self.plan.policy.spec.cluster_domain),
                                     planned.baseline_index, table.source, table.namespace, port)
                  for i, planned in enumerate(table.routes) if planned.role in (RouteRole.CALLER, RouteRole.SANDBOX)}
        keys = {owner.routing_key: self._key_routes(table, owner, baseline, copies) for owner in _owners(table)}
        return RouteLists([r for i, planned in enumerate(table.routes)
                           for r in (baseline[planned.baseline_index] if planned.role is RouteRole.BASELINE
                                     else copies[i] if planned.role is RouteRole.CALLER else [])], keys)

    def _key_routes(self, table: RouteTable, owner: Owner, baseline: list[list[JsonObject]],
                    copies: dict[int, list[JsonObject]]) -> list[JsonObject]:
        routes: list[JsonObject] = []
        for i, planned in enumerate(table.routes):
            if planned.role is RouteRole.BASELINE:
                routes.extend(baseline[planned.baseline_index])
            elif planned.role is RouteRole.CALLER or (planned.role is RouteRole.SANDBOX and planned.owner == owner):
                routes.extend(copies[i])
        return routes

    def _translate_all(self, http: Sequence[JsonObject], vs: Resource | None, namespace: str,
                       port: int) -> list[JsonObject]:
        return [r for i, route in enumerate(http) for r in self._translate(route, i, vs, namespace, port)]

    def _translate(self, route: JsonObject, index: int, vs: Resource | None, namespace: str,
                   port: int) -> list[JsonObject]:
        if "delegate" in route and vs is not None:
            # istiod merges the delegate's routes into the root's place (meshgen.baseline.delegation); a
            # delegate that is missing or not exported to the root drops the route. Destinations in a delegate
            # are read in its own namespace.
            delegate = delegation.delegate_of(route, vs, self.plan.baseline)
            if delegate is None:
                return []
            return [r for i, merged in delegation.merged(route, delegate)
                    for r in self._translate(merged, i, delegate, delegate.namespace, port)]
        source = envoy_routes.RouteSource(vs, port, partial(self.destinations.cluster_of, namespace=namespace,
                                                            listener_port=port), self.destinations.hash_policies.get,
                                          self.caller)
        try:
            return envoy_routes.translate(route, index, source)
        except InvalidInput as exc:
            self.problems.extend(p for p in exc.problems if p not in self.problems)
            return []

    def seen_from(self, namespace: str) -> list[Resource]:
        """The mesh VirtualServices a proxy in ``namespace`` sees, in istiod's order."""
        if namespace not in self._seen:
            self._seen[namespace] = precedence.sidecar_order(self.mesh_services, namespace)
        return self._seen[namespace]

    def mesh_virtual_service(self, fqdn: str, client_namespace: str, port: int) -> Resource | None:
        """The mesh VirtualService whose http routes serve ``fqdn`` on ``port`` for clients in
        ``client_namespace`` (the local meshes send from the host's own namespace), as istiod picks it: one
        naming it exactly, else the most specific wildcard; of several, the first in istiod's order
        (:mod:`meshgen.baseline.precedence`). None: istiod's default route."""
        return precedence.http_winner(self.seen_from(client_namespace), fqdn, port,
                                      self.plan.policy.spec.cluster_domain)


def default_route(fqdn: str) -> JsonObject:
    """istiod's route for a host no VirtualService covers (the planner's default route has the same shape)."""
    return {"name": DEFAULT_ROUTE, "route": [{"destination": {"host": fqdn}}]}


def is_catch_all(route: JsonObject) -> bool:
    """istiod's ``IsCatchAllRoute``: a path match of prefix ``/`` (or regex ``.*``) and nothing else."""
    match = route.get("match") or {}
    path = match.get("prefix") == "/" or (match.get("safe_regex") or {}).get("regex") == ".*"
    return path and not match.get("headers") and not match.get("query_parameters")


def _catch_all_last(routes: list[JsonObject]) -> list[JsonObject]:
    return [r for r in routes if not is_catch_all(r)] + [r for r in routes if is_catch_all(r)]


def _owners(table: RouteTable) -> Iterable[Owner]:
    seen: dict[str, Owner] = {}
    for planned in table.sandbox_routes:
        if planned.owner is not None:
            seen.setdefault(planned.owner.routing_key, planned.owner)
    return seen.values()


def _route_list(name: str, routes: list[JsonObject]) -> JsonObject:
    return {"action": {"name": name, "typed_config": {"@type": _ROUTE_LIST_TYPE, "routes": routes}}}
