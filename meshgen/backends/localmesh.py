"""Local-mesh addressing: where each service host listens and where each workload answers, on loopback.

Addresses are a deployment concern, not the Plan's: the same Plan runs on any loopback network. What this module
guarantees is that the addressing is a pure function of the plan and a :class:`LocalMesh` (so ``meshgen compile
--backend envoy`` prints stable output) and that an address depends on its own name, not on what else exists (a
hash of the name, probing past collisions in name order), so adding a sandbox does not move the others.

- a service host (baseline or fork Service) gets one address ``127.<network>.0-63.x``; it listens there on each of
  its Service ports, the way a sidecar with ``INTERCEPTION_MODE: NONE`` gets one listener per service port.
  Ports below 1024 listen 10000 higher (80 on 10080), so the mesh runs without root; routing still sees the
  Service port (route configuration ``80``, domains ``host:80``).
- a workload (a baseline Deployment, StatefulSet or Argo Rollout that has pods, i.e. not scaled to zero replicas;
  or a fork) gets one address ``127.<network>.64-127.x`` and answers on
  :attr:`LocalMesh.echo_port` for every port of every Service that selects it (a local process has one socket).
- a sidecar proxy (the istio test environment gives each workload, and the test client, its own Envoy) gets one
  address ``127.<network>.128-191.x``, where its outbound listeners bind, and where it has inbound listeners
  (policy enforcement), one more ``127.<network>.192-254.x`` for them. A namespace's test client has one of
  these too, in both meshes: requests from traffic.yaml leave from it, so routes matching ``sourceLabels`` and
  ``sourceNamespace`` see the same caller in both (workloads call from their own address).
- the edge (the local mesh's ingress gateway) listens on ``127.<network>.255.254``, on :data:`EDGE_PORT`: the
  port of the one HTTP server of the Gateway it stands for (``istio-system/meshgen-edge`` in the istiod test
  environment). It routes by the Host header, so it needs no address or port per service. It stands for the
  Gateways that exist (:func:`edge_gateways`): istiod serves a VirtualService bound to a Gateway that does not
  exist on no proxy at all.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshgen.baseline.model import (
    GATEWAY,
    KUBERNETES_GATEWAY,
    MESH_GATEWAY,
    WORKLOAD_KINDS,
    Baseline,
    ObjectKey,
    Resource,
    gateway_key,
    gateways,
    service_fqdn,
)
from meshgen.plan.model import Host, Plan

_PER_OCTET = 254
_BLOCK = 64 * _PER_OCTET  # addresses per range: 64 third octets, .1 to .254
_HOST_RANGE = 0
_WORKLOAD_RANGE = 64
_PROXY_RANGE = 128
_INBOUND_RANGE = 192  # 63 third octets: 255 holds the edge
PRIVILEGED_SHIFT = 10000
EDGE_PORT = 8080  # the edge gateway's HTTP server port, in both local meshes
# Where the edge gateway's proxy runs, in both local meshes: it sees the VirtualServices exported there.
EDGE_NAMESPACE = "istio-system"
# Who traffic.yaml requests come from, in both local meshes: a client pod of this name in the host's namespace.
TEST_CLIENT = "meshgen-testclient"
TEST_CLIENT_LABELS: Mapping[str, str] = {"app": TEST_CLIENT}
# The edge gateway's pod labels (what the Gateway selects), in both local meshes.
EDGE_LABELS: Mapping[str, str] = {"istio": "ingressgateway"}
# The Gateway both local meshes always have (the istiod test environment creates it), besides the baseline's own.
EDGE_GATEWAY = ObjectKey(GATEWAY, EDGE_NAMESPACE, "meshgen-edge")


@dataclass(frozen=True)
class LocalMesh:
    """How a plan is laid out on this machine: the loopback network, Envoy's config directory, the echo port."""

    network: int = 77
    config_dir: str = "/etc/meshgen/envoy"
    echo_port: int = 8080


DEFAULT_MESH = LocalMesh()


@dataclass(frozen=True)
class Workload:
    """A process that answers for a baseline Deployment or a fork.

    ``identity`` is what it answers with (``reviews-v1``, or ``reviews-v1@pr-1234`` for a fork);
    ``services`` are the baseline hosts it serves (a fork serves the hosts of the workload it forks).
    """

    identity: str
    namespace: str
    labels: Mapping[str, str]
    sandbox: str | None
    address: str
    port: int
    services: tuple[str, ...]


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: a workload, a namespace's test client, or the edge gateway. What a route's
    ``sourceLabels`` and ``sourceNamespace`` match (istiod evaluates them per proxy); ``address`` is where its
    connections come from."""

    namespace: str
    labels: Mapping[str, str]
    address: str


@dataclass(frozen=True)
class Addresses:
    """Every listener and workload endpoint of one plan on one local mesh."""

    mesh: LocalMesh
    hosts: Mapping[str, Host]
    listeners: Mapping[str, str]
    workloads: tuple[Workload, ...]
    edge: str = ""
    # namespace -> the address of its test client (traffic.yaml requests leave from the host's namespace)
    clients: Mapping[str, str] = field(default_factory=dict)

    def callers(self) -> tuple[Caller, ...]:
        """Every caller inside the mesh: each workload, and each namespace's test client."""
        return (*(Caller(w.namespace, w.labels, w.address) for w in self.workloads),
                *(Caller(ns, TEST_CLIENT_LABELS, address) for ns, address in sorted(self.clients.items())))

    def edge_caller(self) -> Caller:
        """The edge gateway as a caller (the routes it takes are evaluated for its proxy)."""
        return Caller(EDGE_NAMESPACE, EDGE_LABELS, self.edge)

    def listener(self, fqdn: str, port: int | None = None) -> tuple[str, int]:
        """The loopback address and port where requests for ``fqdn`` on Service ``port`` enter the mesh (its
        first port by default)."""
        host = self.hosts[fqdn]
        return self.listeners[fqdn], listen_port(port if port is not None else host.ports[0].port)

    def edge_listener(self) -> tuple[str, int]:
        """Where requests enter from outside the mesh: the edge gateway, for every host (it routes by Host)."""
        return self.edge, listen_port(EDGE_PORT)


