"""Changing the routing header on a live cluster, make-before-break: no request with a key misses its fork.

Routes match the routing header; the normaliser (the EnvoyFilter) writes it. Switching both at once cannot be
made safe: the EnvoyFilter and the routing objects (VirtualServices, HTTPRoutes: the backend's ``routes`` kinds)
are separate objects, written one after another. So every object meshgen writes records which header it uses
(``meshgen.dev/routing-headers`` on the EnvoyFilter: every header its normaliser writes;
``meshgen.dev/routing-header`` on a routing object: the header its routes match), and each reconcile round takes
one safe step from what is live towards the policy's header ``new``:

1. the normaliser writes ``new`` as well as every header a live route matches (routes unchanged);
2. once the live normaliser writes ``new``, routes switch to match ``new`` (the normaliser still writes both);
3. once no live route matches another header, the normaliser writes ``new`` alone.

Within a round the EnvoyFilter is written before any routing object (:mod:`meshgen.kube.ordering`), so after
every single write each live route matches a header the live normaliser writes. Headers still written for live
routes are stripped at the edge like the routing header itself (a client outside must not set them either). Each
step is a function of live objects only, so an interrupted change is carried on by the next apply or gc.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meshgen.backends.backend import Backend
from meshgen.documents import JsonObject
from meshgen.kube.kinds import Ref
from meshgen.ownership import ANNOTATION_ROUTES, is_owned
from meshgen.plan.model import HeaderChange
from meshgen.spec.models import MeshPolicy

ANNOTATION_HEADERS = "meshgen.dev/routing-headers"  # on the EnvoyFilter
ANNOTATION_HEADER = "meshgen.dev/routing-header"  # on a routing object with meshgen routes


@dataclass(frozen=True)
class Step:
    """What one round writes: the policy's header ``new``, the header routes match, and the headers the
    normaliser writes besides ``new`` (the same in steps 1 and 2, so step 2 does not rewrite the EnvoyFilter)."""

    new: str
    routes: str
    also: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        """Whether this round's objects are the end state (nothing left of an older header)."""
        return not self.also and self.routes == self.new

    def written(self) -> tuple[str, ...]:
        """Every header the normaliser writes, the policy's first."""
        return (self.new, *self.also)

    def change(self) -> HeaderChange | None:
        """The plan's view of this step (``None``: no change in progress)."""
        return None if self.done else HeaderChange(self.routes, self.also)


def _headers(body: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(key)  # type: ignore[attr-defined]
    return tuple(h for h in str(value).split(",") if h) if value else ()


def _has_routes(body: Mapping[str, object]) -> bool:
    if is_owned(body):
        return True
    return bool(((body.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_ROUTES))  # type: ignore[attr-defined]


def filter_ref(policy: MeshPolicy, backend: Backend) -> Ref | None:
    """The object that runs the routing-key normaliser, if the backend writes one."""
    if backend.routing_filter is None:
        return None
    return Ref("EnvoyFilter", policy.spec.filter_namespace, backend.routing_filter)


def of_cluster(policy: MeshPolicy, backend: Backend, live: Mapping[Ref, JsonObject]) -> Step:
    """This round's step for the policy's routing header, from the live objects of the backend."""
    return step(policy.spec.routing_header, live, filter_ref(policy, backend), backend.routes)


def step(new: str, live: Mapping[Ref, JsonObject], filter_ref: Ref | None, routes: Iterable[str]) -> Step:
    """The next step towards routing on ``new``, from the live objects (objects written before meshgen recorded
    headers count as using ``new``: there is no change in progress to continue). ``routes``: the kinds that carry
    routes; ``filter_ref``: the normaliser's object (None: the backend writes none, callers set the header)."""
    kinds = set(routes)
    live_filter = live.get(filter_ref) if filter_ref is not None else None
    written = set(_headers(live_filter, ANNOTATION_HEADERS) or (new,)) if live_filter is not None else set()
    matched = {h for ref, body in live.items() if ref.kind in kinds and _has_routes(body)
               for h in (_headers(body, ANNOTATION_HEADER) or (new,))}
    # Step 2 (or nothing in flight: a first apply writes the filter before any route), else step 1: routes stay
    # on a header the live filter writes.
    routes = new if new in written or not matched & written else sorted(matched & written)[0]
    return Step(new, routes, tuple(sorted(matched - {new})))


def annotate(objects: Iterable[JsonObject], current: Step, routes: Iterable[str]) -> list[JsonObject]:
    """Rendered objects with the headers they use recorded (copies; rendered objects are read-only); ``routes``:
    the kinds that carry routes."""
    kinds = set(routes)
    out = []
    for body in objects:
        if body["kind"] == "EnvoyFilter":
            out.append(_with(body, ANNOTATION_HEADERS, ",".join(current.written())))
        elif body["kind"] in kinds and _has_routes(body):
            out.append(_with(body, ANNOTATION_HEADER, current.routes))
        else:
            out.append(body)
    return out


def _with(body: JsonObject, key: str, value: str) -> JsonObject:
    meta = dict(body["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), key: value}
    return {**body, "metadata": meta}
