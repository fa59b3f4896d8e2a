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
- **Gateway API**: istiod turns the HTTPRoutes and GRPCRoutes of one namespace attached to one Service into one
  VirtualService of its own (``<namespace>~<host>``, as old as the oldest route), which then competes with the
  users' VirtualServices by the same rules; its routes are ordered by specificity (:mod:`meshgen.plan.specificity`).
  At the edge, the routes attached to a Gateway that exists serve their ``hostnames`` (none: every host);
- **keys**: a host's :class:`RouteLists` hold the list a request without a claimed key takes (exactly the
  sandbox-free list, DESIGN invariant 1) and per claiming key that key's list: its sandbox copies in their planned
  places among every baseline route (invariant 3). A caller copy is in every list: it matches forks as callers.
  Where the target runs no normaliser (:mod:`meshgen.plan.targets`), nothing puts the key in one header a data plane
  could select a list by, so Gateway API routes also come as one ``linear`` list: every copy with its key's
  conditions as alternatives, among the baseline routes in istiod's order, as a waypoint's Envoy gets them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meshgen.baseline import delegation, precedence
from meshgen.baseline.model import GRPC_ROUTE, HTTP_ROUTE, VIRTUAL_SERVICE, ObjectKey, Resource, gateway_key
from meshgen.documents import JsonObject
from meshgen.plan import specificity, targets
from meshgen.plan.model import Plan, RouteRole, RouteTable
from meshgen.plan.routes import default_route
from meshgen.plan.routing import MatchKind, Origin, Route, Semantics, source_conditions
from meshgen.plan.sources import Source
from meshgen.plan.virtual_services import read_route

Condition = tuple[tuple[tuple[str, str], ...], str]  # (sorted sourceLabels, sourceNamespace or "")


