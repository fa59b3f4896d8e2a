"""The Plan: the routing IR every backend compiles from.

A Plan says, independently of any mesh's resource format:
- which forks exist (a derived Deployment and one Service per baseline Service that fronted the original);
- which routing keys claim which baseline hosts, and where each claim sends the request (a fork host, or the
  baseline itself for a virtual workload);
- for every route table that reaches a claimed host (a user's VirtualService or HTTPRoute, or one meshgen will
  own), the final order of routes: which baseline route each sandbox route copies, where it sits and where it
  sends (:mod:`meshgen.plan.tables`, in the neutral terms of :mod:`meshgen.plan.routing`);
- which routes serve each host for a proxy in each namespace, as istiod picks them (:mod:`meshgen.plan.serving`).

Backends render this; they never decide routing. A new backend needs no change here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshgen.baseline import protocols
from meshgen.baseline.model import Baseline, ObjectKey, Resource
from meshgen.documents import JsonObject
from meshgen.errors import Problem
from meshgen.plan.owners import Owner, OwnerKind
from meshgen.plan.sources import Sources
from meshgen.plan.tables import CallerMatch, PlannedRoute, RouteRole, RouteTable
from meshgen.spec.models import IngressMode, MeshPolicy, WorkloadRef

# Owners and route tables are defined apart (meshgen.plan.owners, meshgen.plan.tables) and read here too.
__all__ = ["CallerMatch", "Claim", "Diagnostic", "Edge", "Exclusion", "ExclusionReason", "Fork", "ForkPolicy",
           "ForkService", "HeaderChange", "Host", "Owner", "OwnerKind", "Plan", "PlannedRoute", "RouteRole",
           "RouteTable", "ServicePort"]


@dataclass(frozen=True)
class ServicePort:
    """A port of a Service, as the mesh sees it."""

    name: str
    port: int
    protocol: str
    app_protocol: str | None = None

    @property
    def reading(self) -> protocols.Reading:
        """The protocol Istio gives this port, and what decided it."""
        return protocols.read_port(self.port, self.name, self.protocol, self.app_protocol)

    @property
    def mesh_protocol(self) -> protocols.Protocol:
        """The protocol Istio gives this port (:mod:`meshgen.baseline.protocols`)."""
        return self.reading.protocol


@dataclass(frozen=True)
class Host:
    """A Service and its mesh host name."""

    namespace: str
    name: str
    fqdn: str
    ports: tuple[ServicePort, ...]

    @property
    def routes_requests(self) -> bool:
        """Whether any port applies ``http`` routes, so a routing key can reach this host."""
        return any(p.mesh_protocol.routes_requests for p in self.ports)


@dataclass(frozen=True)
class ForkService:
    """The Service that fronts a fork in place of one baseline Service: same ports, selects only the fork.

    ``traffic_policy`` is the trafficPolicy of the fork host's DestinationRule (None: the fork host needs none):
    what the baseline applies to the original behind this Service, the subset it is routed through included
    (:mod:`meshgen.plan.traffic_policy`). ``traffic_policy_of`` is the DestinationRule it comes from."""

    baseline: Host
    fork: Host
    body: JsonObject = field(compare=False, hash=False)
    traffic_policy: JsonObject | None = field(default=None, compare=False, hash=False)
    traffic_policy_of: Resource | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class ForkPolicy:
    """A sandbox-owned copy of a baseline policy keyed on pod labels (AuthorizationPolicy, PeerAuthentication,
    RequestAuthentication, NetworkPolicy), rewritten to govern the fork as the original governs what it forks
    (DESIGN invariant 10; :mod:`meshgen.plan.policies`)."""

    source: ObjectKey
    body: JsonObject = field(compare=False, hash=False)

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.body["kind"], self.body["metadata"]["namespace"], self.body["metadata"]["name"])


@dataclass(frozen=True)
class Fork:
    """A modified copy of one baseline workload, owned by one sandbox. ``body`` is the fork's own workload
    object: a Deployment (the fork of a Deployment or an Argo Rollout), or a StatefulSet. ``policies`` are the
    copies of the baseline's label-keyed policies that make it governed like the original."""

    sandbox: str
    routing_key: str
    workload: WorkloadRef
    name: str
    body: JsonObject = field(compare=False, hash=False)
    services: tuple[ForkService, ...] = ()
    policies: tuple[ForkPolicy, ...] = ()
    # What the user should know about this fork: where a copy of the baseline's governance cannot be exact.
    notes: tuple[str, ...] = field(default=(), compare=False, hash=False)

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.body["kind"], self.workload.namespace, self.name)

    @property
    def pod_labels(self) -> Mapping[str, str]:
        """The labels the fork's pods carry."""
        labels: Mapping[str, str] = self.body["spec"]["template"]["metadata"]["labels"]
        return labels

    @property
    def selector(self) -> Mapping[str, str]:
        """The labels that select exactly the fork's pods (its workload's ``spec.selector.matchLabels``)."""
        selector: Mapping[str, str] = self.body["spec"]["selector"]["matchLabels"]
        return selector


