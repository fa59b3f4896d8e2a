"""Istio VirtualService ``http`` routes, read into the neutral route vocabulary (:mod:`meshgen.plan.routing`).

Read the way istiod reads them: hosts resolved in the VirtualService's namespace
(:func:`~meshgen.baseline.model.resolve_host`), ``mirror`` + ``mirrorPercentage`` as one more mirror after
``mirrors``, durations as Go durations. Nothing is refused here: a field outside the vocabulary, or one that does
not read as what Istio means by it, is listed in :attr:`Route.unread <meshgen.plan.routing.Route.unread>` with
its path, so a backend that passes the VirtualService through untouched never sees the difference, and one that
translates every field names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshgen.baseline.model import VIRTUAL_SERVICE, ObjectKey, Resource, resolve_host
from meshgen.plan.routing import (
    NO_HEADERS,
    Cors,
    Destination,
    DirectResponse,
    Fault,
    HeaderEdits,
    HeaderMatch,
    Headers,
    Match,
    MatchKind,
    Mirror,
    Origin,
    Path,
    QueryMatch,
    Redirect,
    Retries,
    Rewrite,
    Route,
    StringMatch,
    Unread,
    duration,
)

ROUTE_FIELDS = {"name", "match", "route", "redirect", "directResponse", "rewrite", "timeout", "retries", "headers",
                "fault", "corsPolicy", "mirror", "mirrors", "mirrorPercentage", "delegate"}
MATCH_FIELDS = {"name", "uri", "headers", "withoutHeaders", "queryParams", "method", "scheme", "authority", "port",
                "ignoreUriCase", "sourceLabels", "sourceNamespace"}
# The redirect codes Istio accepts.
REDIRECT_CODES = (301, 302, 303, 307, 308)
# gRPC status names, what fault.abort.grpcStatus takes (istiod's SupportedGRPCStatus).
GRPC_STATUS = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
               "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
               "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


class _Unreadable(ValueError):
    def __init__(self, path: Path, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.path, self.reason = path, reason


def routes_of(virtual_service: Resource, cluster_domain: str) -> tuple[Route, ...]:
    """Every ``http`` route of a VirtualService, in order."""
    return tuple(read_route(entry, Origin(virtual_service.key, i, entry, virtual_service.location),
                            virtual_service.namespace, cluster_domain)
                 for i, entry in enumerate(virtual_service.spec.get("http") or []))


def read_route(entry: Mapping[str, Any], origin: Origin, namespace: str, cluster_domain: str) -> Route:
    """One ``http`` entry, written in a VirtualService of ``namespace``, as a neutral route."""
    unread = [Unread((k,)) for k in sorted(set(entry) - ROUTE_FIELDS)]

    def attempt(read: Any, *args: Any) -> Any:
        try:
            return read(*args)
        except _Unreadable as exc:
            unread.append(Unread(exc.path, exc.reason))
            return None

    host = _Hosts(namespace, cluster_domain)
    matches = attempt(_matches, entry.get("match") or []) or ()
    destinations = attempt(_destinations, entry, host) or ()
    mirrors = attempt(_mirrors, entry, host) or ()
    delegate = entry.get("delegate")
    if isinstance(delegate, Mapping) and "route" not in entry and "redirect" not in entry:
        delegate_key: ObjectKey | None = ObjectKey(VIRTUAL_SERVICE, str(delegate.get("namespace") or namespace),
                                                   str(delegate.get("name", "")))
    else:
        delegate_key = None
    if not destinations and delegate_key is None and "redirect" not in entry and "directResponse" not in entry:
        unread.append(Unread(("route",), "a route needs a destination, a redirect or a directResponse"))
    elif destinations and len(destinations) > 1 and not any((d.weight or 0) > 0 for d in destinations):
        unread.append(Unread(("route",), "every destination has weight 0"))
    return Route(
        origin=origin,
        name=str(entry["name"]) if entry.get("name") else None,
        matches=matches,
        destinations=destinations,
        timeout=attempt(_seconds, entry["timeout"], ("timeout",)) if "timeout" in entry else None,
        retries=attempt(_retries, entry.get("retries")),
        rewrite=attempt(_rewrite, entry.get("rewrite")),
        headers=attempt(_headers, entry.get("headers") or {}, ("headers",)) or NO_HEADERS,
        redirect=attempt(_redirect, entry["redirect"]) if "redirect" in entry else None,
        direct_response=attempt(_direct_response, entry["directResponse"]) if "directResponse" in entry else None,
        mirrors=mirrors,
        cors=attempt(_cors, entry["corsPolicy"]) if "corsPolicy" in entry else None,
        fault=attempt(_fault, entry["fault"]) if "fault" in entry else None,
        delegate=delegate_key,
        unread=tuple(unread),
    )


def destination(written: Mapping[str, Any], namespace: str, cluster_domain: str) -> Destination:
    """An Istio ``destination`` (host, subset, port) written in a VirtualService of ``namespace``."""
    return _Hosts(namespace, cluster_domain).destination(written)


class _Hosts:
    def __init__(self, namespace: str, cluster_domain: str) -> None:
        self.namespace, self.cluster_domain = namespace, cluster_domain

    def destination(self, written: Mapping[str, Any], headers: Headers = NO_HEADERS, weight: int | None = None,
                    at: Path = (), index: int | None = None) -> Destination:
        port = (written.get("port") or {}).get("number")
        return Destination(resolve_host(str(written.get("host", "")), self.namespace, self.cluster_domain),
                           int(port) if port is not None else None, written.get("subset"), weight, headers, at, index)


def _seconds(value: Any, path: Path) -> float:
    try:
        return duration(value)
    except ValueError as exc:
        raise _Unreadable(path, str(exc)) from None


def _percent(percentage: Any, path: Path) -> float:
    """Istio ``{value: <percent>}``."""
    if not isinstance(percentage, Mapping) or not isinstance(percentage.get("value", 0), int | float):
        raise _Unreadable(path, "expected {value: <percent>}")
    return float(percentage.get("value", 0))


def string_match(value: Any, path: Path) -> StringMatch:
    """An Istio StringMatch (``{exact|prefix|regex: ...}``)."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise _Unreadable(path, "expected exactly one of exact, prefix, regex")
    (kind, text), = value.items()
    if kind not in ("exact", "prefix", "regex"):
        raise _Unreadable(path, f"string match {kind!r} is not one of exact, prefix, regex")
    return StringMatch(MatchKind(kind), str(text))


