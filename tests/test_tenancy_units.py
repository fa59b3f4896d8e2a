"""The pure parts of running meshgen for many tenants: the planner's per-owner failure model, the admission
policy's CEL messages, the routing-header transition steps, stored policies, statuses and TTLs of whatever is
stored. (Everything here is proven against a real kube-apiserver in tests/kube/test_tenancy.py.)"""

from __future__ import annotations

import datetime
import random
from typing import Any

import pytest

from meshgen.baseline.loading import load_baseline
from meshgen.documents import parse_documents
from meshgen.errors import ClusterError, InvalidInput, Location
from meshgen.kube import admission, discovery, indexes, kinds, policies, statuses, storing, transition
from meshgen.kube.kinds import Ref
from meshgen.plan import guardrails
from meshgen.plan.model import ExclusionReason, HeaderChange
from meshgen.plan.planning import build_plan, isolating_plan
from meshgen.spec import names
from meshgen.spec.loading import load_specs
from meshgen.spec.models import DEFAULT_POLICY, MeshPolicy
from meshgen.validation import validate_model
from tests.conftest import EXAMPLES

BOOKINFO = EXAMPLES / "baseline" / "bookinfo.yaml"  # with the team's own VirtualService for reviews
BASELINE = load_baseline(parse_documents(BOOKINFO.read_text(), "baseline.yaml"))


def sandbox(name: str, workload: str = "reviews-v1", extra: str = "") -> str:
    return (f"apiVersion: meshgen.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: {name}}}\nspec:\n"
            f"  forks: [{{forkOf: {{namespace: bookinfo, name: {workload}}}}}]\n{extra}")


def specs(*texts: str, source: str = "cluster") -> Any:
    """Specs as the reconciler sees stored ones: one source per object."""
    documents = []
    for i, text in enumerate(texts):
        documents += parse_documents(text, f"{source}: {i}")
    return load_specs(documents)


def policy(**guardrails_: Any) -> MeshPolicy:
    return validate_model(MeshPolicy, {"apiVersion": "meshgen.dev/v1alpha1", "kind": "MeshPolicy",
                                       "metadata": {"name": "p"}, "spec": {"guardrails": guardrails_}},
                          Location("p"))  # type: ignore[return-value]


ALL = {("Sandbox", n) for n in ("a", "b", "c", "gone", "late")} | {("RouteGroup", "g")}


# -- the planner: failures stay with their owner -------------------------------------------------------------------

def test_a_stored_sandbox_that_no_longer_compiles_is_left_out_and_the_rest_planned() -> None:
    stored = specs(sandbox("a"), sandbox("gone", "reviews-v9"), sandbox("b", "ratings-v1"))
    plan = isolating_plan(stored, BASELINE, DEFAULT_POLICY, ALL)
    assert sorted(o.name for o in plan.owners) == ["a", "b"]
    [left_out] = plan.excluded
    assert (left_out.name, left_out.reason) == ("gone", ExclusionReason.COMPILE_FAILED)
    assert "Deployment bookinfo/reviews-v9 is not in the baseline" in left_out.message
    assert not any(c.sandbox == "gone" for c in plan.claims)
    with pytest.raises(InvalidInput, match="reviews-v9"):  # the same spec, being applied: an error
        isolating_plan(stored, BASELINE, DEFAULT_POLICY, ALL - {("Sandbox", "gone")})
    with pytest.raises(InvalidInput, match="reviews-v9"):  # and offline, always
        build_plan(stored, BASELINE, DEFAULT_POLICY)


def test_between_two_owners_the_junior_yields_and_the_order_of_specs_does_not_matter() -> None:
    texts = [sandbox("a", extra="  routingKey: shared\n"), sandbox("late", "ratings-v1", "  routingKey: shared\n")]
    age = {"a": "2026-01-02", "late": "2026-01-01"}  # "late" was stored first: it is the senior one
    for order in (texts, list(reversed(texts))):
        plan = isolating_plan(specs(*order), BASELINE, DEFAULT_POLICY, ALL, lambda o: (age.get(o[1], "~"), o[1]))
        assert [o.name for o in plan.owners] == ["late"] and [e.name for e in plan.excluded] == ["a"]
        assert "routing key 'shared' of Sandbox a is already used by Sandbox late" in plan.excluded[0].message
    default = isolating_plan(specs(*texts), BASELINE, DEFAULT_POLICY, ALL)  # by name without ages
    assert [e.name for e in default.excluded] == ["late"]


