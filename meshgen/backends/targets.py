"""What an Istio data plane needs besides routes, for every backend that targets one: the EnvoyFilter that runs
the routing-key normaliser on sidecars (and the edge filter at gateways), and each fork host's DestinationRule with
the traffic policy the planner chose for it.

Shared by the Istio backend (VirtualServices) and the Gateway API backend on Istio sidecars (HTTPRoutes, which
istiod translates into the same Envoy routes), so neither imports the other.
"""

from __future__ import annotations

from meshgen.backends import edge, normaliser
from meshgen.documents import JsonObject, clone
from meshgen.ownership import MANAGED_BY, MESHGEN
from meshgen.plan.model import ForkService, Plan

NETWORKING_V1 = "networking.istio.io/v1"
NETWORKING_V1ALPHA3 = "networking.istio.io/v1alpha3"
ENVOY_FILTER_NAME = "meshgen-routing-key"
# EnvoyFilters apply in ascending priority; meshgen's normaliser must run before anyone else's HTTP filters.
ENVOY_FILTER_PRIORITY = -1000
HCM = "envoy.filters.network.http_connection_manager"


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


def forks(plan: Plan, rules: bool = True) -> list[JsonObject]:
    """Every fork's own objects, in plan order: its workload, its policy copies, its Services and (with
    ``rules``) their DestinationRules.

    These are the plan's own objects, not copies (copying 10,000 Deployments would double the compile time):
    treat them as read-only and copy an object before changing it."""
    objects: list[JsonObject] = []
    for fork in plan.forks:
        objects.append(fork.body)
        objects.extend(p.body for p in fork.policies)
        for service in fork.services:
            objects.append(service.body)
            rule = fork_destination_rule(service) if rules else None
            if rule is not None:
                objects.append(rule)
    return objects


def sort_objects(objects: list[JsonObject]) -> list[JsonObject]:
    """Objects ordered by kind, namespace, name: a stable, reviewable order."""
    return sorted(
        objects,
        key=lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]),
    )
