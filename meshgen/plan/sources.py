"""The baseline's routing objects, each read once into neutral routes: what the planner edits and what every
backend's view of the mesh starts from.

A :class:`Source` is one object that holds HTTP routes — an Istio VirtualService (:mod:`meshgen.plan.virtual_services`)
or a Gateway API HTTPRoute or GRPCRoute (:mod:`meshgen.plan.http_routes`) — with the hosts it routes (a
VirtualService's ``hosts``; the Services a Gateway API route is attached to), whether sidecars apply it (``mesh``)
and which gateways it is bound to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from meshgen.baseline.model import (
    GRPC_ROUTE,
    HTTP_ROUTE,
    VIRTUAL_SERVICE,
    Baseline,
    ObjectKey,
    Resource,
    gateways,
    is_mesh_bound,
    resolve_host,
)
from meshgen.plan import http_routes, virtual_services
from meshgen.plan.routing import Route


@dataclass(frozen=True)
class Source:
    """One routing object of the baseline, read."""

    resource: Resource = field(compare=False, hash=False)
    key: ObjectKey
    hosts: tuple[str, ...]  # resolved as istiod resolves them
    routes: tuple[Route, ...] = field(compare=False, hash=False)
    mesh: bool = True  # sidecars apply its routes
    gateways: tuple[str, ...] = ()  # the gateways it is bound to, as written (besides ``mesh``)
    # Gateway API: the Gateways it is attached to, and the Services of other namespaces it names (consumer routes)
    attached: tuple[ObjectKey, ...] = ()
    consumers: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()  # Gateway API: the host names it routes at a Gateway (none: every one)

    @property
    def kind(self) -> str:
        return self.key.kind

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name


def virtual_service_hosts(virtual_service: Resource, cluster_domain: str) -> tuple[str, ...]:
    """A VirtualService's hosts, resolved the way Istio resolves them."""
    return tuple(resolve_host(str(h), virtual_service.namespace, cluster_domain)
                 for h in virtual_service.spec.get("hosts") or [])


class Sources:
    """Every routing object of a baseline, read once (by kind, sorted by namespace and name)."""

    def __init__(self, baseline: Baseline, cluster_domain: str) -> None:
        self.cluster_domain = cluster_domain
        self.by_key: dict[ObjectKey, Source] = {}
        for vs in baseline.of_kind(VIRTUAL_SERVICE):
            self.by_key[vs.key] = Source(vs, vs.key, virtual_service_hosts(vs, cluster_domain),
                                         virtual_services.routes_of(vs, cluster_domain), is_mesh_bound(vs),
                                         tuple(g for g in gateways(vs) if g != "mesh"))
        for route in (*baseline.of_kind(HTTP_ROUTE), *baseline.of_kind(GRPC_ROUTE)):
            found = http_routes.parents(route, cluster_domain)
            names = tuple(str(h).lower() for h in route.spec.get("hostnames") or ())
            self.by_key[route.key] = Source(route, route.key, found.hosts, http_routes.routes_of(route, cluster_domain),
                                            bool(found.services), (), found.gateways, found.consumers, names)
        self._by_kind: dict[str, list[Source]] = {}
        for source in self.by_key.values():
            self._by_kind.setdefault(source.kind, []).append(source)

    def of_kind(self, kind: str) -> list[Source]:
        """The sources of one kind, sorted by namespace and name."""
        return self._by_kind.get(kind, [])

    def get(self, key: ObjectKey) -> Source | None:
        return self.by_key.get(key)

    def all(self) -> list[Source]:
        """Every source, by kind, namespace and name."""
        return [self.by_key[k] for k in sorted(self.by_key)]

    def routes(self) -> Iterator[tuple[Source, Route]]:
        """Every route of every source."""
        return ((s, r) for s in self.all() for r in s.routes)
