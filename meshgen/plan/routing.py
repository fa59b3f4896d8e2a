"""Routes in mesh-neutral terms: what a route matches, where it sends, and what it does on the way.

Every route table source reads into this vocabulary (:mod:`meshgen.plan.virtual_services` for Istio
VirtualServices, :mod:`meshgen.plan.http_routes` for Gateway API HTTPRoutes and GRPCRoutes), and every backend
renders from it; the planner decides in it (which route a sandbox copies, where the copy sends). A route also keeps
where it came from (:class:`Origin`: its object, its position, its body as written), because a backend that edits a
user's object in place must leave everything but meshgen's own routes byte for byte as the user wrote it (DESIGN
invariant 4).

The vocabulary is what both Istio and the Gateway API can say about an HTTP route, in the meaning istiod gives it:

- a route matches if any of its :class:`Match` blocks does (none: every request); a block's conditions all hold;
- a path match is ``exact``, ``prefix`` (characters), ``segment-prefix`` (whole path segments, the Gateway API's
  ``PathPrefix``) or ``regex`` (RE2, full match);
- ``destinations`` are weighted; with none, ``redirect`` or ``direct_response`` answers;
- ``timeout`` None means none; ``retries`` None means the mesh's default retry policy;
- what only one API has (Istio's fault injection) is neutral data too, and stays empty for the other.

A field a reader could not make sense of is listed in :attr:`Route.unread` with its path and why: a backend that
passes the object through untouched (Istio, the Gateway API) does not care, a backend that must translate every
field (the Envoy backend) refuses the route naming it.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshgen.baseline.model import ObjectKey
from meshgen.documents import JsonObject
from meshgen.errors import Location

Path = tuple[str | int, ...]  # a field's path inside the route as written (e.g. ("match", 0, "uri"))


class MatchKind(enum.StrEnum):
    """How a string is matched."""

    EXACT = "exact"
    PREFIX = "prefix"
    SEGMENT_PREFIX = "segment-prefix"  # a path prefix of whole segments: /a matches /a and /a/b, not /ab
    REGEX = "regex"  # RE2, the whole string


@dataclass(frozen=True)
class StringMatch:
    kind: MatchKind
    value: str


@dataclass(frozen=True)
class HeaderMatch:
    """A condition on one request header. ``value`` None means "present"; ``invert`` negates the condition, a
    missing header reading as empty (Istio's ``withoutHeaders``), except that an inverted presence means
    "absent"."""

    name: str
    value: StringMatch | None = None
    invert: bool = False


@dataclass(frozen=True)
class QueryMatch:
    """A condition on one query parameter (``value`` None: present)."""

    name: str
    value: StringMatch | None = None


@dataclass(frozen=True)
class Match:
    """One match block: every condition holds. ``source_labels``/``source_namespace`` are about the calling
    workload (istiod decides them per proxy, when it builds that proxy's routes)."""

    path: StringMatch | None = None
    ignore_case: bool = False
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    method: StringMatch | None = None
    scheme: StringMatch | None = None
    authority: StringMatch | None = None
    port: int | None = None
    source_labels: tuple[tuple[str, str], ...] = ()
    source_namespace: str | None = None
    name: str | None = None
    at: Path = field(default=(), compare=False)

    def applies_to(self, namespace: str | None, labels: Mapping[str, str] | None) -> bool:
        """Whether this block applies to a caller's proxy (istiod's ``sourceMatchHTTP``): its source labels are
        among the caller's, its source namespace is the caller's. ``labels`` None: a caller no source condition
        selects."""
        if labels is None:
            return not self.source_labels and not self.source_namespace
        return (all(labels.get(k) == v for k, v in self.source_labels)
                and self.source_namespace in (None, "", namespace))

    def anded(self, header: HeaderMatch) -> Match:
        """This block with one more header condition (replacing one on the same header)."""
        kept = tuple(h for h in self.headers if h.name != header.name or h.invert)
        return dataclasses.replace(self, headers=(*kept, header))


EVERYTHING = Match()


@dataclass(frozen=True)
class HeaderEdits:
    """Header operations in one direction: set (replace), add (append), remove."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True)
class Headers:
    request: HeaderEdits = HeaderEdits()
    response: HeaderEdits = HeaderEdits()

    def __bool__(self) -> bool:
        return bool(self.request or self.response)


NO_HEADERS = Headers()


@dataclass(frozen=True)
class Destination:
    """Where a route sends (a share of) its requests: a resolved host, optionally a port and an Istio subset.
    ``weight`` None: the only destination, or an unweighted one. ``at`` is the entry it comes from in the route as
    written: ``at`` its path, ``index`` its position in the route's list (a redirected destination keeps the entry it
    replaced, so a backend can keep that entry's other fields)."""

    host: str
    port: int | None = None
    subset: str | None = None
    weight: int | None = None
    headers: Headers = NO_HEADERS
    at: Path = field(default=(), compare=False)  # the field holding host/port/subset, inside the route
    index: int | None = field(default=None, compare=False)  # its entry in the route's destination list


@dataclass(frozen=True)
class Retries:
    """A retry policy as written: ``attempts`` 0 means none; None fields take the mesh's defaults."""

    attempts: int | None = None
    per_try_timeout: float | None = None  # seconds
    retry_on: str | None = None


@dataclass(frozen=True)
class Rewrite:
    """A request rewrite: the matched path prefix replaced by ``prefix``, or the path by a regex substitution;
    the authority (Host) replaced."""

    prefix: str | None = None
    regex: tuple[str, str] | None = None  # (pattern, substitution)
    authority: str | None = None


@dataclass(frozen=True)
class Redirect:
    """An answer sending the client elsewhere (``path`` replaces the whole path)."""

    path: str | None = None
    authority: str | None = None
    port: int | None = None
    scheme: str | None = None
    code: int = 301


@dataclass(frozen=True)
class Mirror:
    """A copy of each request (``percentage`` of them; None: all) to another destination; its answer is dropped."""

    destination: Destination
    percentage: float | None = None


@dataclass(frozen=True)
class DirectResponse:
    """An answer the proxy gives itself."""

    status: int
    body: str | None = None
    bytes: str | None = None  # base64, as Istio writes it


@dataclass(frozen=True)
class Cors:
    """A CORS policy answered by the proxy. ``unmatched_preflights`` is Istio's FORWARD (pass a preflight no origin
    matches upstream) or IGNORE (answer it)."""

    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: float | None = None  # seconds
    allow_credentials: bool | None = None
    unmatched_preflights: str | None = None


@dataclass(frozen=True)
class Fault:
    """Injected faults (Istio): a delay, or an abort with an HTTP or gRPC status, each for a percentage."""

    delay: float | None = None  # seconds
    delay_percentage: float = 100.0
    http_status: int | None = None
    grpc_status: str | None = None
    abort_percentage: float = 100.0

    @property
    def aborts(self) -> bool:
        return self.http_status is not None or self.grpc_status is not None


class Semantics(enum.StrEnum):
    """How a table's routes are chosen for a request."""

    ORDERED = "ordered"  # Istio: the first route (in the order written) that matches
    SPECIFICITY = "specificity"  # Gateway API: the most specific match (path, method, headers, query), then order


@dataclass(frozen=True)
class Origin:
    """Where a route comes from: its object (kind, namespace, name), its position in the object's route list, the
    route as written (empty for one meshgen made up), and where the object was read (for error messages)."""

    key: ObjectKey | None
    index: int
    body: JsonObject = field(default_factory=dict, compare=False, hash=False)
    location: Location | None = field(default=None, compare=False, hash=False)
    routes_field: str = "http"  # the spec field holding the route list: http (VirtualService), rules (Gateway API)

    def at(self, *path: str | int) -> Location | None:
        """The location of a field of this route (``path`` inside the route), for error messages."""
        return self.location.at("spec", self.routes_field, self.index, *path) if self.location else None

    @property
    def subject(self) -> str:
        """``VirtualService ns/name`` (``route`` for one meshgen made up)."""
        return str(self.key) if self.key is not None else "route"

    def dotted(self, path: Path) -> str:
        """``http.0.timeout``: a field of this route in the object's terms."""
        return ".".join(str(p) for p in (self.routes_field, self.index, *path))


@dataclass(frozen=True)
class Unread:
    """A field of a route as written that is not in this vocabulary (``reason`` None), or that does not read as
    what it should be (``reason`` says why)."""

    path: Path
    reason: str | None = None


@dataclass(frozen=True)
class Route:
    """One route in neutral terms, with where it came from."""

    origin: Origin
    name: str | None = None
    matches: tuple[Match, ...] = ()
    destinations: tuple[Destination, ...] = ()
    timeout: float | None = None  # seconds; None: no timeout
    retries: Retries | None = None  # None: the mesh's default policy
    rewrite: Rewrite | None = None
    headers: Headers = NO_HEADERS
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    mirrors: tuple[Mirror, ...] = ()
    cors: Cors | None = None
    fault: Fault | None = None
    delegate: ObjectKey | None = None  # Istio delegation: the delegate VirtualService holds the routes
    unread: tuple[Unread, ...] = ()  # what could not be read
    semantics: Semantics = Semantics.ORDERED

    @property
    def blocks(self) -> tuple[Match, ...]:
        """The match blocks, at least one (a route without any matches every request)."""
        return self.matches or (EVERYTHING,)

    def destination_hosts(self) -> list[str]:
        """The hosts this route sends to, in order, without repeats."""
        return list(dict.fromkeys(d.host for d in self.destinations))

    def ports(self) -> set[int | None]:
        """The listener ports its match blocks apply on (None: any)."""
        return {m.port for m in self.blocks}


def source_conditions(routes: Iterable[Route]) -> set[tuple[tuple[tuple[str, str], ...], str]]:
    """Every (source labels, source namespace) condition some match block of ``routes`` has."""
    return {(m.source_labels, m.source_namespace or "") for r in routes for m in r.matches
            if m.source_labels or m.source_namespace}


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def duration(value: Any) -> float:
    """A Go duration (what Istio and the Gateway API write: ``1.5s``, ``500ms``, ``1m30s``) in seconds; raises
    ValueError saying what it should look like."""
    text = str(value)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (like 1.5s, 500ms, 1m30s)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
