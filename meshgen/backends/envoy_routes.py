"""Istio HTTP routes in Envoy's terms: one VirtualService ``spec.http`` entry -> Envoy ``Route`` objects.

This is what istiod does when it builds a sidecar's outbound route table, restricted to what a local mesh needs
and written down so the Envoy backend means exactly what Istio means:

- each ``match`` block becomes its own Envoy route (Istio ORs the blocks); a route without ``match`` matches ``/``;
  blocks restricted to another ``port`` are dropped from that port's table, and blocks whose ``sourceLabels`` or
  ``sourceNamespace`` the calling proxy does not have from that proxy's (:class:`RouteSource` ``caller``).
- ``headers`` ``{}`` means present; ``withoutHeaders`` inverts and treats a missing header as empty, except
  ``withoutHeaders: {h: {}}``, which Istio means as "h is absent" (Envoy 1.40 would match nothing with the literal
  translation, see DESIGN), so it becomes an inverted ``present_match``.
- ``rewrite.uri`` is a prefix rewrite (the matched prefix, or the whole path of an exact match, is replaced).
- no ``timeout`` means no timeout (Istio sets ``0s``; Envoy's own default would be 15 s), and no ``retries`` means
  Istio's default policy (2 retries on connect failures, refused streams, and gRPC unavailable/cancelled; it
  names ``retriable-status-codes`` but lists no code, so an answered 503 is not retried — observed with istiod).
- fault and CORS become per-route filter config; the listener carries the matching filters.

Anything else in a route fails the compile with the VirtualService and the field named: a route that would be
silently half-translated could route differently from Istio, which breaks DESIGN invariant 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshgen.backends.localmesh import Caller
from meshgen.baseline.model import Resource
from meshgen.documents import JsonObject
from meshgen.errors import InvalidInput, Problem

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
# gRPC status names (what fault.abort.grpcStatus takes) and their codes: istiod's SupportedGRPCStatus.
GRPC_STATUS = {name: code for code, name in enumerate((
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"))}
_REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
                   308: "PERMANENT_REDIRECT"}
_ROUTE_FIELDS = {"name", "match", "route", "redirect", "directResponse", "rewrite", "timeout", "retries", "headers",
                 "fault", "corsPolicy", "mirror", "mirrors", "mirrorPercentage"}  # delegate: expanded before
_MATCH_FIELDS = {"name", "uri", "headers", "withoutHeaders", "queryParams", "method", "scheme", "authority", "port",
                 "ignoreUriCase", "sourceLabels", "sourceNamespace"}  # the last two: evaluated per caller
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

ClusterOf = Callable[[Mapping[str, Any]], str]
"""Names the Envoy cluster of an Istio ``destination`` (host, subset, port), or raises ValueError saying why not."""


class Unsupported(ValueError):
    """A field of a route this backend cannot translate; carries the field path under the route."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class RouteSource:
    """Where an Istio route comes from: its VirtualService (for errors) and the listener port being built."""

    virtual_service: Resource | None
    port: int
    cluster_of: ClusterOf
    hash_of: Callable[[str], JsonObject | None] = lambda cluster: None  # a cluster's consistent-hash policy
    caller: Caller | None = None  # whose proxy the routes are for (None: a caller no source match selects)

    def problem(self, index: int, path: tuple[str | int, ...], message: str) -> Problem:
        vs = self.virtual_service
        where = vs.at("spec", "http", index, *path) if vs is not None else None
        subject = f"VirtualService {vs.namespace}/{vs.name}" if vs is not None else "route"
        dotted = ".".join(str(p) for p in ("http", index, *path))
        return Problem(where, f"{subject}: {dotted}: {message}",
                       "remove the field, or compile with --backend istio (the envoy backend does not translate it)")


def seconds(value: Any, path: tuple[str | int, ...]) -> str:
    """An Istio (Go) duration such as ``1.5s``, ``500ms`` or ``1m30s`` as an Envoy JSON duration (``"90s"``)."""
    text = str(value)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise Unsupported(path, f"{text!r} is not a duration (like 1.5s, 500ms, 1m30s)")
    total = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return f"{total:.9f}".rstrip("0").rstrip(".") + "s"


def fraction(percentage: Any, path: tuple[str | int, ...]) -> JsonObject:
    """Istio ``{value: <percent>}`` as an Envoy FractionalPercent (Istio uses a denominator of a million)."""
    if not isinstance(percentage, Mapping) or not isinstance(percentage.get("value", 0), int | float):
        raise Unsupported(path, "expected {value: <percent>}")
    return {"numerator": round(float(percentage.get("value", 0)) * 10_000), "denominator": "MILLION"}