def test_a_guardrail_tightened_after_storing_leaves_its_violators_out_with_that_reason() -> None:
    stored = specs(sandbox("a"), sandbox("b", "ratings-v1", "  ttl: {duration: 1h}\n"))
    plan = isolating_plan(stored, BASELINE, policy(maxTTL="2h"), ALL)
    assert [(e.name, e.reason) for e in plan.excluded] == [("a", ExclusionReason.GUARDRAIL_VIOLATED)]
    assert guardrails.ttl_missing_message("p") in plan.excluded[0].message


def test_max_sandboxes_per_host_leaves_out_the_juniors() -> None:
    stored = specs(sandbox("a"), sandbox("b"), sandbox("c"))
    age = {"c": "1", "a": "2", "b": "3"}
    plan = isolating_plan(stored, BASELINE, policy(maxSandboxesPerHost=2), ALL, lambda o: (age[o[1]], o[1]))
    assert [e.name for e in plan.excluded] == ["b"]


def test_a_problem_of_no_owner_is_raised_whoever_is_tolerated() -> None:
    token = validate_model(MeshPolicy, {"apiVersion": "meshgen.dev/v1alpha1", "kind": "MeshPolicy",
                                        "metadata": {"name": "edge"}, "spec": {"ingress": {
                                            "mode": "token", "token": {"secretRef": {"namespace": "istio-system",
                                                                                     "name": "missing"}}}}},
                           Location("p"))
    with pytest.raises(InvalidInput, match="needs the edge token"):
        isolating_plan(specs(sandbox("a")), BASELINE, token, ALL)  # type: ignore[arg-type]


def test_a_baseline_virtual_service_meshgen_cannot_edit_is_blamed_on_the_sandboxes_claiming_its_host() -> None:
    text = BOOKINFO.read_text().replace("spec:\n  hosts: [reviews]", "spec:\n  gateways: [edge]\n  hosts: [reviews]")
    baseline = load_baseline(parse_documents(text, "baseline.yaml"))
    plan = isolating_plan(specs(sandbox("a"), sandbox("b", "ratings-v1")), baseline, DEFAULT_POLICY, ALL)
    assert [o.name for o in plan.owners] == ["b"] and [e.name for e in plan.excluded] == ["a"]


# -- the admission policy's messages ------------------------------------------------------------------------------

def test_a_message_function_becomes_a_cel_string_expression() -> None:
    expression = admission.message_expression(guardrails.denied_namespace_message, "p",
                                              admission.Cel("object.spec.forks[0].forkOf.namespace"))
    assert expression == ('"guardrail deniedNamespaces (MeshPolicy p): namespace " + '
                          '(object.spec.forks[0].forkOf.namespace) + " is denied"')
    assert admission.message_expression(guardrails.ttl_missing_message, 'a "quoted" name') == \
        '"guardrail maxTTL (MeshPolicy a \\"quoted\\" name): a sandbox must set spec.ttl"'


