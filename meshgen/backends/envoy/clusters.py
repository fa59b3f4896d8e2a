"""Envoy clusters for a local mesh: one per Service port, one per DestinationRule subset, one per fork port.

Named the way istiod names them (``outbound|<port>|<subset>|<host>``), so a reader of an Istio config dump finds
the same names here. A cluster's endpoints are the workloads its Service selects, with the subset's labels added:
selection uses the workloads' real pod labels, so a fork (whose labels no baseline Service selects, DESIGN
invariant 2) can only ever be an endpoint of its own fork Service's clusters.

A port whose protocol is gRPC or HTTP/2 (:mod:`meshgen.baseline.protocols`, as istiod reads it) is called upstream
over HTTP/2, as istiod configures it; other ports over HTTP/1.1 (or as raw TCP). A UDP port has no cluster.

Traffic policy follows Istio (:mod:`meshgen.backends.envoy_policies`): its defaults (least-request balancing,
circuit breakers wide open, 10 s connect timeout) unless the host's DestinationRule says otherwise, port-level
settings for the cluster's port, a subset's policy merged over the host's as istiod merges them
(:func:`meshgen.plan.traffic_policy.merged`); a fork host gets the policy the planner chose for it (the original's,
with its subset's merged in). Transport-only fields are accepted with one warning each; fields this backend cannot
express fail the compile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshgen.backends.envoy import policies as envoy_policies
from meshgen.backends.envoy.routes import Unsupported
from meshgen.backends.localmesh import Addresses
from meshgen.baseline.model import (
    DESTINATION_RULE,
    SERVICE,
    ObjectKey,
    Resource,
    resolve_host,
    selects,
    service_fqdn,
    service_selector,
)
from meshgen.baseline.protocols import Protocol
from meshgen.documents import JsonObject
from meshgen.errors import Problem
from meshgen.plan.model import Diagnostic, Host, Plan
from meshgen.plan.routing import Destination
from meshgen.plan.traffic_policy import host_rule, merged

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


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
        self.hash_policies: dict[str, JsonObject] = {}
        self.accepted: dict[tuple[ObjectKey, tuple[str, ...]], Diagnostic] = {}
        self.missing: dict[str, Diagnostic] = {}  # clusters routes name that do not exist, and why
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

    def cluster_of(self, destination: Destination, listener_port: int) -> str:
        """The cluster for a destination, on a listener's port: istiod's ``GetDestinationCluster`` (the
        destination's port, else the host's only port, else the listener's). A destination no cluster exists for
        (a host that is not a Service, a port it lacks, a subset no DestinationRule defines) names a cluster
        anyway, as istiod's does: Envoy answers a route to a missing cluster with 503 (no cluster), and a TCP proxy
        closes the connection. Each is warned about once."""
        fqdn = destination.host
        host = self.addresses.hosts.get(fqdn)
        ports = [p.port for p in host.ports] if host is not None else []
        if destination.port is not None:
            port = destination.port
        elif len(ports) == 1:
            port = ports[0]
        else:
            port = listener_port
        subset = destination.subset
        name = cluster_name(fqdn, port, subset)
        if host is None:
            self._missing(name, f"host {fqdn} is not a Service of the baseline (istioctl analyze: IST0101)")
        elif port not in ports:
            self._missing(name, f"{fqdn} has no port {port} (ports: {', '.join(map(str, ports))})")
        elif subset is not None and subset not in self.subsets.get(fqdn, {}):
            self._missing(name, f"no DestinationRule defines subset {subset!r} for {fqdn} (istioctl analyze: "
                                "IST0101)")
        return name

    def _missing(self, cluster: str, why: str) -> None:
        self.missing.setdefault(cluster, Diagnostic(
            f"cluster {cluster}", f"{why}: a route there answers 503 and a TCP connection is closed, in istiod's "
                                  "mesh as in the envoy backend's"))

    def clusters(self) -> tuple[list[JsonObject], list[Problem]]:
        """Every cluster, sorted by name, and the problems found in traffic policies. Fields accepted without
        translation are in :attr:`warnings` afterwards (once per DestinationRule and field), and each cluster's
        consistent-hash policy in :attr:`hash_policies`."""
        out: list[JsonObject] = []
        problems: list[Problem] = []
        fork_policies = {s.fork.fqdn: s for s in self.plan.fork_services()}
        domain = self.plan.policy.spec.cluster_domain
        for fqdn, host in self.addresses.hosts.items():
            fork = fork_policies.get(fqdn)
            rule = fork.traffic_policy_of if fork is not None else host_rule(self.plan.baseline, fqdn,
                                                                              host.namespace, domain)
            top: Mapping[str, Any] | None = (fork.traffic_policy if fork is not None else
                                             rule.spec["trafficPolicy"]) if rule is not None else None
            variants: list[tuple[str | None, dict[str, str], Mapping[str, Any] | None, Resource | None]] = [
                (None, {}, None, rule)]
            if fqdn not in self.forked_from:
                for name, (labels, own, defined_in) in sorted(self.subsets.get(fqdn, {}).items()):
                    variants.append((name, labels, own, defined_in))
            for subset, labels, override, source in variants:
                selector = {**self.selectors.get(fqdn, {}), **labels}
                for port in host.ports:
                    if port.mesh_protocol is Protocol.UDP:
                        continue  # istiod builds no cluster for a UDP port: it is not proxied
                    name = cluster_name(fqdn, port.port, subset)
                    try:
                        translated = envoy_policies.translate(merged(top, override, port.port), port)
                    except Unsupported as exc:
                        problem = self._problem(source, fqdn, exc)
                        if problem not in problems:
                            problems.append(problem)
                        continue
                    self._accepted(source, translated.accepted)
                    if translated.hash_policy is not None:
                        self.hash_policies[name] = translated.hash_policy
                    out.append(self._cluster(name, host, selector, translated.fields))
        out.sort(key=lambda c: str(c["name"]))
        return out, problems

    def _problem(self, source: Resource | None, fqdn: str, exc: Unsupported) -> Problem:
        where = source.at("spec", "trafficPolicy", *exc.path) if source is not None else None
        subject = f"DestinationRule {source.namespace}/{source.name}" if source else fqdn
        return Problem(where, f"{subject}: trafficPolicy.{'.'.join(map(str, exc.path))}: {exc}",
                       "remove the field, or compile with --backend istio")

    def _accepted(self, source: Resource | None, paths: tuple[tuple[str, ...], ...]) -> None:
        for path in paths:
            if source is None or (source.key, path) in self.accepted:
                continue
            self.accepted[(source.key, path)] = Diagnostic(
                f"DestinationRule {source.namespace}/{source.name}",
                f"trafficPolicy.{'.'.join(path)} is accepted but not translated by the envoy backend: "
                f"{envoy_policies.transport_note(path)}")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        """One warning per DestinationRule and field accepted without translation, in DestinationRule order, then
        one per cluster a route names that does not exist."""
        return (*(self.accepted[k] for k in sorted(self.accepted)), *(self.missing[k] for k in sorted(self.missing)))

    def _cluster(self, name: str, host: Host, selector: dict[str, str], fields: JsonObject) -> JsonObject:
        endpoints = [
            {"endpoint": {"address": {"socket_address": {"address": w.address, "port_value": w.port}}}}
            for w in self.addresses.workloads if w.namespace == host.namespace and selects(selector, w.labels)
        ]
        return {
            "@type": CLUSTER_TYPE,
            "name": name,
            "type": "STATIC",
            **fields,
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}] if endpoints else []},
        }
