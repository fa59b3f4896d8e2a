"""Sidecar proxies without pods: an upstream Envoy per workload, configured by istiod over plaintext ADS.

A real sidecar learns who it is from its pod; here the bootstrap says it. The node id is
``sidecar~<address>~<pod>.<namespace>~<namespace>.svc.cluster.local`` and the node metadata (every value a JSON
string, ``LABELS`` a map of strings: istiod drops the stream on anything else) carries:

- ``INTERCEPTION_MODE: NONE``: no iptables, so every outbound listener binds a real address and port;
- ``LABELS``: the workload's pod labels plus one label unique to this proxy. Without a Pod, istiod takes the
  proxy's labels from here; a ``Sidecar`` resource selects the proxy by its unique label;
- ``INSTANCE_IPS``: the proxy's own loopback address, or with an inbound listener the workload's (see below).
  No WorkloadEntry has that address, so istiod finds no inbound service for the proxy and builds no inbound
  listener from Services (which would bind the workload's port).

**Inbound** (where the case has an AuthorizationPolicy or RequestAuthentication: the filters istiod puts on a
proxy's inbound listener are the only place those are enforced). Callers then reach the workload through its
sidecar: the ``Sidecar`` resource gets an ``ingress`` entry per target port of the Services selecting the workload
(as on a pod), HTTP listeners bound to an address of its own (:func:`localmesh.inbound_addresses`), whose
``defaultEndpoint`` is ``0.0.0.0:<echo port>``: istiod's "the proxy's instance IP", which is why ``INSTANCE_IPS`` is
then the workload's address (istiod accepts only 127.0.0.1, 0.0.0.0 or a unix socket there). The WorkloadEntry names
the inbound address and the target ports, so every caller's cluster for the workload's Services points at the
inbound listeners, where istiod's RBAC and JWT filters run. There is no
CA and no SDS server, and an inbound filter chain for mTLS (PERMISSIVE, Istio's default) would wait for
certificates forever, so such a case also gets a mesh-wide PeerAuthentication with mTLS DISABLE
(:func:`plaintext_inbound`); a case with a PeerAuthentication of its own that asks for mTLS gets no inbound
listeners at all (:func:`meshgen.testenv.istiomesh.enforces_inbound`).

Each proxy gets a ``Sidecar`` resource binding its egress listeners to its own loopback address (``bind`` without
``port``: one listener per Service port in scope). Two Envoys binding the same address and port would share it
silently (Envoy sets SO_REUSEPORT), so every proxy has its own address from :func:`localmesh.proxy_addresses`.

Workloads are Istio ``WorkloadEntry`` objects: kube-apiserver refuses loopback addresses in EndpointSlices
(``may not be in the loopback range``), and there is no kubelet or endpoint controller to fill them anyway.
A WorkloadEntry carries the workload's real pod labels and its loopback address, and istiod's own registry decides
which Services select it — the same selection a cluster makes for pods, which is what DESIGN invariant 2 is about.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshgen.documents import JsonObject
from meshgen.testenv.envoy import EnvoyProcess
from meshgen.testenv.istiod import CLUSTER_ID

PROXY_LABEL = "testenv.meshgen.dev/proxy"
NETWORKING = "networking.istio.io/v1"
_ADS_CLUSTER = "xds-grpc"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True)
class Inbound:
    """A sidecar's inbound listeners: on ``address``, one per port in ``listen`` (the target ports of the Services
    selecting the workload, what its WorkloadEntry names), forwarding to the workload answering on
    ``workload:port``."""

    address: str
    workload: str
    port: int
    listen: tuple[int, ...]


@dataclass(frozen=True)
class Proxy:
    """One proxy: the pod it stands in for (name, namespace, labels), its own loopback address, and its inbound
    listener if it has one. ``kind`` is istiod's proxy type: ``sidecar``, or ``router`` for a gateway
    (:mod:`meshgen.testenv.gateway`)."""

    pod: str
    namespace: str
    labels: Mapping[str, str]
    address: str
    kind: str = "sidecar"
    inbound: Inbound | None = None

    @property
    def id(self) -> str:
        """istiod's proxy id (``/debug/syncz``, ``/debug/connections``)."""
        return f"{self.pod}.{self.namespace}"

    @property
    def selector(self) -> dict[str, str]:
        """The label only this proxy carries."""
        return {PROXY_LABEL: self.address.replace(".", "-")}

    def node(self, istio_version: str) -> JsonObject:
        metadata: JsonObject = {
            "INTERCEPTION_MODE": "NONE", "NAMESPACE": self.namespace, "CLUSTER_ID": CLUSTER_ID,
            "INSTANCE_IPS": self.inbound.workload if self.inbound else self.address,
            "LABELS": {**self.labels, **self.selector}, "WORKLOAD_NAME": self.pod,
        }
        if istio_version:
            metadata["ISTIO_VERSION"] = istio_version
        return {"id": f"{self.kind}~{self.address}~{self.id}~{self.namespace}.svc.cluster.local",
                "cluster": f"{self.pod}.{self.namespace}", "metadata": metadata}

    def sidecar(self, namespaces: Sequence[str]) -> JsonObject:
        """The Sidecar resource that scopes this proxy: egress on its own address, for services in
        ``namespaces``; ingress (if it has an inbound listener) on its inbound address, to the workload."""
        spec: JsonObject = {"workloadSelector": {"labels": self.selector},
                            "egress": [{"bind": self.address, "hosts": [f"{ns}/*" for ns in sorted(set(namespaces))]}]}
        if self.inbound is not None:
            spec["ingress"] = [{"port": {"number": port, "protocol": "HTTP", "name": f"http-{port}"},
                                "bind": self.inbound.address, "defaultEndpoint": f"0.0.0.0:{self.inbound.port}"}
                               for port in self.inbound.listen]
        return {
            "apiVersion": NETWORKING, "kind": "Sidecar",
            "metadata": {"name": f"proxy-{self.selector[PROXY_LABEL]}", "namespace": self.namespace},
            "spec": spec,
        }


