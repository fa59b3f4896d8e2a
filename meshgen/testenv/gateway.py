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

Both local meshes' edge stands for the Gateways that exist: ``meshgen-edge`` and each Gateway of the baseline
(:func:`~meshgen.backends.localmesh.edge_gateways`). So that one router serves them all, the test environment
creates each of them shaped like ``meshgen-edge`` (its selector, its one server bound to the router's address)
under the baseline's name, instead of as written. A gateway a VirtualService names that does not exist is not
created: istiod serves that VirtualService nowhere, and the Envoy backend's edge does not route by it either.
"""

from __future__ import annotations

from collections.abc import Collection

from meshgen.backends.localmesh import EDGE_GATEWAY, EDGE_LABELS, EDGE_PORT
from meshgen.baseline.model import MESH_GATEWAY, gateway_key
from meshgen.documents import JsonObject
from meshgen.testenv.sidecars import NETWORKING, Proxy

NAME = EDGE_GATEWAY.name
NAMESPACE = EDGE_GATEWAY.namespace  # istiod's root namespace too (meshgen.testenv.istiod)
REFERENCE = f"{NAMESPACE}/{NAME}"
SELECTOR = dict(EDGE_LABELS)
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


def is_edge_bound(virtual_service: JsonObject, existing: Collection[tuple[str, str]]) -> bool:
    """Whether a VirtualService (as stored in the cluster) is routed by the edge: bound to a Gateway that exists
    (``existing``: namespace and name of each Gateway in the cluster)."""
    namespace = str(virtual_service["metadata"]["namespace"])
    for ref in (virtual_service.get("spec") or {}).get("gateways") or ():
        if ref != MESH_GATEWAY:
            key = gateway_key(str(ref), namespace)
            if (key.namespace, key.name) in existing:
                return True
    return False