def _header(name: str, value: Any, invert: bool, path: Path) -> HeaderMatch:
    if isinstance(value, Mapping) and not value:
        return HeaderMatch(str(name), None, invert)  # {} means "present"; withoutHeaders {} means "absent"
    return HeaderMatch(str(name), string_match(value, path), invert)


def _matches(blocks: list[Any]) -> tuple[Match, ...]:
    return tuple(_match(block, j) for j, block in enumerate(blocks))


def _match(block: Mapping[str, Any], j: int) -> Match:
    path: Path = ("match", j)
    unknown = sorted(set(block) - MATCH_FIELDS)
    if unknown:
        raise _Unreadable((*path, unknown[0]))
    headers = [_header(n, v, False, (*path, "headers", n)) for n, v in sorted((block.get("headers") or {}).items())]
    headers += [_header(n, v, True, (*path, "withoutHeaders", n))
                for n, v in sorted((block.get("withoutHeaders") or {}).items())]
    query = tuple(QueryMatch(str(n), None if isinstance(v, Mapping) and not v else
                             string_match(v, (*path, "queryParams", n)))
                  for n, v in sorted((block.get("queryParams") or {}).items()))
    strings = {f: string_match(block[f], (*path, f)) for f in ("uri", "method", "scheme", "authority") if f in block}
    port = block.get("port")
    return Match(
        path=strings.get("uri"),
        ignore_case=bool(block.get("ignoreUriCase")),
        headers=tuple(headers),
        query=query,
        method=strings.get("method"),
        scheme=strings.get("scheme"),
        authority=strings.get("authority"),
        port=int(port) if port is not None else None,
        source_labels=tuple(sorted((str(k), str(v)) for k, v in (block.get("sourceLabels") or {}).items())),
        source_namespace=str(block["sourceNamespace"]) if block.get("sourceNamespace") else None,
        name=str(block["name"]) if block.get("name") else None,
        at=path,
    )


