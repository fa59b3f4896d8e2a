"""The edge of the istiod test environment: the Gateway ``istio-system/meshgen-edge`` and the router that serves it.

A convention of both local meshes: the edge is one ingress gateway with one HTTP server on port
:data:`~meshgen.backends.localmesh.EDGE_PORT` for any host (``hosts: ["*"]``), selecting ``istio: ingressgateway``.
Routing at the edge is whatever VirtualServices bind to it (``gateways: [istio-system/meshgen-edge]``), as on a
cluster; a request ``via: edge`` goes there with its Host header.

Here the gateway is an upstream Envoy bootstrapped as istiod's ``router`` proxy type (node id
``router~<address>~meshgen-edge-gateway.istio-system~istio-system.svc.cluster.local``, ``LABELS`` the selector's),
with no pod behind it, like the sidecars of :mod:`meshgen.testenv.sidecars`. istiod builds its listener from the
Gateway and its routes from the gateway-bound VirtualServices, and applies the EnvoyFilter's ``GATEWAY`` patch
(the edge filter). The Gateway's server sets ``bind`` to the router's own loopback address (istiod supports it
for gateways: the listener is ``<address>:8080`` and the route configuration ``http.8080.<address>``), so the
router shares no port with anything else on the machine.

The Envoy backend's edge stands for every gateway a VirtualService names; so that both meshes agree, the test
environment creates, besides ``meshgen-edge``, the same Gateway under each other name a case's VirtualServices
bind to: one router serves them all.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshgen.backends.localmesh import EDGE_NAMESPACE, EDGE_PORT
from meshgen.baseline.model import MESH_GATEWAY, Resource, gateways
from meshgen.documents import JsonObject
from meshgen.testenv.sidecars import NETWORKING, Proxy

NAME = "meshgen-edge"
NAMESPACE = EDGE_NAMESPACE  # istiod's root namespace too (meshgen.testenv.istiod)
REFERENCE = f"{NAMESPACE}/{NAME}"
SELECTOR = {"istio": "ingressgateway"}
ROUTER_POD = "meshgen-edge-gateway"


def gateway(name: str = NAME, namespace: str = NAMESPACE, bind: str | None = None) -> JsonObject:
    """The edge Gateway (with ``bind``: on the router's own address)."""
    server: JsonObject = {"port": {"number": EDGE_PORT, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    if bind is not None:
        server["bind"] = bind
    return {"apiVersion": NETWORKING, "kind": "Gateway", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": dict(SELECTOR), "servers": [server]}}


def router(address: str) -> Proxy:
    """The proxy that serves the edge Gateway, on ``address``."""
    return Proxy(ROUTER_POD, NAMESPACE, dict(SELECTOR), address, kind="router")


def referenced(virtual_services: Iterable[Resource]) -> list[tuple[str, str]]:
    """Every gateway (namespace, name) the edge must stand for: ``meshgen-edge`` and each one a VirtualService
    binds to (a name without a namespace is in the VirtualService's own, as Istio reads it), sorted."""
    found = {(NAMESPACE, NAME)}
    for vs in virtual_services:
        for ref in gateways(vs):
            if ref != MESH_GATEWAY:
                namespace, _, name = ref.rpartition("/")
                found.add((namespace or vs.namespace, name))
    return sorted(found)


def is_edge_bound(virtual_service: JsonObject) -> bool:
    """Whether a VirtualService (as stored in the cluster) is routed by the edge: bound to any gateway but the mesh."""
    return any(g != MESH_GATEWAY for g in (virtual_service.get("spec") or {}).get("gateways") or ())
