"""Plan -> Gateway API resources (``gateway.networking.k8s.io/v1``, GAMMA): HTTPRoutes and GRPCRoutes, the forks
with their Services and policy copies, and on Istio the normaliser's EnvoyFilter and the forks' DestinationRules.

Rendering only: the planner decided which rules get copies, where they sit and where they send
(:mod:`meshgen.plan.tables`, placed by :mod:`meshgen.plan.specificity`). What this module knows is the Gateway
API's vocabulary:

- a sandbox copy is the rule it copies, as written, named ``meshgen-<sandbox>-<n>`` (rule names are standard
  since Gateway API v1.2), with the routing-key header match AND-ed into each of its ``matches`` (a rule without
  matches gets one: ``PathPrefix /`` is what the API server fills in), its ``backendRefs`` the planner's
  destinations (each the entry it came from, its name the fork's Service where the planner redirected it), every
  filter and timeout kept. Where the target has no normaliser, each match is repeated for every key condition
  (:func:`meshgen.plan.targets.key_matches`: match entries are ORed);
- a user's route is emitted whole, its own rules untouched and meshgen's listed in ``meshgen.dev/routes``;
- a route meshgen owns is an HTTPRoute attached to the Service (``parentRefs: [{group: "", kind: Service}]``):
  one rule per routing key, then the default rule to the Service. The Gateway API cannot match a header's absence,
  so it has no fast path (keys are matched in rule order after the more specific baseline rules).

Everything written is in the form the API server stores it (a header match's ``type: Exact`` is spelled out), so
an unchanged route compares equal to what is live and a no-op apply writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshgen import apis
from meshgen.backends import targets
from meshgen.backends.backend import Backend, Rendering, make_before_break
from meshgen.baseline import stored
from meshgen.documents import JsonObject, clone
from meshgen.ownership import ANNOTATION_ROUTES, MANAGED_BY, MESHGEN
from meshgen.plan import targets as target_limits
from meshgen.plan.model import Host, Plan, PlannedRoute, RouteRole, RouteTable
from meshgen.plan.routing import Destination, HeaderMatch, MatchKind, Route
from meshgen.spec.models import Target

GATEWAY_V1 = "gateway.networking.k8s.io/v1"
_MATCH_TYPES = {MatchKind.EXACT: "Exact", MatchKind.REGEX: "RegularExpression"}


def rendering(plan: Plan) -> Rendering:
    """The backend's rendering of ``plan``."""
    return Rendering(render(plan))


def render(plan: Plan) -> list[JsonObject]:
    """Every object for ``plan``, sorted by kind, namespace and name (read-only: see
    :func:`meshgen.backends.targets.forks`)."""
    can = target_limits.capabilities(plan.policy)
    objects = targets.forks(plan, rules=can.destination_rules)
    services = _services(plan)
    objects.extend(route_object(plan, table, services) for table in plan.tables)
    if plan.claims and plan.policy.spec.target is Target.ISTIO_SIDECAR:
        objects.append(targets.envoy_filter(plan))
    return targets.sort_objects(objects)


def _services(plan: Plan) -> dict[str, Host]:
    """Every Service a route may send to, by host: the baseline's and the forks'."""
    found = dict(plan.hosts)
    found.update((s.fork.fqdn, s.fork) for s in plan.fork_services())
    return found


def route_object(plan: Plan, table: RouteTable, services: Mapping[str, Host]) -> JsonObject:
    """The route for one table: the user's HTTPRoute or GRPCRoute, edited in place, or an HTTPRoute meshgen owns."""
    rules = [_rule(plan, table, planned, services) for planned in table.routes]
    if table.owned:
        service = services[table.hosts[0]]
        parent: JsonObject = {"group": "", "kind": "Service", "name": service.name}
        port = table.baseline[0].blocks[0].port
        if port is not None:
            parent["port"] = port
        return {
            "apiVersion": GATEWAY_V1,
            "kind": table.kind,
            "metadata": {"name": table.name, "namespace": table.namespace, "labels": {MANAGED_BY: MESHGEN},
                         "annotations": {ANNOTATION_ROUTES: ",".join(table.added_names)}},
            "spec": {"parentRefs": [parent], "rules": rules},
        }
    assert table.source is not None
    return stored.with_routes(table.source.body, rules, table.added_names)


def _rule(plan: Plan, table: RouteTable, planned: PlannedRoute, services: Mapping[str, Host]) -> JsonObject:
    base = table.baseline[planned.baseline_index]
    if planned.role is RouteRole.BASELINE:
        return clone(base.origin.body) if base.origin.body else _written(planned.route, services)
    copy = clone(base.origin.body) if base.origin.body else _written(planned.route, services)
    copy["name"] = planned.name
    assert planned.owner is not None
    conditions = target_limits.key_matches(plan.policy, plan.routing_header, planned.owner.routing_key)
    default: list[Any] = [{}] if table.kind == apis.GRPC_ROUTE.kind else [{"path": {"type": "PathPrefix",
                                                                                      "value": "/"}}]
    copy["matches"] = [{**m, "headers": [*(m.get("headers") or []), _header(c)]}
                       for m in copy.get("matches") or default for c in conditions]
    if base.origin.body:
        copy["backendRefs"] = [_backend_ref(base, d, services) for d in planned.destinations]
    return copy


def _backend_ref(base: Route, dest: Destination, services: Mapping[str, Host]) -> JsonObject:
    """A backendRef of a copy: the entry it came from, as written, sending to the planner's Service, with the
    planner's weight where it summed several (a lone backendRef's weight means nothing and is kept)."""
    assert dest.index is not None
    entry: JsonObject = clone(base.origin.body["backendRefs"][dest.index])
    if dest.host != base.destinations[dest.index].host:
        entry["name"] = services[dest.host].name
    if dest.weight is not None:
        entry["weight"] = dest.weight
    return entry


def _written(route: Route, services: Mapping[str, Host]) -> JsonObject:
    """A rule meshgen made up (an owned route's), in the Gateway API's terms."""
    out: JsonObject = {"name": route.name}
    out["matches"] = [{"path": {"type": "PathPrefix", "value": "/"}}]
    out["backendRefs"] = [_reference(d, services) for d in route.destinations]
    return out


def _reference(dest: Destination, services: Mapping[str, Host]) -> JsonObject:
    service = services[dest.host]
    ref: JsonObject = {"group": "", "kind": "Service", "name": service.name}
    if dest.port is not None:
        ref["port"] = dest.port
    elif len(service.ports) == 1:
        ref["port"] = service.ports[0].port
    ref["weight"] = dest.weight if dest.weight is not None else 1
    return ref


def _header(match: HeaderMatch) -> JsonObject:
    assert match.value is not None
    return {"name": match.name, "type": _MATCH_TYPES[match.value.kind], "value": match.value.value}


BACKEND = Backend(
    name="gateway-api",
    render=rendering,
    writes=(apis.DESTINATION_RULE, apis.HTTP_ROUTE, apis.GRPC_ROUTE, apis.ENVOY_FILTER),
    edits=(apis.HTTP_ROUTE, apis.GRPC_ROUTE),
    order=make_before_break(routes=("HTTPRoute", "GRPCRoute"), supports=("DestinationRule", "EnvoyFilter"),
                            after_services=("DestinationRule",)),
    routes=("HTTPRoute", "GRPCRoute"),
    routing_filter=targets.ENVOY_FILTER_NAME,
)
