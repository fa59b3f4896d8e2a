"""A real etcd + kube-apiserver for the whole session, a fresh namespace per test, and helpers to drive meshgen.

Binaries come from meshgen.testenv.binaries (MESHGEN_TESTENV_BIN, KUBEBUILDER_ASSETS, ~/.cache/meshgen); with Go
on PATH they are built once. Without either the tests skip, saying how to get them, except under CI=true, where
they fail: CI must prove the reconciler against a real API server.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from meshgen.documents import parse_documents
from meshgen.kube import discovery, installing, kinds
from meshgen.kube.client import Client, NotFound
from meshgen.kube.diffing import Change
from meshgen.kube.reconciling import NewSpecs, Reconciler, Report
from meshgen.ownership import is_owned
from meshgen.spec.loading import load_specs
from meshgen.spec.models import DEFAULT_POLICY
from meshgen.testenv import binaries, controlplane, istiod
from meshgen.testenv.istiomesh import IstioMesh

ROOT = Path(__file__).resolve().parents[2]
REPORTS = pytest.StashKey[list[str]]()  # tables tests print at the end of the session (the corpus table)
BOOKINFO = (ROOT / "examples" / "baseline" / "bookinfo.yaml").read_text()
_counter = itertools.count()
T = TypeVar("T")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for report in config.stash.get(REPORTS, []):
        terminalreporter.write_sep("=", report.splitlines()[0])
        terminalreporter.write_line("\n".join(report.splitlines()[1:]))


def _binaries() -> binaries.Binaries:
    return _found(binaries.locate, binaries.ensure, "tests against a real kube-apiserver need etcd, kube-apiserver "
                                                    "and Istio's CRDs")


def _istio_binaries() -> binaries.IstioBinaries:
    return _found(binaries.locate_istio, binaries.ensure_istio, "tests through real istiod need pilot-discovery and "
                                                                "istioctl")


def _found(locate: Callable[[], T | None], ensure: Callable[[], T], needs: str) -> T:
    """What ``locate`` finds, else what ``ensure`` builds (with Go), else skip (fail under CI=true)."""
    found = locate()
    if found is not None:
        return found
    if binaries.can_build():
        return ensure()
    message = f"{needs}: {binaries.HOW_TO_GET}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[controlplane.ControlPlane]:
    plane = controlplane.ControlPlane(tmp_path_factory.mktemp("controlplane"), _binaries())
    plane.start()
    try:
        installing.install(Client.from_kubeconfig(str(plane.kubeconfig)), DEFAULT_POLICY)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def istio(control_plane: controlplane.ControlPlane,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[istiod.Istiod]:
    """istiod on the session's control plane, for the whole session (Envoys reconnect slowly to a restarted one)."""
    server = istiod.Istiod(tmp_path_factory.mktemp("istiod"), _istio_binaries().pilot_discovery,
                           control_plane.kubeconfig)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def istio_mesh(control_plane: controlplane.ControlPlane, istio: istiod.Istiod,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[IstioMesh]:
    """One istiod mesh for the session; each test applies its case and clears it (so the per-test namespaces of
    the other cluster tests never see a case's stored sandboxes)."""
    with IstioMesh(control_plane.kubeconfig, istio, tmp_path_factory.mktemp("istio-mesh")) as mesh:
        yield mesh


@dataclass
class Cluster:
    """One test's view: the control plane, an admin client, and a namespace of its own."""

    plane: controlplane.ControlPlane
    namespace: str
    tmp: Path

    @property
    def kubeconfig(self) -> str:
        return str(self.plane.kubeconfig)

    def client(self) -> Client:
        return Client.from_kubeconfig(self.kubeconfig)

    def create_baseline(self, text: str = BOOKINFO) -> None:
        """Create the manifests in ``text`` in this test's namespace (``bookinfo`` in them is replaced)."""
        client = self.client()
        for doc in parse_documents(text.replace("bookinfo", self.namespace), "baseline"):
            client.create(doc.body)

    def spec_file(self, text: str, name: str | None = None) -> Path:
        """Write a spec file; ``NS`` in it becomes this test's namespace."""
        path = self.tmp / (name or f"spec-{next(_counter)}.yaml")
        path.write_text(text.replace("NS", self.namespace))
        return path

    def reconciler(self, client: Client | None = None,
                   on_change: Callable[[Change], None] | None = None) -> Reconciler:
        return Reconciler(client or self.client(), DEFAULT_POLICY, on_change=on_change)

    def apply(self, text: str, client: Client | None = None,
              on_change: Callable[[Change], None] | None = None) -> Report:
        """Apply specs in-process (so the test can count the client's requests; ``on_change`` runs after each
        write, before the next)."""
        docs = parse_documents(text.replace("NS", self.namespace), "test.yaml")
        return self.reconciler(client, on_change).apply(NewSpecs(load_specs(docs), tuple(d.body for d in docs)))

    def meshgen(self, *args: str, kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in a new process, as CI jobs do."""
        return subprocess.run([sys.executable, "-m", "meshgen", *args, "--kubeconfig", kubeconfig or self.kubeconfig],
                              capture_output=True, text=True, timeout=300, check=False)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "meshgen", *args, "--kubeconfig", self.kubeconfig],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.client().get(kinds.Ref(kind, namespace if namespace is not None else self.namespace, name))

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        try:
            self.get(kind, name, namespace)
        except NotFound:
            return False
        return True

    def versions(self) -> dict[kinds.Ref, str]:
        """resourceVersion of every object meshgen could touch (to prove nothing was written)."""
        client = self.client()
        out = {}
        for kind in (*kinds.RENDERED, kinds.SANDBOX, kinds.ROUTE_GROUP):
            for item in client.list(kind).items:
                out[kinds.Ref.of(item)] = item["metadata"]["resourceVersion"]
        return out

    def pending(self) -> list[str]:
        """What an apply would still change: empty once the cluster has converged."""
        reconciler = self.reconciler()
        state = reconciler.observe()
        return [c.summary for c in reconciler.changes(state, discovery.specs_of(state.stored), {})]


def assert_restored(restored: dict[str, Any], original: dict[str, Any]) -> None:
    """A user's routing object as it was before meshgen edited it: its spec byte for byte (order kept), its
    annotations and labels."""
    assert json.dumps(restored["spec"], sort_keys=False) == json.dumps(original["spec"], sort_keys=False)
    assert restored["metadata"].get("annotations") == original["metadata"].get("annotations")
    assert restored["metadata"].get("labels") == original["metadata"].get("labels")


class EditsFirst(Client):
    """A client with which someone else edits ``ref`` (``admin`` adds ``value`` at ``path``: by default
    ``timeout: 7s`` to a VirtualService's first route) right before meshgen's first patch of it: the guarded patch
    then conflicts and must be recomputed."""

    def __init__(self, admin: Client, ref: kinds.Ref, path: str = "/spec/http/0/timeout", value: Any = "7s") -> None:
        super().__init__(admin.api)
        self.admin, self.ref, self.edited = admin, ref, False
        self.path, self.value = path, value

    def patch(self, target: kinds.Ref, operations: Any, dry_run: bool = False) -> dict[str, Any]:
        if target == self.ref and not self.edited:
            self.edited = True
            live = self.admin.get(self.ref)
            self.admin.patch(self.ref, [{"op": "test", "path": "/metadata/resourceVersion",
                                         "value": live["metadata"]["resourceVersion"]},
                                        {"op": "add", "path": self.path, "value": self.value}])
        return super().patch(target, operations, dry_run)


@pytest.fixture
def cluster(control_plane: controlplane.ControlPlane, tmp_path: Path) -> Iterator[Cluster]:
    """A fresh namespace; afterwards every stored spec is deleted through meshgen (which restores user
    VirtualServices and prunes forks) and nothing meshgen owns may remain."""
    namespace = f"t{next(_counter)}-{os.getpid() % 1000}"
    control_plane.create_namespace(namespace)
    here = Cluster(control_plane, namespace, tmp_path)
    installing.ensure_policy(here.client(), DEFAULT_POLICY)  # a test that installs another restores it after
    yield here
    if not (control_plane.apiserver and control_plane.apiserver.running()):
        control_plane.start_apiserver()
    client = here.client()
    stored = {k: [o["metadata"]["name"] for o in client.list(getattr(kinds, k)).items]
              for k in ("SANDBOX", "ROUTE_GROUP")}
    reconciler = Reconciler(client)  # with whatever policy the test left stored
    if stored["ROUTE_GROUP"]:
        reconciler.delete("RouteGroup", stored["ROUTE_GROUP"])
    if stored["SANDBOX"]:
        reconciler.delete("Sandbox", stored["SANDBOX"])
    installing.ensure_policy(client, DEFAULT_POLICY)
    left = [kinds.Ref.of(o) for kind in kinds.RENDERED for o in client.list(kind).items if is_owned(o)]
    assert not left, f"meshgen objects left behind: {left}"


