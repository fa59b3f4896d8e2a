"""Gateway API HTTPRoutes and GRPCRoutes (``gateway.networking.k8s.io/v1``), read into neutral routes the way
istiod converts them (istio.io/istio ``pilot/pkg/config/kube/gateway``: ``convertHTTPRoute``,
``convertGRPCRoute``, ``buildHTTPDestination``, ``createURIMatch``...), with the defaults the API server fills in
(the CRDs' ``default``: a rule without matches matches every path, a match without a path is ``PathPrefix /``, a
header match is ``Exact``, a backendRef weighs 1), so a manifest reads as the object stored from it:

- a ``parentRefs`` entry of kind Service (group ``""``) attaches the route to that Service for mesh traffic
  (GAMMA); one of kind Gateway to that Gateway (the edge). A Service parent's ``port`` restricts the routes to it;
- ``PathPrefix`` matches whole path segments (``/a`` matches ``/a`` and ``/a/b``, not ``/ab``; a trailing ``/`` is
  ignored), except ``/``, which matches every path; a GRPCRoute method match becomes a path match on
  ``/<service>/<method>``;
- filters: RequestHeaderModifier and ResponseHeaderModifier (per rule and per backendRef), URLRewrite (hostname;
  ``ReplacePrefixMatch``, ``ReplaceFullPath``), RequestRedirect, RequestMirror, CORS; anything else
  (ExtensionRef) is listed as unread;
- backendRefs of weight 0 are dropped; none left answers 500 (the spec); a lone one carries no weight;
- ``timeouts.request`` is the route's timeout; ``timeouts.backendRequest`` too when there is no retry policy (the
  standard channel has none, so the mesh's default retries apply);
- a rule is named by its ``name``, or as istiod names it (``<namespace>.<name>.<index>``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshgen.baseline.model import GATEWAY_API_GROUP, GRPC_ROUTE, KUBERNETES_GATEWAY, ObjectKey, Resource, service_fqdn
from meshgen.plan.routing import (
    NO_HEADERS,
    Cors,
    Destination,
    DirectResponse,
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
    Rewrite,
    Route,
    Semantics,
    StringMatch,
    Unread,
    duration,
)

# The redirect codes the Gateway API allows (301 and 302; 302 is its default).
REDIRECT_CODES = (301, 302)


@dataclass(frozen=True)
class Parents:
    """What a route attaches to: mesh hosts (a Service parent's fqdn, with its port or None), and Gateways."""

    services: tuple[tuple[str, int | None], ...]
    gateways: tuple[ObjectKey, ...]
    consumers: tuple[str, ...]  # Services of another namespace than the route's (GAMMA consumer routes)

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(fqdn for fqdn, _ in self.services))


def parents(route: Resource, cluster_domain: str) -> Parents:
    """The parents a route attaches to (``parentRefs``; group and kind default to the Gateway API's Gateway)."""
    services: list[tuple[str, int | None]] = []
    gateways: list[ObjectKey] = []
    consumers: list[str] = []
    for ref in route.spec.get("parentRefs") or []:
        group = ref.get("group", GATEWAY_API_GROUP)
        kind = ref.get("kind", "Gateway")
        namespace = str(ref.get("namespace") or route.namespace)
        if kind == "Service" and group in ("", "core"):
            fqdn = service_fqdn(namespace, str(ref["name"]), cluster_domain)
            services.append((fqdn, int(ref["port"]) if ref.get("port") is not None else None))
            if namespace != route.namespace:
                consumers.append(fqdn)
        elif kind == "Gateway" and group == GATEWAY_API_GROUP:
            gateways.append(ObjectKey(KUBERNETES_GATEWAY, namespace, str(ref["name"])))
    return Parents(tuple(services), tuple(gateways), tuple(consumers))


