"""DestinationRule traffic policies in Envoy's terms: one cluster's fields, per port, as istiod builds them.

**Which policy applies** is the planner's (:func:`meshgen.plan.traffic_policy.merged`, istiod's
``MergeSubsetTrafficPolicy``); this module translates it.

**Translated** (they change which endpoint answers or how it is called): ``loadBalancer.simple``,
``loadBalancer.consistentHash`` (ring hash or Maglev on the cluster, and a hash policy on each route to it: header,
cookie, source IP or query parameter), circuit breakers (``connectionPool`` limits), ``connectTimeout``,
``tcpKeepalive``, ``http.idleTimeout``, ``http.maxRequestsPerConnection``, and ``outlierDetection``.

**Accepted without translation** (they shape transport, and one local mesh on loopback has none of it): ``tls``
(any mode: the local mesh runs without certificates, as the istiod test environment does with auto mTLS off),
``http.h2UpgradePolicy`` and ``http.useClientProtocol`` (the echo workloads answer the same over either protocol),
``loadBalancer.localityLbSetting`` (one locality), ``loadBalancer.warmupDurationSecs``/``warmup`` (no new endpoint
is ever slow). Each is reported once per field and DestinationRule (:attr:`Translated.accepted`), not per cluster.

Anything else fails the compile naming the DestinationRule and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshgen.backends.envoy.routes import Unsupported, seconds
from meshgen.documents import JsonObject
from meshgen.plan.model import ServicePort

_UNLIMITED = 4294967295  # Istio's default circuit-breaker thresholds: effectively none
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_LB = {"ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST",
       "RANDOM": "RANDOM"}
_TRANSPORT = {
    ("tls",): "the local mesh runs without certificates, so connections stay plaintext",
    ("connectionPool", "http", "h2UpgradePolicy"): "workloads answer the same over HTTP/1.1 and HTTP/2",
    ("connectionPool", "http", "useClientProtocol"): "workloads answer the same over HTTP/1.1 and HTTP/2",
    ("loadBalancer", "localityLbSetting"): "the local mesh has one locality",
    ("loadBalancer", "warmupDurationSecs"): "no endpoint of the local mesh is ever warming up",
    ("loadBalancer", "warmup"): "no endpoint of the local mesh is ever warming up",
}


@dataclass(frozen=True)
class Translated:
    """A cluster's fields for one policy, the hash policy routes to it carry (consistentHash), and the fields
    accepted without translation (paths under ``trafficPolicy``)."""

    fields: JsonObject
    hash_policy: JsonObject | None = None
    accepted: tuple[tuple[str, ...], ...] = field(default=())


def transport_note(path: tuple[str, ...]) -> str:
    """Why an accepted field changes nothing in the local mesh."""
    return _TRANSPORT[path]


def translate(policy: Mapping[str, Any], port: ServicePort) -> Translated:
    """Cluster fields for an Istio trafficPolicy (Istio's defaults where it says nothing); raises
    :class:`Unsupported` naming a field it cannot translate."""
    accepted: list[tuple[str, ...]] = []

    def known(where: Mapping[str, Any], path: tuple[str, ...], fields: set[str]) -> None:
        for key in sorted(where):
            if (*path, key) in _TRANSPORT:
                accepted.append((*path, key))
            elif key not in fields:
                raise Unsupported((*path, key), "not supported by the envoy backend")

    known(policy, (), {"loadBalancer", "connectionPool", "outlierDetection"})
    out: JsonObject = {"connect_timeout": "10s", "lb_policy": "LEAST_REQUEST"}
    balancer = policy.get("loadBalancer") or {}
    known(balancer, ("loadBalancer",), {"simple", "consistentHash"})
    if "simple" in balancer:
        if balancer["simple"] not in _LB:
            raise Unsupported(("loadBalancer", "simple"), f"{balancer['simple']!r} is not one of {sorted(_LB)}")
        out["lb_policy"] = _LB[balancer["simple"]]
    hash_policy = None
    if "consistentHash" in balancer:
        hash_policy = _consistent_hash(balancer["consistentHash"], out)
    pool = policy.get("connectionPool") or {}
    tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
    known(pool, ("connectionPool",), {"tcp", "http"})
    known(tcp, ("connectionPool", "tcp"), {"maxConnections", "connectTimeout", "tcpKeepalive"})
    known(http, ("connectionPool", "http"), {"http1MaxPendingRequests", "http2MaxRequests", "maxRetries",
                                             "maxRequestsPerConnection", "idleTimeout"})
    if "connectTimeout" in tcp:
        out["connect_timeout"] = seconds(tcp["connectTimeout"], ("connectionPool", "tcp", "connectTimeout"))
    if "tcpKeepalive" in tcp:
        out["upstream_connection_options"] = {"tcp_keepalive": _keepalive(tcp["tcpKeepalive"])}
    thresholds: JsonObject = {"max_connections": _UNLIMITED, "max_pending_requests": _UNLIMITED,
                              "max_requests": _UNLIMITED, "max_retries": _UNLIMITED, "track_remaining": True}
    for source, name, target in ((tcp, "maxConnections", "max_connections"),
                                 (http, "http1MaxPendingRequests", "max_pending_requests"),
                                 (http, "http2MaxRequests", "max_requests"), (http, "maxRetries", "max_retries")):
        if name in source:
            thresholds[target] = int(source[name])
    out["circuit_breakers"] = {"thresholds": [thresholds]}
    common: JsonObject = {}
    if "idleTimeout" in http:
        common["idle_timeout"] = seconds(http["idleTimeout"], ("connectionPool", "http", "idleTimeout"))
    if int(http.get("maxRequestsPerConnection") or 0) > 0:
        common["max_requests_per_connection"] = int(http["maxRequestsPerConnection"])
    protocol = port.mesh_protocol
    if protocol.routes_requests and (common or protocol.is_http2):
        explicit: JsonObject = {"http2_protocol_options": {}} if protocol.is_http2 else {"http_protocol_options": {}}
        options: JsonObject = {"@type": f"type.googleapis.com/{_HTTP_OPTIONS}", "explicit_http_config": explicit}
        if common:
            options["common_http_protocol_options"] = common
        out["typed_extension_protocol_options"] = {_HTTP_OPTIONS: options}
    outlier = policy.get("outlierDetection")
    if outlier:
        out["outlier_detection"] = _outlier_detection(outlier)
    return Translated(out, hash_policy, tuple(accepted))


def _consistent_hash(config: Mapping[str, Any], out: JsonObject) -> JsonObject | None:
    """istiod's consistentHash: the cluster's balancer (ring hash, or Maglev), and the routes' hash policy."""
    path: tuple[str, ...] = ("loadBalancer", "consistentHash")
    kinds = {"httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"}
    for key in sorted(set(config) - kinds - {"ringHash", "maglev", "minimumRingSize"}):
        raise Unsupported((*path, key), "not supported by the envoy backend")
    if "maglev" in config:
        out["lb_policy"] = "MAGLEV"
        size = (config.get("maglev") or {}).get("tableSize")
        if size:
            out["maglev_lb_config"] = {"table_size": int(size)}
    else:
        out["lb_policy"] = "RING_HASH"
        size = (config.get("ringHash") or {}).get("minimumRingSize") or config.get("minimumRingSize")
        if size:
            out["ring_hash_lb_config"] = {"minimum_ring_size": int(size)}
    if "httpHeaderName" in config:
        return {"header": {"header_name": str(config["httpHeaderName"])}}
    if "httpCookie" in config:
        cookie = config["httpCookie"] or {}
        found: JsonObject = {"name": str(cookie.get("name", ""))}
        if cookie.get("path"):
            found["path"] = str(cookie["path"])
        if cookie.get("ttl"):
            found["ttl"] = seconds(cookie["ttl"], (*path, "httpCookie", "ttl"))
        return {"cookie": found}
    if config.get("useSourceIp"):
        return {"connection_properties": {"source_ip": True}}
    if "httpQueryParameterName" in config:
        return {"query_parameter": {"name": str(config["httpQueryParameterName"])}}
    return None


def _keepalive(keepalive: Mapping[str, Any]) -> JsonObject:
    path = ("connectionPool", "tcp", "tcpKeepalive")
    out: JsonObject = {}
    for name, target in (("probes", "keepalive_probes"), ("time", "keepalive_time"),
                         ("interval", "keepalive_interval")):
        if name not in keepalive:
            continue
        if name == "probes":
            out[target] = int(keepalive[name])
        else:  # Envoy takes whole seconds here
            out[target] = max(1, round(float(seconds(keepalive[name], (*path, name)).removesuffix("s"))))
    for key in sorted(set(keepalive) - {"probes", "time", "interval"}):
        raise Unsupported((*path, key), "not supported by the envoy backend")
    return out


def _outlier_detection(outlier: Mapping[str, Any]) -> JsonObject:
    known = {"consecutive5xxErrors", "consecutiveGatewayErrors", "interval", "baseEjectionTime", "maxEjectionPercent"}
    for key in sorted(set(outlier) - known):
        raise Unsupported(("outlierDetection", key), "not supported by the envoy backend")
    # Istio enforces only the detectors the rule names; Envoy's defaults would enforce consecutive 5xx at 5.
    out: JsonObject = {"enforcing_consecutive_5xx": 0, "enforcing_success_rate": 0,
                       "enforcing_consecutive_gateway_failure": 0}
    if "consecutive5xxErrors" in outlier:
        out.update(consecutive_5xx=int(outlier["consecutive5xxErrors"]), enforcing_consecutive_5xx=100)
    if "consecutiveGatewayErrors" in outlier:
        out.update(consecutive_gateway_failure=int(outlier["consecutiveGatewayErrors"]),
                   enforcing_consecutive_gateway_failure=100)
    for name, target in (("interval", "interval"), ("baseEjectionTime", "base_ejection_time")):
        if name in outlier:
            out[target] = seconds(outlier[name], ("outlierDetection", name))
    if "maxEjectionPercent" in outlier:
        out["max_ejection_percent"] = int(outlier["maxEjectionPercent"])
    return out
