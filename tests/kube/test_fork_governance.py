"""A fork is governed and served like what it forks, through real istiod and Envoy:

- an AuthorizationPolicy DENY that selects the original denies on its fork too (enforced by istiod's RBAC filter
  on the fork's sidecar inbound listener), and only because of meshgen's copy;
- a route matching the original as caller (``sourceLabels``) matches its fork as caller;
- the fork host gets the connection limits istiod gives the original's subset: excess concurrent requests to it
  overflow, through istiod as through the Envoy backend.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Iterator

import pytest

from meshgen import golden, traffic
from meshgen.errors import EnvironmentProblem
from meshgen.kube import kinds
from meshgen.testenv.istiomesh import IstioMesh
from meshgen.testenv.mesh import RunningMesh
from tests.conftest import GOLDEN

pytestmark = pytest.mark.kube

REVIEWS = "reviews.bookinfo.svc.cluster.local"


@pytest.fixture
def mesh(istio_mesh: IstioMesh) -> Iterator[IstioMesh]:
    yield istio_mesh
    istio_mesh.clear()


def apply(mesh: IstioMesh | RunningMesh, name: str, topology: traffic.Topology | None = None) -> golden.Outcome:
    case = golden.discover(GOLDEN, [name])[0]
    outcome = golden.compile_case(case)
    assert outcome.plan is not None, outcome.error
    mesh.apply(outcome.plan, topology, outcome.documents)
    return outcome


def send(mesh: IstioMesh | RunningMesh, path: str, headers: dict[str, str] | None = None,
         host: str = REVIEWS) -> traffic.Response:
    return mesh.send(traffic.Request(host=host, path=path, headers=headers or {}))


def test_a_deny_that_selects_the_original_denies_on_its_fork(mesh: IstioMesh) -> None:
    apply(mesh, "policy-authorization")
    key = {"x-meshgen-routing-key": "pr77"}
    for headers, served in (({}, ("reviews-v1", "reviews-v2")), (key, ("reviews-v1@pr-77",))):
        allowed = send(mesh, "/reviews/1", headers)
        assert allowed.status == 200 and allowed.body["served_by"] in served, (headers, allowed)
        for path in ("/admin", "/admin/users"):  # reviews-no-admin, by selector: the copy covers the fork
            denied = send(mesh, path, headers)
            assert (denied.status, denied.body) == (403, "RBAC: access denied"), (path, headers, denied)
        assert send(mesh, "/debug", headers).status == 403  # namespace-wide: covers the fork as it is

    # Without meshgen's copy the fork escapes the policy: the copy is what denies there.
    copy = kinds.Ref("AuthorizationPolicy", "bookinfo", "reviews-no-admin-reviews-v1-pr-77")
    assert mesh.client.get(copy)["spec"]["selector"]["matchLabels"]["meshgen.dev/sandbox"] == "pr-77"
    mesh.client.delete(copy)
    deadline = time.monotonic() + 30
    while (escaped := send(mesh, "/admin", key)).status != 200:
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"istiod never pushed the copy's removal: {escaped}")
        time.sleep(0.2)
    assert escaped.body["served_by"] == "reviews-v1@pr-77"
    assert send(mesh, "/admin").status == 403  # the original is still covered by its policy
    mesh.check_no_nacks()


def test_a_fork_calls_as_the_original_calls(mesh: IstioMesh) -> None:
    """reviews-v2 calls ratings-v2 (a route matching it by sourceLabels); its fork does too, carrying the key or
    not, because the caller copy matches the fork's own pod labels in the proxy istiod configures for it."""
    apply(mesh, "caller-source-labels", traffic.Topology(calls={"reviews": ("ratings",)}))
    fork = send(mesh, "/", {"x-meshgen-routing-key": "pr5"})
    assert fork.status == 200 and traffic.hops(fork.body) == "reviews-v2@pr-5 -> ratings-v2", fork
    for _ in range(6):  # the baseline's reviews-v1 calls ratings-v1, reviews-v2 calls ratings-v2
        answer = send(mesh, "/")
        assert traffic.hops(answer.body) in ("reviews-v1 -> ratings-v1", "reviews-v2 -> ratings-v2"), answer
    mesh.check_no_nacks()

    # Without the caller copy the fork is one of "everyone else": the copy is what routes it.
    ref = kinds.Ref("VirtualService", "bookinfo", "ratings")
    live = mesh.client.get(ref)
    assert live["spec"]["http"][0]["name"] == "meshgen-pr-5-0"
    mesh.client.patch(ref, [{"op": "test", "path": "/metadata/resourceVersion",
                             "value": live["metadata"]["resourceVersion"]},
                            {"op": "remove", "path": "/spec/http/0"}])
    deadline = time.monotonic() + 30
    while traffic.hops((answer := send(mesh, "/", {"x-meshgen-routing-key": "pr5"})).body) != \
            "reviews-v2@pr-5 -> ratings-v1":
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"istiod never pushed the caller copy's removal: {answer}")
        time.sleep(0.2)


@contextlib.contextmanager
def either(via: str, istio_mesh: IstioMesh) -> Iterator[IstioMesh | RunningMesh]:
    """The session's istiod mesh (cleared afterwards), or a fresh mesh of the Envoy backend."""
    if via == "istio":
        try:
            yield istio_mesh
        finally:
            istio_mesh.clear()
        return
    with RunningMesh() as envoy_mesh:
        yield envoy_mesh


def _overflows(mesh: IstioMesh | RunningMesh, headers: dict[str, str], count: int = 5) -> int:
    """How many of ``count`` requests sent at once, each answered after 2 s, the caller's Envoy refuses for the
    destination's connection limits (503 with ``x-envoy-overloaded``). A host allowing one connection and one
    pending request admits two per Envoy worker thread (Envoy may exceed a connection limit by one per worker),
    so some of five always overflow; without limits none do."""
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(lambda _: send(mesh, "/", headers), range(count)))
    refused = [a for a in answers if a.status == 503 and a.header("x-envoy-overloaded") == "true"]
    assert all(a.status == 200 for a in answers if a not in refused), answers
    assert len(refused) < count, answers  # the limit admits some
    return len(refused)


@pytest.mark.parametrize("via", ["istio", "envoy"])
def test_the_fork_host_has_the_subsets_connection_limits(via: str, istio_mesh: IstioMesh) -> None:
    """Subset v2 of reviews allows one connection and one pending request; the fork of reviews-v2 is reached
    through its own host, whose DestinationRule must carry that limit for requests with the key to overflow as
    requests to reviews-v2 do. reviews-v1 (no limit) answers them all."""
    delay = "reviews-v1=2,reviews-v2=2,reviews-v2@slow-reviews=2"
    with either(via, istio_mesh) as mesh:
        apply(mesh, "subset-traffic-policy")
        limited = {"end-user": "jason", "x-echo-delay": delay}
        assert _overflows(mesh, limited) > 0, via
        assert _overflows(mesh, {**limited, "x-meshgen-routing-key": "slow-reviews"}) > 0, via
        assert _overflows(mesh, {"x-meshgen-routing-key": "slow-reviews", "x-echo-delay": delay}) > 0, via
        assert _overflows(mesh, {"x-echo-delay": delay}) == 0, via  # subset v1: the host's limit of 100
