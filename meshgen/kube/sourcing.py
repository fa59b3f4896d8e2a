"""Reading routing objects (VirtualServices, HTTPRoutes, GRPCRoutes) without reading every sandbox's routes.

A routing object for a host may live in any namespace (a VirtualService in the caller's namespace, a gateway's in
an ingress namespace), so a command must know of every one of them; but the objects meshgen edits in place carry
a copy of each baseline route per sandbox, so their bodies grow with the number of sandboxes (100 sandboxes on each
of 50 hosts: 2.3 MB, 0.25-0.95 s to list on 2 busy cores, against 10-40 ms for the same list's metadata). So:

1. every routing object is listed cluster-wide as **metadata only** (one LIST per kind): names, labels,
   annotations;
2. each object meshgen writes or edits records the hosts it concerns (``meshgen.dev/hosts``: the hosts it binds
   and the hosts its own routes send to) and, on a user's object, the generation that recording is for
   (``meshgen.dev/hosts-generation``: the object's generation after meshgen's write). While the object's
   generation is still that one, its hosts are known without its body;
3. a body is read only where it is needed: for an object whose hosts are not known (one meshgen has not edited,
   its body is the user's and as small as the baseline; one edited since by someone else; one written by an
   older meshgen), and for a user's object concerning a host the command reconciles. An object meshgen owns is
   compared by its desired-hash annotation, in the metadata, and read whole only to be changed;
4. the users' objects meshgen has not edited are read in one LIST per kind, selected by label: a user's object
   carries ``meshgen.dev/edited`` while it holds meshgen routes, so that list holds none of the per-sandbox
   copies, and its size is the baseline's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshgen.documents import JsonObject
from meshgen.errors import ClusterError
from meshgen.kube import kinds
from meshgen.kube.client import Client, NotFound
from meshgen.kube.kinds import Ref
from meshgen.ownership import (
    ANNOTATION_HOSTS,
    ANNOTATION_HOSTS_GENERATION,
    ANNOTATION_ROUTES,
    LABEL_EDITED,
    LABEL_SANDBOX,
    MANAGED_BY,
    MESHGEN,
    ROUTE_LISTS,
    is_owned,
)
from meshgen.plan.model import RouteTable
from meshgen.plan.routing import Route
from meshgen.plan.sources import Source

UNOWNED = f"{MANAGED_BY}!={MESHGEN}"
# Users' routing objects meshgen has not edited: their bodies are the baseline's, whatever the number of sandboxes.
UNEDITED = f"{UNOWNED},!{LABEL_EDITED}"


def concerned(hosts: Iterable[str], routes: Iterable[Route]) -> frozenset[str]:
    """The hosts a routing object concerns: those it binds and those its routes send to."""
    return frozenset((*hosts, *(h for r in routes for h in r.destination_hosts())))


def of_source(source: Source) -> frozenset[str]:
    return concerned(source.hosts, source.routes)


def of_table(table: RouteTable) -> frozenset[str]:
    return concerned(table.hosts, table.baseline)


def has_caller_routes(source: Source) -> bool:
    """Whether a route matches on the calling workload (``sourceLabels``): its copies follow forks, not hosts."""
    return any(m.source_labels for r in source.routes for m in r.matches)


def recorded(body: Mapping[str, Any]) -> frozenset[str] | None:
    """The hosts a routing object's metadata says it concerns, or ``None`` when that is not known (nothing
    recorded, or a user's object changed since meshgen recorded it)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if ANNOTATION_HOSTS not in annotations:
        return None
    if not is_owned(body) and str(annotations.get(ANNOTATION_HOSTS_GENERATION)) != str(meta.get("generation")):
        return None
    return frozenset(h for h in str(annotations[ANNOTATION_HOSTS]).split(",") if h)


