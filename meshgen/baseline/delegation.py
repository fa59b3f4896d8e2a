"""VirtualService delegation as istiod merges it: a root route with ``delegate`` becomes the delegate's routes.

istiod (istio.io/istio ``pilot/pkg/model``: ``mergeVirtualServices``, ``MergeHTTPRoutes``, ``hasConflict``):

- a delegate is a VirtualService without ``hosts``, named by ``delegate: {name, namespace}`` (the namespace
  defaults to the root's); one that does not exist, or is not exported to the root's namespace, drops that root
  route (and only it);
- each delegate route becomes one route: its match blocks are each merged with every root match block they do not
  conflict with (the delegate's fields win; headers, withoutHeaders, queryParams and sourceLabels are unions); a
  delegate route with a match block that conflicts with every root block is dropped;
- the merged route's name is ``<root>-<delegate>`` (or whichever is set), and the root's rewrite, timeout,
  retries, fault, mirrors, CORS policy and headers apply where the delegate route sets none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshgen.baseline.model import VIRTUAL_SERVICE, Baseline, Resource, is_exported_to
from meshgen.documents import JsonObject, clone

_INHERITED = ("rewrite", "directResponse", "timeout", "retries", "fault", "mirror", "mirrorPercent",
              "mirrorPercentage", "corsPolicy", "mirrors", "headers")
_STRING_MATCHES = ("uri", "scheme", "method", "authority")
_MAPS = ("headers", "withoutHeaders", "queryParams", "sourceLabels")


def delegate_of(route: Mapping[str, Any], root: Resource, baseline: Baseline) -> Resource | None:
    """The delegate VirtualService a root route names, if it exists, has no hosts and is exported to the root's
    namespace (istiod drops the route otherwise)."""
    ref = route.get("delegate")
    if not isinstance(ref, Mapping):
        return None
    found = baseline.get(VIRTUAL_SERVICE, str(ref.get("namespace") or root.namespace), str(ref.get("name", "")))
    if found is None or found.spec.get("hosts") or not is_exported_to(found.body, root.namespace):
        return None
    return found


def merged(root: Mapping[str, Any], delegate: Resource) -> Iterable[tuple[int, JsonObject]]:
    """The delegate's routes merged with the root route, each with its index in the delegate."""
    for i, leaf in enumerate(delegate.spec.get("http") or []):
        if isinstance(leaf, Mapping):
            route = _merge_route(root, leaf)
            if route is not None:
                yield i, route


def _merge_route(root: Mapping[str, Any], leaf: Mapping[str, Any]) -> JsonObject | None:
    matches = _merge_matches(root.get("match") or [], leaf.get("match") or [])
    if matches is None:
        return None  # istiod: "HTTPMatchRequests conflict", the delegate route is ignored
    out = clone(dict(leaf))
    if matches:
        out["match"] = matches
    else:
        out.pop("match", None)
    name = _joined(root.get("name"), leaf.get("name"))
    if name:
        out["name"] = name
    for key in _INHERITED:
        if key not in out and key in root:
            out[key] = clone(root[key])
    return out


def _joined(root: Any, leaf: Any) -> str | None:
    if not leaf:
        return str(root) if root else None
    return f"{root}-{leaf}" if root else str(leaf)


def _merge_matches(root: list[Any], leaf: list[Any]) -> list[JsonObject] | None:
    if not root:
        return [clone(m) for m in leaf]
    if not leaf:
        return [clone(m) for m in root]
    out: list[JsonObject] = []
    for sub in leaf:
        found = False
        for top in root:
            if not _conflict(top, sub):
                out.append(_merge_match(top, sub))
                found = True
        if not found:
            return None
    return out or None


def _merge_match(root: Mapping[str, Any], leaf: Mapping[str, Any]) -> JsonObject:
    out = clone(dict(leaf))
    name = _joined(root.get("name"), leaf.get("name"))
    if name:
        out["name"] = name
    for key in (*_STRING_MATCHES, "port", "sourceNamespace", "gateways", "statPrefix"):
        if not out.get(key) and root.get(key):
            out[key] = clone(root[key])
    for key in _MAPS:
        union = {**(root.get(key) or {}), **(leaf.get(key) or {})}
        if union:
            out[key] = clone(union)
    return out


def _conflict(root: Mapping[str, Any], leaf: Mapping[str, Any]) -> bool:
    """istiod's ``hasConflict``: whether a delegate match block cannot narrow a root block."""
    for key in _STRING_MATCHES:
        if _string_conflict(root.get(key), leaf.get(key)):
            return True
    for key in ("headers", "withoutHeaders", "queryParams"):
        mine = root.get(key) or {}
        if any(_string_conflict(mine.get(name), value) for name, value in (leaf.get(key) or {}).items()):
            return True
    if bool(root.get("ignoreUriCase")) != bool(leaf.get("ignoreUriCase")):
        return True
    if root.get("port") and leaf.get("port") and int(root["port"]) != int(leaf["port"]):
        return True
    if root.get("sourceNamespace") and leaf.get("sourceNamespace") != root["sourceNamespace"]:
        return True
    labels = root.get("sourceLabels") or {}
    if any(k in labels and labels[k] != v for k, v in (leaf.get("sourceLabels") or {}).items()):
        return True
    gateways, wanted = root.get("gateways") or [], leaf.get("gateways") or []
    return bool(gateways and wanted and (len(gateways) < len(wanted) or not set(wanted) <= set(gateways)))


def _string_conflict(root: Any, leaf: Any) -> bool:
    if not isinstance(root, Mapping) or not isinstance(leaf, Mapping):
        return False
    if root.get("regex") and (leaf.get("regex") or leaf.get("prefix") or leaf.get("exact")):
        return True
    if leaf.get("regex") and (root.get("regex") or root.get("prefix") or root.get("exact")):
        return True
    if root.get("exact"):
        return bool(leaf.get("prefix")) or leaf.get("exact") != root["exact"]
    if root.get("prefix"):
        if leaf.get("prefix"):
            return not str(leaf["prefix"]).startswith(str(root["prefix"]))
        if leaf.get("exact"):
            return not str(leaf["exact"]).startswith(str(root["prefix"]))
    return True
