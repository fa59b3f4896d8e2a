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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshgen.baseline import precedence
from meshgen.baseline.model import (
    MESH_GATEWAY,
    VIRTUAL_SERVICE,
    Baseline,
    ObjectKey,
    Resource,
    gateways,
    host_matches,
    is_mesh_bound,
    resolve_host,
    selects,
)
from meshgen.documents import JsonObject
from meshgen.errors import Problem
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
    route_destinations,
)
from meshgen.spec.names import fit_name

FAST_PATH_ROUTE = "meshgen-no-key"
DEFAULT_ROUTE = "meshgen-default"


def owned_table_name(service: str) -> str:
    """Name of the VirtualService meshgen owns for a Service's host: ``meshgen-<service>``, shortened with a hash
    when that is longer than a DNS label (the prefix stays, so it still reads as meshgen's)."""
    return fit_name(service, prefix="meshgen")


def destination_hosts(route: Mapping[str, Any], namespace: str, cluster_domain: str) -> list[str]:
    """The resolved hosts an HTTP route sends to, in order, without repeats."""
    hosts: list[str] = []
    for dest in route_destinations(route):
        host = resolve_host(str(dest["destination"]["host"]), namespace, cluster_domain)
        if host not in hosts:
            hosts.append(host)
    return hosts


def resolved_hosts(virtual_service: Resource, cluster_domain: str) -> tuple[str, ...]:
    """A VirtualService's hosts, resolved the way Istio resolves them."""
    return tuple(resolve_host(h, virtual_service.namespace, cluster_domain)
                 for h in virtual_service.spec.get("hosts") or [])


def plan_tables(
    baseline: Baseline,
    claims: Iterable[Claim],
    hosts: Mapping[str, Host],
    cluster_domain: str,
    forks: Sequence[Fork] = (),
) -> tuple[tuple[RouteTable, ...], list[Problem], list[Diagnostic]]:
    """Every route table that reaches a claimed host or matches a forked workload as caller, with sandbox and
    caller routes placed; plus problems and warnings.

    Of mesh VirtualServices defining one host, istiod applies one (:mod:`meshgen.baseline.precedence`): meshgen
    edits that one, never one istiod ignores, and warns as ``istioctl analyze`` does (IST0109)."""
    callers = _callers(baseline, forks)
    by_key_host: dict[tuple[Owner, str], str] = {}
    owners_of_host: dict[str, set[Owner]] = {}
    for claim in claims:
        by_key_host[(claim.owner, claim.host)] = claim.target
        owners_of_host.setdefault(claim.host, set()).add(claim.owner)
    problems: list[Problem] = []
    warnings: list[Diagnostic] = []
    tables: list[RouteTable] = []

    user_services = baseline.of_kind(VIRTUAL_SERVICE)
    seen: dict[str, list[Resource]] = {}
    touched: set[ObjectKey] = set()
    for vs in user_services:
        table = _user_table(vs, by_key_host, owners_of_host, cluster_domain, callers)
        if table is None:
            continue
        touched.add(vs.key)
        if gateways(vs) == (MESH_GATEWAY,):
            namespace = next((hosts[h].namespace for h in table.hosts if h in hosts), vs.namespace)
            if namespace not in seen:
                seen[namespace] = precedence.sidecar_order(user_services, namespace)
            ordered = seen[namespace]
            if precedence.shadowed_by(vs, ordered, cluster_domain) is not None:
                continue  # istiod never applies it: its routes stay as they are (the warning below says so)
        tables.append(table)
    warnings.extend(_conflicts(user_services, touched, set(owners_of_host), {t.key for t in tables},
                               cluster_domain))

    bound = {vs.key: resolved_hosts(vs, cluster_domain) for vs in user_services}
    for host in sorted(owners_of_host):
        covering = [vs for vs in user_services if any(host_matches(h, host) for h in bound[vs.key])]
        if any(is_mesh_bound(vs) for vs in covering):
            continue
        gateway_only = [vs for vs in covering if host in bound[vs.key]]
        if gateway_only:
            vs = gateway_only[0]
            problems.append(Problem(
                vs.at("spec", "gateways"),
                f"VirtualService {vs.namespace}/{vs.name} binds {host} only to gateways "
                f"({', '.join(gateways(vs))}), so it does not route mesh traffic and meshgen cannot add sandbox "
                "routes to it without a second VirtualService for the same host",
                "add 'mesh' to spec.gateways so the routes also apply inside the mesh, or bind the gateway "
                "VirtualService to an external host name instead of the Service host",
            ))
            continue
        service = hosts.get(host)
        if service is None:
            continue  # claims come from baseline Services, so every claimed host is known
        tables.append(_owned_table(service, by_key_host, owners_of_host[host]))
    tables.sort(key=lambda t: (t.namespace, t.name))
    return tuple(tables), problems, warnings


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