def translate(route: Mapping[str, Any], index: int, source: RouteSource) -> list[JsonObject]:
    """The Envoy routes for one Istio HTTP route, in order; raises :class:`InvalidInput` naming every bad field."""
    unknown = sorted(set(route) - _ROUTE_FIELDS)
    if unknown:
        raise InvalidInput([source.problem(index, (k,), "not supported by the envoy backend") for k in unknown])
    try:
        common = _common(route)
        action = _action(route, source)
        matches = [_match(m, j) for j, m in enumerate(route.get("match") or [{}])
                   if (m.get("port") is None or int(m["port"]) == source.port) and applies_to(m, source.caller)]
    except Unsupported as exc:
        raise InvalidInput([source.problem(index, exc.path, str(exc))]) from None
    name = {"name": route["name"]} if route.get("name") else {}
    for key, values in action.pop("destination_headers", {}).items():
        common[key] = [*common.get(key, []), *values]
    return [{**name, "match": match, **action, **common} for match in matches]


def applies_to(block: Mapping[str, Any], caller: Caller | None) -> bool:
    """Whether a match block applies to the caller's proxy (istiod's ``sourceMatchHTTP``, evaluated when it builds
    that proxy's routes): its ``sourceLabels`` are among the caller's labels, its ``sourceNamespace`` is the
    caller's namespace."""
    labels = block.get("sourceLabels") or {}
    namespace = block.get("sourceNamespace")
    if caller is None:
        return not labels and not namespace
    return all(caller.labels.get(k) == v for k, v in labels.items()) and namespace in (None, "", caller.namespace)


