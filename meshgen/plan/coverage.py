"""Which routing object routes a claimed host, and where meshgen refuses to build on what it finds.

istiod turns every HTTPRoute and GRPCRoute attached to a Service into a VirtualService of its own (one per
namespace and host: ``pilot/pkg/config/kube/gateway``, ``mergeHTTPRoutes``) and, as for any VirtualServices of
one host, applies only the oldest (IST0109). So a Service routed by both a VirtualService and an HTTPRoute is
routed by whichever was created first, and that changes when either is recreated: whatever meshgen added to one,
istiod may apply the other, and the sandbox's key would quietly reach the baseline. That is an error, never a
warning, and so is a backend writing the other kind for a host that has one (the Istio backend's own
VirtualService beside a user's HTTPRoute, the Gateway API backend's HTTPRoute beside a user's VirtualService).

A GAMMA *consumer* route (an HTTPRoute in another namespace than its Service, applying to callers of its own
namespace only) is not one meshgen edits: a claimed host with one is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshgen.baseline.model import GRPC_ROUTE, HTTP_ROUTE, VIRTUAL_SERVICE, Resource, gateways, host_matches
from meshgen.errors import Problem
from meshgen.plan.sources import Source, Sources
from meshgen.spec.models import Backend

# The kinds of users' routing objects each backend adds sandbox routes to.
EDITED: Mapping[Backend, tuple[str, ...]] = {Backend.ISTIO: (VIRTUAL_SERVICE,),
                                            Backend.GATEWAY_API: (HTTP_ROUTE, GRPC_ROUTE)}
_FIX_BACKEND = {Backend.ISTIO: "set spec.backend: gateway-api in the MeshPolicy (meshgen install --policy), or "
                               "compile with --backend gateway-api",
                Backend.GATEWAY_API: "set spec.backend: istio in the MeshPolicy (meshgen install --policy), or move "
                                     "the VirtualService's routes into an HTTPRoute"}


def of_host(host: str, sources: Sources, backend: Backend) -> tuple[Problem | None, bool]:
    """Whether a user's routing object routes the claimed ``host`` for the mesh (then meshgen edits it and owns
    none), and the problem that stops meshgen building on what it finds, if any."""
    covering = [s for s in sources.of_kind(VIRTUAL_SERVICE) if any(host_matches(h, host) for h in s.hosts)]
    virtual = [s for s in covering if s.mesh]
    gamma = [s for kind in (HTTP_ROUTE, GRPC_ROUTE) for s in sources.of_kind(kind)
             if s.mesh and host in s.hosts and not s.consumers]
    consumers = [s for kind in (HTTP_ROUTE, GRPC_ROUTE) for s in sources.of_kind(kind) if host in s.consumers]
    if virtual and gamma:
        return _both(host, virtual[0], gamma[0]), True
    if consumers:
        route = consumers[0].resource
        return Problem(route.at("spec", "parentRefs"),
                       f"{route.key} attaches to Service {host} of another namespace: a GAMMA consumer route, which "
                       f"applies to callers in {route.namespace} only; meshgen adds sandbox routes to producer routes "
                       "(in the Service's own namespace) only",
                       "move the route into the Service's namespace"), True
    found = virtual or gamma
    if found and found[0].kind not in EDITED[backend]:
        return wrong_backend(found[0].resource, host, backend), True
    if found:
        return None, True
    gateway_only = [s for s in covering if host in s.hosts]
    if gateway_only:
        vs = gateway_only[0].resource
        return Problem(
            vs.at("spec", "gateways"),
            f"VirtualService {vs.namespace}/{vs.name} binds {host} only to gateways "
            f"({', '.join(gateways(vs))}), so it does not route mesh traffic and meshgen cannot add sandbox "
            "routes to it without a second VirtualService for the same host",
            "add 'mesh' to spec.gateways so the routes also apply inside the mesh, or bind the gateway "
            "VirtualService to an external host name instead of the Service host",
        ), True
    return None, False


def _both(host: str, virtual: Source, gamma: Source) -> Problem:
    route = gamma.resource
    return Problem(
        route.at("spec", "parentRefs"),
        f"{host} is routed by both VirtualService {virtual.namespace}/{virtual.name} and {route.key}: istiod turns "
        "the route into a VirtualService of its own and applies only the oldest VirtualService of a host (IST0109), "
        "so whichever of the two meshgen adds sandbox routes to, istiod may apply the other and send the sandbox's "
        "requests to the baseline",
        f"route {host} with one of them: delete the other, or merge its routes into the one you keep")


def wrong_backend(resource: Resource, host: str, backend: Backend) -> Problem:
    """A user's routing object of a kind the backend does not write, routing a host that needs sandbox routes."""
    writes = "VirtualServices" if backend is Backend.ISTIO else "HTTPRoutes and GRPCRoutes"
    return Problem(
        resource.at("metadata", "name"),
        f"{resource.key} routes requests for {host}, which a sandbox forks, and the MeshPolicy's backend "
        f"{backend.value} adds sandbox routes to {writes} only: the sandbox's requests would take this object's "
        "routes to the baseline (and a routing object of meshgen's for the same host would be a second one, of "
        "which istiod applies only one)",
        _FIX_BACKEND[backend])
