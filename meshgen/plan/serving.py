"""Which routes serve a host, as istiod picks them: for a sidecar in a namespace, and at the edge gateway.

The planner's tables say what changes; this says what a proxy ends up evaluating, for a backend that must build
a proxy's whole route table itself (the Envoy backend; istiod does it for the Istio and Gateway API backends).
The rules, each istiod's (:mod:`meshgen.baseline.precedence` for which VirtualService wins,
:mod:`meshgen.baseline.delegation` for delegates):

- **mesh**: for a host seen from namespace N on a port, the mesh VirtualService istiod applies there (one naming
  it exactly, else the most specific wildcard; of several, the first in istiod's order, exports considered), its
  delegate routes merged in; without one, istiod's default route to the host (or the table meshgen owns for it);
- **edge**: the VirtualServices bound to a Gateway that exists and exported to the gateway's namespace, in
  istiod's order, their routes concatenated per host, then every catch-all route moved behind the others
  (``SortVHostRoutes``);
- **keys**: a host's :class:`RouteLists` hold the list a request without a claimed key takes (exactly the
  sandbox-free list, DESIGN invariant 1) and per claiming key that key's list: its sandbox copies in their planned
  places among every baseline route (invariant 3). A caller copy is in every list: it matches forks as callers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meshgen.baseline import delegation, precedence
from meshgen.baseline.model import VIRTUAL_SERVICE, ObjectKey, Resource, gateway_key
from meshgen.plan.model import Plan, RouteRole, RouteTable
from meshgen.plan.routes import default_route
from meshgen.plan.routing import MatchKind, Origin, Route, source_conditions
from meshgen.plan.sources import Source
from meshgen.plan.virtual_services import read_route

Condition = tuple[tuple[tuple[str, str], ...], str]  # (sorted sourceLabels, sourceNamespace or "")


@dataclass(frozen=True)
class RouteLists:
    """A host's routes: ``baseline`` for requests without a claimed key, ``keys`` each claiming key's."""

    baseline: tuple[Route, ...]
    keys: Mapping[str, tuple[Route, ...]] = field(default_factory=dict)

    def then(self, other: RouteLists) -> RouteLists:
        """These routes followed by ``other``'s (a key one side does not claim takes that side's baseline)."""
        return RouteLists(self.baseline + other.baseline,
                          {key: self.keys.get(key, self.baseline) + other.keys.get(key, other.baseline)
                           for key in sorted({*self.keys, *other.keys})})

    def catch_all_last(self) -> RouteLists:
        """Every list one route per match block, its catch-all routes moved to the end in order (istiod's
        ``SortVHostRoutes`` for gateways)."""
        return RouteLists(_catch_all_last(self.baseline), {k: _catch_all_last(v) for k, v in self.keys.items()})


def is_catch_all(route: Route) -> bool:
    """istiod's ``IsCatchAllRoute`` for a route with one match block: any path (prefix ``/``, regex ``.*`` or
    none) and nothing else to match."""
    block = route.blocks[0]
    path = block.path is None or (block.path.kind is MatchKind.PREFIX and block.path.value == "/") or (
        block.path.kind is MatchKind.REGEX and block.path.value == ".*")
    return path and not (block.headers or block.query or block.method or block.scheme or block.authority)


def _catch_all_last(routes: Sequence[Route]) -> tuple[Route, ...]:
    split = [dataclasses.replace(r, matches=(m,)) if len(r.matches) > 1 else r for r in routes for m in r.blocks]
    return (*(r for r in split if not is_catch_all(r)), *(r for r in split if is_catch_all(r)))


class Serving:
    """What serves each host of a plan, for each proxy namespace and at the edge."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.domain = plan.policy.spec.cluster_domain
        self.sources = plan.routing_sources
        virtual_services = self.sources.of_kind(VIRTUAL_SERVICE)
        self.mesh_services = [s.resource for s in virtual_services if s.mesh]
        self.tables = {t.key: t for t in plan.tables if not t.owned}
        self.owned = {t.hosts[0]: t for t in plan.tables if t.owned}
        self._seen: dict[str, list[Resource]] = {}
        self._lists: dict[ObjectKey, RouteLists] = {}

    # -- which object -------------------------------------------------------------------------------------

    def seen_from(self, namespace: str) -> list[Resource]:
        """The mesh VirtualServices a proxy in ``namespace`` sees, in istiod's order."""
        if namespace not in self._seen:
            self._seen[namespace] = precedence.sidecar_order(self.mesh_services, namespace)
        return self._seen[namespace]

    def mesh_source(self, fqdn: str, namespace: str, port: int | None) -> Source | None:
        """The mesh VirtualService whose http routes serve ``fqdn`` on ``port`` for proxies in ``namespace``
        (None: istiod's default route)."""
        vs = precedence.http_winner(self.seen_from(namespace), fqdn, port, self.domain)
        return self.sources.get(vs.key) if vs is not None else None

    def tcp_covering(self, fqdn: str, namespace: str) -> list[Resource]:
        """The mesh VirtualServices whose ``tcp`` routes istiod tries for ``fqdn`` from ``namespace``, in order."""
        return precedence.covering(self.seen_from(namespace), fqdn, self.domain)

    def edge_sources(self, namespace: str, existing: Iterable[ObjectKey]) -> list[Source]:
        """The VirtualServices an ingress gateway in ``namespace`` routes by, in istiod's order: bound to a
        Gateway of ``existing`` (istiod ignores a binding to a missing one: ``istioctl analyze`` IST0101) and
        exported there."""
        gateways = set(existing)
        bound = [s.resource for s in self.sources.of_kind(VIRTUAL_SERVICE)
                 if any(gateway_key(g, s.namespace) in gateways for g in s.gateways)]
        return [s for vs in precedence.istiod_order(bound, namespace) if (s := self.sources.get(vs.key))]

    # -- their routes -------------------------------------------------------------------------------------

    def mesh(self, fqdn: str, namespace: str, port: int | None) -> RouteLists:
        """What a proxy in ``namespace`` evaluates for requests to ``fqdn`` on ``port``."""
        source = self.mesh_source(fqdn, namespace, port)
        if source is None:
            owned = self.owned.get(fqdn)
            return self.table_lists(owned) if owned is not None else RouteLists((default_route(fqdn),))
        return self.source_lists(source)

    def edge(self, namespace: str, existing: Iterable[ObjectKey]) -> dict[str, RouteLists]:
        """The edge gateway's routes per host (lower case, sorted), catch-all routes last."""
        by_host: dict[str, RouteLists] = {}
        for source in self.edge_sources(namespace, existing):
            lists = self.source_lists(source)
            for host in dict.fromkeys(h.lower() for h in source.hosts):
                by_host[host] = by_host[host].then(lists) if host in by_host else lists
        return {host: lists.catch_all_last() for host, lists in sorted(by_host.items())}

    def source_lists(self, source: Source) -> RouteLists:
        """A routing object's routes: its planned table's if meshgen edits it, else its own."""
        table = self.tables.get(source.key)
        if table is not None:
            return self.table_lists(table)
        if source.key not in self._lists:
            self._lists[source.key] = RouteLists(tuple(r for route in source.routes for r in self.expanded(route)))
        return self._lists[source.key]

    def table_lists(self, table: RouteTable) -> RouteLists:
        """A planned table's routes: the baseline routes with the caller copies among them (they match forks as
        callers, with or without a key), and per claiming key its copies among those."""
        baseline = [self.expanded(route) for route in table.baseline]
        keys: dict[str, list[Route]] = {o.routing_key: [] for o in table.owners()}
        plain: list[Route] = []
        for planned in table.routes:
            if planned.role is RouteRole.BASELINE:
                expanded = baseline[planned.baseline_index]
                plain.extend(expanded)
                for routes in keys.values():
                    routes.extend(expanded)
            elif planned.role is RouteRole.CALLER:
                plain.append(planned.route)
                for routes in keys.values():
                    routes.append(planned.route)
            elif planned.role is RouteRole.SANDBOX and planned.owner is not None:
                keys[planned.owner.routing_key].append(planned.route)
        return RouteLists(tuple(plain), {k: tuple(v) for k, v in keys.items()})

    def expanded(self, route: Route) -> list[Route]:
        """A route, or for a root route with ``delegate`` the delegate's routes merged into it as istiod merges
        them (read in the delegate's namespace); a delegate that is missing or not exported to the root drops the
        route."""
        if route.delegate is None or route.origin.key is None:
            return [route]
        root = self.sources.get(route.origin.key)
        if root is None:
            return [route]
        found = delegation.delegate_of(route.origin.body, root.resource, self.plan.baseline)
        if found is None:
            return []
        return [r for i, merged in delegation.merged(route.origin.body, found)
                for r in self.expanded(read_route(merged, Origin(found.key, i, merged, found.location),
                                                  found.namespace, self.domain))]

    # -- who calls ----------------------------------------------------------------------------------------

    def source_conditions(self) -> list[Condition]:
        """Every (source labels, source namespace) condition of a route's match block, a caller copy's included:
        callers that satisfy different ones see different routes."""
        found = source_conditions(r for _, r in self.sources.routes())
        found |= source_conditions(p.route for t in self.plan.tables for p in t.routes if p.caller is not None)
        return sorted(found)

