"""A fork is governed like what it forks (DESIGN invariant 10): the label-keyed policies that select the original
get sandbox-owned copies that select the fork, and routes matching the original as caller match the fork too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from meshgen import compiler
from meshgen.ownership import LABEL_SANDBOX, MANAGED_BY
from tests.conftest import BOOKINFO

SANDBOX = """\
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1}
spec:
  routingKey: pr1
  forks: [{forkOf: {namespace: bookinfo, name: reviews-v2}}]
"""

# The fork of reviews-v2 in sandbox pr-1: its own selector (what a copy selects it by). bookinfo's Services select
# on app, so that label is the one the fork has its own value of.
FORK_SELECTOR = {"app": "reviews-pr-1", "version": "v2", "meshgen.dev/sandbox": "pr-1",
                 "meshgen.dev/fork-of": "reviews-v2"}


def compile_with(tmp_path: Path, extra: str, sandbox: str = SANDBOX) -> tuple[list[dict[str, Any]], list[str]]:
    (tmp_path / "s.yaml").write_text(sandbox)
    (tmp_path / "extra.yaml").write_text(extra)
    inputs = compiler.read_inputs([str(tmp_path / "s.yaml")], [str(BOOKINFO), str(tmp_path / "extra.yaml")])
    plan = compiler.plan_of(inputs)
    return compiler.render(plan), [w.render() for w in plan.warnings]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def policy(kind: str, name: str, spec: str, namespace: str = "bookinfo", api: str = "security.istio.io/v1") -> str:
    return f"---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"


@pytest.mark.parametrize("kind", ["AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication"])
def test_a_security_policy_selecting_the_original_is_copied_to_select_the_fork(tmp_path, kind: str) -> None:
    body = {"AuthorizationPolicy": "{selector: {matchLabels: {app: reviews}}, action: DENY, "
                                   "rules: [{to: [{operation: {paths: [/admin]}}]}]}",
            "PeerAuthentication": "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, "
                                  "portLevelMtls: {'9080': {mode: PERMISSIVE}}}",
            "RequestAuthentication": "{selector: {matchLabels: {app: reviews}}, "
                                     "jwtRules: [{issuer: issuer.example.com}]}"}[kind]
    objects, warnings = compile_with(tmp_path, policy(kind, "guard", body, api="security.istio.io/v1beta1"))
    copies = of_kind(objects, kind)
    assert [c["metadata"]["name"] for c in copies] == ["guard-reviews-v2-pr-1"]
    copy = copies[0]
    assert copy["apiVersion"] == "security.istio.io/v1" and copy["metadata"]["namespace"] == "bookinfo"
    assert copy["metadata"]["labels"] == {MANAGED_BY: "meshgen", LABEL_SANDBOX: "pr-1"}
    assert copy["metadata"]["annotations"]["meshgen.dev/policy-of"] == "bookinfo/guard"
    assert copy["spec"]["selector"] == {"matchLabels": FORK_SELECTOR}
    original = YAML(typ="safe").load(body)
    assert {k: v for k, v in copy["spec"].items() if k != "selector"} == \
        {k: v for k, v in original.items() if k != "selector"}
    fork = of_kind(objects, "Deployment")[0]
    assert FORK_SELECTOR.items() <= fork["spec"]["template"]["metadata"]["labels"].items()
    assert not warnings


@pytest.mark.parametrize(("spec", "namespace"), [
    ("{action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}", "bookinfo"),  # namespace-wide: covers it
    ("{action: DENY, rules: [{}]}", "istio-system"),  # mesh-wide
    ("{selector: {matchLabels: {app: ratings}}, action: DENY, rules: [{}]}", "bookinfo"),  # another workload
    ("{selector: {matchLabels: {app: reviews}}, action: DENY, rules: [{}]}", "other"),  # another namespace
    # a label no Service selects on: the fork keeps it, so the policy selects the fork as it is
    ("{selector: {matchLabels: {version: v2}}, action: DENY, rules: [{}]}", "bookinfo"),
])
def test_a_policy_that_already_covers_the_fork_or_never_covered_the_original_is_not_copied(
        tmp_path, spec: str, namespace: str) -> None:
    objects, _ = compile_with(tmp_path, policy("AuthorizationPolicy", "p", spec, namespace))
    assert of_kind(objects, "AuthorizationPolicy") == []


def test_a_root_namespace_policy_is_copied_into_the_root_namespace(tmp_path) -> None:
    objects, _ = compile_with(tmp_path, policy("AuthorizationPolicy", "p", "{selector: {matchLabels: "
                                               "{app: reviews}}, action: DENY, rules: [{}]}", "istio-system"))
    assert [(c["metadata"]["namespace"], c["spec"]["selector"]["matchLabels"]) for c in
            of_kind(objects, "AuthorizationPolicy")] == [("istio-system", FORK_SELECTOR)]


def test_a_target_ref_policy_is_not_copied_and_says_so(tmp_path) -> None:
    objects, warnings = compile_with(tmp_path, policy("AuthorizationPolicy", "waypoint", "{targetRefs: [{kind: "
                                                      "Service, group: '', name: reviews}], action: DENY, "
                                                      "rules: [{}]}"))
    assert of_kind(objects, "AuthorizationPolicy") == []
    assert warnings == ["warning: Sandbox pr-1: AuthorizationPolicy bookinfo/waypoint applies to Service reviews by "
                        "targetRef, not to Deployment bookinfo/reviews-v2's fork behind its own Service: meshgen "
                        "copies policies that select pods, not ones bound to a Service; select the pods with "
                        "spec.selector to cover the fork"]


NETWORK = "networking.k8s.io/v1"


def test_a_network_policy_selecting_the_original_is_copied_for_the_fork(tmp_path) -> None:
    spec = ("{podSelector: {matchExpressions: [{key: app, operator: In, values: [reviews]}]}, policyTypes: [Ingress], "
            "ingress: [{from: [{podSelector: {matchLabels: {app: productpage}}}, {podSelector: {matchLabels: "
            "{app: reviews}}}], ports: [{port: 9080}]}]}")
    objects, _ = compile_with(tmp_path, policy("NetworkPolicy", "reviews-in", spec, api=NETWORK))
    copies = {c["metadata"]["name"]: c["spec"] for c in of_kind(objects, "NetworkPolicy")}
    fork_peer = {"podSelector": {"matchLabels": FORK_SELECTOR}}
    assert copies == {
        # the fork is a target as the original is; among its peers, the fork stands beside the original
        "reviews-in-reviews-v2-pr-1": {
            "podSelector": {"matchLabels": FORK_SELECTOR}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "productpage"}}},
                                  {"podSelector": {"matchLabels": {"app": "reviews"}}}, fork_peer],
                         "ports": [{"port": 9080}]}]},
        # additive: the original's pods accept the fork as they accept the original
        "reviews-in-peer-reviews-v2-pr-1": {
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["reviews"]}]},
            "policyTypes": ["Ingress"], "ingress": [{"from": [fork_peer], "ports": [{"port": 9080}]}]},
    }


def test_a_network_policy_peer_naming_the_original_gets_an_additive_copy(tmp_path) -> None:
    """ratings accepts reviews (also from another namespace, by namespaceSelector) and sends to reviews; the
    copies let the fork in and out the same way, keeping the namespace selector and ports."""
    spec = ("{podSelector: {matchLabels: {app: ratings}}, policyTypes: [Ingress, Egress], "
            "ingress: [{from: [{namespaceSelector: {matchLabels: {team: books}}, podSelector: {matchLabels: "
            "{app: reviews, version: v2}}}, {ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 9080}]}, "
            "{from: [{podSelector: {matchLabels: {app: details}}}]}], "
            "egress: [{to: [{podSelector: {matchLabels: {app: reviews}}}]}]}")
    objects, _ = compile_with(tmp_path, policy("NetworkPolicy", "ratings", spec, namespace="tools", api=NETWORK))
    copies = {c["metadata"]["name"]: (c["metadata"]["namespace"], c["spec"]) for c in of_kind(objects, "NetworkPolicy")}
    fork = {"matchLabels": FORK_SELECTOR}
    assert copies == {"ratings-peer-reviews-v2-pr-1": ("tools", {
        "podSelector": {"matchLabels": {"app": "ratings"}}, "policyTypes": ["Ingress"],
        # the egress peer has no namespaceSelector: it names pods in tools only, not the fork in bookinfo
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "books"}}, "podSelector": fork}],
                     "ports": [{"port": 9080}]}]})}


def test_an_egress_peer_counts_only_where_the_policy_governs_egress(tmp_path) -> None:
    spec = ("{podSelector: {matchLabels: {app: ratings}}, policyTypes: [Ingress], "
            "egress: [{to: [{podSelector: {matchLabels: {app: reviews}}}]}]}")
    objects, _ = compile_with(tmp_path, policy("NetworkPolicy", "ratings", spec, api=NETWORK))
    assert of_kind(objects, "NetworkPolicy") == []
    implicit = ("{podSelector: {matchLabels: {app: ratings}}, "
                "egress: [{to: [{podSelector: {matchLabels: {app: reviews}}}]}]}")
    objects, _ = compile_with(tmp_path, policy("NetworkPolicy", "ratings", implicit, api=NETWORK))
    assert [c["spec"]["policyTypes"] for c in of_kind(objects, "NetworkPolicy")] == [["Egress"]]


@pytest.mark.parametrize(("selector", "labels", "selected"), [
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "x"}, False),
])
def test_label_selectors_have_kubernetes_semantics(selector, labels, selected) -> None:
    from meshgen.baseline.model import label_selector_matches

    assert label_selector_matches(selector, labels) is selected


def test_copies_are_removed_from_the_baseline_when_read_back(tmp_path) -> None:
    """Compiling over the compiled output (a cluster that holds the copies) gives the same output: copies are
    meshgen's, not baseline."""
    extra = policy("AuthorizationPolicy", "guard", "{selector: {matchLabels: {app: reviews}}, action: DENY, "
                                                    "rules: [{}]}")
    first, _ = compile_with(tmp_path, extra)
    from meshgen.documents import dump_yaml

    again, _ = compile_with(tmp_path, extra + dump_yaml(of_kind(first, "AuthorizationPolicy")))
    assert again == first


