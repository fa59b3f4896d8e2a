"""Envoy clusters for a local mesh: one per Service port, one per DestinationRule subset, one per fork port.

Named the way istiod names them (``outbound|<port>|<subset>|<host>``), so a reader of an Istio config dump finds
the same names here. A cluster's endpoints are the workloads its Service selects, with the subset's labels added:
selection uses the workloads' real pod labels, so a fork (whose labels no baseline Service selects, DESIGN
invariant 2) can only ever be an endpoint of its own fork Service's clusters.

A port whose protocol is gRPC or HTTP/2 (:mod:`meshgen.baseline.protocols`, as istiod reads it) is called upstream
over HTTP/2, as istiod configures it; other ports over HTTP/1.1 (or as raw TCP). A UDP port has no cluster.

Traffic policy follows Istio: its defaults (least-request balancing, circuit breakers wide open, 10 s connect
timeout) unless the host's DestinationRule says otherwise; a subset's policy overrides the host's field by field;
a fork host gets the policy of the host it forks. Policy fields this backend cannot express fail the compile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshgen.backends import istio
from meshgen.backends.envoy_routes import Unsupported, seconds
from meshgen.backends.localmesh import Addresses
from meshgen.baseline.model import (
    DESTINATION_RULE,
    SERVICE,
    Resource,
    resolve_host,
    selects,
    service_fqdn,
    service_selector,
)
from meshgen.baseline.protocols import Protocol
from meshgen.documents import JsonObject
from meshgen.errors import Problem
from meshgen.plan.model import Host, Plan, ServicePort

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
_UNLIMITED = 4294967295  # Istio's default circuit-breaker thresholds: effectively none
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP2 = {"typed_extension_protocol_options": {_HTTP_OPTIONS: {
    "@type": f"type.googleapis.com/{_HTTP_OPTIONS}", "explicit_http_config": {"http2_protocol_options": {}}}}}
_LB = {"ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST",
       "RANDOM": "RANDOM"}


def cluster_name(fqdn: str, port: int, subset: str | None = None) -> str:
    """istiod's name for the cluster of a host's port (and subset)."""
    return f"outbound|{port}|{subset or ''}|{fqdn}"


class Destinations:
    """What a route may send to: every host, its ports and its subsets; builds the clusters for them."""

    def __init__(self, plan: Plan, addresses: Addresses) -> None:
        self.plan = plan
        self.addresses = addresses
        domain = plan.policy.spec.cluster_domain
        self.selectors: dict[str, dict[str, str]] = {}
        for service in plan.baseline.of_kind(SERVICE):
            self.selectors[service_fqdn(service.namespace, service.name, domain)] = service_selector(service)
        for fork_service in plan.fork_services():
            self.selectors[fork_service.fork.fqdn] = dict(fork_service.body["spec"]["selector"])
        self.forked_from = {s.fork.fqdn: s.baseline for s in plan.fork_services()}
        self.subsets: dict[str, dict[str, tuple[dict[str, str], Mapping[str, Any], Resource]]] = {}
        rules = sorted(plan.baseline.of_kind(DESTINATION_RULE), key=lambda r: r.key)
        for rule in rules:
            if "workloadSelector" in rule.spec:
                continue  # scoped to some clients, not the host's policy
            fqdn = resolve_host(str(rule.spec.get("host", "")), rule.namespace, domain)
            host = addresses.hosts.get(fqdn)
            found = self.subsets.setdefault(fqdn, {})
            for subset in rule.spec.get("subsets") or []:
                # DestinationRules for one host merge; the first definition of a subset wins.
                if host is not None and subset["name"] not in found:
                    found[subset["name"]] = (dict(subset.get("labels") or {}), subset.get("trafficPolicy") or {},
                                             rule)

    def cluster_of(self, destination: Mapping[str, Any], namespace: str, listener_port: int) -> str:
        """The cluster for an Istio destination in a VirtualService of ``namespace``, on a listener's port
        (istiod's rule: the destination's port, else the listener's if the host has it, else its only port)."""
        fqdn = resolve_host(str(destination.get("host", "")), namespace, self.plan.policy.spec.cluster_domain)
        host = self.addresses.hosts.get(fqdn)
        if host is None:
            raise ValueError(f"host {fqdn} is not a Service of the baseline (the local mesh has no external hosts)")
        ports = [p.port for p in host.ports]
        wanted = (destination.get("port") or {}).get("number")
        if wanted is not None:
            if int(wanted) not in ports:
                raise ValueError(f"{fqdn} has no port {wanted} (ports: {', '.join(map(str, ports))})")
            port = int(wanted)
        elif listener_port in ports or len(ports) != 1:
            if listener_port not in ports:
                raise ValueError(f"{fqdn} has several ports and none is {listener_port}; set destination.port")
            port = listener_port
        else:
            port = ports[0]
        subset = destination.get("subset")
        if subset is not None and subset not in self.subsets.get(fqdn, {}):
            raise ValueError(f"no DestinationRule defines subset {subset!r} for {fqdn}")
        return cluster_name(fqdn, port, subset)

    def clusters(self) -> tuple[list[JsonObject], list[Problem]]:
        """Every cluster, sorted by name, and the problems found in traffic policies."""
        out: list[JsonObject] = []
        problems: list[Problem] = []
        for fqdn, host in self.addresses.hosts.items():
            policy_host = self.forked_from.get(fqdn, host)
            rule = istio.baseline_destination_rule(self.plan, policy_host.fqdn, policy_host.namespace)
            top: Mapping[str, Any] = rule.spec["trafficPolicy"] if rule is not None else {}
            variants: list[tuple[str | None, dict[str, str], Mapping[str, Any], Resource | None]] = [
                (None, {}, top, rule)]
            if fqdn not in self.forked_from:
                for name, (labels, override, defined_in) in sorted(self.subsets.get(fqdn, {}).items()):
                    variants.append((name, labels, {**top, **override}, defined_in))
            for subset, labels, policy, source in variants:
                try:
                    fields = traffic_policy(policy)
                except Unsupported as exc:
                    where = source.at("spec", "trafficPolicy", *exc.path) if source is not None else None
                    subject = f"DestinationRule {source.namespace}/{source.name}" if source else fqdn
                    problems.append(Problem(where, f"{subject}: trafficPolicy.{'.'.join(map(str, exc.path))}: "
                                                   f"{exc}", "remove the field, or compile with --backend istio"))
                    continue
                selector = {**self.selectors.get(fqdn, {}), **labels}
                for port in host.ports:
                    if port.mesh_protocol is Protocol.UDP:
                        continue  # istiod builds no cluster for a UDP port: it is not proxied
                    out.append(self._cluster(cluster_name(fqdn, port.port, subset), host, port, selector, fields))
        out.sort(key=lambda c: str(c["name"]))
        return out, problems

    def _cluster(self, name: str, host: Host, port: ServicePort, selector: dict[str, str],
                 fields: JsonObject) -> JsonObject:
        endpoints = [
            {"endpoint": {"address": {"socket_address": {"address": w.address, "port_value": w.port}}}}
            for w in self.addresses.workloads if w.namespace == host.namespace and selects(selector, w.labels)
        ]
        return {
            "@type": CLUSTER_TYPE,
            "name": name,
            "type": "STATIC",
            **fields,
            **(_HTTP2 if port.mesh_protocol.is_http2 else {}),
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}] if endpoints else []},
        }


