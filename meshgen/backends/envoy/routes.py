"""Neutral routes in Envoy's terms: one :class:`~meshgen.plan.routing.Route` -> Envoy ``Route`` objects.

This is what istiod does when it builds a sidecar's outbound route table, restricted to what a local mesh needs
and written down so the Envoy backend means exactly what Istio means:

- each match block becomes its own Envoy route (blocks are ORed); a route without any matches ``/``; blocks
  restricted to another ``port`` are dropped from that port's table, and blocks whose source labels or namespace
  the calling proxy does not have from that proxy's (:class:`RouteSource` ``caller``).
- a header condition without a value means present; an inverted one treats a missing header as empty, except an
  inverted presence, which Istio means as "absent" (Envoy 1.40 would match nothing with the literal translation,
  see DESIGN), so it becomes an inverted ``present_match``. A segment prefix (the Gateway API's ``PathPrefix``)
  is Envoy's ``path_separated_prefix``.
- a rewrite's prefix replaces the matched prefix (or the whole path of an exact match); the Gateway API's
  "replace the prefix with /" strips a segment prefix the way istiod does (a regex rewrite).
- no timeout means none (Istio sets ``0s``; Envoy's own default would be 15 s), and no retry policy means
  Istio's default (2 retries on connect failures, refused streams, and gRPC unavailable/cancelled; it names
  ``retriable-status-codes`` but lists no code, so an answered 503 is not retried — observed with istiod).
- fault and CORS become per-route filter config; the listener carries the matching filters.

A field the route's reader could not read (:attr:`Route.unread <meshgen.plan.routing.Route.unread>`) fails the
compile with the object and the field named: a route that would be silently half-translated could route
differently from Istio, which breaks DESIGN invariant 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshgen.backends.localmesh import Caller
from meshgen.documents import JsonObject
from meshgen.errors import InvalidInput, Problem
from meshgen.plan.routing import (
    Cors,
    Destination,
    Fault,
    HeaderEdits,
    HeaderMatch,
    Headers,
    Match,
    MatchKind,
    Path,
    Redirect,
    Retries,
    Route,
    StringMatch,
    Unread,
    duration,
)
from meshgen.plan.virtual_services import GRPC_STATUS

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
_FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
_CORS_TYPE = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
_PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
}
# Istio's retry policy for routes that set none (pilot/pkg/networking/core/route/retry).
ISTIO_DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
ISTIO_DEFAULT_ATTEMPTS = 2
_REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
                   308: "PERMANENT_REDIRECT"}
_PATHS = {MatchKind.EXACT: "path", MatchKind.PREFIX: "prefix", MatchKind.SEGMENT_PREFIX: "path_separated_prefix",
          MatchKind.REGEX: "safe_regex"}
FIX = "remove the field, or compile with --backend istio (the envoy backend does not translate it)"

ClusterOf = Callable[[Destination], str]
"""Names the Envoy cluster of a destination (host, subset, port), or raises ValueError saying why not."""


class Unsupported(ValueError):
    """A field this backend cannot translate; carries the field path (under the route, or the policy)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class RouteSource:
    """What a route is translated for: the listener port being built, how destinations name clusters, and whose
    proxy the routes are for."""

    port: int
    cluster_of: ClusterOf
    hash_of: Callable[[str], JsonObject | None] = lambda cluster: None  # a cluster's consistent-hash policy
    caller: Caller | None = None  # whose proxy the routes are for (None: a caller no source match selects)


def problem(route: Route, path: Path, message: str) -> Problem:
    """A route field the backend cannot translate, named in its object's terms."""
    return Problem(route.origin.at(*path), f"{route.origin.subject}: {route.origin.dotted(path)}: {message}", FIX)


def _reason(unread: Unread) -> str:
    if unread.reason is not None:
        return unread.reason
    if unread.path[:1] == ("match",):
        return "not supported by the envoy backend (the local mesh has no source workloads or gateways)"
    return "not supported by the envoy backend"


def format_seconds(total: float) -> str:
    """Seconds as an Envoy JSON duration (``"90s"``)."""
    return f"{total:.9f}".rstrip("0").rstrip(".") + "s"


def seconds(value: Any, path: Path) -> str:
    """An Istio (Go) duration such as ``1.5s``, ``500ms`` or ``1m30s`` as an Envoy JSON duration (``"90s"``)."""
    try:
        return format_seconds(duration(value))
    except ValueError as exc:
        raise Unsupported(path, str(exc)) from None


def fraction(percent: float) -> JsonObject:
    """A percentage as an Envoy FractionalPercent (Istio uses a denominator of a million)."""
    return {"numerator": round(percent * 10_000), "denominator": "MILLION"}


def translate(route: Route, source: RouteSource) -> list[JsonObject]:
    """The Envoy routes for one route, in order; raises :class:`InvalidInput` naming every field it cannot
    translate."""
    if route.unread:
        raise InvalidInput([problem(route, u.path, _reason(u)) for u in route.unread])
    caller = source.caller
    blocks = [m for m in route.blocks if (m.port is None or m.port == source.port)
              and m.applies_to(caller.namespace if caller else None, caller.labels if caller else None)]
    try:
        common = _common(route)
        action = _action(route, source)
    except Unsupported as exc:
        raise InvalidInput([problem(route, exc.path, str(exc))]) from None
    name = {"name": route.name} if route.name else {}
    for key, values in action.pop("destination_headers", {}).items():
        common[key] = [*common.get(key, []), *values]
    return [{**name, "match": _match(block), **_for_block(action, block), **common} for block in blocks]