def test_the_admission_policy_has_a_validation_per_rule_and_always_the_probe() -> None:
    assert len(admission.validations(DEFAULT_POLICY)) == 3  # denied namespaces (forks, virtual), probe
    strict = policy(allowedNamespaces=["shop"], allowedRegistries=["r.example.com"], maxTTL="1d",
                    requiredLabels=["team"])
    assert len(admission.validations(strict)) == 2 + 2 + 1 + 2 + 1 + 1
    vap, binding, group_vap, group_binding = admission.objects(strict)
    assert vap["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["sandboxes"]
    assert binding["spec"] == {"policyName": "meshgen-guardrails", "validationActions": ["Deny"]}
    # A route group carries requiredLabels only, in a policy of its own (its schema has no forks or ttl)
    assert group_vap["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["routegroups"]
    assert "variables" not in group_vap["spec"]
    assert len(group_vap["spec"]["validations"]) == 1 + 1
    assert "route group" in group_vap["spec"]["validations"][0]["messageExpression"]
    assert group_binding["spec"]["policyName"] == "meshgen-guardrails-route-groups"
    assert len(admission.validations(DEFAULT_POLICY, kinds.ROUTE_GROUP)) == 1  # the probe
    assert admission.policy_hash(strict) != admission.policy_hash(DEFAULT_POLICY)
    assert admission.probe(strict)["metadata"]["labels"] == {"team": "probe"}
    assert admission.probe(strict, kinds.ROUTE_GROUP)["kind"] == "RouteGroup"


def test_registry_entries_match_on_reference_boundaries() -> None:
    expression = admission.allowed_expression("i", ["registry.example.com/", "docker.io/library/nginx"])
    assert '.startsWith("registry.example.com/")' in expression
    assert '.startsWith("registry.example.com")' not in expression  # .evil.io must not pass
    assert '.startsWith("docker.io/library/nginx:")' in expression  # a repository: a tag may follow
    assert '== "registry.example.com"' not in expression  # a registry alone is no image


# -- the routing-header change ---------------------------------------------------------------------------------

def live(filter_headers: str | None, *route_headers: str) -> dict[Ref, dict[str, Any]]:
    out: dict[Ref, dict[str, Any]] = {}
    if filter_headers is not None:
        ref = Ref("EnvoyFilter", "istio-system", "meshgen-routing-key")
        out[ref] = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "meshgen"},
                                 "annotations": {transition.ANNOTATION_HEADERS: filter_headers}}}
    for i, header in enumerate(route_headers):
        out[Ref("VirtualService", "ns", f"vs{i}")] = {"metadata": {"annotations": {
            "meshgen.dev/routes": "meshgen-a-0", transition.ANNOTATION_HEADER: header}}}
    return out


FILTER = Ref("EnvoyFilter", "istio-system", "meshgen-routing-key")


@pytest.mark.parametrize(("state", "routes", "also"), [
    (live("old", "old", "old"), "old", ("old",)),            # 1. the filter writes both; routes stay
    (live("new,old", "old", "old"), "new", ("old",)),        # 2. routes move; the filter is unchanged
    (live("new,old", "new", "old"), "new", ("old",)),        #    (one moved, the other not yet)
    (live("new,old", "new", "new"), "new", ()),              # 3. the filter writes the new one alone
    (live("new", "new"), "new", ()),                         # steady
    (live(None), "new", ()),                                 # nothing live yet
    (live("a,old", "a", "old"), "a", ("a", "old")),          # a second change before the first finished
])
def test_each_step_keeps_every_live_route_on_a_header_the_live_filter_writes(state: Any, routes: str,
                                                                             also: tuple[str, ...]) -> None:
    step = transition.step("new", state, FILTER, ("VirtualService",))
    assert (step.routes, step.also) == (routes, also)
    assert step.change() == (None if step.done else HeaderChange(routes, also))
    written = set(step.written())
    assert {h for r, b in state.items() if r.kind == "VirtualService"
            for h in [b["metadata"]["annotations"][transition.ANNOTATION_HEADER]]} <= written
    assert routes in written


# -- stored policies, statuses, TTLs ------------------------------------------------------------------------------

def stored(*policies_: MeshPolicy) -> discovery.StoredSpecs:
    return discovery.StoredSpecs((), (), "1", tuple(
        {**policies.document(p), "metadata": {"name": p.metadata.name}} for p in policies_))


def test_the_stored_policy_is_the_only_one_and_insisting_on_another_shows_the_difference() -> None:
    with pytest.raises(ClusterError, match="no MeshPolicy is stored"):
        policies.chosen(stored(), None)
    assert policies.chosen(stored(DEFAULT_POLICY), None) == DEFAULT_POLICY
    assert policies.chosen(stored(DEFAULT_POLICY), DEFAULT_POLICY) == DEFAULT_POLICY
    with pytest.raises(InvalidInput) as refused:
        policies.chosen(stored(DEFAULT_POLICY), policy(maxTTL="1d"), "mine.yaml")
    assert "+    maxTTL: 1d" in str(refused.value) and "mine.yaml" in str(refused.value)
    with pytest.raises(ClusterError, match="stores 2 MeshPolicies"):
        policies.chosen(stored(DEFAULT_POLICY, policy()), None)