def plaintext_inbound(root_namespace: str) -> JsonObject:
    """A mesh-wide PeerAuthentication that turns inbound mTLS off (nothing here could serve certificates)."""
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "meshgen-testenv-plaintext", "namespace": root_namespace},
            "spec": {"mtls": {"mode": "DISABLE"}}}


def workload_entry(name: str, namespace: str, labels: Mapping[str, str], address: str,
                   ports: Mapping[str, int]) -> JsonObject:
    """A workload on a loopback address; ``ports`` maps Service port names to the port it answers on."""
    return {"apiVersion": NETWORKING, "kind": "WorkloadEntry",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"address": address, "labels": dict(labels), "ports": dict(sorted(ports.items()))}}


def bootstrap(proxy: Proxy, xds_address: str, istio_version: str) -> JsonObject:
    """An Envoy bootstrap that takes everything (listeners, clusters, routes, endpoints) from istiod over ADS."""
    host, _, port = xds_address.rpartition(":")
    return {
        "node": proxy.node(istio_version),
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
                           "grpc_services": [{"envoy_grpc": {"cluster_name": _ADS_CLUSTER}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [{
            "name": _ADS_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {_HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": _ADS_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": host, "port_value": int(port)}}}}]}]},
        }]},
    }


class SidecarEnvoy(EnvoyProcess):
    """An Envoy standing in for one pod's sidecar."""

    def __init__(self, workdir: Path, proxy: Proxy, xds_address: str, istio_version: str) -> None:
        super().__init__(workdir, f"sidecar {proxy.id}", concurrency=1)
        self.proxy = proxy
        self.xds_address = xds_address
        self.istio_version = istio_version

    def bootstrap(self) -> dict[str, Any]:
        return bootstrap(self.proxy, self.xds_address, self.istio_version)

    def arguments(self) -> list[str]:
        # istiod still sets the deprecated max_grpc_timeout on every route: one warning per route would bury
        # the log lines that matter (a rejected update is logged by the config component).
        return ["--component-log-level", "misc:error"]

    def endpoints(self) -> dict[str, set[str]]:
        """Every cluster istiod sent, with the addresses of its healthy endpoints."""
        out: dict[str, set[str]] = {}
        for cluster in json.loads(self.admin("/clusters?format=json")).get("cluster_statuses") or []:
            hosts = cluster.get("host_statuses") or []
            out[cluster["name"]] = {
                h["address"]["socket_address"]["address"] for h in hosts
                if "socket_address" in h.get("address", {})
                and (h.get("health_status") or {}).get("eds_health_status", "HEALTHY") == "HEALTHY"}
        return out

    def route_names(self) -> set[str]:
        """The names of every route in every route configuration the proxy has accepted."""
        dump = json.loads(self.admin("/config_dump?resource=dynamic_route_configs"))
        return {route["name"] for config in dump.get("configs") or []
                for vhost in (config.get("route_config") or {}).get("virtual_hosts") or []
                for route in vhost.get("routes") or [] if "name" in route}

    def listener_text(self) -> str:
        """The listeners in service as JSON text (to look for a filter by name): the active state of each, not a
        version Envoy still drains after an update (for its drain time, minutes: it would still show a filter
        istiod has already removed)."""
        dump = json.loads(self.admin("/config_dump?resource=dynamic_listeners"))
        return json.dumps([(entry.get("active_state") or {}).get("listener") for entry in dump.get("configs") or []])

    def listening(self) -> set[tuple[str, int]]:
        """The address and port of every active listener."""
        found = set()
        for listener in json.loads(self.listener_text()):
            address = (listener or {}).get("address") or {}
            socket = address.get("socket_address") or {}
            if socket:
                found.add((str(socket.get("address")), int(socket.get("port_value", 0))))
        return found
