"""Which mesh VirtualServices a sidecar uses for a host, in istiod's order (DESIGN invariant 4).

istiod does not merge sidecar VirtualServices for one host. What it does (istio.io/istio ``pilot/pkg/model``:
``SelectVirtualServices``, ``sortMergedVirtualServicesByCreationTime``, ``computeWildcardHostVirtualServiceIndex``;
``pilot/pkg/networking/core``: ``BuildSidecarVirtualHostWrapper``, ``buildSidecarOutboundTCPFilterChainOpts``):

- a proxy in namespace N sees the mesh VirtualServices exported to N, in three groups: those of N exported only
  privately (``exportTo`` ``.`` or N itself), then those of other namespaces exported to N by name, then the public
  ones (no ``exportTo``, or ``*``); within a group, oldest first (``creationTimestamp``, then name, then namespace:
  manifests have no timestamp, so name order decides);
- **HTTP**: for a host, the first VirtualService in that order naming it exactly that has routes for the port
  wins; the others are ignored (``istioctl analyze``: IST0109). Only without any exact one does a wildcard host
  (the most specific, then the first) apply. A VirtualService without http routes for the port gives nothing, and
  then the next one, or istiod's default route, serves;
- **TCP**: the ``tcp`` routes of *every* VirtualService covering the host, wildcards included, are tried in that
  order; the first whose match applies takes the connection.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from meshgen.baseline.model import Resource, host_matches, is_mesh_bound, resolve_host

_PRIVATE, _EXPORTED, _PUBLIC = 0, 1, 2
_ZERO = datetime.datetime.min.replace(tzinfo=datetime.UTC)


def created(resource: Resource) -> datetime.datetime:
    """``metadata.creationTimestamp`` (Go's zero time when absent or unreadable, as istiod reads a manifest)."""
    value = resource.metadata.get("creationTimestamp")
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            return _ZERO
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    return _ZERO


def _group(vs: Resource, namespace: str) -> int | None:
    """Where ``vs`` sits in the list a proxy in ``namespace`` sees, or None if it is not exported there."""
    exported = [str(e) for e in vs.spec.get("exportTo") or ["*"]]
    if "*" in exported:
        return _PUBLIC
    if "~" in exported:
        return None
    targets = {vs.namespace if e == "." else e for e in exported}
    if namespace not in targets:
        return None
    return _PRIVATE if namespace == vs.namespace else _EXPORTED


def istiod_order(virtual_services: Iterable[Resource], namespace: str) -> list[Resource]:
    """Those of ``virtual_services`` a proxy in ``namespace`` sees, in istiod's order (a gateway's routes too
    are concatenated in this order)."""
    ranked = [(g, created(vs), vs.name, vs.namespace, vs) for vs in virtual_services
              if (g := _group(vs, namespace)) is not None]
    return [entry[-1] for entry in sorted(ranked, key=lambda e: e[:4])]


def sidecar_order(virtual_services: Iterable[Resource], namespace: str) -> list[Resource]:
    """The mesh VirtualServices a proxy in ``namespace`` sees, in istiod's order."""
    return istiod_order([vs for vs in virtual_services if is_mesh_bound(vs)], namespace)


def hosts_of(vs: Resource, cluster_domain: str) -> tuple[str, ...]:
    """A VirtualService's hosts as istiod resolves them (lower case: istiod matches hosts case-insensitively)."""
    return tuple(resolve_host(str(h), vs.namespace, cluster_domain).lower() for h in vs.spec.get("hosts") or [])


def has_http_routes(vs: Resource, port: int | None) -> bool:
    """Whether ``vs`` has an http route that applies on ``port`` (None: on some port)."""
    for route in vs.spec.get("http") or []:
        matches = route.get("match") or [{}]
        if any(port is None or m.get("port") is None or int(m["port"]) == port for m in matches if isinstance(m, dict)):
            return True
    return False


def http_winner(ordered: Sequence[Resource], fqdn: str, port: int | None, cluster_domain: str) -> Resource | None:
    """The VirtualService whose http routes serve ``fqdn`` on ``port`` (None: on any port) for a proxy that sees
    ``ordered`` (from :func:`sidecar_order`); None means istiod's default route."""
    resolved = [(vs, hosts_of(vs, cluster_domain)) for vs in ordered]
    exact = [vs for vs, hosts in resolved if fqdn in hosts]
    if exact:
        return next((vs for vs in exact if has_http_routes(vs, port)), None)
    best: tuple[int, Resource] | None = None  # istiod's MoreSpecific: of two matching wildcards, the longer
    for vs, hosts in resolved:
        found = [len(h) for h in hosts if h.startswith("*") and host_matches(h, fqdn)]
        if found and (best is None or max(found) > best[0]):
            best = (max(found), vs)
    if best is None or not has_http_routes(best[1], port):
        return None
    return best[1]


def shadowed_by(vs: Resource, ordered: Sequence[Resource], cluster_domain: str) -> Resource | None:
    """The VirtualService that takes every host of ``vs`` from it for http routes (an earlier one in ``ordered``,
    a proxy's list from :func:`sidecar_order`, that defines the same host and has http routes), or None when
    ``vs`` serves at least one of its hosts there."""
    if vs not in ordered:
        return None
    earlier = [(other, hosts_of(other, cluster_domain)) for other in ordered[:ordered.index(vs)]
               if has_http_routes(other, None)]
    winner = None
    for h in hosts_of(vs, cluster_domain):
        first = next((other for other, hosts in earlier if h in hosts), None)
        if first is None:
            return None
        winner = winner or first
    return winner


def covering(ordered: Sequence[Resource], fqdn: str, cluster_domain: str) -> list[Resource]:
    """Every VirtualService of ``ordered`` with a host covering ``fqdn`` (wildcards too), in order: whose ``tcp``
    routes istiod tries for it."""
    return [vs for vs in ordered if any(host_matches(h, fqdn) for h in hosts_of(vs, cluster_domain))]


def conflicts(virtual_services: Iterable[Resource], cluster_domain: str) -> dict[str, list[Resource]]:
    """``istioctl analyze``'s IST0109 groups: scoped host (``<exportTo scope>/<fqdn>``) -> the mesh
    VirtualServices that define it, where more than one does (a scoped host also collects the public ones that
    match it)."""
    by_scope: dict[str, list[Resource]] = {}
    for vs in virtual_services:
        if not is_mesh_bound(vs):
            continue
        exported = [str(e) for e in vs.spec.get("exportTo") or []]
        scopes = ["*"] if not exported or "*" in exported else sorted({vs.namespace if e == "." else e
                                                                       for e in exported})
        for scope in scopes:
            for h in vs.spec.get("hosts") or []:
                by_scope.setdefault(f"{scope}/{_analyzer_fqdn(str(h), vs.namespace)}", []).append(vs)
    out: dict[str, list[Resource]] = {}
    for scoped, found in sorted(by_scope.items()):
        scope, _, fqdn = scoped.partition("/")
        group = list(found)
        if scope != "*":
            group += [vs for key, public in by_scope.items() if key.startswith("*/")
                      and host_matches(key[2:], fqdn) for vs in public]
        if len(group) > 1:
            out[scoped] = group
    return out


def _analyzer_fqdn(host: str, namespace: str) -> str:
    # istioctl analyze's ConvertHostToFQDN: always cluster.local, and only dot-less, non-wildcard names.
    return host if host.startswith("*") or "." in host else f"{host}.{namespace}.svc.cluster.local"


def conflict_message(scoped_host: str, group: Sequence[Resource]) -> str:
    """IST0109 in istioctl analyze's words."""
    names = ",".join(sorted(f"{vs.namespace}/{vs.name}" for vs in group))
    return (f"IST0109: The VirtualServices {names} associated with mesh gateway define the same host {scoped_host} "
            "which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into "
            "a single resource.")
