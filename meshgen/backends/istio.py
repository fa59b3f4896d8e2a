"""Plan -> Istio resources: VirtualServices, DestinationRules, one EnvoyFilter, forks (Deployments, StatefulSets),
their Services and their copies of label-keyed policies.

Rendering only: every routing decision (which routes, in what order, to which host) was made by the planner.
What this module knows is Istio's vocabulary:

- a sandbox route is the baseline route it shadows, with the routing-header ``exact`` match AND-ed into every
  match block (a route without ``match`` gets one), and its destinations for claimed hosts replaced by the fork
  host (weights of those destinations summed into one; subsets dropped: a fork has none). Every other field —
  rewrite, retries, timeout, headers, fault, corsPolicy, mirror — is kept as written.
- a caller copy is the baseline route with only the match blocks that name the original as caller, their
  ``sourceLabels`` replaced by the fork's selector; its key copies are that, AND-ed and redirected as above.
- the fast path of a table meshgen owns matches "routing header absent or empty" with
  ``withoutHeaders: {<header>: {regex: ".+"}}``. Envoy 1.40 evaluates ``withoutHeaders: {<header>: {}}`` (present,
  inverted, missing-as-empty) as matching nothing at all, so that form must never be emitted.
- a user's VirtualService is emitted whole, with its own routes untouched and meshgen's listed in the
  ``meshgen.dev/routes`` annotation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshgen.backends import edge, normaliser
from meshgen.baseline.model import resolve_host
from meshgen.baseline.stored import SERVER_METADATA
from meshgen.documents import JsonObject, clone
from meshgen.ownership import ANNOTATION_ROUTES, MANAGED_BY, MESHGEN
from meshgen.plan.model import ForkService, Plan, PlannedRoute, RouteRole, RouteTable, route_destinations

NETWORKING_V1 = "networking.istio.io/v1"
NETWORKING_V1ALPHA3 = "networking.istio.io/v1alpha3"
ENVOY_FILTER_NAME = "meshgen-routing-key"
# EnvoyFilters apply in ascending priority; meshgen's normaliser must run before anyone else's HTTP filters.
ENVOY_FILTER_PRIORITY = -1000
HCM = "envoy.filters.network.http_connection_manager"
FAST_PATH_MATCH = {"regex": ".+"}


def render(plan: Plan) -> list[JsonObject]:
    """Every object for ``plan``, sorted by kind, namespace and name.

    The fork Deployments and Services are the plan's own objects, not copies (copying 10,000 Deployments would
    double the compile time): treat the result as read-only and copy an object before changing it."""
    objects: list[JsonObject] = []
    for fork in plan.forks:
        objects.append(fork.body)
        objects.extend(p.body for p in fork.policies)
        for service in fork.services:
            objects.append(service.body)
            rule = fork_destination_rule(service)
            if rule is not None:
                objects.append(rule)
    objects.extend(virtual_service(plan, table) for table in plan.tables)
    if plan.claims:
        objects.append(envoy_filter(plan))
    return sort_objects(objects)


def sort_objects(objects: list[JsonObject]) -> list[JsonObject]:
    """Objects ordered by kind, namespace, name: a stable, reviewable order."""
    return sorted(
        objects,
        key=lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]),
    )


def virtual_service(plan: Plan, table: RouteTable) -> JsonObject:
    """The VirtualService for one route table: the user's, edited in place, or one meshgen owns."""
    http = [render_route(plan, table, route) for route in table.routes]
    names = [r.name for r in table.routes if r.role is not RouteRole.BASELINE and r.name]
    if table.owned:
        names.append(table.routes[-1].name or "")
        return {
            "apiVersion": NETWORKING_V1,
            "kind": "VirtualService",
            "metadata": {
                "name": table.name,
                "namespace": table.namespace,
                "labels": {MANAGED_BY: MESHGEN},
                "annotations": {ANNOTATION_ROUTES: ",".join(names)},
            },
            "spec": {"hosts": list(table.hosts), "http": http},
        }
    assert table.source is not None
    body = clone(table.source.body)
    body.pop("status", None)
    meta = body["metadata"]
    for key in SERVER_METADATA:
        meta.pop(key, None)
    meta.setdefault("annotations", {})[ANNOTATION_ROUTES] = ",".join(names)
    body["spec"]["http"] = http
    return body