def routes_of(route: Resource, cluster_domain: str) -> tuple[Route, ...]:
    """Every rule of an HTTPRoute or GRPCRoute as a neutral route, in order; a Service parent's port restricts
    them to that port (when every Service parent names the same one)."""
    ports = {port for _, port in parents(route, cluster_domain).services}
    port = next(iter(ports)) if len(ports) == 1 else None
    grpc = route.key.kind == GRPC_ROUTE
    return tuple(read_rule(rule, Origin(route.key, i, rule, route.location, "rules"), route.namespace, cluster_domain,
                           grpc, port)
                 for i, rule in enumerate(route.spec.get("rules") or [{}]))


def read_rule(rule: Mapping[str, Any], origin: Origin, namespace: str, cluster_domain: str, grpc: bool = False,
              port: int | None = None) -> Route:
    """One rule, written in a route of ``namespace``, as a neutral route (on ``port`` only, if given)."""
    unread: list[Unread] = []
    reader = _Reader(namespace, cluster_domain, unread)
    matches = tuple(reader.grpc_match(m, j) if grpc else reader.http_match(m, j)
                    for j, m in enumerate(rule.get("matches") or ([] if grpc else [{}])))
    if port is not None:
        matches = tuple(_on_port(m, port) for m in matches or (Match(),))
    fields = reader.filters(rule.get("filters") or [], ("filters",))
    destinations = reader.backends(rule.get("backendRefs") or [])
    timeout, direct = None, None
    timeouts = rule.get("timeouts") or {}
    for key in ("request", "backendRequest"):
        if key in timeouts and timeout is None:
            timeout = reader.seconds(timeouts[key], ("timeouts", key)) or None  # 0s: no timeout
    if not destinations and fields.get("redirect") is None:
        direct = DirectResponse(500)  # the spec: no backend with weight answers 500
    namespace_, name = (origin.key.namespace, origin.key.name) if origin.key is not None else ("", "")
    return Route(
        origin=origin,
        name=str(rule["name"]) if rule.get("name") else f"{namespace_}.{name}.{origin.index}",
        matches=matches,
        destinations=destinations,
        timeout=timeout,
        rewrite=fields.get("rewrite"),
        headers=fields.get("headers", NO_HEADERS),
        redirect=fields.get("redirect"),
        direct_response=direct,
        mirrors=fields.get("mirrors", ()),
        cors=fields.get("cors"),
        unread=tuple(unread),
        semantics=Semantics.SPECIFICITY,
    )


def _on_port(match: Match, port: int) -> Match:
    return Match(match.path, match.ignore_case, match.headers, match.query, match.method, match.scheme,
                 match.authority, port, match.source_labels, match.source_namespace, match.name, match.at)


