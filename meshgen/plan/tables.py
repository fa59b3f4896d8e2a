"""Route tables: the routes of one routing object (a user's VirtualService or HTTPRoute, or one meshgen owns) in
their final order, each saying what it is and, for meshgen's own, everything a backend needs to write it.

A table is the planner's answer for one object. Its ``baseline`` routes are the object's own, in neutral terms
(:mod:`meshgen.plan.routing`), each carrying its body as written; its ``routes`` are the final order, where each
:class:`PlannedRoute` is one of them (``BASELINE``) or one meshgen adds: a sandbox copy (the route it copies, its
destinations for claimed hosts sent to their targets and weights that now reach one fork summed, to be AND-ed with
one routing key match), a caller copy (the match blocks that name a forked workload as caller, now naming its
fork), or the fast path of an owned table. Every decision is in the table; a backend writes it in its own terms.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from meshgen.baseline.model import ObjectKey, Resource
from meshgen.plan.owners import Owner
from meshgen.plan.routing import Destination, HeaderMatch, MatchKind, Route, Semantics, StringMatch

VIRTUAL_SERVICE = "VirtualService"
HTTP_ROUTE = "HTTPRoute"
GRPC_ROUTE = "GRPCRoute"
# How each kind of table picks a route for a request.
SEMANTICS: Mapping[str, Semantics] = {VIRTUAL_SERVICE: Semantics.ORDERED, HTTP_ROUTE: Semantics.SPECIFICITY,
                                      GRPC_ROUTE: Semantics.SPECIFICITY}


class RouteRole(enum.StrEnum):
    """What a route in a planned table is."""

    FAST_PATH = "fast-path"  # requests without a routing key go straight to the baseline
    SANDBOX = "sandbox"  # a copy of a baseline route, AND-ed with one key match, redirected to forks
    CALLER = "caller"  # a copy of a baseline route that matches the original as caller (sourceLabels): the fork
    BASELINE = "baseline"  # the user's route (or the default route of a meshgen-owned table), unchanged


@dataclass(frozen=True)
class CallerMatch:
    """How a copy matches a fork as the caller: the ``match`` blocks of the baseline route (by index) whose
    ``sourceLabels`` select the original, each with ``sourceLabels`` replaced by ``source_labels`` (the fork's
    selector)."""

    fork: ObjectKey
    blocks: tuple[int, ...]
    source_labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PlannedRoute:
    """One entry of a route table, in final order.

    ``baseline_index`` is the baseline route it copies or is. ``route`` is what it is in neutral terms: the
    baseline route, or for a copy that route named ``name``, with the caller copy's match blocks and a sandbox
    copy's destinations (``redirects`` maps each claimed destination host to its target) — never with the key
    match, which :meth:`key_match` adds where a backend matches keys per route. ``caller`` is set on a caller copy,
    and on the sandbox copies of one: they match the fork as the caller instead of the original.
    """

    role: RouteRole
    baseline_index: int
    route: Route = field(compare=False, hash=False)
    name: str | None = None
    owner: Owner | None = None
    redirects: tuple[tuple[str, str], ...] = ()
    caller: CallerMatch | None = None

    @property
    def redirect_map(self) -> Mapping[str, str]:
        return dict(self.redirects)

    @property
    def destinations(self) -> tuple[Destination, ...]:
        return self.route.destinations

    def key_match(self, routing_header: str) -> HeaderMatch | None:
        """The condition a sandbox copy adds to each of its match blocks: the routing header is its owner's key."""
        if self.role is not RouteRole.SANDBOX or self.owner is None:
            return None
        return HeaderMatch(routing_header, StringMatch(MatchKind.EXACT, self.owner.routing_key))


@dataclass(frozen=True)
class RouteTable:
    """The routes for one routing object: a user's, edited in place, or one meshgen owns.

    ``kind`` is the object's kind (:data:`VIRTUAL_SERVICE`, :data:`HTTP_ROUTE`, :data:`GRPC_ROUTE`);
    ``namespace``/``name`` identify it. ``hosts`` are the hosts it routes (resolved). ``baseline`` is the object's
    own routes (for an owned table, one default route to ``hosts[0]``); ``routes`` the final order. ``source`` is
    the user's object (None for one meshgen owns).
    """

    namespace: str
    name: str
    hosts: tuple[str, ...]
    owned: bool
    baseline: tuple[Route, ...] = field(compare=False, hash=False)
    routes: tuple[PlannedRoute, ...]
    source: Resource | None = field(default=None, compare=False, hash=False)
    kind: str = VIRTUAL_SERVICE

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.kind, self.namespace, self.name)

    @property
    def semantics(self) -> Semantics:
        return SEMANTICS[self.kind]

    @property
    def sandbox_routes(self) -> tuple[PlannedRoute, ...]:
        return tuple(r for r in self.routes if r.role is RouteRole.SANDBOX)

    @property
    def added_names(self) -> list[str]:
        """The names of the routes meshgen adds, in order (an owned table's default route too)."""
        names = [r.name for r in self.routes if r.role is not RouteRole.BASELINE and r.name]
        if self.owned and self.routes and self.routes[-1].name:
            names.append(self.routes[-1].name)
        return names

    def owners(self) -> Sequence[Owner]:
        """The owners of the sandbox routes, first seen first, once per routing key."""
        seen: dict[str, Owner] = {}
        for planned in self.sandbox_routes:
            if planned.owner is not None:
                seen.setdefault(planned.owner.routing_key, planned.owner)
        return list(seen.values())


def fast_path_match(routing_header: str) -> HeaderMatch:
    """What the fast path of an owned table matches: the routing header absent or empty ("no usable key").

    An inverted RE2 ``.+`` that reads a missing header as empty (Istio: ``withoutHeaders: {h: {regex: ".+"}}``).
    Measured on Envoy 1.40: the inverted presence form (``withoutHeaders: {h: {}}``) matches absent headers only,
    and with missing-as-empty nothing at all."""
    return HeaderMatch(routing_header, StringMatch(MatchKind.REGEX, ".+"), invert=True)