def render_route(plan: Plan, table: RouteTable, route: PlannedRoute) -> JsonObject:
    """One HTTP route of a table, in Istio's terms."""
    base = table.baseline_routes[route.baseline_index]
    if route.role is RouteRole.BASELINE:
        return clone(base)
    header = plan.routing_header
    if route.role is RouteRole.FAST_PATH:
        fast = clone(base)
        fast["name"] = route.name
        fast["match"] = [{"withoutHeaders": {header: dict(FAST_PATH_MATCH)}}]
        return fast
    assert route.owner is not None
    copy = copied_route(table, route, plan.policy.spec.cluster_domain)
    if route.role is RouteRole.CALLER:
        return copy
    key_match = {"exact": route.owner.routing_key}
    matches = copy.get("match") or [{}]
    copy["match"] = [{**m, "headers": {**(m.get("headers") or {}), header: dict(key_match)}} for m in matches]
    return copy


def copied_route(table: RouteTable, route: PlannedRoute, cluster_domain: str) -> JsonObject:
    """A sandbox or caller route before any key match: the baseline route it copies, named, with the match blocks
    of a caller copy (``sourceLabels`` selecting the fork) and a sandbox copy's destinations redirected."""
    base = table.baseline_routes[route.baseline_index]
    copy = clone(base)
    copy["name"] = route.name
    if route.caller is not None:
        copy["match"] = [{**copy["match"][i], "sourceLabels": dict(route.caller.source_labels)}
                         for i in route.caller.blocks]
    if route.role is RouteRole.SANDBOX:
        copy["route"] = redirect_destinations(base, route.redirect_map, table.namespace, cluster_domain)
    return copy


def redirect_destinations(
    route: Mapping[str, Any], redirects: Mapping[str, str], namespace: str, cluster_domain: str
) -> list[JsonObject]:
    """A route's destinations with claimed hosts sent to their targets; the weights of destinations that now
    go to the same fork are summed, so a v1/v2 split of a forked host collapses to the fork."""
    out: list[JsonObject] = []
    merged: dict[str, JsonObject] = {}
    for dest in route_destinations(route):
        host = resolve_host(str(dest["destination"]["host"]), namespace, cluster_domain)
        target = redirects.get(host)
        if target is None or target == host:
            out.append(clone(dest))
            continue
        weight = dest.get("weight")
        if target in merged:
            if weight is not None:
                merged[target]["weight"] = merged[target].get("weight", 0) + weight
            continue
        new = clone(dest)
        new["destination"] = {k: v for k, v in new["destination"].items() if k != "subset"}
        new["destination"]["host"] = target
        merged[target] = new
        out.append(new)
    if len(out) == 1:
        out[0].pop("weight", None)
    return out


def fork_destination_rule(service: ForkService) -> JsonObject | None:
    """A DestinationRule for the fork's host with the traffic policy the planner chose for it, if any."""
    source = service.traffic_policy_of
    if service.traffic_policy is None or source is None:
        return None
    spec: JsonObject = {"host": service.fork.fqdn, "trafficPolicy": clone(service.traffic_policy)}
    if "exportTo" in source.spec:
        spec["exportTo"] = clone(source.spec["exportTo"])
    return {
        "apiVersion": NETWORKING_V1,
        "kind": "DestinationRule",
        "metadata": {
            "name": service.fork.name,
            "namespace": service.fork.namespace,
            "labels": dict(service.body["metadata"]["labels"]),
            "annotations": {"meshgen.dev/traffic-policy-of": f"{source.namespace}/{source.name}"},
        },
        "spec": spec,
    }


def envoy_filter(plan: Plan) -> JsonObject:
    """The EnvoyFilter that runs the routing-key normaliser first on sidecar outbound traffic, and at gateways
    the edge filter (untrusted routing keys removed, then the normaliser)."""
    also = plan.other_routing_headers
    sources = (("SIDECAR_OUTBOUND", normaliser.lua_source(plan.policy, also)),
               ("GATEWAY", edge.edge_source(plan.policy, plan.edge, also)))
    patches = [
        {
            "applyTo": "HTTP_FILTER",
            "match": {"context": context, "listener": {"filterChain": {"filter": {"name": HCM}}}},
            "patch": {"operation": "INSERT_FIRST", "value": normaliser.lua_filter(source)},
        }
        for context, source in sources
    ]
    return {
        "apiVersion": NETWORKING_V1ALPHA3,
        "kind": "EnvoyFilter",
        "metadata": {
            "name": ENVOY_FILTER_NAME,
            "namespace": plan.policy.spec.filter_namespace,
            "labels": {MANAGED_BY: MESHGEN},
        },
        "spec": {"priority": ENVOY_FILTER_PRIORITY, "configPatches": patches},
    }