def _for_block(action: JsonObject, block: Match) -> JsonObject:
    """The action for one match block: a Gateway API prefix rewrite to ``/`` strips that block's segment prefix
    (istiod: ``^<prefix>(/?)(.*)`` -> ``/\\2``)."""
    route = action.get("route")
    if (isinstance(route, dict) and route.get("prefix_rewrite") == "/" and block.path is not None
            and block.path.kind is MatchKind.SEGMENT_PREFIX):
        rewritten = {k: v for k, v in route.items() if k != "prefix_rewrite"}
        rewritten["regex_rewrite"] = {"pattern": {"regex": f"^{re.escape(block.path.value)}(/?)(.*)"},
                                      "substitution": "/\\2"}
        return {**action, "route": rewritten}
    return action


def _string_match(match: StringMatch) -> JsonObject:
    """A string match as an Envoy StringMatcher."""
    if match.kind is MatchKind.REGEX:
        return {"safe_regex": {"regex": match.value}}
    return {"prefix" if match.kind in (MatchKind.PREFIX, MatchKind.SEGMENT_PREFIX) else "exact": match.value}


def _header(header: HeaderMatch) -> JsonObject:
    if header.value is None:
        # present; inverted: absent, which Envoy expresses without treat-missing.
        return {"name": header.name, "present_match": True, **({"invert_match": True} if header.invert else {})}
    matcher: JsonObject = {"name": header.name, "string_match": _string_match(header.value)}
    if header.invert:
        matcher.update(invert_match=True, treat_missing_header_as_empty=True)
    return matcher


def _match(block: Match) -> JsonObject:
    out: JsonObject = {}
    if block.path is None:
        out["prefix"] = "/"
    else:
        key = _PATHS[block.path.kind]
        out[key] = {"regex": block.path.value} if block.path.kind is MatchKind.REGEX else block.path.value
    if block.ignore_case:
        out["case_sensitive"] = False
    headers = [_header(h) for h in block.headers]
    for value, pseudo in ((block.method, ":method"), (block.scheme, ":scheme"), (block.authority, ":authority")):
        if value is not None:
            headers.append(_header(HeaderMatch(pseudo, value)))
    if headers:
        out["headers"] = headers
    params = [{"name": q.name, "present_match": True} if q.value is None else
              {"name": q.name, "string_match": _string_match(q.value)} for q in block.query]
    if params:
        out["query_parameters"] = params
    return out


def _action(route: Route, source: RouteSource) -> JsonObject:
    if route.direct_response is not None:
        direct = route.direct_response
        out: JsonObject = {"status": direct.status}
        if direct.body is not None:
            out["body"] = {"inline_string": direct.body}
        elif direct.bytes is not None:
            out["body"] = {"inline_bytes": direct.bytes}
        return {"direct_response": out}
    if route.redirect is not None:
        return {"redirect": _redirect(route.redirect)}
    action = _destinations(route.destinations, source)
    headers = action.pop("destination_headers", {})
    action["timeout"] = format_seconds(route.timeout) if route.timeout is not None else "0s"
    retry = _retry_policy(route.retries)
    if retry is not None:
        action["retry_policy"] = retry
    rewrite = route.rewrite
    if rewrite is not None:
        if rewrite.prefix is not None:
            action["prefix_rewrite"] = rewrite.prefix
        if rewrite.regex is not None:
            action["regex_rewrite"] = {"pattern": {"regex": rewrite.regex[0]}, "substitution": rewrite.regex[1]}
        if rewrite.authority is not None:
            action["host_rewrite_literal"] = rewrite.authority
    if route.mirrors:
        action["request_mirror_policies"] = [_mirror(m.destination, m.percentage, source) for m in route.mirrors]
    return {"route": action, "destination_headers": headers}


def _cluster(dest: Destination, source: RouteSource) -> str:
    try:
        return source.cluster_of(dest)
    except ValueError as exc:
        raise Unsupported(dest.at, str(exc)) from None


def _destinations(destinations: tuple[Destination, ...], source: RouteSource) -> JsonObject:
    if not destinations:
        raise Unsupported(("route",), "a route needs a destination, a redirect or a directResponse")
    clusters: list[JsonObject] = []
    hashing: list[JsonObject] = []  # istiod: each destination whose DestinationRule hashes adds its hash policy
    for dest in destinations:
        name = _cluster(dest, source)
        weight = dest.weight if dest.weight is not None else (0 if len(destinations) > 1 else 100)
        headers = _header_operations(dest.headers)
        hash_policy = source.hash_of(name)
        if len(destinations) == 1:
            # istiod's processDestination: a lone destination's headers join the route's, after them.
            return {"cluster": name, "destination_headers": headers,
                    **({"hash_policy": [hash_policy]} if hash_policy else {})}
        if weight > 0:
            clusters.append({"name": name, "weight": weight, **headers})
            if hash_policy:
                hashing.append(hash_policy)
    if not clusters:
        raise Unsupported(("route",), "every destination has weight 0")
    return {"weighted_clusters": {"clusters": clusters}, **({"hash_policy": hashing} if hashing else {})}