def _copies(
    route: Mapping[str, Any],
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
        out.append(PlannedRoute(RouteRole.SANDBOX, index, _next_name(owner, counters), owner, redirects, caller))
    return out


def _next_name(owner: Owner, counters: dict[Owner, int]) -> str:
    n = counters.get(owner, 0)
    counters[owner] = n + 1
    return f"{owner.route_prefix}-{n}"


# A fork as a caller: its owner, the labels of the original's pods, and the fork.
_Caller = tuple[Owner, Mapping[str, str], Fork]


def _callers(baseline: Baseline, forks: Sequence[Fork]) -> list[_Caller]:
    """Every fork, as a caller, when some VirtualService route matches on its caller's labels (else none)."""
    if not any(isinstance(m, dict) and m.get("sourceLabels") for vs in baseline.of_kind(VIRTUAL_SERVICE)
               for route in vs.spec.get("http") or [] for m in route.get("match") or []):
        return []
    out: list[_Caller] = []
    for fork in forks:
        original = baseline.get(fork.workload.kind, fork.workload.namespace, fork.workload.name)
        if original is not None:
            out.append((Owner(OwnerKind.SANDBOX, fork.sandbox, fork.routing_key), baseline.labels_of(original), fork))
    out.sort(key=lambda c: (c[0].order, c[2].key))
    return out


def _caller_matches(route: Mapping[str, Any], callers: Sequence[_Caller]) -> list[tuple[Owner, CallerMatch]]:
    """For each fork a route matches as the original but not as itself, how its caller copy matches it."""
    blocks = [(j, m) for j, m in enumerate(route.get("match") or [])
              if isinstance(m, dict) and isinstance(m.get("sourceLabels"), dict) and m["sourceLabels"]]
    if not blocks:
        return []
    out = []
    for owner, original, fork in callers:
        namespace = fork.workload.namespace
        hit = tuple(j for j, m in blocks if m.get("sourceNamespace") in (None, namespace)
                    and selects(m["sourceLabels"], original) and not selects(m["sourceLabels"], fork.pod_labels))
        if hit:
            out.append((owner, CallerMatch(fork.key, hit, tuple(sorted(fork.selector.items())))))
    return out


def _user_table(
    vs: Resource,
    by_key_host: Mapping[tuple[Owner, str], str],
    owners_of_host: Mapping[str, set[Owner]],
    cluster_domain: str,
    callers: Sequence[_Caller] = (),
) -> RouteTable | None:
    http = vs.spec.get("http") or []
    counters: dict[Owner, int] = {}
    routes: list[PlannedRoute] = []
    touched = False
    for i, route in enumerate(http):
        dests = [h for h in destination_hosts(route, vs.namespace, cluster_domain) if h in owners_of_host]
        for owner, caller in _caller_matches(route, callers) if is_mesh_bound(vs) else []:
            routes.extend(_copies(route, i, dests, by_key_host, owners_of_host, counters, caller))
            routes.append(PlannedRoute(RouteRole.CALLER, i, _next_name(owner, counters), owner, (), caller))
            touched = True
        if dests:
            copies = _copies(route, i, dests, by_key_host, owners_of_host, counters)
            routes.extend(copies)
            touched = touched or bool(copies)
        routes.append(PlannedRoute(RouteRole.BASELINE, i, route.get("name")))
    if not touched:
        return None
    return RouteTable(
        namespace=vs.namespace,
        name=vs.name,
        hosts=resolved_hosts(vs, cluster_domain),
        owned=False,
        baseline_routes=tuple(http),
        routes=tuple(routes),
        source=vs,
    )


def _owned_table(
    service: Host,
    by_key_host: Mapping[tuple[Owner, str], str],
    owners: set[Owner],
) -> RouteTable:
    default: JsonObject = {"name": DEFAULT_ROUTE, "route": [{"destination": {"host": service.fqdn}}]}
    counters: dict[Owner, int] = {}
    routes = [PlannedRoute(RouteRole.FAST_PATH, 0, FAST_PATH_ROUTE)]
    routes.extend(_copies(default, 0, [service.fqdn], by_key_host, {service.fqdn: owners}, counters))
    routes.append(PlannedRoute(RouteRole.BASELINE, 0, DEFAULT_ROUTE))
    return RouteTable(
        namespace=service.namespace,
        name=owned_table_name(service.name),
        hosts=(service.fqdn,),
        owned=True,
        baseline_routes=(default,),
        routes=tuple(routes),
    )
