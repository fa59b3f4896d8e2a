"""A local Kubernetes control plane: etcd + kube-apiserver (RBAC, client-certificate auth, audit log).

No Docker, no kubelet, no controllers: only the API, which is what meshgen's reconciler talks to. Istio's CRDs are
installed at start, so VirtualServices, DestinationRules and EnvoyFilters can be stored and validated against
their real schemas. The kube-apiserver can be killed and restarted alone (same port, same etcd), which is how the
crash tests work. A detached control plane records its pids in ``state.json`` so ``stop_detached`` can end it.
"""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshgen.documents import parse_documents
from meshgen.errors import EnvironmentProblem
from meshgen.testenv import binaries, pki, processes
from meshgen.testenv.binaries import Binaries

STATE_FILE = "state.json"
ISTIO_NAMESPACE = "istio-system"  # as an Istio install would leave it: where meshgen's EnvoyFilter goes
CONTEXT = "meshgen-testenv"
STOP_GRACE_SECONDS = 10.0
READY_TIMEOUT = 90.0
# Everything at Metadata level: one line per request, enough to count requests by verb and resource.
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                "rules": [{"level": "Metadata"}]}


@dataclass
class ControlPlane:
    """etcd and kube-apiserver serving from ``directory`` (certificates, data, logs, kubeconfig)."""

    directory: Path
    binaries: Binaries
    detached: bool = False
    etcd_port: int = field(default_factory=processes.free_port)
    peer_port: int = field(default_factory=processes.free_port)
    port: int = field(default_factory=processes.free_port)
    etcd: processes.Process | None = field(default=None, repr=False)
    apiserver: processes.Process | None = field(default=None, repr=False)
    authority: pki.Authority | None = field(default=None, repr=False)
    credentials: pki.Credentials | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.directory / "audit.log"

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start etcd and kube-apiserver, write the kubeconfig, install Istio's CRDs. Stops both on failure."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.authority, self.credentials = pki.create(self.directory / "pki")
        (self.directory / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
        try:
            self._start_etcd()
            self.start_apiserver()
            self.write_kubeconfig(self.kubeconfig, self.credentials.admin)
            self.install_manifests(self.binaries.istio_crds.read_text(), str(self.binaries.istio_crds))
            for crds in binaries.gateway_api_crds():  # HTTPRoutes for the gateway-api backend, when available
                self.install_manifests(crds.read_text(), str(crds))
            self.create_namespace(ISTIO_NAMESPACE)
            self.save_state()
        except BaseException:
            self.stop()
            raise

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = processes.Process("etcd", [
            str(self.binaries.etcd), "--name", "testenv", "--data-dir", str(self.directory / "etcd-data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"testenv={peer}", "--unsafe-no-fsync", "--log-level", "warn",
        ], self.directory / "etcd.log", detached=self.detached)
        self.etcd.start()
        self.etcd.wait_until(self._etcd_healthy, "etcd to be healthy", READY_TIMEOUT)

    def _etcd_healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.etcd_port, timeout=2)
        try:
            conn.request("GET", "/health")
            return b'"true"' in conn.getresponse().read()
        finally:
            conn.close()

    def start_apiserver(self) -> None:
        """Start (or restart) kube-apiserver on the same port and wait for ``/readyz``."""
        creds = self.credentials
        assert creds is not None
        self.apiserver = processes.Process("kube-apiserver", [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--cert-dir={self.directory / 'apiserver-certs'}",
            f"--tls-cert-file={creds.serving.cert}", f"--tls-private-key-file={creds.serving.key}",
            f"--client-ca-file={creds.ca.cert}",
            f"--secure-port={self.port}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--service-account-issuer={self.url}",
            f"--service-account-key-file={creds.service_account_public}",
            f"--service-account-signing-key-file={creds.service_account_key}",
            "--authorization-mode=RBAC",
            # /24 holds only 254 Services (the benchmark makes 1,000+); dual-stack, as most clusters now are, so the
            # Services of Istio's dual-stack and IPv6 samples are stored (single-stack refuses them with 422).
            "--service-cluster-ip-range=10.0.0.0/16,fd00:10::/108",
            "--disable-admission-plugins=ServiceAccount",
            f"--audit-policy-file={self.directory / 'audit-policy.json'}",
            f"--audit-log-path={self.audit_log}", "--audit-log-maxsize=0",
        ], self.directory / "kube-apiserver.log", detached=self.detached)
        self.apiserver.start()
        self.apiserver.wait_until(lambda: self.request("GET", "/readyz")[0] == 200, "kube-apiserver /readyz",
                                  READY_TIMEOUT)

    def stop_apiserver(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop kube-apiserver alone (SIGKILL by default: a crash); etcd keeps the data."""
        if self.apiserver is not None:
            self.apiserver.stop(grace=STOP_GRACE_SECONDS, sig=sig)

    def stop(self) -> None:
        """Stop both servers; nothing is left running. The directory (logs, data) is kept for inspection."""
        for server in (self.apiserver, self.etcd):
            if server is not None:
                server.stop(grace=STOP_GRACE_SECONDS)
        (self.directory / STATE_FILE).unlink(missing_ok=True)

    # -- access ----------------------------------------------------------------------------------------------

    def ssl_context(self, client: pki.KeyPair | None = None) -> ssl.SSLContext:
        creds = self.credentials
        assert creds is not None
        context = ssl.create_default_context(cafile=str(creds.ca.cert))
        pair = client or creds.admin
        context.load_cert_chain(str(pair.cert), str(pair.key))
        return context

    def request(self, method: str, path: str, body: Any = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """One request as the admin; returns the status and the decoded JSON body (or text)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.ssl_context())
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def create_namespace(self, name: str) -> None:
        status, reply = self.request("POST", "/api/v1/namespaces",
                                     {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        if status not in (201, 409):
            raise EnvironmentProblem(f"creating namespace {name} failed ({status}): {reply}")

    def write_kubeconfig(self, path: Path, user: pki.KeyPair, name: str = "admin") -> Path:
        """A kubeconfig for ``user`` (a client certificate from this control plane's CA)."""
        creds = self.credentials
        assert creds is not None
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
            "clusters": [{"name": CONTEXT, "cluster": {"server": self.url,
                                                       "certificate-authority": str(creds.ca.cert)}}],
            "users": [{"name": name, "user": {"client-certificate": str(user.cert), "client-key": str(user.key)}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": name}}],
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        path.chmod(0o600)
        return path

    def kubeconfig_for(self, user: str, groups: str | None = None) -> Path:
        """A kubeconfig for another user (certificate CN=user, O=groups), e.g. to test RBAC."""
        assert self.authority is not None
        pair = self.authority.issue(f"user-{user}", user, groups)
        return self.write_kubeconfig(self.directory / f"kubeconfig-{user}", pair, user)

    def install_manifests(self, text: str, source: str) -> None:
        """Create the CustomResourceDefinitions in ``text`` (multi-document YAML) and wait until established."""
        names = []
        for doc in parse_documents(text, source):
            body = doc.body
            if body.get("kind") != "CustomResourceDefinition":
                continue
            status, reply = self.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)
            if status not in (201, 409):
                raise EnvironmentProblem(f"creating CRD {body['metadata']['name']} failed ({status}): {reply}")
            names.append(body["metadata"]["name"])
        self.wait_established(names)

    def wait_established(self, names: list[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            _, reply = self.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
            for item in reply.get("items", []) if isinstance(reply, dict) else []:
                conditions = (item.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                    pending.discard(item["metadata"]["name"])
            if pending:
                time.sleep(0.2)
        if pending:
            raise EnvironmentProblem(f"CRDs not established after {timeout:.0f}s: {', '.join(sorted(pending))}")

    # -- detached control planes -----------------------------------------------------------------------------

    def save_state(self, **extra: Any) -> None:
        """Record pids and addresses for ``stop_detached``; ``extra`` adds entries (an ``istiod`` pid and its
        addresses, when one runs on this control plane)."""
        assert self.etcd is not None and self.apiserver is not None
        state: dict[str, Any] = {"kubeconfig": str(self.kubeconfig), "url": self.url,
                                 "pids": {"etcd": self.etcd.pid, "kube-apiserver": self.apiserver.pid}}
        for key, value in extra.items():
            if key == "pids":
                state["pids"].update(value)
            else:
                state[key] = value
        (self.directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def read_state(directory: Path) -> dict[str, Any] | None:
    """What a running (detached) control plane in ``directory`` recorded, or ``None``."""
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def running(directory: Path) -> bool:
    """Whether the control plane recorded in ``directory`` still has a live kube-apiserver."""
    state = read_state(directory)
    return bool(state) and processes.alive(int(state["pids"]["kube-apiserver"]), "kube-apiserver")  # type: ignore[index]


def stop_detached(directory: Path) -> bool:
    """Stop the control plane recorded in ``directory``; ``False`` if none was recorded."""
    state = read_state(directory)
    if state is None:
        return False
    pids = state.get("pids") or {}
    for name, command in (("istiod", "pilot-discovery"), ("kube-apiserver", "kube-apiserver"), ("etcd", "etcd")):
        if name in pids:
            processes.stop_pid(int(pids[name]), command)
    (directory / STATE_FILE).unlink(missing_ok=True)
    return True