def _retry_policy(retries: Retries | None) -> JsonObject | None:
    if retries is None:
        return {"retry_on": ISTIO_DEFAULT_RETRY_ON, "num_retries": ISTIO_DEFAULT_ATTEMPTS,
                "retry_host_predicate": [_PREVIOUS_HOSTS],
                "host_selection_retry_max_attempts": "5"}
    attempts = retries.attempts if retries.attempts is not None else ISTIO_DEFAULT_ATTEMPTS
    if attempts == 0:
        return None
    written = retries.retry_on if retries.retry_on is not None else ISTIO_DEFAULT_RETRY_ON
    conditions = [c.strip() for c in written.split(",") if c.strip()]
    codes = sorted({int(c) for c in conditions if c.isdigit()})
    named = [c for c in conditions if not c.isdigit()]
    if codes and "retriable-status-codes" not in named:
        named.append("retriable-status-codes")
    policy: JsonObject = {"retry_on": ",".join(named), "num_retries": attempts,
                          "retry_host_predicate": [_PREVIOUS_HOSTS], "host_selection_retry_max_attempts": "5"}
    if codes:
        policy["retriable_status_codes"] = codes
    if retries.per_try_timeout is not None:
        policy["per_try_timeout"] = format_seconds(retries.per_try_timeout)
    return policy


def _redirect(redirect: Redirect) -> JsonObject:
    out: JsonObject = {}
    if redirect.path is not None:
        out["path_redirect"] = redirect.path
    if redirect.authority is not None:
        out["host_redirect"] = redirect.authority
    if redirect.port is not None:
        out["port_redirect"] = redirect.port
    if redirect.scheme is not None:
        out["scheme_redirect"] = redirect.scheme
    if redirect.code != 301:
        out["response_code"] = _REDIRECT_CODES[redirect.code]
    return out


def _mirror(dest: Destination, percentage: float | None, source: RouteSource) -> JsonObject:
    out: JsonObject = {"cluster": _cluster(dest, source)}
    if percentage is not None:
        out["runtime_fraction"] = {"default_value": fraction(percentage)}
    return out


def _header_operations(headers: Headers) -> JsonObject:
    """Header edits (request/response set, add, remove) as Envoy header operations (istiod's
    ``TranslateHeadersOperations``)."""
    out: JsonObject = {}
    for direction, edits in (("request", headers.request), ("response", headers.response)):
        out.update(_edits(direction, edits))
    return out


def _edits(direction: str, edits: HeaderEdits) -> JsonObject:
    out: JsonObject = {}
    to_add = [{"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in edits.set]
    to_add += [{"header": {"key": k, "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"} for k, v in edits.add]
    if to_add:
        out[f"{direction}_headers_to_add"] = to_add
    if edits.remove:
        out[f"{direction}_headers_to_remove"] = list(edits.remove)
    return out


def _common(route: Route) -> JsonObject:
    """Header manipulation and per-route filter config (fault, CORS)."""
    out = _header_operations(route.headers)
    filters: JsonObject = {}
    if route.fault is not None:
        filters[FAULT_FILTER] = _fault(route.fault)
    if route.cors is not None:
        filters[CORS_FILTER] = _cors(route.cors)
    if filters:
        out["typed_per_filter_config"] = filters
    return out


def _fault(fault: Fault) -> JsonObject:
    out: JsonObject = {"@type": _FAULT_TYPE}
    if fault.delay is not None:
        out["delay"] = {"fixed_delay": format_seconds(fault.delay), "percentage": fraction(fault.delay_percentage)}
    if fault.aborts:
        status: JsonObject = ({"grpc_status": GRPC_STATUS.index(fault.grpc_status)} if fault.grpc_status is not None
                              else {"http_status": fault.http_status})
        out["abort"] = {**status, "percentage": fraction(fault.abort_percentage)}
    return out


def _cors(cors: Cors) -> JsonObject:
    out: JsonObject = {"@type": _CORS_TYPE}
    if cors.unmatched_preflights is not None:
        # istiod: IGNORE answers a preflight no origin matches itself; FORWARD (the default) passes it upstream.
        out["forward_not_matching_preflights"] = cors.unmatched_preflights != "IGNORE"
    if cors.allow_origins:
        out["allow_origin_string_match"] = [_string_match(o) for o in cors.allow_origins]
    for values, key in ((cors.allow_methods, "allow_methods"), (cors.allow_headers, "allow_headers"),
                        (cors.expose_headers, "expose_headers")):
        if values:
            out[key] = ",".join(values)
    if cors.max_age is not None:
        out["max_age"] = format_seconds(cors.max_age).removesuffix("s").split(".")[0]
    if cors.allow_credentials is not None:
        out["allow_credentials"] = cors.allow_credentials
    return out
