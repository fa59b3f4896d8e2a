"""What the API server sets on an object, which meshgen never copies (nulls: :mod:`meshgen.nulls`).

``kubectl get -o yaml`` exports uid, resourceVersion, managedFields, status, a Service's clusterIP...: meshgen reads
such objects as baseline, but never copies those fields into what it writes, and the test environment recreates
such objects without them (:func:`for_create`).
"""

from __future__ import annotations

from typing import Any

from meshgen.documents import JsonObject, clone
from meshgen.ownership import ANNOTATION_ROUTES, ROUTE_LISTS

SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
                   "deletionTimestamp", "deletionGracePeriodSeconds")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Service spec fields the API server allocates; a create that carries another cluster's values fails.
_ALLOCATED = ("clusterIP", "clusterIPs", "healthCheckNodePort")


def without_server_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as a user would write it: no server-set fields, no last-applied annotation."""
    out = {k: v for k, v in metadata.items() if k not in SERVER_METADATA}
    annotations = {k: v for k, v in (out.get("annotations") or {}).items() if k != LAST_APPLIED}
    if annotations:
        out["annotations"] = annotations
    else:
        out.pop("annotations", None)
    return out


def for_create(body: JsonObject) -> JsonObject:
    """An exported object (``kubectl get -o yaml``) as a create request that succeeds in another cluster: no
    status, no server-set metadata, no allocated Service addresses (a headless ``clusterIP: None`` stays)."""
    out = {k: v for k, v in body.items() if k != "status"}
    out["metadata"] = without_server_metadata(dict(body.get("metadata") or {}))
    spec = body.get("spec")
    if body.get("kind") == "Service" and isinstance(spec, dict):
        headless = spec.get("clusterIP") == "None"
        spec = {k: v for k, v in spec.items() if k not in _ALLOCATED}
        if headless:
            spec["clusterIP"] = "None"
        ports = spec.get("ports")
        if isinstance(ports, list) and spec.get("type") in (None, "ClusterIP"):
            spec["ports"] = [{k: v for k, v in p.items() if k != "nodePort"} if isinstance(p, dict) else p
                             for p in ports]
        out["spec"] = spec
    return out


def with_routes(body: JsonObject, routes: list[JsonObject], names: list[str]) -> JsonObject:
    """A user's routing object (:data:`~meshgen.ownership.ROUTE_LISTS`) as meshgen writes it back: its routes
    ``routes`` (meshgen's, ``names``, among the user's own), listed in the ``meshgen.dev/routes`` annotation;
    everything else as the user wrote it, without status and server-set metadata."""
    out = clone(body)
    out.pop("status", None)
    meta = out["metadata"]
    for key in SERVER_METADATA:
        meta.pop(key, None)
    meta.setdefault("annotations", {})[ANNOTATION_ROUTES] = ",".join(names)
    out["spec"][ROUTE_LISTS[str(body["kind"])]] = routes
    return out