def record(body: JsonObject, hosts: Iterable[str]) -> JsonObject:
    """A rendered routing object with the hosts it concerns recorded (a copy)."""
    meta = dict(body["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_HOSTS: ",".join(sorted(set(hosts)))}
    return {**body, "metadata": meta}


def is_table(body: Mapping[str, Any]) -> bool:
    """A routing object a route table is rendered to: a user's, or one meshgen owns for a host (not a sandbox's)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    return not labels.get(LABEL_SANDBOX)


def edited(body: Mapping[str, Any]) -> bool:
    """A user's routing object that carries meshgen routes."""
    return not is_owned(body) and ANNOTATION_ROUTES in ((body.get("metadata") or {}).get("annotations") or {})


@dataclass
class Catalog:
    """Every routing object's metadata, and the bodies read so far."""

    client: Client
    namespaces: tuple[str, ...] = ()  # the namespaces read (none: all)
    # Kinds the backend does not write: an applier may list them, not read one by name (meshgen.kube.crds).
    listed_only: frozenset[str] = frozenset()
    metadata: dict[Ref, JsonObject] = field(default_factory=dict)
    bodies: dict[Ref, JsonObject] = field(default_factory=dict)

    def unknown(self) -> list[Ref]:
        """Tables whose hosts only their body tells."""
        return [r for r, m in sorted(self.metadata.items()) if is_table(m) and recorded(m) is None]

    def concerning(self, hosts: set[str]) -> list[Ref]:
        """Tables known, by their metadata, to concern one of ``hosts``."""
        return [r for r, m in sorted(self.metadata.items())
                if is_table(m) and (found := recorded(m)) is not None and found & hosts]

    def read_unknown(self) -> None:
        """Read the bodies of the tables whose hosts only their body tells: the users' objects meshgen has not
        edited by one LIST per kind (per namespace read) of exactly those, label-selected (so its size is the
        baseline's, not the store's); the rest (edited since meshgen recorded their hosts, or by an older meshgen),
        and any the list missed (changed meanwhile), as :meth:`fetch` reads them."""
        unknown = self.unknown()
        by_kind: dict[str, set[Ref]] = {}
        for ref in unknown:
            if LABEL_EDITED not in (self.metadata[ref]["metadata"].get("labels") or {}):
                by_kind.setdefault(ref.kind, set()).add(ref)
        for kind, refs in sorted(by_kind.items()):
            if len(refs) < 2 and kind not in self.listed_only:
                continue
            for scope in self.namespaces or (None,):
                for item in self.client.list(kinds.BY_NAME[kind], scope, label_selector=UNEDITED).items:
                    if Ref.of(item) in refs:
                        self.bodies[Ref.of(item)] = item
        self.fetch(r for r in unknown if r not in self.bodies)

    def fetch(self, refs: Iterable[Ref]) -> list[Ref]:
        """Read bodies: one LIST of a namespace's users' objects of a kind when all of them are wanted or the kind
        is one the backend does not write, else one GET each; returns those newly read."""
        wanted = [r for r in refs if r not in self.bodies]
        groups: dict[tuple[str, str], list[Ref]] = {}
        for ref in wanted:
            groups.setdefault((ref.kind, ref.namespace), []).append(ref)
        for (kind, namespace), refs_here in sorted(groups.items()):
            users = {r for r, m in self.metadata.items() if (r.kind, r.namespace) == (kind, namespace)
                     and not is_owned(m)}
            if kind in self.listed_only or (len(refs_here) > 1 and users <= set(refs_here)):
                for item in self.client.list(kinds.BY_NAME[kind], namespace, label_selector=UNOWNED).items:
                    self.bodies[Ref.of(item)] = item
            for ref in refs_here:
                if ref not in self.bodies and kind in self.listed_only:
                    self.metadata.pop(ref, None)  # gone since the metadata list
                elif ref not in self.bodies:
                    try:
                        self.bodies[ref] = self.client.get(ref)
                    except NotFound:
                        self.metadata.pop(ref, None)
        return [r for r in wanted if r in self.bodies]


def catalog(client: Client, routing_kinds: Iterable[kinds.Kind], written: Iterable[kinds.Kind],
            namespaces: Iterable[str]) -> Catalog:
    """The metadata of every routing object of ``routing_kinds`` (in ``namespaces``, or all); a kind whose CRD
    is not installed has none, unless the backend writes it (``written``)."""
    writes, routing_kinds = set(written), tuple(routing_kinds)
    found = Catalog(client, tuple(namespaces), frozenset(k.kind for k in routing_kinds if k not in writes))
    for kind in routing_kinds:
        for scope in tuple(namespaces) or (None,):
            try:
                listing = client.list(kind, scope, metadata_only=True)
            except NotFound as exc:
                if kind not in writes:
                    break
                raise ClusterError(f"{exc}; the CRD of {kind.display} is not installed in this cluster, and the "
                                   "MeshPolicy's backend writes it") from exc
            for item in listing.items:
                found.metadata[Ref.of(item)] = item
    return found


def routing_kinds(listed: Iterable[kinds.Kind]) -> tuple[kinds.Kind, ...]:
    """Of the kinds a command reads, those that carry routes."""
    return tuple(k for k in listed if k.kind in ROUTE_LISTS)