def traffic_policy(policy: Mapping[str, Any]) -> JsonObject:
    """Cluster fields for an Istio trafficPolicy (Istio's defaults where it says nothing)."""
    for key in sorted(set(policy) - {"loadBalancer", "connectionPool", "outlierDetection"}):
        raise Unsupported((key,), "not supported by the envoy backend")
    thresholds: JsonObject = {"max_connections": _UNLIMITED, "max_pending_requests": _UNLIMITED,
                              "max_requests": _UNLIMITED, "max_retries": _UNLIMITED, "track_remaining": True}
    out: JsonObject = {"connect_timeout": "10s", "lb_policy": "LEAST_REQUEST"}
    balancer = policy.get("loadBalancer") or {}
    for key in sorted(set(balancer) - {"simple"}):
        raise Unsupported(("loadBalancer", key), "not supported by the envoy backend")
    if "simple" in balancer:
        if balancer["simple"] not in _LB:
            raise Unsupported(("loadBalancer", "simple"), f"{balancer['simple']!r} is not one of {sorted(_LB)}")
        out["lb_policy"] = _LB[balancer["simple"]]
    pool = policy.get("connectionPool") or {}
    tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
    for key in sorted(set(pool) - {"tcp", "http"}):
        raise Unsupported(("connectionPool", key), "not supported by the envoy backend")
    for key in sorted(set(tcp) - {"maxConnections", "connectTimeout"}):
        raise Unsupported(("connectionPool", "tcp", key), "not supported by the envoy backend")
    for key in sorted(set(http) - {"http1MaxPendingRequests", "http2MaxRequests", "maxRetries"}):
        raise Unsupported(("connectionPool", "http", key), "not supported by the envoy backend")
    if "connectTimeout" in tcp:
        out["connect_timeout"] = seconds(tcp["connectTimeout"], ("connectionPool", "tcp", "connectTimeout"))
    for source, field in ((tcp, "maxConnections"), (http, "http1MaxPendingRequests"), (http, "http2MaxRequests"),
                          (http, "maxRetries")):
        if field in source:
            target = {"maxConnections": "max_connections", "http1MaxPendingRequests": "max_pending_requests",
                      "http2MaxRequests": "max_requests", "maxRetries": "max_retries"}[field]
            thresholds[target] = int(source[field])
    out["circuit_breakers"] = {"thresholds": [thresholds]}
    outlier = policy.get("outlierDetection")
    if outlier:
        out["outlier_detection"] = _outlier_detection(outlier)
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
    for field, target in (("interval", "interval"), ("baseEjectionTime", "base_ejection_time")):
        if field in outlier:
            out[target] = seconds(outlier[field], ("outlierDetection", field))
    if "maxEjectionPercent" in outlier:
        out["max_ejection_percent"] = int(outlier["maxEjectionPercent"])
    return out
