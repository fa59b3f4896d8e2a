"""Virtual hosts of the Envoy backend: the mesh's (one per service host and port) and the edge's (one per host of
the gateway-bound routing objects), each the translation of what :mod:`meshgen.plan.serving` says serves it.

**One shape for both.** A host's routes are :class:`~meshgen.plan.serving.RouteLists`: the list a request without a
claimed key takes and, per claiming key, that key's list. A virtual host with claims selects the list with Envoy's
matcher tree (``exact_match_map`` on the routing header, ``on_no_match`` the baseline list), so routing cost does
not grow with the number of sandboxes; one without claims keeps a plain ``routes`` list. Envoy never falls back
from a matched key to ``on_no_match``, which is why a key's list carries the baseline routes too.

**The edge** is the ingress gateway of the local mesh: it stands for every Gateway that exists
(:func:`~meshgen.backends.localmesh.edge_gateways`), in the gateway namespace
(:data:`~meshgen.backends.localmesh.EDGE_NAMESPACE`), on :data:`~meshgen.backends.localmesh.EDGE_PORT`, the listener
port every edge route is translated for. One virtual host per host, whose only domain is that host (the route
configuration ignores the port in Host matching); no host at all leaves one virtual host for ``*`` with no route:
every request gets 404, as from istiod's "blackhole" host; a host no virtual host matches gets 404 too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshgen.backends.envoy import routes as envoy_routes
from meshgen.backends.envoy.clusters import Destinations
from meshgen.backends.localmesh import EDGE_NAMESPACE, EDGE_PORT, Addresses, Caller, edge_gateways
from meshgen.documents import JsonObject
from meshgen.errors import InvalidInput, Problem
from meshgen.plan.model import Host, Plan
from meshgen.plan.routing import Route
from meshgen.plan.serving import RouteLists, Serving

_ROUTE_LIST_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteList"
_HEADER_INPUT_TYPE = "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput"


@dataclass(frozen=True)
class Translated:
    """A virtual host's Envoy routes: ``baseline`` for requests without a claimed key, ``keys`` each key's."""

    baseline: list[JsonObject]
    keys: dict[str, list[JsonObject]] = field(default_factory=dict)
    linear: list[JsonObject] | None = None  # without a normaliser: one list, each copy matching its key itself

    def place(self, vhost: JsonObject, routing_header: str) -> JsonObject:
        """``vhost`` with these routes: a plain list, or a matcher tree on the routing header."""
        if self.linear is not None:
            return {**vhost, "routes": self.linear}
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
    """Builds virtual hosts, translating routes for the port of the listener that serves them and for one caller.
    Untranslatable fields are collected in ``problems`` (every one is reported, not just the first)."""

    def __init__(self, plan: Plan, serving: Serving, laid_out: Addresses, destinations: Destinations,
                 problems: list[Problem], caller: Caller | None = None) -> None:
        self.caller = caller  # whose proxy these routes are for: what sourceLabels/sourceNamespace match
        self.plan = plan
        self.serving = serving
        self.laid_out = laid_out
        self.destinations = destinations
        self.problems = problems

    def virtual_host(self, fqdn: str, host: Host, port: int) -> JsonObject:
        """The mesh virtual host for ``fqdn`` in the route configuration of ``port`` (the local meshes send from
        the host's own namespace)."""
        address = self.laid_out.listeners[fqdn]
        short = f"{host.name}.{host.namespace}"
        out: JsonObject = {"name": f"{fqdn}:{port}",
                           "domains": [fqdn, f"{fqdn}:{port}", short, f"{short}:{port}", address, f"{address}:{port}"]}
        lists = self.serving.mesh(fqdn, host.namespace, port)
        return self._translated(lists, port).place(out, self.plan.routing_header)

    def edge_virtual_hosts(self) -> list[JsonObject]:
        """The edge gateway's virtual hosts (sorted by name)."""
        by_host = self.serving.edge(EDGE_NAMESPACE, edge_gateways(self.plan.baseline))
        if not by_host:
            return [{"name": f"blackhole:{EDGE_PORT}", "domains": ["*"], "routes": []}]
        return [self._translated(lists, EDGE_PORT).place({"name": f"{host}:{EDGE_PORT}", "domains": [host]},
                                                         self.plan.routing_header)
                for host, lists in by_host.items()]

    def _translated(self, lists: RouteLists, port: int) -> Translated:
        memo: dict[int, list[JsonObject]] = {}
        return Translated(self._all(lists.baseline, port, memo),
                          {key: self._all(routes, port, memo) for key, routes in lists.keys.items()},
                          None if lists.linear is None else self._all(lists.linear, port, memo))

    def _all(self, routes: tuple[Route, ...], port: int, memo: dict[int, list[JsonObject]]) -> list[JsonObject]:
        out: list[JsonObject] = []
        for route in routes:
            if id(route) not in memo:
                memo[id(route)] = self._translate(route, port)
            out.extend(memo[id(route)])
        return out

    def _translate(self, route: Route, port: int) -> list[JsonObject]:
        source = envoy_routes.RouteSource(port, lambda d: self.destinations.cluster_of(d, port),
                                          self.destinations.hash_policies.get, self.caller)
        try:
            return envoy_routes.translate(route, source)
        except InvalidInput as exc:
            self.problems.extend(p for p in exc.problems if p not in self.problems)
            return []


def _route_list(name: str, routes: list[JsonObject]) -> JsonObject:
    return {"action": {"name": name, "typed_config": {"@type": _ROUTE_LIST_TYPE, "routes": routes}}}