def _destinations(entry: Mapping[str, Any], hosts: _Hosts) -> tuple[Destination, ...]:
    out = []
    written = [d for d in entry.get("route") or [] if isinstance(d, Mapping)]
    for i, dest in enumerate(written):
        headers = _headers(dest.get("headers") or {}, ("route", i, "headers"))
        weight = dest.get("weight")
        out.append(hosts.destination(dest.get("destination") or {}, headers,
                                     int(weight) if weight is not None else None, ("route", i, "destination"), i))
    return tuple(out)


def _mirrors(entry: Mapping[str, Any], hosts: _Hosts) -> tuple[Mirror, ...]:
    out = []
    for i, mirror in enumerate(entry.get("mirrors") or []):
        percentage = mirror.get("percentage")
        out.append(Mirror(hosts.destination(mirror.get("destination") or {}, at=("mirrors", i, "destination")),
                          _percent(percentage, ("mirrors", i, "percentage")) if percentage is not None else None))
    if "mirror" in entry:
        percentage = entry.get("mirrorPercentage")
        out.append(Mirror(hosts.destination(entry["mirror"] or {}, at=("mirror",)),
                          _percent(percentage, ("mirrorPercentage",)) if percentage is not None else None))
    return tuple(out)


def _retries(retries: Mapping[str, Any] | None) -> Retries | None:
    if retries is None:
        return None
    for key in sorted(set(retries) - {"attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities"}):
        raise _Unreadable(("retries", key))
    return Retries(
        attempts=int(retries["attempts"]) if "attempts" in retries else None,
        per_try_timeout=_seconds(retries["perTryTimeout"], ("retries", "perTryTimeout"))
        if "perTryTimeout" in retries else None,
        retry_on=str(retries["retryOn"]) if "retryOn" in retries else None,
    )


def _rewrite(rewrite: Mapping[str, Any] | None) -> Rewrite | None:
    if not rewrite:
        return None
    for key in sorted(set(rewrite) - {"uri", "authority", "uriRegexRewrite"}):
        raise _Unreadable(("rewrite", key))
    regex = rewrite.get("uriRegexRewrite")
    return Rewrite(
        prefix=str(rewrite["uri"]) if "uri" in rewrite else None,
        regex=(str(regex["match"]), str(regex["rewrite"])) if regex else None,
        authority=str(rewrite["authority"]) if "authority" in rewrite else None,
    )


def _redirect(redirect: Mapping[str, Any]) -> Redirect:
    for key in sorted(set(redirect) - {"uri", "authority", "port", "scheme", "redirectCode"}):
        raise _Unreadable(("redirect", key))
    code = int(redirect.get("redirectCode", 301))
    if code not in REDIRECT_CODES:
        raise _Unreadable(("redirect", "redirectCode"), f"{code} is not one of {list(REDIRECT_CODES)}")
    return Redirect(
        path=str(redirect["uri"]) if "uri" in redirect else None,
        authority=str(redirect["authority"]) if "authority" in redirect else None,
        port=int(redirect["port"]) if "port" in redirect else None,
        scheme=str(redirect["scheme"]) if "scheme" in redirect else None,
        code=code,
    )


