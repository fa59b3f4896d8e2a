"""Every golden case's traffic through real istiod, for each backend that can express it (VirtualServices, and
Gateway API HTTPRoutes and GRPCRoutes, which istiod converts): the case's output applied with meshgen's reconciler
to a real kube-apiserver, routed by Envoy sidecars istiod configures. No configuration is ever rejected.

Also the facts the istiod test environment rests on: no fork is an endpoint of a baseline Service in istiod's own
registry (DESIGN invariant 2), a rejected configuration is caught, and clearing a case leaves nothing behind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from meshgen import golden, traffic
from meshgen.backends import CLUSTER_BACKENDS
from meshgen.errors import CannotRun
from meshgen.kube import kinds
from meshgen.ownership import LABEL_SANDBOX
from meshgen.testenv.istiod import Istiod, Nacked
from meshgen.testenv.istiomesh import IstioMesh
from meshgen.testenv.mesh import RunningMesh
from tests.conftest import GOLDEN

pytestmark = pytest.mark.kube

ROUTING = [c for c in golden.discover(GOLDEN) if c.traffic is not None]
BAD_LUA = {
    "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
    "metadata": {"name": "test-broken-lua", "namespace": "istio-system"},
    "spec": {"configPatches": [{
        "applyTo": "HTTP_FILTER",
        "match": {"context": "SIDECAR_OUTBOUND",
                  "listener": {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}}},
        "patch": {"operation": "INSERT_FIRST", "value": {"name": "test.broken", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": "function envoy_on_request(handle) this is not lua end"}}}},
    }]},
}


@pytest.fixture
def mesh(istio_mesh: IstioMesh) -> Iterator[IstioMesh]:
    yield istio_mesh
    istio_mesh.clear()


def apply(mesh: IstioMesh, name: str) -> golden.Outcome:
    case = golden.discover(GOLDEN, [name])[0]
    outcome = golden.compile_case(case)
    assert outcome.plan is not None, outcome.error
    mesh.apply(outcome.plan, None, outcome.documents)
    return outcome


# Every routing case for every backend that can express it (meshgen golden --via istio [--backend B]); what a
# backend cannot express has an expected error instead (tests/test_golden.py).
BY_BACKEND = [(c, b) for c in ROUTING for b in CLUSTER_BACKENDS if (c.expectations(b) / golden.EXPECTED).exists()]


def test_the_gateway_api_backend_routes_most_cases_through_istiod() -> None:
    assert len([c for c, b in BY_BACKEND if b == "gateway-api"]) >= 15


@pytest.mark.parametrize(("case", "backend"), BY_BACKEND, ids=[f"{c.name}-{b}" for c, b in BY_BACKEND])
def test_case_traffic_via_istiod(case: golden.Case, backend: str, mesh: IstioMesh) -> None:
    outcome = golden.compile_case(case, backend)
    assert outcome.plan is not None, outcome.error
    try:
        failures = golden.check_traffic(case, outcome, mesh)
    except CannotRun as exc:
        pytest.skip(str(exc))
    assert not failures, "\n".join(failures)
    mesh.check_no_nacks()


OTHER_GATEWAY_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-edge, namespace: bookinfo}
spec:
  hosts: [bookinfo.example.com]
  gateways: [shop-gateway]
  http:
  - {name: shop-reviews, match: [{uri: {prefix: /reviews}}], route: [{destination: {host: reviews}}]}
  - {name: shop-all, route: [{destination: {host: productpage}}]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gateway, namespace: bookinfo}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nowhere-edge, namespace: bookinfo}
spec:
  hosts: [nowhere.example.com]
  gateways: [missing-gateway]
  http: [{name: nowhere-all, route: [{destination: {host: productpage}}]}]
"""


