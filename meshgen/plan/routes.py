"""Route tables: where each sandbox route goes, in order (DESIGN invariants 1, 3, 4 and 10).

For every VirtualService that routes to a claimed host, each baseline route with such a destination gets one copy
per routing key that claims it, placed directly before it; nothing else moves. A claimed host that no mesh
VirtualService covers gets a table meshgen owns: a fast path for requests without a key, the key routes, then the
default route to the baseline.

A route that matches on the original as the *caller* (``match[].sourceLabels`` selecting its pods) would not match
its fork, whose labels differ where Services select; so it gets a **caller copy** for each fork it misses, placed
directly before it (and before the route's own key copies): the match blocks naming the original, with
``sourceLabels`` selecting the fork instead, everything else as written. Key copies of the caller copy come first,
like any route's. Caller copies land with the VirtualService, after the fork's pods (which the VirtualService's
other routes need first), so until then the fork's own calls take the route they would without ``sourceLabels``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from meshgen.baseline import precedence
from meshgen.baseline.model import (
    MESH_GATEWAY,
    VIRTUAL_SERVICE,
    Baseline,
    ObjectKey,
    Resource,
    gateways,
    selects,
)
from meshgen.errors import Problem
from meshgen.plan import coverage, specificity
from meshgen.plan.model import (
    CallerMatch,
    Claim,
    Diagnostic,
    Fork,
    Host,
    Owner,
    OwnerKind,
    PlannedRoute,
    RouteRole,
    RouteTable,
)
from meshgen.plan.routing import Destination, Match, MatchKind, Origin, Route, Semantics, StringMatch
from meshgen.plan.sources import Source, Sources
from meshgen.plan.tables import GRPC_ROUTE, HTTP_ROUTE
from meshgen.spec.models import Backend
from meshgen.spec.names import fit_name

FAST_PATH_ROUTE = "meshgen-no-key"
DEFAULT_ROUTE = "meshgen-default"


def owned_table_name(service: str) -> str:
    """Name of the VirtualService meshgen owns for a Service's host: ``meshgen-<service>``, shortened with a hash
    when that is longer than a DNS label (the prefix stays, so it still reads as meshgen's)."""
    return fit_name(service, prefix="meshgen")


def default_route(fqdn: str) -> Route:
    """istiod's route for a host no route table covers: everything to the host (an owned table's last route)."""
    return Route(Origin(None, 0), name=DEFAULT_ROUTE, destinations=(Destination(fqdn),))


def redirected(destinations: Sequence[Destination], redirects: Mapping[str, str]) -> tuple[Destination, ...]:
    """A route's destinations with claimed hosts sent to their targets; the weights of destinations that now
    go to the same fork are summed, so a v1/v2 split of a forked host collapses to the fork (which has no
    subsets). A lone destination carries no weight."""
    out: list[Destination] = []
    merged: dict[str, int] = {}  # target -> its position in out
    for dest in destinations:
        target = redirects.get(dest.host)
        if target is None or target == dest.host:
            out.append(dest)
            continue
        if target in merged:
            if dest.weight is not None:
                first = out[merged[target]]
                out[merged[target]] = dataclasses.replace(first, weight=(first.weight or 0) + dest.weight)
            continue
        merged[target] = len(out)
        out.append(dataclasses.replace(dest, host=target, subset=None))
    if len(out) == 1:
        out[0] = dataclasses.replace(out[0], weight=None)
    return tuple(out)


def plan_tables(
    sources: Sources,
    claims: Iterable[Claim],
    hosts: Mapping[str, Host],
    cluster_domain: str,
    baseline: Baseline,
    forks: Sequence[Fork] = (),
    backend: Backend = Backend.ISTIO,
) -> tuple[tuple[RouteTable, ...], list[Problem], list[Diagnostic]]:
    """Every route table that reaches a claimed host or matches a forked workload as caller, with sandbox and
    caller routes placed; plus problems and warnings.

    Of mesh VirtualServices defining one host, istiod applies one (:mod:`meshgen.baseline.precedence`): meshgen
    edits that one, never one istiod ignores, and warns as ``istioctl analyze`` does (IST0109). Which kind of
    routing object a claimed host may have, and where meshgen refuses to build on one, is
    :mod:`meshgen.plan.coverage`'s; a host with none gets a table meshgen owns, of the kind the backend writes."""
    callers = _callers(sources, baseline, forks)
    by_key_host: dict[tuple[Owner, str], str] = {}
    owners_of_host: dict[str, set[Owner]] = {}
    for claim in claims:
        by_key_host[(claim.owner, claim.host)] = claim.target
        owners_of_host.setdefault(claim.host, set()).add(claim.owner)
    problems: list[Problem] = []
    warnings: list[Diagnostic] = []
    tables: list[RouteTable] = []

    user_services = [s.resource for s in sources.of_kind(VIRTUAL_SERVICE)]
    seen: dict[str, list[Resource]] = {}
    touched: set[ObjectKey] = set()
    for source in sources.of_kind(VIRTUAL_SERVICE):
        table = _user_table(source, by_key_host, owners_of_host, callers)
        if table is None:
            continue
        touched.add(source.key)
        if gateways(source.resource) == (MESH_GATEWAY,):
            namespace = next((hosts[h].namespace for h in table.hosts if h in hosts), source.namespace)
            if namespace not in seen:
                seen[namespace] = precedence.sidecar_order(user_services, namespace)
            ordered = seen[namespace]
            if precedence.shadowed_by(source.resource, ordered, cluster_domain) is not None:
                continue  # istiod never applies it: its routes stay as they are (the warning below says so)
        tables.append(table)
    warnings.extend(_conflicts(user_services, touched, set(owners_of_host), {t.key for t in tables},
                               cluster_domain))

    for source in [*sources.of_kind(HTTP_ROUTE), *sources.of_kind(GRPC_ROUTE)]:
        if source.consumers:
            continue  # never edited (a consumer route touching a claimed host is refused below)
        table = _user_table(source, by_key_host, owners_of_host)
        if table is not None:
            tables.append(table)
    refused: set[str] = set()  # claimed hosts meshgen cannot build on, whatever it would edit
    for host in sorted(owners_of_host):
        problem, covered = coverage.of_host(host, sources, backend)
        if problem is not None:
            problems.append(problem)
            refused.add(host)
        if problem is not None or covered:
            continue
        service = hosts.get(host)
        if service is None:
            continue  # claims come from baseline Services, so every claimed host is known
        if backend is Backend.GATEWAY_API:
            tables.extend(_owned_http_routes(service, by_key_host, owners_of_host[host]))
        else:
            tables.append(_owned_table(service, by_key_host, owners_of_host[host]))
    problems.extend(_unwritable(tables, backend, refused))
    tables.sort(key=lambda t: (t.namespace, t.name, t.kind))
    return tuple(tables), problems, warnings


def _unwritable(tables: Iterable[RouteTable], backend: Backend, refused: set[str]) -> list[Problem]:
    """A user's routing object that would need sandbox routes the backend cannot write into it (unless a host
    it sends to is refused already: that problem says more)."""
    out = []
    for table in tables:
        if table.owned or table.kind in coverage.EDITED[backend] or table.source is None:
            continue
        claimed = [h for r in table.routes for h, _ in r.redirects]
        if refused & set(claimed):
            continue
        out.append(coverage.wrong_backend(table.source, claimed[0] if claimed else table.hosts[0], backend))
    return out


def _conflicts(user_services: Sequence[Resource], touched: set[ObjectKey], claimed: set[str],
               edited: set[ObjectKey], cluster_domain: str) -> list[Diagnostic]:
    """IST0109 where it concerns a sandbox: mesh VirtualServices defining one host, one of which routes to a
    claimed host or defines one. istiod uses one of them (:mod:`meshgen.baseline.precedence`); meshgen edits only
    that one."""
    out = []
    for scoped, group in precedence.conflicts(user_services, cluster_domain).items():
        involved = any(vs.key in touched or any(h in claimed for h in precedence.hosts_of(vs, cluster_domain))
                       for vs in group)
        if not involved:
            continue
        scope, _, fqdn = scoped.partition("/")
        ordered = precedence.sidecar_order(group, scope if scope != "*" else group[0].namespace)
        used = next((vs for vs in ordered if fqdn in precedence.hosts_of(vs, cluster_domain)
                     and precedence.has_http_routes(vs, None)), ordered[0] if ordered else group[0])
        others = sorted(f"{vs.namespace}/{vs.name}" for vs in group if vs is not used)
        changed = [f"{vs.namespace}/{vs.name}" for vs in group if vs.key in edited]
        note = (f"meshgen adds sandbox routes to {', '.join(changed)} only" if changed else
                "meshgen adds sandbox routes to none of them")
        out.append(Diagnostic(
            f"VirtualService {used.namespace}/{used.name}",
            f"{precedence.conflict_message(scoped, group)} istiod uses {used.namespace}/{used.name} (the oldest, "
            f"then by name) and ignores {', '.join(others)} for this host; {note}"))
    return out


def copied(route: Route, name: str | None, caller: CallerMatch | None = None,
           redirects: Mapping[str, str] | None = None) -> Route:
    """A copy of ``route`` named ``name``: with a caller copy's match blocks (the fork's selector as
    ``sourceLabels``) and a sandbox copy's destinations redirected (:func:`redirected`)."""
    matches = route.matches
    if caller is not None:
        matches = tuple(dataclasses.replace(route.matches[i], source_labels=caller.source_labels)
                        for i in caller.blocks)
    destinations = redirected(route.destinations, redirects) if redirects is not None else route.destinations
    return dataclasses.replace(route, name=name, matches=matches, destinations=destinations)


def _copies(
    route: Route,
    index: int,
    dest_hosts: list[str],
    by_key_host: Mapping[tuple[Owner, str], str],
    owners_of_host: Mapping[str, set[Owner]],
    counters: dict[Owner, int],
    caller: CallerMatch | None = None,
) -> list[PlannedRoute]:
    owners = sorted({o for h in dest_hosts for o in owners_of_host.get(h, ())}, key=lambda o: o.order)
    out = []
    for owner in owners:
        redirects = tuple((h, by_key_host[(owner, h)]) for h in dest_hosts if (owner, h) in by_key_host)
        name = _next_name(owner, counters)
        out.append(PlannedRoute(RouteRole.SANDBOX, index, copied(route, name, caller, dict(redirects)), name, owner,
                                redirects, caller))
    return out


def _next_name(owner: Owner, counters: dict[Owner, int]) -> str:
    n = counters.get(owner, 0)
    counters[owner] = n + 1
    return f"{owner.route_prefix}-{n}"


# A fork as a caller: its owner, the labels of the original's pods, and the fork.
_Caller = tuple[Owner, Mapping[str, str], Fork]


def _callers(sources: Sources, baseline: Baseline, forks: Sequence[Fork]) -> list[_Caller]:
    """Every fork, as a caller, when some route matches on its caller's labels (else none)."""
    if not any(m.source_labels for _, route in sources.routes() for m in route.matches):
        return []
    out: list[_Caller] = []
    for fork in forks:
        original = baseline.get(fork.workload.kind, fork.workload.namespace, fork.workload.name)
        if original is not None:
            out.append((Owner(OwnerKind.SANDBOX, fork.sandbox, fork.routing_key), baseline.labels_of(original), fork))
    out.sort(key=lambda c: (c[0].order, c[2].key))
    return out


def _caller_matches(route: Route, callers: Sequence[_Caller]) -> list[tuple[Owner, CallerMatch]]:
    """For each fork a route matches as the original but not as itself, how its caller copy matches it."""
    blocks = [(j, m) for j, m in enumerate(route.matches) if m.source_labels]
    if not blocks:
        return []
    out = []
    for owner, original, fork in callers:
        namespace = fork.workload.namespace
        hit = tuple(j for j, m in blocks if m.source_namespace in (None, namespace)
                    and selects(dict(m.source_labels), original) and not selects(dict(m.source_labels),
                                                                                 fork.pod_labels))
        if hit:
            out.append((owner, CallerMatch(fork.key, hit, tuple(sorted(fork.selector.items())))))
    return out


def _user_table(
    source: Source,
    by_key_host: Mapping[tuple[Owner, str], str],
    owners_of_host: Mapping[str, set[Owner]],
    callers: Sequence[_Caller] = (),
) -> RouteTable | None:
    counters: dict[Owner, int] = {}
    placed: dict[int, list[PlannedRoute]] = {}  # position in the object's list -> the copies placed before it
    routes: list[PlannedRoute] = []
    touched = False
    for i, route in enumerate(source.routes):
        dests = [h for h in route.destination_hosts() if h in owners_of_host]
        for owner, caller in _caller_matches(route, callers) if source.mesh else []:
            routes.extend(_copies(route, i, dests, by_key_host, owners_of_host, counters, caller))
            name = _next_name(owner, counters)
            routes.append(PlannedRoute(RouteRole.CALLER, i, copied(route, name, caller), name, owner, (), caller))
            touched = True
        if dests:
            copies = _copies(route, i, dests, by_key_host, owners_of_host, counters)
            where = specificity.anchor(source.routes, i) if route.semantics is Semantics.SPECIFICITY else i
            placed.setdefault(where, []).extend(copies)
            touched = touched or bool(copies)
        routes.extend(placed.pop(i, []))
        routes.append(PlannedRoute(RouteRole.BASELINE, i, route, route.name))
    if not touched:
        return None
    routes.extend(placed.pop(len(source.routes), []))
    return RouteTable(
        namespace=source.namespace,
        name=source.name,
        hosts=source.hosts,
        owned=False,
        baseline=source.routes,
        routes=tuple(routes),
        source=source.resource,
        kind=source.kind,
    )


def _owned_table(
    service: Host,
    by_key_host: Mapping[tuple[Owner, str], str],
    owners: set[Owner],
) -> RouteTable:
    default = default_route(service.fqdn)
    counters: dict[Owner, int] = {}
    routes = [PlannedRoute(RouteRole.FAST_PATH, 0, dataclasses.replace(default, name=FAST_PATH_ROUTE),
                           FAST_PATH_ROUTE)]
    routes.extend(_copies(default, 0, [service.fqdn], by_key_host, {service.fqdn: owners}, counters))
    routes.append(PlannedRoute(RouteRole.BASELINE, 0, default, DEFAULT_ROUTE))
    return RouteTable(
        namespace=service.namespace,
        name=owned_table_name(service.name),
        hosts=(service.fqdn,),
        owned=True,
        baseline=(default,),
        routes=tuple(routes),
    )


def _owned_http_routes(service: Host, by_key_host: Mapping[tuple[Owner, str], str],
                       owners: set[Owner]) -> list[RouteTable]:
    """The HTTPRoutes meshgen owns for a Service no routing object covers (the Gateway API backend): one rule per
    routing key, then the default rule to the Service, all on one port (a backendRef names the port it sends to, so
    a Service with several ports gets one route per port, ``meshgen-<service>-<port>``). There is no fast path:
    the Gateway API cannot match a header's absence."""
    ports = [p for p in service.ports if p.mesh_protocol.routes_requests]
    out = []
    for port in ports:
        default = Route(Origin(None, 0), name=DEFAULT_ROUTE, semantics=Semantics.SPECIFICITY,
                        matches=(Match(path=StringMatch(MatchKind.PREFIX, "/"),
                                       port=port.port if len(ports) > 1 else None),),
                        destinations=(Destination(service.fqdn, port.port),))
        counters: dict[Owner, int] = {}
        routes = _copies(default, 0, [service.fqdn], by_key_host, {service.fqdn: owners}, counters)
        routes.append(PlannedRoute(RouteRole.BASELINE, 0, default, DEFAULT_ROUTE))
        name = owned_table_name(service.name if len(ports) == 1 else f"{service.name}-{port.port}")
        out.append(RouteTable(namespace=service.namespace, name=name, hosts=(service.fqdn,), owned=True,
                              baseline=(default,), routes=tuple(routes), kind=HTTP_ROUTE))
    return out
