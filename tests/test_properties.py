"""Properties over random baselines and sandbox sets (DESIGN invariants 1, 2, 3, 5 at plan and backend level)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshgen import compiler
from meshgen.backends import istio
from meshgen.baseline.loading import load_baseline
from meshgen.baseline.model import SERVICE, resolve_host, selects, service_selector
from meshgen.errors import InvalidInput
from meshgen.ownership import without_meshgen_routes
from meshgen.plan.planning import build_plan
from meshgen.spec.loading import load_specs
from meshgen.spec.models import DEFAULT_POLICY
from tests.strategies import as_documents, baselines, sandbox_sets

HEADER = DEFAULT_POLICY.spec.routing_header
DOMAIN = DEFAULT_POLICY.spec.cluster_domain


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    baseline = draw(baselines())
    return baseline, draw(sandbox_sets(baseline))


def compile_objects(baseline_objs: list[dict[str, Any]], spec_objs: list[dict[str, Any]]):
    baseline = load_baseline(as_documents(baseline_objs, "baseline.yaml"))
    specs = load_specs(as_documents(spec_objs, "sandboxes.yaml"))
    plan = build_plan(specs, baseline, DEFAULT_POLICY)
    return plan, istio.render(plan)


def has_key_match(route: dict[str, Any]) -> bool:
    matches = route.get("match") or []
    return bool(matches) and all(HEADER in (m.get("headers") or {}) for m in matches)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenarios())
def test_compile_is_deterministic_and_pure(scenario) -> None:
    baseline_objs, spec_objs = scenario
    before = copy.deepcopy((baseline_objs, spec_objs))
    try:
        _, first = compile_objects(baseline_objs, spec_objs)
    except InvalidInput:
        return  # conflicts and gateway-only hosts are legitimate errors
    _, second = compile_objects(copy.deepcopy(baseline_objs), list(reversed(copy.deepcopy(spec_objs))))
    assert compiler.dump(first) == compiler.dump(second)  # input order does not matter either
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in first]
    assert len(keys) == len(set(keys)), "two objects with one identity"
    assert (baseline_objs, spec_objs) == before  # inputs are never mutated


@PROPERTY
@given(scenarios())
def test_baseline_routes_survive_in_order(scenario) -> None:
    baseline_objs, spec_objs = scenario
    try:
        _, objects = compile_objects(baseline_objs, spec_objs)
    except InvalidInput:
        return
    users = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in baseline_objs
             if o["kind"] == "VirtualService"}
    for obj in objects:
        if obj["kind"] != "VirtualService" or obj["metadata"].get("labels", {}).get(
                "app.kubernetes.io/managed-by") == "meshgen":
            continue
        original = users[(obj["metadata"]["namespace"], obj["metadata"]["name"])]
        restored = without_meshgen_routes(obj)
        assert restored["spec"] == original["spec"]  # every baseline route, unchanged, in order
        assert restored["metadata"] == original["metadata"]


@PROPERTY
@given(scenarios())
def test_no_route_without_the_key_reaches_a_fork(scenario) -> None:
    baseline_objs, spec_objs = scenario
    try:
        plan, objects = compile_objects(baseline_objs, spec_objs)
    except InvalidInput:
        return
    fork_hosts = {s.fork.fqdn for s in plan.fork_services()}
    for obj in objects:
        if obj["kind"] != "VirtualService":
            continue
        for route in obj["spec"]["http"]:
            dests = {resolve_host(d["destination"]["host"], obj["metadata"]["namespace"], DOMAIN)
                     for d in route.get("route") or []}
            if dests & fork_hosts:
                assert has_key_match(route), route


@PROPERTY
@given(scenarios())
def test_sandbox_routes_are_faithful_copies_placed_before_their_route(scenario) -> None:
    baseline_objs, spec_objs = scenario
    try:
        plan, _ = compile_objects(baseline_objs, spec_objs)
    except InvalidInput:
        return
    for table in plan.tables:
        rendered = [istio.render_route(plan, table, r) for r in table.routes]
        for position, planned in enumerate(table.routes):
            if planned.role.value != "sandbox":
                continue
            # Directly before the route it shadows: only other sandbox copies of that same route in between.
            following = table.routes[position + 1:]
            nxt = next(r for r in following if r.role.value != "sandbox")
            assert nxt.baseline_index == planned.baseline_index
            assert all(r.baseline_index == planned.baseline_index for r in following[:following.index(nxt)])
            base = table.baseline[planned.baseline_index].origin.body
            copy_ = rendered[position]
            ignored = {"name", "match", "route"}
            assert {k: v for k, v in copy_.items() if k not in ignored} == \
                   {k: v for k, v in base.items() if k not in ignored}
            base_matches = base.get("match") or [{}]
            assert len(copy_["match"]) == len(base_matches)
            for got, want in zip(copy_["match"], base_matches, strict=True):
                headers = dict(got["headers"])
                assert headers.pop(HEADER) == {"exact": planned.owner.routing_key}
                assert {**got, "headers": headers} == {**want, "headers": want.get("headers") or {}} or \
                       ({**got, "headers": headers} == {**want, "headers": {}} and "headers" not in want)


@PROPERTY
@given(scenarios())
def test_no_baseline_service_selects_a_fork(scenario) -> None:
    baseline_objs, spec_objs = scenario
    try:
        plan, objects = compile_objects(baseline_objs, spec_objs)
    except InvalidInput:
        return
    services = plan.baseline.of_kind(SERVICE)
    for obj in objects:
        if obj["kind"] == "Deployment":
            labels = obj["spec"]["template"]["metadata"]["labels"]
            ns = obj["metadata"]["namespace"]
            assert not [s for s in services if s.namespace == ns and selects(service_selector(s), labels)]
            assert selects(obj["spec"]["selector"]["matchLabels"], labels)


@pytest.mark.parametrize("case", ["user-vs-paths-rewrite", "two-sandboxes-one-host", "route-group-three",
                                  "user-vs-other-hosts", "cross-namespace"])
def test_compiling_over_the_applied_result_is_idempotent(case: str) -> None:
    """Once the output is applied, the cluster holds the user's VS with meshgen routes plus meshgen's own objects.
    Read back as the baseline, that compiles to the same output: meshgen never mistakes its output for baseline."""
    from tests.conftest import GOLDEN

    inputs = compiler.read_inputs([str(GOLDEN / case / "sandboxes.yaml")], [str(GOLDEN / case / "baseline")])
    first = compiler.render(compiler.plan_of(inputs))
    live = {r.key: r.body for r in inputs.baseline.resources}
    for obj in first:
        live[type(next(iter(live)))(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
    baseline = load_baseline(as_documents(list(live.values()), "live"))
    second = istio.render(build_plan(inputs.specs, baseline, inputs.policy))
    assert compiler.dump(first) == compiler.dump(second)