class _Reader:
    def __init__(self, namespace: str, cluster_domain: str, unread: list[Unread]) -> None:
        self.namespace, self.cluster_domain, self.unread = namespace, cluster_domain, unread

    def seconds(self, value: Any, path: Path) -> float | None:
        try:
            return duration(value)
        except ValueError as exc:
            self.unread.append(Unread(path, str(exc)))
            return None

    def string(self, kind: Any, value: Any, path: Path) -> StringMatch:
        if kind in (None, "Exact"):
            return StringMatch(MatchKind.EXACT, str(value))
        if kind == "RegularExpression":
            return StringMatch(MatchKind.REGEX, str(value))
        self.unread.append(Unread((*path, "type"), f"match type {kind!r} is not one of Exact, RegularExpression"))
        return StringMatch(MatchKind.EXACT, str(value))

    def headers(self, found: Sequence[Mapping[str, Any]], path: Path) -> tuple[HeaderMatch, ...]:
        return tuple(HeaderMatch(str(h["name"]).lower(), self.string(h.get("type"), h.get("value", ""), (*path, i)))
                     for i, h in enumerate(found))

    def http_match(self, match: Mapping[str, Any], j: int) -> Match:
        path_at: Path = ("matches", j)
        written = match.get("path") or {}
        value = str(written.get("value", "/"))
        kind = written.get("type", "PathPrefix")
        if kind == "PathPrefix":
            trimmed = value if value == "/" else value.rstrip("/") or "/"
            path = StringMatch(MatchKind.PREFIX if trimmed == "/" else MatchKind.SEGMENT_PREFIX, trimmed)
        elif kind == "Exact":
            path = StringMatch(MatchKind.EXACT, value)
        else:
            path = self.string(kind, value, (*path_at, "path"))
        query = tuple(QueryMatch(str(q["name"]), self.string(q.get("type"), q.get("value", ""),
                                                             (*path_at, "queryParams", i)))
                      for i, q in enumerate(match.get("queryParams") or []))
        method = StringMatch(MatchKind.EXACT, str(match["method"])) if match.get("method") else None
        return Match(path=path, headers=self.headers(match.get("headers") or [], (*path_at, "headers")),
                     query=query, method=method, at=path_at)

    def grpc_match(self, match: Mapping[str, Any], j: int) -> Match:
        """istiod's ``createGRPCURIMatch``: a method match as a path match on ``/<service>/<method>``."""
        path_at: Path = ("matches", j)
        method = match.get("method") or {}
        service, name = method.get("service"), method.get("method")
        path = None
        if service is not None or name is not None:
            regex = method.get("type", "Exact") == "RegularExpression"
            if name is None:
                path = StringMatch(MatchKind.REGEX, f"/{service}/.+") if regex else StringMatch(
                    MatchKind.PREFIX, f"/{service}/")
            elif service is None:
                path = StringMatch(MatchKind.REGEX, f"/[^/]+/{name}")
            else:
                path = StringMatch(MatchKind.REGEX if regex else MatchKind.EXACT, f"/{service}/{name}")
        return Match(path=path, headers=self.headers(match.get("headers") or [], (*path_at, "headers")), at=path_at)

    def destination(self, ref: Mapping[str, Any], path: Path, index: int | None = None,
                    weight: int | None = None, headers: Headers = NO_HEADERS) -> Destination:
        if ref.get("kind", "Service") != "Service" or ref.get("group", "") not in ("", "core"):
            self.unread.append(Unread(path, f"a backendRef to a {ref.get('kind')} is not supported (only Services)"))
        namespace = str(ref.get("namespace") or self.namespace)
        port = ref.get("port")
        return Destination(service_fqdn(namespace, str(ref.get("name", "")), self.cluster_domain),
                           int(port) if port is not None else None, None, weight, headers, path, index)

    def backends(self, refs: Sequence[Mapping[str, Any]]) -> tuple[Destination, ...]:
        kept = [(i, ref) for i, ref in enumerate(refs) if int(ref.get("weight", 1)) != 0]
        out = []
        for i, ref in kept:
            fields = self.filters(ref.get("filters") or [], ("backendRefs", i, "filters"))
            weight = int(ref.get("weight", 1)) if len(kept) > 1 else None
            out.append(self.destination(ref, ("backendRefs", i), i, weight, fields.get("headers", NO_HEADERS)))
        return tuple(out)

    def filters(self, filters: Sequence[Mapping[str, Any]], path: Path) -> dict[str, Any]:
        """What a rule's (or backendRef's) filters do, by neutral field."""
        out: dict[str, Any] = {}
        request, response = HeaderEdits(), HeaderEdits()
        mirrors: list[Mirror] = []
        for i, f in enumerate(filters):
            kind, at = f.get("type"), (*path, i)
            if kind == "RequestHeaderModifier":
                request = _edits(f.get("requestHeaderModifier") or {})
            elif kind == "ResponseHeaderModifier":
                response = _edits(f.get("responseHeaderModifier") or {})
            elif kind == "URLRewrite":
                out["rewrite"] = _rewrite(f.get("urlRewrite") or {})
            elif kind == "RequestRedirect":
                out["redirect"] = self.redirect(f.get("requestRedirect") or {}, (*at, "requestRedirect"))
            elif kind == "RequestMirror":
                mirror = f.get("requestMirror") or {}
                mirrors.append(Mirror(self.destination(mirror.get("backendRef") or {}, (*at, "requestMirror",
                                                                                         "backendRef")),
                                      _mirror_percent(mirror)))
            elif kind == "CORS":
                out["cors"] = _cors(f.get("cors") or {})
            else:
                self.unread.append(Unread((*at, "type"), f"filter {kind!r} is not supported by the envoy backend"))
        if request or response:
            out["headers"] = Headers(request, response)
        if mirrors:
            out["mirrors"] = tuple(mirrors)
        return out

    def redirect(self, written: Mapping[str, Any], path: Path) -> Redirect:
        code = int(written.get("statusCode", 302))
        if code not in REDIRECT_CODES:
            self.unread.append(Unread((*path, "statusCode"), f"{code} is not one of {list(REDIRECT_CODES)}"))
        target = written.get("path") or {}
        if target.get("type") == "ReplacePrefixMatch":
            self.unread.append(Unread((*path, "path"), "a ReplacePrefixMatch redirect is not supported by the "
                                                       "envoy backend"))
        return Redirect(path=str(target["replaceFullPath"]) if target.get("type") == "ReplaceFullPath" else None,
                        authority=str(written["hostname"]) if written.get("hostname") else None,
                        port=int(written["port"]) if written.get("port") is not None else None,
                        scheme=str(written["scheme"]) if written.get("scheme") else None,
                        code=code if code in REDIRECT_CODES else 302)