# -- the fork as caller -------------------------------------------------------------------------------------------

CALLER_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  http:
  - name: from-v2
    match: [{sourceLabels: {app: reviews, version: v2}, uri: {prefix: /ratings}}, {headers: {x-test: {exact: a}}}]
    route: [{destination: {host: ratings, subset: v2}}]
    timeout: 3s
  - name: rest
    route: [{destination: {host: ratings, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""


def test_a_route_matching_the_original_as_caller_gets_a_copy_matching_the_fork(tmp_path) -> None:
    objects, _ = compile_with(tmp_path, CALLER_VS)
    vs = next(o for o in of_kind(objects, "VirtualService") if o["metadata"]["name"] == "ratings")
    assert [r["name"] for r in vs["spec"]["http"]] == ["meshgen-pr-1-0", "from-v2", "rest"]
    copy = vs["spec"]["http"][0]
    assert copy == {"name": "meshgen-pr-1-0", "match": [{"sourceLabels": FORK_SELECTOR, "uri": {"prefix": "/ratings"}}],
                    "route": [{"destination": {"host": "ratings", "subset": "v2"}}], "timeout": "3s"}
    assert vs["metadata"]["annotations"]["meshgen.dev/routes"] == "meshgen-pr-1-0"


def test_a_caller_copy_gets_key_copies_when_its_destination_is_claimed(tmp_path) -> None:
    """A second sandbox forks ratings: requests carrying its key from the reviews fork reach the ratings fork
    through the caller copy's own key copy, placed before it."""
    both = SANDBOX + """---
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-2}
spec:
  routingKey: pr2
  forks: [{forkOf: {namespace: bookinfo, name: ratings-v1}}]
"""
    objects, _ = compile_with(tmp_path, CALLER_VS, both)
    vs = next(o for o in of_kind(objects, "VirtualService") if o["metadata"]["name"] == "ratings")
    names = [r["name"] for r in vs["spec"]["http"]]
    assert names == ["meshgen-pr-2-0", "meshgen-pr-1-0", "meshgen-pr-2-1", "from-v2", "meshgen-pr-2-2", "rest"]
    key_of_caller = vs["spec"]["http"][0]
    assert key_of_caller["match"] == [{"sourceLabels": FORK_SELECTOR, "uri": {"prefix": "/ratings"},
                                       "headers": {"x-meshgen-routing-key": {"exact": "pr2"}}}]
    assert key_of_caller["route"] == [{"destination": {"host": "ratings-pr-2.bookinfo.svc.cluster.local"}}]


def test_without_a_fork_of_the_caller_nothing_changes(tmp_path) -> None:
    other = SANDBOX.replace("reviews-v2", "details-v1")
    objects, _ = compile_with(tmp_path, CALLER_VS, other)
    assert all(o["metadata"]["name"] != "ratings" for o in of_kind(objects, "VirtualService"))
