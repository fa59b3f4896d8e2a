"""Changing the stored policy's routing header on a live cluster is make-before-break: after every single write
`meshgen install --policy` makes, a request carrying a sandbox's key, normalised by the EnvoyFilter *live at that
moment* (its Lua, run in LuaJIT), matches that sandbox's routes in every VirtualService live at that moment, and
misses every fast path to the baseline. Proven on the real kube-apiserver by the order of writes."""

from __future__ import annotations

from typing import Any

import pytest

from meshgen.kube import installing, kinds
from meshgen.kube.client import Client
from meshgen.kube.kinds import Ref
from meshgen.kube.reconciling import Reconciler
from meshgen.kube.transition import ANNOTATION_HEADER, ANNOTATION_HEADERS
from meshgen.spec.models import DEFAULT_POLICY, MeshPolicy
from tests import luaenv
from tests.kube.conftest import Cluster
from tests.kube.test_reconcile import sandbox

pytestmark = pytest.mark.kube

NEW_HEADER = "x-team-route"
FILTER = Ref("EnvoyFilter", "istio-system", "meshgen-routing-key")


def sidecar_lua(envoy_filter: dict[str, Any]) -> str:
    patch = next(p for p in envoy_filter["spec"]["configPatches"] if p["match"]["context"] == "SIDECAR_OUTBOUND")
    return str(patch["patch"]["value"]["typed_config"]["default_source_code"]["inline_string"])


def matches(block: dict[str, Any], headers: dict[str, str]) -> bool:
    return all(headers.get(name) == condition["exact"] for name, condition in (block.get("headers") or {}).items()
               if "exact" in condition)


class Checking(Client):
    """The platform's client: after each write to a VirtualService or the EnvoyFilter, checks the routing of
    every sandbox key against what the cluster then holds."""

    def __init__(self, admin: Client, namespace: str, keys: dict[str, str]) -> None:
        super().__init__(admin.api)
        self.admin, self.namespace, self.keys = admin, namespace, keys
        self.seen: list[str] = []

    def _check(self, kind: str, dry_run: bool) -> None:
        if dry_run or kind not in ("VirtualService", "EnvoyFilter"):
            return
        envoy_filter = self.admin.get(FILTER)
        services = self.admin.list(kinds.VIRTUAL_SERVICE, self.namespace).items
        written = envoy_filter["metadata"]["annotations"][ANNOTATION_HEADERS]
        matched = ", ".join(f"{v['metadata']['name']} matches {v['metadata']['annotations'][ANNOTATION_HEADER]}"
                            for v in services)
        self.seen.append(f"{kind}: filter writes {written}; {matched}")
        lua = sidecar_lua(envoy_filter)
        for owner, key in self.keys.items():
            headers = dict(luaenv.run(lua, [("baggage", f"userid=7,meshgen-routing-key={key}")]))
            for vs in services:
                for route in vs["spec"]["http"]:
                    name = str(route.get("name", ""))
                    if name == "meshgen-no-key":
                        header = next(iter(route["match"][0]["withoutHeaders"]))
                        assert headers.get(header), f"after {self.seen[-1]}: {owner}'s request takes the fast path"
                    elif name.startswith(f"meshgen-{owner}-"):
                        assert any(matches(b, headers) for b in route["match"]), \
                            f"after {self.seen[-1]}: {owner}'s request ({headers}) misses route {name} of " \
                            f"{vs['metadata']['name']}"

    def create(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        out = super().create(body, dry_run)
        self._check(body["kind"], dry_run)
        return out

    def patch(self, ref: Ref, operations: Any, dry_run: bool = False) -> dict[str, Any]:
        out = super().patch(ref, operations, dry_run)
        self._check(ref.kind, dry_run)
        return out


def test_a_new_routing_header_never_leaves_a_keyed_request_without_its_fork(cluster: Cluster) -> None:
    cluster.create_baseline()
    ns = cluster.namespace
    a, b = f"{ns}-a", f"{ns}-b"
    cluster.apply(sandbox(a) + "---\n" + sandbox(b, "ratings-v1"))  # reviews: the user's VS; ratings: meshgen's own
    keys = {a: a.replace("-", ""), b: b.replace("-", "")}
    platform = Checking(cluster.client(), ns, keys)
    platform._check("EnvoyFilter", False)  # the starting state holds too
    changed = MeshPolicy.model_validate({
        "apiVersion": "meshgen.dev/v1alpha1", "kind": "MeshPolicy", "metadata": {"name": "default"},
        "spec": {"routingHeader": NEW_HEADER,
                 "propagation": [{"header": NEW_HEADER}, {"baggage": "meshgen-routing-key"}]}})
    installing.install(platform, changed)
    old = DEFAULT_POLICY.spec.routing_header
    steps = platform.seen
    assert steps[0] == f"EnvoyFilter: filter writes {old}; meshgen-ratings matches {old}, reviews matches {old}"
    assert steps[1] == f"EnvoyFilter: filter writes {NEW_HEADER},{old}; meshgen-ratings matches {old}, reviews " \
                       f"matches {old}", "1. the filter writes both headers; routes unchanged"
    assert f"filter writes {NEW_HEADER},{old}; meshgen-ratings matches {NEW_HEADER}, reviews matches {NEW_HEADER}" \
        in steps[-2], "2. routes move to the new header while both are written"
    assert steps[-1] == f"EnvoyFilter: filter writes {NEW_HEADER}; meshgen-ratings matches {NEW_HEADER}, reviews " \
                        f"matches {NEW_HEADER}", "3. then the filter writes the new header alone"
    assert len(steps) == 5, steps  # one write of each VirtualService in step 2
    vs = cluster.get("VirtualService", "reviews")
    assert vs["spec"]["http"][0]["match"] == [{"headers": {NEW_HEADER: {"exact": keys[a]}}}]
    gateway = next(p for p in cluster.client().get(FILTER)["spec"]["configPatches"]
                   if p["match"]["context"] == "GATEWAY")
    assert f'"{old}"' not in gateway["patch"]["value"]["typed_config"]["default_source_code"]["inline_string"]
    after = Reconciler(cluster.client(), changed)
    assert after.changes(after.observe()) == [], "converged"