def stored_sandbox(ttl: str | None, created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    spec: dict[str, Any] = {"forks": []}
    if ttl is not None:
        spec["ttl"] = {"duration": ttl}
    return {"kind": "Sandbox", "metadata": {"name": "s", "creationTimestamp": created}, "spec": spec}


def test_whatever_ttl_is_stored_expiry_never_raises_and_respects_max_ttl() -> None:
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    a_year = start + datetime.timedelta(seconds=names.MAX_DURATION_SECONDS)
    assert storing.expires_at(stored_sandbox("10000000w")) == a_year
    assert storing.expires_at(stored_sandbox("9" * 400 + "w")) == a_year
    assert storing.expires_at(stored_sandbox("10000000w"), limit=3600) == start + datetime.timedelta(hours=1)
    assert storing.expires_at(stored_sandbox("nonsense")) is None
    assert storing.expires_at({"kind": "Sandbox", "metadata": {"name": "s"}, "spec": "not a mapping"}) is None
    assert storing.expires_at({**stored_sandbox("1h"), "spec": {"ttl": ["a", "list"]}}) is None


def test_a_status_says_what_was_made_and_keeps_its_transition_time() -> None:
    plan = isolating_plan(specs(sandbox("a"), sandbox("gone", "reviews-v9")), BASELINE, DEFAULT_POLICY, ALL)
    from meshgen.backends import istio

    outcome = statuses.Outcome.of(plan, istio.render(plan), plan.excluded)
    a = {"kind": "Sandbox", "metadata": {"name": "a", "generation": 3}}
    status = statuses.desired(outcome, a, "2026-01-01T00:00:00Z")
    assert status["hosts"] == ["reviews.bookinfo.svc.cluster.local"]
    assert {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "namespace": "bookinfo",
            "name": "reviews"} in status["objects"]
    assert status["conditions"][0] == {"type": "Reconciled", "status": "True", "reason": "Reconciled",
                                            "message": "routing 1 host", "observedGeneration": 3,
                                            "lastTransitionTime": "2026-01-01T00:00:00Z"}
    later = statuses.desired(outcome, {**a, "status": status}, "2026-02-02T00:00:00Z")
    assert later == status, "nothing changed: the same status, so no write"
    gone = statuses.desired(outcome, {"kind": "Sandbox", "metadata": {"name": "gone"}}, "2026-01-01T00:00:00Z")
    assert (gone["hosts"], gone["objects"], gone["conditions"][0]["reason"]) == ([], [], "CompileFailed")
    assert gone["routingKey"] == indexes.routing_key({"kind": "Sandbox", "metadata": {"name": "gone"}})


def test_seniority_puts_specs_being_applied_after_every_stored_one() -> None:
    listed = discovery.StoredSpecs(tuple({"kind": "Sandbox", "metadata": {"name": n, "creationTimestamp": t}}
                                         for n, t in (("b", "2026-01-01T00:00:00Z"), ("a", "2026-01-02T00:00:00Z"))),
                                   (), "1")
    key = discovery.seniority(listed)
    owners = [("Sandbox", "new"), ("Sandbox", "a"), ("Sandbox", "b")]
    random.shuffle(owners)
    assert [o[1] for o in sorted(owners, key=key)] == ["b", "a", "new"]


def test_while_the_header_changes_the_normaliser_writes_the_key_into_every_routing_header() -> None:
    from meshgen.backends import normaliser
    from tests import luaenv

    new = policy().model_copy(update={"spec": policy().spec.model_copy(update={"routing_header": "x-new"})})
    lua = normaliser.lua_source(new, ("x-meshgen-routing-key",))
    both = dict(luaenv.run(lua, [("baggage", "meshgen-routing-key=pr1")]))
    assert both["x-new"] == both["x-meshgen-routing-key"] == "pr1"
    from_old = dict(luaenv.run(lua, [("x-meshgen-routing-key", "pr2")]))  # a hop still sending the old header
    assert from_old["x-new"] == from_old["x-meshgen-routing-key"] == "pr2"
    none = dict(luaenv.run(lua, [("x-meshgen-routing-key", "")]))
    assert "x-new" not in none and "x-meshgen-routing-key" not in none
    assert normaliser.lua_source(new) == normaliser.lua_source(new, ()), "no change in progress: the usual filter"