def _string_match(value: Any, path: tuple[str | int, ...]) -> JsonObject:
    """An Istio StringMatch as an Envoy StringMatcher."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise Unsupported(path, "expected exactly one of exact, prefix, regex")
    (kind, text), = value.items()
    if kind == "regex":
        return {"safe_regex": {"regex": str(text)}}
    if kind in ("exact", "prefix"):
        return {kind: str(text)}
    raise Unsupported(path, f"string match {kind!r} is not one of exact, prefix, regex")


def _header(name: str, value: Any, without: bool, path: tuple[str | int, ...]) -> JsonObject:
    if isinstance(value, Mapping) and not value:
        # {} means "present"; withoutHeaders {} means "absent", which Envoy expresses without treat-missing.
        return {"name": name, "present_match": True, **({"invert_match": True} if without else {})}
    matcher: JsonObject = {"name": name, "string_match": _string_match(value, path)}
    if without:
        matcher.update(invert_match=True, treat_missing_header_as_empty=True)
    return matcher


def _match(block: Mapping[str, Any], j: int) -> JsonObject:
    path: tuple[str | int, ...] = ("match", j)
    unknown = sorted(set(block) - _MATCH_FIELDS)
    if unknown:
        raise Unsupported((*path, unknown[0]), "not supported by the envoy backend (the local mesh has no "
                                               "source workloads or gateways)")
    out: JsonObject = {}
    uri = block.get("uri")
    if uri is None:
        out["prefix"] = "/"
    else:
        matcher = _string_match(uri, (*path, "uri"))
        kind = next(iter(matcher))
        out[{"exact": "path", "prefix": "prefix", "safe_regex": "safe_regex"}[kind]] = matcher[kind]
    if block.get("ignoreUriCase"):
        out["case_sensitive"] = False
    headers = [_header(n, v, False, (*path, "headers", n)) for n, v in sorted((block.get("headers") or {}).items())]
    headers += [_header(n, v, True, (*path, "withoutHeaders", n))
                for n, v in sorted((block.get("withoutHeaders") or {}).items())]
    for field, pseudo in (("method", ":method"), ("scheme", ":scheme"), ("authority", ":authority")):
        if field in block:
            headers.append(_header(pseudo, block[field], False, (*path, field)))
    if headers:
        out["headers"] = headers
    params = []
    for name, value in sorted((block.get("queryParams") or {}).items()):
        if isinstance(value, Mapping) and not value:
            params.append({"name": name, "present_match": True})
        else:
            params.append({"name": name, "string_match": _string_match(value, (*path, "queryParams", name))})
    if params:
        out["query_parameters"] = params
    return out


def _action(route: Mapping[str, Any], source: RouteSource) -> JsonObject:
    if "directResponse" in route:
        direct = route["directResponse"]
        body = direct.get("body") or {}
        out: JsonObject = {"status": int(direct["status"])}
        if "string" in body:
            out["body"] = {"inline_string": str(body["string"])}
        elif "bytes" in body:
            out["body"] = {"inline_bytes": str(body["bytes"])}
        return {"direct_response": out}
    if "redirect" in route:
        return {"redirect": _redirect(route["redirect"])}
    action = _destinations(route.get("route") or [], source)
    headers = action.pop("destination_headers", {})
    action["timeout"] = seconds(route["timeout"], ("timeout",)) if "timeout" in route else "0s"
    retry = _retry_policy(route.get("retries"))
    if retry is not None:
        action["retry_policy"] = retry
    rewrite = route.get("rewrite") or {}
    for key in sorted(set(rewrite) - {"uri", "authority", "uriRegexRewrite"}):
        raise Unsupported(("rewrite", key), "not supported by the envoy backend")
    if "uri" in rewrite:
        action["prefix_rewrite"] = str(rewrite["uri"])
    if "uriRegexRewrite" in rewrite:
        regex = rewrite["uriRegexRewrite"]
        action["regex_rewrite"] = {"pattern": {"regex": str(regex["match"])}, "substitution": str(regex["rewrite"])}
    if "authority" in rewrite:
        action["host_rewrite_literal"] = str(rewrite["authority"])
    mirrors = [*route.get("mirrors", []), *([{"destination": route["mirror"],
                                              "percentage": route.get("mirrorPercentage")}]
                                            if "mirror" in route else [])]
    if mirrors:
        action["request_mirror_policies"] = [_mirror(m, i, source) for i, m in enumerate(mirrors)]
    return {"route": action, "destination_headers": headers}


def _destinations(destinations: list[Any], source: RouteSource) -> JsonObject:
    if not destinations:
        raise Unsupported(("route",), "a route needs a destination, a redirect or a directResponse")
    clusters: list[JsonObject] = []
    hashing: list[JsonObject] = []  # istiod: each destination whose DestinationRule hashes adds its hash policy
    for i, dest in enumerate(destinations):
        try:
            name = source.cluster_of(dest["destination"])
        except ValueError as exc:
            raise Unsupported(("route", i, "destination"), str(exc)) from None
        weight = int(dest.get("weight", 0 if len(destinations) > 1 else 100))
        headers = _header_operations(dest.get("headers") or {}, ("route", i, "headers"))
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


def _retry_policy(retries: Mapping[str, Any] | None) -> JsonObject | None:
    if retries is None:
        return {"retry_on": ISTIO_DEFAULT_RETRY_ON, "num_retries": ISTIO_DEFAULT_ATTEMPTS,
                "retry_host_predicate": [_PREVIOUS_HOSTS],
                "host_selection_retry_max_attempts": "5"}
    for key in sorted(set(retries) - {"attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities"}):
        raise Unsupported(("retries", key), "not supported by the envoy backend")
    attempts = int(retries.get("attempts", ISTIO_DEFAULT_ATTEMPTS))
    if attempts == 0:
        return None
    conditions = [c.strip() for c in str(retries.get("retryOn", ISTIO_DEFAULT_RETRY_ON)).split(",") if c.strip()]
    codes = sorted({int(c) for c in conditions if c.isdigit()})
    named = [c for c in conditions if not c.isdigit()]
    if codes and "retriable-status-codes" not in named:
        named.append("retriable-status-codes")
    policy: JsonObject = {"retry_on": ",".join(named), "num_retries": attempts,
                          "retry_host_predicate": [_PREVIOUS_HOSTS], "host_selection_retry_max_attempts": "5"}
    if codes:
        policy["retriable_status_codes"] = codes
    if "perTryTimeout" in retries:
        policy["per_try_timeout"] = seconds(retries["perTryTimeout"], ("retries", "perTryTimeout"))
    return policy


def _redirect(redirect: Mapping[str, Any]) -> JsonObject:
    out: JsonObject = {}
    for key in sorted(set(redirect) - {"uri", "authority", "port", "scheme", "redirectCode"}):
        raise Unsupported(("redirect", key), "not supported by the envoy backend")
    if "uri" in redirect:
        out["path_redirect"] = str(redirect["uri"])
    if "authority" in redirect:
        out["host_redirect"] = str(redirect["authority"])
    if "port" in redirect:
        out["port_redirect"] = int(redirect["port"])
    if "scheme" in redirect:
        out["scheme_redirect"] = str(redirect["scheme"])
    code = int(redirect.get("redirectCode", 301))
    if code not in _REDIRECT_CODES:
        raise Unsupported(("redirect", "redirectCode"), f"{code} is not one of {sorted(_REDIRECT_CODES)}")
    if code != 301:
        out["response_code"] = _REDIRECT_CODES[code]
    return out


def _mirror(mirror: Mapping[str, Any], i: int, source: RouteSource) -> JsonObject:
    try:
        out: JsonObject = {"cluster": source.cluster_of(mirror["destination"])}
    except ValueError as exc:
        raise Unsupported(("mirrors", i, "destination"), str(exc)) from None
    if mirror.get("percentage") is not None:
        out["runtime_fraction"] = {"default_value": fraction(mirror["percentage"], ("mirrors", i, "percentage"))}
    return out


def _header_operations(headers: Mapping[str, Any], path: tuple[str | int, ...]) -> JsonObject:
    """Istio ``headers`` (request/response set, add, remove) as Envoy header operations (istiod's
    ``TranslateHeadersOperations``)."""
    out: JsonObject = {}
    for direction in ("request", "response"):
        ops = headers.get(direction) or {}
        for key in sorted(set(ops) - {"set", "add", "remove"}):
            raise Unsupported((*path, direction, key), "not supported by the envoy backend")
        to_add = [{"header": {"key": k, "value": str(v)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                  for k, v in sorted((ops.get("set") or {}).items())]
        to_add += [{"header": {"key": k, "value": str(v)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
                   for k, v in sorted((ops.get("add") or {}).items())]
        if to_add:
            out[f"{direction}_headers_to_add"] = to_add
        if ops.get("remove"):
            out[f"{direction}_headers_to_remove"] = [str(h) for h in ops["remove"]]
    return out


def _common(route: Mapping[str, Any]) -> JsonObject:
    """Header manipulation and per-route filter config (fault, CORS)."""
    out = _header_operations(route.get("headers") or {}, ("headers",))
    filters: JsonObject = {}
    if "fault" in route:
        filters[FAULT_FILTER] = _fault(route["fault"])
    if "corsPolicy" in route:
        filters[CORS_FILTER] = _cors(route["corsPolicy"])
    if filters:
        out["typed_per_filter_config"] = filters
    return out


def _fault(fault: Mapping[str, Any]) -> JsonObject:
    out: JsonObject = {"@type": _FAULT_TYPE}
    for key in sorted(set(fault) - {"delay", "abort"}):
        raise Unsupported(("fault", key), "not supported by the envoy backend")
    full = {"value": 100}
    if "delay" in fault:
        delay = fault["delay"]
        if "fixedDelay" not in delay or set(delay) - {"fixedDelay", "percentage"}:
            raise Unsupported(("fault", "delay"), "only fixedDelay with percentage is supported")
        out["delay"] = {"fixed_delay": seconds(delay["fixedDelay"], ("fault", "delay", "fixedDelay")),
                        "percentage": fraction(delay.get("percentage", full), ("fault", "delay", "percentage"))}
    if "abort" in fault:
        abort = fault["abort"]
        kinds = [k for k in ("httpStatus", "grpcStatus") if k in abort]
        if len(kinds) != 1 or set(abort) - {"httpStatus", "grpcStatus", "percentage"}:
            raise Unsupported(("fault", "abort"), "expected httpStatus or grpcStatus, with percentage")
        if kinds == ["grpcStatus"]:
            code = GRPC_STATUS.get(str(abort["grpcStatus"]))
            if code is None:
                raise Unsupported(("fault", "abort", "grpcStatus"), f"{abort['grpcStatus']!r} is not one of "
                                                                    f"{', '.join(GRPC_STATUS)}")
            status: JsonObject = {"grpc_status": code}
        else:
            status = {"http_status": int(abort["httpStatus"])}
        out["abort"] = {**status,
                        "percentage": fraction(abort.get("percentage", full), ("fault", "abort", "percentage"))}
    return out


def _cors(cors: Mapping[str, Any]) -> JsonObject:
    out: JsonObject = {"@type": _CORS_TYPE}
    for key in sorted(set(cors) - {"allowOrigins", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge",
                                   "allowCredentials", "unmatchedPreflights"}):
        raise Unsupported(("corsPolicy", key), "not supported by the envoy backend")
    if "unmatchedPreflights" in cors:
        # istiod: IGNORE answers a preflight no origin matches itself; FORWARD (the default) passes it upstream.
        if cors["unmatchedPreflights"] not in ("FORWARD", "IGNORE", "UNSPECIFIED"):
            raise Unsupported(("corsPolicy", "unmatchedPreflights"), "expected FORWARD or IGNORE")
        out["forward_not_matching_preflights"] = cors["unmatchedPreflights"] != "IGNORE"
    origins = cors.get("allowOrigins") or []
    if origins:
        out["allow_origin_string_match"] = [_string_match(o, ("corsPolicy", "allowOrigins", i))
                                            for i, o in enumerate(origins)]
    for field, key in (("allowMethods", "allow_methods"), ("allowHeaders", "allow_headers"),
                       ("exposeHeaders", "expose_headers")):
        if cors.get(field):
            out[key] = ",".join(str(v) for v in cors[field])
    if "maxAge" in cors:
        out["max_age"] = seconds(cors["maxAge"], ("corsPolicy", "maxAge")).removesuffix("s").split(".")[0]
    if "allowCredentials" in cors:
        out["allow_credentials"] = bool(cors["allowCredentials"])
    return out
