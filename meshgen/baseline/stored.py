"""Baseline objects in the form the API server stores them, for objects read from files.

- **Nulls.** Helm leaves ``labels:``, ``env:``, ``initContainers:`` or ``data:`` empty; the API server decodes
  built-in kinds into Go structs, where a null field is simply absent, and prunes the nulls of non-nullable CRD
  fields. One exception: a null value inside a string map (``labels: {tier: }``) is the empty string there.
- **Server-set fields.** ``kubectl get -o yaml`` exports uid, resourceVersion, managedFields, status, a Service's
  clusterIP...: meshgen reads such objects as baseline, but never copies those fields into what it writes, and the
  test environment recreates such objects without them (:func:`for_create`).
"""

from __future__ import annotations

from typing import Any

from meshgen.documents import JsonObject

# Mappings of string to string in every kind meshgen reads: a null value there is "" to the API server.
STRING_MAPS = frozenset({"labels", "annotations", "matchLabels", "nodeSelector", "selector", "data", "stringData"})
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
                   "deletionTimestamp", "deletionGracePeriodSeconds")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Service spec fields the API server allocates; a create that carries another cluster's values fails.
_ALLOCATED = ("clusterIP", "clusterIPs", "healthCheckNodePort")


def as_stored(body: JsonObject) -> JsonObject:
    """``body`` without null mapping values (a copy where anything changes), iteratively: a document may nest
    10,000 levels deep."""
    if not _has_null(body):
        return body
    root: JsonObject = {}
    work: list[tuple[Any, Any, bool]] = [(body, root, False)]
    while work:
        source, target, strings = work.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for k, v in items:
            if v is None:
                if isinstance(source, dict):
                    if strings:
                        target[k] = ""
                    continue
                target.append(None)  # a null list item is the apiserver's to refuse, with its message
                continue
            child: Any = v
            if isinstance(v, dict | list):
                child = {} if isinstance(v, dict) else []
                work.append((v, child, isinstance(v, dict) and isinstance(source, dict) and k in STRING_MAPS))
            if isinstance(target, dict):
                target[k] = child
            else:
                target.append(child)
    return root


def _has_null(tree: Any) -> bool:
    work = [tree]
    while work:
        node = work.pop()
        values = node.values() if isinstance(node, dict) else node
        for v in values:
            if v is None and isinstance(node, dict):
                return True
            if isinstance(v, dict | list):
                work.append(v)
    return False


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