@dataclass(frozen=True)
class RouteLists:
    """A host's routes: ``baseline`` for requests without a claimed key, ``keys`` each claiming key's."""

    baseline: tuple[Route, ...]
    keys: Mapping[str, tuple[Route, ...]] = field(default_factory=dict)
    # Without a normaliser: every route in one list, each copy matching its key itself (None: select by key).
    linear: tuple[Route, ...] | None = None

    def then(self, other: RouteLists) -> RouteLists:
        """These routes followed by ``other``'s (a key one side does not claim takes that side's baseline)."""
        linear = None
        if self.linear is not None or other.linear is not None:
            linear = (self.baseline if self.linear is None else self.linear) + (
                other.baseline if other.linear is None else other.linear)
        return RouteLists(self.baseline + other.baseline,
                          {key: self.keys.get(key, self.baseline) + other.keys.get(key, other.baseline)
                           for key in sorted({*self.keys, *other.keys})}, linear)

    def catch_all_last(self) -> RouteLists:
        """Every list one route per match block, its catch-all routes moved to the end in order (istiod's
        ``SortVHostRoutes`` for gateways)."""
        return RouteLists(_catch_all_last(self.baseline), {k: _catch_all_last(v) for k, v in self.keys.items()},
                          None if self.linear is None else _catch_all_last(self.linear))


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
        self.derived = _derived(self.sources.of_kind(HTTP_ROUTE) + self.sources.of_kind(GRPC_ROUTE))
        self.mesh_services = [*(s.resource for s in virtual_services if s.mesh),
                              *(resource for resource, _ in self.derived.values())]
        self.tables = {t.key: t for t in plan.tables if not t.owned}
        self.owned: dict[str, list[RouteTable]] = {}
        for table in plan.tables:
            if table.owned:
                self.owned.setdefault(table.hosts[0], []).append(table)
        self._seen: dict[str, list[Resource]] = {}
        self._lists: dict[ObjectKey, RouteLists] = {}

    # -- which object -------------------------------------------------------------------------------------

    def seen_from(self, namespace: str) -> list[Resource]:
        """The mesh VirtualServices a proxy in ``namespace`` sees, in istiod's order."""
        if namespace not in self._seen:
            self._seen[namespace] = precedence.sidecar_order(self.mesh_services, namespace)
        return self._seen[namespace]

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
        vs = precedence.http_winner(self.seen_from(namespace), fqdn, port, self.domain)
        if vs is not None and vs.key in self.derived:
            return self.gamma_lists(self.derived[vs.key][1])
        source = self.sources.get(vs.key) if vs is not None else None
        if source is not None:
            return self.source_lists(source)
        owned = self.owned.get(fqdn, [])
        if owned and owned[0].semantics is Semantics.SPECIFICITY:
            return self.gamma_lists(owned)
        return self.table_lists(owned[0]) if owned else RouteLists((default_route(fqdn),))

    def edge(self, namespace: str, existing: Iterable[ObjectKey]) -> dict[str, RouteLists]:
        """The edge gateway's routes per host (lower case, sorted), catch-all routes last."""
        gateways = set(existing)
        by_host: dict[str, RouteLists] = {}
        for source in self.edge_sources(namespace, gateways):
            lists = self.source_lists(source)
            for host in dict.fromkeys(h.lower() for h in source.hosts):
                by_host[host] = by_host[host].then(lists) if host in by_host else lists
        attached: dict[str, list[Source]] = {}
        for source in _by_age(self.sources.of_kind(HTTP_ROUTE) + self.sources.of_kind(GRPC_ROUTE)):
            if gateways & set(source.attached):
                for host in source.hostnames or ("*",):
                    attached.setdefault(host, []).append(source)
        for host, found in attached.items():
            lists = self.gamma_lists(found)
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

    def gamma_lists(self, found: Sequence[Source | RouteTable]) -> RouteLists:
        """The routes of Gateway API objects (or meshgen's own tables of them) served together, each list in the
        order istiod evaluates them: a sandbox copy counts its key match."""
        tables = [self.tables.get(f.key, f) if isinstance(f, Source) else f for f in found]
        owners = {o.routing_key for t in tables if isinstance(t, RouteTable) for o in t.owners()}
        plain: list[tuple[Route, int]] = []
        keys: dict[str, list[tuple[Route, int]]] = {k: [] for k in sorted(owners)}
        for table in tables:
            if isinstance(table, Source):
                plain.extend((r, 0) for r in table.routes)
                for entries in keys.values():
                    entries.extend((r, 0) for r in table.routes)
                continue
            for planned in table.routes:
                if planned.role is RouteRole.BASELINE:
                    plain.append((planned.route, 0))
                    for entries in keys.values():
                        entries.append((planned.route, 0))
                elif planned.role is RouteRole.SANDBOX and planned.owner is not None:
                    keys[planned.owner.routing_key].append((planned.route, 1))
        linear = None
        policy = self.plan.policy
        if not targets.capabilities(policy).normaliser:
            every = [*plain, *((targets.keyed(r, targets.key_matches(policy, self.plan.routing_header, k)), 1)
                               for k, entries in keys.items() for r, extra in entries if extra)]
            linear = tuple(specificity.ordered(every))
        return RouteLists(tuple(specificity.ordered(plain)),
                          {k: tuple(specificity.ordered(entries)) for k, entries in keys.items()}, linear)

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


def _by_age(sources: Sequence[Source]) -> list[Source]:
    """Oldest first, then by namespace and name (istiod's ``sortRoutesByCreationTime``)."""
    return sorted(sources, key=lambda s: (precedence.created(s.resource), s.namespace, s.name))


def _derived(routes: Sequence[Source]) -> dict[ObjectKey, tuple[Resource, list[Source]]]:
    """The VirtualServices istiod derives from Gateway API routes for the mesh: one per namespace and attached
    Service (producer routes only: meshgen refuses consumer routes), as old as its oldest route, with the routes
    of every one of them, in creation order. Named ``<namespace>~<host>`` as istiod names them (a name no object
    can have)."""
    groups: dict[tuple[str, str], list[Source]] = {}
    for source in _by_age(routes):
        if source.mesh and not source.consumers:
            for host in source.hosts:
                groups.setdefault((source.namespace, host), []).append(source)
    out: dict[ObjectKey, tuple[Resource, list[Source]]] = {}
    for (namespace, host), found in sorted(groups.items()):
        meta: JsonObject = {"name": f"{namespace}~{host}", "namespace": namespace}
        created = found[0].resource.metadata.get("creationTimestamp")
        if created is not None:
            meta["creationTimestamp"] = created
        http = [{"match": [{"port": m.port} if m.port is not None else {} for m in r.blocks]}
                for s in found for r in s.routes]
        body: JsonObject = {"apiVersion": "networking.istio.io/v1", "kind": VIRTUAL_SERVICE, "metadata": meta,
                            "spec": {"hosts": [host], "http": http}}
        key = ObjectKey(VIRTUAL_SERVICE, namespace, meta["name"])
        out[key] = (Resource(key, body), found)
    return out