def _edits(modifier: Mapping[str, Any]) -> HeaderEdits:
    return HeaderEdits(
        set=tuple(sorted((str(h["name"]), str(h["value"])) for h in modifier.get("set") or [])),
        add=tuple(sorted((str(h["name"]), str(h["value"])) for h in modifier.get("add") or [])),
        remove=tuple(str(h) for h in modifier.get("remove") or ()),
    )


def _rewrite(rewrite: Mapping[str, Any]) -> Rewrite | None:
    """istiod's ``createRewriteFilter``."""
    path = rewrite.get("path") or {}
    prefix, regex = None, None
    if path.get("type") == "ReplacePrefixMatch":
        prefix = str(path.get("replacePrefixMatch", "")).rstrip("/") or "/"
    elif path.get("type") == "ReplaceFullPath":
        regex = ("/.*", str(path.get("replaceFullPath", "")))
    authority = str(rewrite["hostname"]) if rewrite.get("hostname") else None
    if prefix is None and regex is None and authority is None:
        return None
    return Rewrite(prefix=prefix, regex=regex, authority=authority)


def _mirror_percent(mirror: Mapping[str, Any]) -> float | None:
    fraction = mirror.get("fraction")
    if isinstance(fraction, Mapping):
        return 100 * float(fraction.get("numerator", 0)) / float(fraction.get("denominator", 100) or 100)
    percent = mirror.get("percent")
    return float(percent) if percent is not None else None


def _cors(cors: Mapping[str, Any]) -> Cors:
    """istiod's ``createCorsFilter``: ``*`` any valid origin, a trailing ``*`` a prefix, another ``*`` a regex;
    preflights no origin matches are answered by the proxy (IGNORE)."""
    origins = []
    for origin in cors.get("allowOrigins") or []:
        text = str(origin)
        if not text:
            continue
        if text == "*":
            origins.append(StringMatch(MatchKind.REGEX, r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s?#]+$"))
        elif "*" not in text:
            origins.append(StringMatch(MatchKind.EXACT, text))
        elif text.count("*") == 1 and text.endswith("*"):
            origins.append(StringMatch(MatchKind.PREFIX, text[:-1]))
        else:
            origins.append(StringMatch(MatchKind.REGEX, "^" + ".*".join(re.escape(p) for p in text.split("*")) + "$"))
    max_age = cors.get("maxAge")
    return Cors(
        allow_origins=tuple(origins),
        allow_methods=tuple(str(m) for m in cors.get("allowMethods") or ()),
        allow_headers=tuple(str(h) for h in cors.get("allowHeaders") or ()),
        expose_headers=tuple(str(h) for h in cors.get("exposeHeaders") or ()),
        max_age=float(max_age) if isinstance(max_age, int | float) and max_age > 0 else None,
        allow_credentials=True if cors.get("allowCredentials") else None,
        unmatched_preflights="IGNORE",
    )
