"""Plan -> Istio resources: VirtualServices, DestinationRules, one EnvoyFilter, forks (Deployments, StatefulSets),
their Services and their copies of label-keyed policies.

Rendering only: every routing decision (which routes, in what order, to which host, with what weights) was made by
the planner (:mod:`meshgen.plan.tables`). What this module knows is Istio's vocabulary:

- a sandbox route is the baseline route it shadows, as written, with the routing-header ``exact`` match AND-ed
  into every match block (a route without ``match`` gets one) and its ``route`` the planner's destinations: each
  the entry it came from with only host, subset and weight changed. Every other field — rewrite, retries,
  timeout, headers, fault, corsPolicy, mirror — is kept as written.
- a caller copy is the baseline route with only the match blocks that name the original as caller, their
  ``sourceLabels`` replaced by the fork's selector; its key copies are that, AND-ed and redirected as above.
- the fast path of a table meshgen owns matches "routing header absent or empty" with
  ``withoutHeaders: {<header>: {regex: ".+"}}`` (:func:`meshgen.plan.tables.fast_path_match`).
- a user's VirtualService is emitted whole, with its own routes untouched and meshgen's listed in the
  ``meshgen.dev/routes`` annotation.
"""

from __future__ import annotations

from meshgen import apis
from meshgen.backends import targets
from meshgen.backends.backend import Backend, Rendering, make_before_break
from meshgen.baseline import stored
from meshgen.documents import JsonObject, clone
from meshgen.ownership import ANNOTATION_ROUTES, MANAGED_BY, MESHGEN
from meshgen.plan.model import Plan, PlannedRoute, RouteRole, RouteTable
from meshgen.plan.routing import Destination, HeaderMatch, Route
from meshgen.plan.tables import fast_path_match

NETWORKING_V1 = targets.NETWORKING_V1


def rendering(plan: Plan) -> Rendering:
    """The backend's rendering of ``plan``."""
    return Rendering(render(plan))


def render(plan: Plan) -> list[JsonObject]:
    """Every object for ``plan``, sorted by kind, namespace and name (read-only: see :func:`targets.forks`)."""
    objects = targets.forks(plan)
    objects.extend(virtual_service(plan, table) for table in plan.tables)
    if plan.claims:
        objects.append(targets.envoy_filter(plan))
    return targets.sort_objects(objects)


def virtual_service(plan: Plan, table: RouteTable) -> JsonObject:
    """The VirtualService for one route table: the user's, edited in place, or one meshgen owns."""
    http = [render_route(plan, table, route) for route in table.routes]
    names = table.added_names
    if table.owned:
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
    return stored.with_routes(table.source.body, http, names)


def render_route(plan: Plan, table: RouteTable, route: PlannedRoute) -> JsonObject:
    """One HTTP route of a table, in Istio's terms."""
    if route.role is RouteRole.BASELINE:
        return _written(route.route)
    if route.role is RouteRole.FAST_PATH:
        fast = _written(route.route)
        fast["match"] = [{"withoutHeaders": _headers([fast_path_match(plan.routing_header)])}]
        return fast
    copy = copied_route(table, route)
    key = route.key_match(plan.routing_header)
    if key is None:
        return copy
    matches = copy.get("match") or [{}]
    copy["match"] = [{**m, "headers": {**(m.get("headers") or {}), **_headers([key])}} for m in matches]
    return copy


def copied_route(table: RouteTable, route: PlannedRoute) -> JsonObject:
    """A sandbox or caller route before any key match: the baseline route it copies as written, named, with the
    match blocks of a caller copy (``sourceLabels`` selecting the fork) and the planner's destinations."""
    base = table.baseline[route.baseline_index]
    if not base.origin.body:
        return _written(route.route)
    copy = clone(base.origin.body)
    copy["name"] = route.name
    if route.caller is not None:
        copy["match"] = [{**copy["match"][i], "sourceLabels": dict(route.caller.source_labels)}
                         for i in route.caller.blocks]
    if route.role is RouteRole.SANDBOX:
        copy["route"] = [_entry(base, d) for d in route.destinations]
    return copy


def _entry(base: Route, dest: Destination) -> JsonObject:
    """A destination entry of a copy: the entry it came from, as written, with the planner's host (a claimed one
    without its subset: a fork has none) and weight."""
    assert dest.index is not None
    entry: JsonObject = clone(base.origin.body["route"][dest.index])
    if dest.host != base.destinations[dest.index].host:
        entry["destination"] = {k: v for k, v in entry["destination"].items() if k != "subset"}
        entry["destination"]["host"] = dest.host
    if dest.weight is None:
        entry.pop("weight", None)
    else:
        entry["weight"] = dest.weight
    return entry


def _written(route: Route) -> JsonObject:
    """A route as written, or, for one meshgen made up (an owned table's), in Istio's terms."""
    if route.origin.body:
        return clone(route.origin.body)
    out: JsonObject = {"name": route.name}
    out["route"] = [{"destination": {"host": d.host}, **({"weight": d.weight} if d.weight is not None else {})}
                    for d in route.destinations]
    return out


def _headers(matches: list[HeaderMatch]) -> JsonObject:
    """Header conditions as an Istio ``headers``/``withoutHeaders`` map."""
    return {m.name: {m.value.kind.value: m.value.value} if m.value is not None else {} for m in matches}


BACKEND = Backend(
    name="istio",
    render=rendering,
    writes=(apis.DESTINATION_RULE, apis.VIRTUAL_SERVICE, apis.ENVOY_FILTER),
    edits=(apis.VIRTUAL_SERVICE,),
    order=make_before_break(routes=("VirtualService",), supports=("DestinationRule", "EnvoyFilter"),
                            after_services=("DestinationRule",)),
    routes=("VirtualService",),
    routing_filter=targets.ENVOY_FILTER_NAME,
)