def edge_gateways(baseline: Baseline) -> tuple[ObjectKey, ...]:
    """The Gateways the edge stands for: the local meshes' own, and every Gateway of the baseline, Istio's and the
    Gateway API's (sorted)."""
    return tuple(sorted({EDGE_GATEWAY, *(g.key for kind in (GATEWAY, KUBERNETES_GATEWAY)
                                         for g in baseline.of_kind(kind))}))


def served_at_edge(virtual_service: Resource, existing: tuple[ObjectKey, ...]) -> bool:
    """Whether the edge routes by ``virtual_service``: it binds to a Gateway that exists (istiod ignores a binding
    to a missing one: ``istioctl analyze`` IST0101)."""
    return any(gateway_key(g, virtual_service.namespace) in existing for g in gateways(virtual_service)
               if g != MESH_GATEWAY)


def listen_port(port: int) -> int:
    """The local port that stands for a Service port: the same, or 10000 higher below 1024 (no root needed)."""
    return port if port >= 1024 else port + PRIVILEGED_SHIFT


def all_hosts(plan: Plan) -> dict[str, Host]:
    """Baseline and fork Services by fqdn: every host that gets a listener, a virtual host and clusters."""
    hosts = dict(plan.hosts)
    hosts.update((s.fork.fqdn, s.fork) for s in plan.fork_services())
    return dict(sorted(hosts.items()))


def addresses(plan: Plan, mesh: LocalMesh = DEFAULT_MESH) -> Addresses:
    """Lay ``plan`` out on ``mesh``."""
    hosts = all_hosts(plan)
    listeners = _assign(hosts, mesh.network, _HOST_RANGE)
    domain = plan.policy.spec.cluster_domain
    found: list[tuple[str, str, dict[str, str], str | None, tuple[str, ...]]] = []
    for workload in (w for kind in WORKLOAD_KINDS for w in plan.baseline.of_kind(kind) if has_pods(w.body)):
        labels = plan.baseline.labels_of(workload)
        served = tuple(service_fqdn(s.namespace, s.name, domain) for s in plan.baseline.services_fronting(workload))
        found.append((workload.name, workload.namespace, labels, None, served))
    for fork in plan.forks:
        labels = dict(fork.pod_labels)
        found.append((f"{fork.workload.name}@{fork.sandbox}", fork.workload.namespace, labels, fork.sandbox,
                      tuple(s.baseline.fqdn for s in fork.services)))
    keys = [f"{namespace}/{identity}" for identity, namespace, *_ in found]
    assigned = _assign(keys, mesh.network, _WORKLOAD_RANGE)
    workloads = tuple(
        Workload(identity, namespace, labels, sandbox, assigned[key], mesh.echo_port, served)
        for key, (identity, namespace, labels, sandbox, served) in sorted(zip(keys, found, strict=True))
    )
    namespaces = sorted({h.namespace for h in hosts.values()})
    clients = proxy_addresses([f"{ns}/{TEST_CLIENT}" for ns in namespaces], mesh)
    return Addresses(mesh, hosts, listeners, workloads, f"127.{mesh.network}.255.254",
                     {ns: clients[f"{ns}/{TEST_CLIENT}"] for ns in namespaces})


def has_pods(workload: Mapping[str, Any]) -> bool:
    """Whether a workload object runs pods: not scaled to zero (a Deployment an Argo Rollout's ``workloadRef``
    names usually is)."""
    return ((workload.get("spec") or {}).get("replicas")) != 0


def proxy_addresses(names: Iterable[str], mesh: LocalMesh = DEFAULT_MESH) -> dict[str, str]:
    """A loopback address per sidecar proxy name, in the proxy range of ``mesh``'s network."""
    return _assign(names, mesh.network, _PROXY_RANGE)


def inbound_addresses(names: Iterable[str], mesh: LocalMesh = DEFAULT_MESH) -> dict[str, str]:
    """A loopback address per sidecar proxy name for its inbound listener, in the inbound range of ``mesh``."""
    return _assign(names, mesh.network, _INBOUND_RANGE, _BLOCK - _PER_OCTET)


def _assign(names: Iterable[str], network: int, first_octet: int, block: int = _BLOCK) -> dict[str, str]:
    taken: set[int] = set()
    out: dict[str, str] = {}
    for name in sorted(names):
        if len(taken) == block:
            raise ValueError(f"more than {block} addresses needed in one local-mesh range")
        slot = zlib.crc32(name.encode()) % block
        while slot in taken:
            slot = (slot + 1) % block
        taken.add(slot)
        out[name] = f"127.{network}.{first_octet + slot // _PER_OCTET}.{1 + slot % _PER_OCTET}"
    return out