def test_the_edge_router_serves_every_gateway_a_virtual_service_names(mesh: IstioMesh, tmp_path) -> None:
    """The router is istiod's router proxy for meshgen-edge and for the baseline's Gateway bookinfo/shop-gateway
    (created alike, on the router's address), so a VirtualService bound to it routes at the edge, as in the Envoy
    backend's one edge; one bound to a Gateway that does not exist routes nowhere, in both (istiod: IST0101)."""
    shutil.copytree(GOLDEN / "single-fork", tmp_path / "case", symlinks=False)
    (tmp_path / "case" / golden.BASELINE / "shop-edge.yaml").write_text(OTHER_GATEWAY_VS)
    case = golden.Case("shop-edge", tmp_path / "case")
    outcome = golden.compile_case(case)
    assert outcome.plan is not None, outcome.error
    mesh.apply(outcome.plan, None, outcome.documents)
    gateways = {(g["metadata"]["namespace"], g["metadata"]["name"]) for g in mesh.client.list(kinds.GATEWAY).items}
    assert gateways == {("istio-system", "meshgen-edge"), ("bookinfo", "shop-gateway")}
    assert mesh.router is not None and mesh.router.node("")["id"].startswith("router~")
    checks = [({"host": "bookinfo.example.com", "path": "/reviews/1", "via": "edge",
                "headers": {"x-meshgen-routing-key": "pr1234"}}, "reviews-v1|reviews-v2"),
              ({"host": "bookinfo.example.com", "via": "edge"}, "productpage-v1")]
    with RunningMesh() as envoy_mesh:  # the Envoy backend's edge must answer the same
        envoy_mesh.apply(outcome.plan)
        for request, served in checks:
            for sender in (mesh, envoy_mesh):
                response = sender.send(traffic.Request.model_validate(request))
                assert response.status == 200 and response.body["served_by"] in served.split("|"), (sender, request)
        not_exposed = traffic.Request.model_validate({"host": "ratings.bookinfo.svc.cluster.local", "via": "edge"})
        assert mesh.send(not_exposed).status == envoy_mesh.send(not_exposed).status == 404
        no_gateway = traffic.Request.model_validate({"host": "nowhere.example.com", "via": "edge"})
        assert mesh.send(no_gateway).status == envoy_mesh.send(no_gateway).status == 404


def test_no_fork_is_an_endpoint_of_a_baseline_service(mesh: IstioMesh) -> None:
    """Invariant 2 as the real registry decides it: WorkloadEntries carry the pod labels meshgen stored in the
    cluster, and istiod picks each Service's endpoints by its selector."""
    apply(mesh, "one-sandbox-two-services")
    client = mesh.client
    entries = [e for ns in mesh.namespaces for e in client.list(kinds.WORKLOAD_ENTRY, ns).items]
    forks = {e["spec"]["address"] for e in entries if LABEL_SANDBOX in e["spec"]["labels"]}
    assert len(forks) == 2
    fork_hosts = {f"{s['metadata']['name']}.bookinfo.svc.cluster.local"
                  for s in client.list(kinds.SERVICE, "bookinfo").items
                  if LABEL_SANDBOX in (s["metadata"].get("labels") or {})}
    for proxy in mesh.proxies:
        endpoints = {name: found for name, found in proxy.endpoints().items()
                     if name.startswith("outbound|") and name.endswith(".bookinfo.svc.cluster.local")}
        assert endpoints, proxy.name
        for name, found in endpoints.items():
            if name.split("|")[3] in fork_hosts:
                assert found and found <= forks, (proxy.name, name, found)
            else:
                assert not found & forks, (proxy.name, name, found)


def test_a_rejected_configuration_is_caught(mesh: IstioMesh, istio: Istiod) -> None:
    apply(mesh, "single-fork")
    client = mesh.client
    client.create(BAD_LUA)
    try:
        deadline = time.monotonic() + 30
        with pytest.raises(Nacked) as caught:
            while time.monotonic() < deadline:
                istio.raise_nacks()
                time.sleep(0.1)
        assert "script load error" in str(caught.value) or "Lua" in str(caught.value), caught.value
        with pytest.raises(Exception, match="rejected"):
            mesh.check_no_nacks()
    finally:
        client.delete(kinds.Ref("EnvoyFilter", "istio-system", "test-broken-lua"))
    deadline = time.monotonic() + 30  # the next good push is acked, and istiod forgets the error
    while any(not s.synced for s in istio.sync()) and time.monotonic() < deadline:
        time.sleep(0.1)
    istio.raise_nacks()
    istio.wait_synced([p.proxy.id for p in mesh.proxies])


def test_verify_via_istio_starts_its_own_stack_and_reports_each_check(tmp_path, istio) -> None:
    """The whole local Istio of a CI job's check, from the command line: its own etcd, kube-apiserver and istiod."""
    case = GOLDEN / "single-fork"
    checks = tmp_path / "traffic.yaml"
    checks.write_text("- request: {host: reviews.bookinfo.svc.cluster.local,\n"
                      "            headers: {x-meshgen-routing-key: pr1234}}\n"
                      "  expect: {servedBy: reviews-v1@pr-1234}\n"
                      "- name: wrong on purpose\n"
                      "  request: {host: ratings.bookinfo.svc.cluster.local}\n"
                      "  expect: {servedBy: ratings-v1@pr-1234}\n")
    result = subprocess.run([sys.executable, "-m", "meshgen", "verify", "-f", str(case / golden.SANDBOXES),
                             "--baseline", str(case / golden.BASELINE), "--traffic", str(checks), "--via", "istio"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr
    assert "PASS    GET reviews.bookinfo.svc.cluster.local/" in result.stdout
    assert "FAIL    wrong on purpose" in result.stdout
    assert result.stdout.splitlines()[-1] == "1 passed, 1 failed (via istio)"