def _direct_response(direct: Mapping[str, Any]) -> DirectResponse:
    body = direct.get("body") or {}
    return DirectResponse(int(direct["status"]), str(body["string"]) if "string" in body else None,
                          str(body["bytes"]) if "bytes" in body and "string" not in body else None)


def _headers(headers: Mapping[str, Any], path: Path) -> Headers:
    """Istio ``headers`` (request/response set, add, remove)."""
    edits = {}
    for direction in ("request", "response"):
        ops = headers.get(direction) or {}
        for key in sorted(set(ops) - {"set", "add", "remove"}):
            raise _Unreadable((*path, direction, key))
        edits[direction] = HeaderEdits(
            set=tuple(sorted((str(k), str(v)) for k, v in (ops.get("set") or {}).items())),
            add=tuple(sorted((str(k), str(v)) for k, v in (ops.get("add") or {}).items())),
            remove=tuple(str(h) for h in ops.get("remove") or ()),
        )
    return Headers(edits["request"], edits["response"])


def _fault(fault: Mapping[str, Any]) -> Fault:
    for key in sorted(set(fault) - {"delay", "abort"}):
        raise _Unreadable(("fault", key))
    out: dict[str, Any] = {}
    if "delay" in fault:
        delay = fault["delay"]
        if "fixedDelay" not in delay or set(delay) - {"fixedDelay", "percentage"}:
            raise _Unreadable(("fault", "delay"), "only fixedDelay with percentage is supported")
        out["delay"] = _seconds(delay["fixedDelay"], ("fault", "delay", "fixedDelay"))
        if "percentage" in delay:
            out["delay_percentage"] = _percent(delay["percentage"], ("fault", "delay", "percentage"))
    if "abort" in fault:
        abort = fault["abort"]
        kinds = [k for k in ("httpStatus", "grpcStatus") if k in abort]
        if len(kinds) != 1 or set(abort) - {"httpStatus", "grpcStatus", "percentage"}:
            raise _Unreadable(("fault", "abort"), "expected httpStatus or grpcStatus, with percentage")
        if kinds == ["grpcStatus"]:
            if str(abort["grpcStatus"]) not in GRPC_STATUS:
                raise _Unreadable(("fault", "abort", "grpcStatus"),
                                  f"{abort['grpcStatus']!r} is not one of {', '.join(GRPC_STATUS)}")
            out["grpc_status"] = str(abort["grpcStatus"])
        else:
            out["http_status"] = int(abort["httpStatus"])
        if "percentage" in abort:
            out["abort_percentage"] = _percent(abort["percentage"], ("fault", "abort", "percentage"))
    return Fault(**out)


def _cors(cors: Mapping[str, Any]) -> Cors:
    for key in sorted(set(cors) - {"allowOrigins", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge",
                                   "allowCredentials", "unmatchedPreflights"}):
        raise _Unreadable(("corsPolicy", key))
    preflights = cors.get("unmatchedPreflights")
    if preflights is not None and preflights not in ("FORWARD", "IGNORE", "UNSPECIFIED"):
        raise _Unreadable(("corsPolicy", "unmatchedPreflights"), "expected FORWARD or IGNORE")
    return Cors(
        allow_origins=tuple(string_match(o, ("corsPolicy", "allowOrigins", i))
                            for i, o in enumerate(cors.get("allowOrigins") or [])),
        allow_methods=tuple(str(v) for v in cors.get("allowMethods") or ()),
        allow_headers=tuple(str(v) for v in cors.get("allowHeaders") or ()),
        expose_headers=tuple(str(v) for v in cors.get("exposeHeaders") or ()),
        max_age=_seconds(cors["maxAge"], ("corsPolicy", "maxAge")) if "maxAge" in cors else None,
        allow_credentials=bool(cors["allowCredentials"]) if "allowCredentials" in cors else None,
        unmatched_preflights=str(preflights) if preflights is not None else None,
    )