@dataclass(frozen=True)
class Claim:
    """A routing key claims a baseline host: requests for ``host`` carrying the key go to ``target``
    (a fork host, or ``host`` itself for a virtual workload)."""

    owner: Owner
    host: str
    target: str
    sandbox: str

    @property
    def is_virtual(self) -> bool:
        return self.target == self.host


@dataclass(frozen=True)
class Edge:
    """Who may bring a routing key into the mesh at its edge (ingress gateways, the local mesh's edge listener).
    Everyone else has the routing header and the routing members of baggage/tracestate removed there.

    ``token_sha256`` is the SHA-256 (hex) of the edge token; the token itself never enters the plan."""

    mode: IngressMode = IngressMode.STRIP
    cidrs: tuple[str, ...] = ()
    token_header: str | None = None
    token_sha256: str | None = None


@dataclass(frozen=True)
class Diagnostic:
    """A warning the user should see, with the object it is about."""

    subject: str
    message: str

    def render(self) -> str:
        return f"warning: {self.subject}: {self.message}"


@dataclass(frozen=True)
class HeaderChange:
    """One step of changing the routing header on a live cluster, make-before-break: routes match ``routes``,
    and the normaliser writes the policy's header and ``also`` (headers live routes may still match)."""

    routes: str
    also: tuple[str, ...]


class ExclusionReason(enum.StrEnum):
    """Why a stored sandbox or route group was left out of a plan (the ``reason`` of its Reconciled condition)."""

    INVALID_SPEC = "InvalidSpec"  # the stored object does not validate as a spec (written around meshgen)
    GUARDRAIL_VIOLATED = "GuardrailViolated"  # the platform's policy forbids it (perhaps since it was stored)
    COMPILE_FAILED = "CompileFailed"  # it does not compile over today's baseline (its workload deleted, ...)
    FOREIGN_OBJECT = "ForeignObject"  # an object not managed by meshgen has the name of one of its objects
    WRITE_REFUSED = "WriteRefused"  # the API server refused to store one of its objects (schema, admission)


@dataclass(frozen=True)
class Exclusion:
    """A stored sandbox or route group left out of the plan, so that it cannot block anyone else: no fork, no
    route (its key reaches the baseline everywhere), and a status saying why."""

    kind: OwnerKind
    name: str
    reason: ExclusionReason
    problems: tuple[Problem, ...]

    @property
    def message(self) -> str:
        """Every problem, one per line (``path: reason``, with the fix)."""
        return "\n".join(p.render() for p in self.problems)


@dataclass(frozen=True)
class Plan:
    """Everything a backend needs, and nothing it must work out for itself."""

    policy: MeshPolicy
    baseline: Baseline = field(compare=False, repr=False)
    owners: tuple[Owner, ...]
    forks: tuple[Fork, ...]
    claims: tuple[Claim, ...]
    tables: tuple[RouteTable, ...]
    warnings: tuple[Diagnostic, ...] = ()
    hosts: Mapping[str, Host] = field(default_factory=dict, compare=False, repr=False)
    edge: Edge = Edge()
    # Stored owners left out (a cluster's plan only: an offline compile fails instead), by kind and name.
    excluded: tuple[Exclusion, ...] = ()
    # A routing-header change still in progress on a cluster (meshgen.kube.transition); None: none.
    header_change: HeaderChange | None = None
    # The baseline's routing objects, read once (meshgen.plan.sources); None: read on first use.
    sources: Sources | None = field(default=None, compare=False, repr=False)

    @property
    def routing_sources(self) -> Sources:
        """The baseline's routing objects, read."""
        return self.sources if self.sources is not None else Sources(self.baseline, self.policy.spec.cluster_domain)

    @property
    def routing_header(self) -> str:
        """The header routes match: the policy's, unless a change of it is still in progress."""
        return self.header_change.routes if self.header_change else self.policy.spec.routing_header

    @property
    def other_routing_headers(self) -> tuple[str, ...]:
        """Headers the normaliser writes (and the edge strips) besides the policy's routing header."""
        return self.header_change.also if self.header_change else ()

    def fork_services(self) -> tuple[ForkService, ...]:
        """Every fork Service, in plan order."""
        return tuple(s for f in self.forks for s in f.services)

    def fork_policies(self) -> tuple[ForkPolicy, ...]:
        """Every policy copy of every fork, in plan order."""
        return tuple(p for f in self.forks for p in f.policies)

    @property
    def is_empty(self) -> bool:
        return not self.claims and not self.forks
