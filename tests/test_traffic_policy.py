"""A fork's DestinationRule carries what istiod applies to the original: the subset's traffic policy merged over
the host's, port by port, as istiod's MergeSubsetTrafficPolicy does (the expected values below are that function's
behaviour, worked out by hand from its source in the pinned istio.io/istio module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshgen import compiler
from tests.conftest import BOOKINFO

A = {"simple": "ROUND_ROBIN"}
B = {"simple": "RANDOM"}
POOL = {"http": {"http1MaxPendingRequests": 1}}
OUTLIER = {"consecutive5xxErrors": 1}


@pytest.mark.parametrize(("top", "subset", "port", "want"), [
    ({"loadBalancer": A}, None, 9080, {"loadBalancer": A}),
    (None, {"loadBalancer": B}, 9080, {"loadBalancer": B}),
    # the subset's fields replace the host's one by one
    ({"loadBalancer": A, "connectionPool": POOL}, {"loadBalancer": B}, 9080,
     {"loadBalancer": B, "connectionPool": POOL}),
    ({"loadBalancer": A}, {"outlierDetection": OUTLIER, "tunnel": {"protocol": "CONNECT"}}, 9080,
     {"loadBalancer": A, "outlierDetection": OUTLIER, "tunnel": {"protocol": "CONNECT"}}),
    # a host port entry is the port's whole policy: the top level's other fields are not inherited
    ({"connectionPool": POOL, "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": A}]},
     {"outlierDetection": OUTLIER}, 9080, {"loadBalancer": A, "outlierDetection": OUTLIER}),
    ({"connectionPool": POOL, "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": A}]},
     {"outlierDetection": OUTLIER}, 9090, {"connectionPool": POOL, "outlierDetection": OUTLIER}),
    # a subset port entry replaces all four port-level fields, set or not
    ({"loadBalancer": A, "connectionPool": POOL},
     {"portLevelSettings": [{"port": {"number": 9080}, "outlierDetection": OUTLIER}]}, 9080,
     {"outlierDetection": OUTLIER}),
])
def test_merge_is_istiods(top, subset, port, want) -> None:
    from meshgen.plan.traffic_policy import merged

    assert merged(top, subset, port) == want


def test_the_fork_policy_reproduces_the_merge_on_every_port() -> None:
    from meshgen.plan.traffic_policy import fork_policy, merged

    top = {"connectionPool": POOL, "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": A}]}
    subset = {"outlierDetection": OUTLIER}
    policy, exact = fork_policy(top, subset, [9080, 9090])
    assert exact
    assert policy == {"connectionPool": POOL, "outlierDetection": OUTLIER,
                      "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": A, "outlierDetection": OUTLIER}]}
    assert policy is not None
    for port in (9080, 9090, 9999):  # a rule without subsets: istiod builds each port from the policy alone
        assert merged(policy, None, port) == merged(top, subset, port)


def test_a_field_a_port_entry_cannot_carry_makes_it_inexact() -> None:
    from meshgen.plan.traffic_policy import fork_policy

    top = {"portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": A}]}
    policy, exact = fork_policy(top, {"proxyProtocol": {"version": "V1"}}, [9080])
    assert not exact and policy is not None


def test_without_a_subset_policy_the_hosts_is_copied_as_written() -> None:
    from meshgen.plan.traffic_policy import fork_policy

    top = {"loadBalancer": A, "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": B}]}
    assert fork_policy(top, None, [9080]) == (top, True)
    assert fork_policy(None, None, [9080]) == (None, True)


RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: bookinfo}}
spec:
  host: reviews
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}, trafficPolicy: {{connectionPool: {{http: {{http1MaxPendingRequests: 1}}}}}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: bookinfo}}
spec:
  hosts: [reviews]
  http: {routes}
"""


def fork_rules(tmp_path: Path, routes: str, workload: str = "reviews-v2") -> tuple[dict[str, Any], list[str]]:
    (tmp_path / "s.yaml").write_text("apiVersion: meshgen.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: pr-1}\n"
                                     f"spec: {{forks: [{{forkOf: {{namespace: bookinfo, name: {workload}}}}}]}}\n")
    (tmp_path / "dr.yaml").write_text(RULE.format(routes=routes))
    inputs = compiler.read_inputs([str(tmp_path / "s.yaml")], [str(BOOKINFO), str(tmp_path / "dr.yaml")])
    plan = compiler.plan_of(inputs)
    rules = {o["metadata"]["name"]: o for o in compiler.render(plan) if o["kind"] == "DestinationRule"}
    return rules, [w.message for w in plan.warnings]


def test_a_fork_routed_to_through_a_subset_gets_the_subsets_policy_merged(tmp_path) -> None:
    rules, warnings = fork_rules(tmp_path, "[{route: [{destination: {host: reviews, subset: v2}}]}]")
    assert rules["reviews-pr-1"]["spec"]["trafficPolicy"] == {
        "loadBalancer": {"simple": "ROUND_ROBIN"}, "connectionPool": {"http": {"http1MaxPendingRequests": 1}}}
    assert rules["reviews-pr-1"]["metadata"]["annotations"]["meshgen.dev/traffic-policy-of"] == "bookinfo/reviews"
    assert not warnings


def test_a_subset_that_does_not_select_the_original_does_not_count(tmp_path) -> None:
    rules, _ = fork_rules(tmp_path, "[{route: [{destination: {host: reviews, subset: v2}}]}]", "reviews-v1")
    assert rules["reviews-pr-1"]["spec"]["trafficPolicy"] == {"loadBalancer": {"simple": "ROUND_ROBIN"}}


def test_reached_both_with_and_without_the_subset_the_first_route_wins_with_a_warning(tmp_path) -> None:
    rules, warnings = fork_rules(tmp_path, "[{match: [{uri: {prefix: /a}}], route: [{destination: {host: reviews}}]},"
                                           " {route: [{destination: {host: reviews, subset: v2}}]}]")
    assert rules["reviews-pr-1"]["spec"]["trafficPolicy"] == {"loadBalancer": {"simple": "ROUND_ROBIN"}}
    assert warnings == [
        "the baseline reaches Deployment bookinfo/reviews-v2 behind reviews.bookinfo.svc.cluster.local through the "
        "host without a subset, subset v2, whose traffic policies differ; its fork gets that of the host (the first "
        "routed to)"]
