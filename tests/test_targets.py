"""Targets (``MeshPolicy.spec.target``): what each data plane can do, checked at compile time, and the key matches
a sandbox route carries where no normaliser runs, proven through real Envoy (ambient waypoints are Envoys)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshgen import compiler
from meshgen.backends import normaliser
from meshgen.backends.envoy import configuration
from meshgen.errors import InvalidInput
from meshgen.plan import targets
from meshgen.plan.routing import MatchKind
from meshgen.spec.models import MeshPolicy, Target
from meshgen.testenv.envoy import EnvoyProcess
from meshgen.testenv.processes import free_port
from tests.conftest import GOLDEN


def policy(**spec: Any) -> MeshPolicy:
    return MeshPolicy.model_validate({"apiVersion": "meshgen.dev/v1alpha1", "kind": "MeshPolicy",
                                      "metadata": {"name": "p"}, "spec": spec})


def test_the_istio_backend_runs_on_sidecars_only() -> None:
    with pytest.raises(ValueError, match="backend istio needs target istio-sidecar"):
        policy(backend="istio", target="linkerd")
    assert policy(backend="gateway-api", target="linkerd").spec.target is Target.LINKERD


def test_with_the_normaliser_a_copy_matches_the_routing_header_alone() -> None:
    found = targets.key_matches(policy(backend="gateway-api"), "x-meshgen-routing-key", "pr1")
    assert [(m.name, m.value.kind, m.value.value) for m in found if m.value] == [
        ("x-meshgen-routing-key", MatchKind.EXACT, "pr1")]


def test_without_it_every_propagation_source_is_an_alternative() -> None:
    ambient = policy(backend="gateway-api", target="istio-ambient",
                     propagation=[{"header": "x-meshgen-routing-key"}, {"header": "x-team-key"},
                                  {"baggage": "meshgen-routing-key"}, {"tracestate": "mg"}])
    found = [(m.name, m.value.kind) for m in targets.key_matches(ambient, "x-meshgen-routing-key", "pr1") if m.value]
    assert found == [("x-meshgen-routing-key", MatchKind.EXACT), ("x-team-key", MatchKind.EXACT),
                     ("baggage", MatchKind.REGEX), ("tracestate", MatchKind.REGEX)]


def compile_for(spec: dict[str, Any], tmp_path: Path) -> compiler.Inputs:
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps({"apiVersion": "meshgen.dev/v1alpha1", "kind": "MeshPolicy",
                                "metadata": {"name": "platform"}, "spec": spec}))
    return compiler.read_inputs([str(GOLDEN / "single-fork" / "sandboxes.yaml")],
                                [str(GOLDEN / "_shared" / "bookinfo.yaml")], str(path))


def test_a_target_without_regex_matches_refuses_baggage_naming_the_target(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        compiler.plan_of(compile_for({"backend": "gateway-api", "target": "generic"}, tmp_path))
    text = refused.value.render()
    assert "policy.yaml:1: spec.propagation[1]: target generic cannot read routing keys from baggage" in text
    assert "spec.propagation[2]: target generic cannot read routing keys from tracestate" in text
    assert "fix: have callers set the routing header x-meshgen-routing-key" in text


def test_a_target_without_the_edge_filter_warns_and_writes_no_envoy_filter(tmp_path: Path) -> None:
    plan = compiler.plan_of(compile_for({"backend": "gateway-api", "target": "linkerd"}, tmp_path))
    assert [w.message.split(":")[0] for w in plan.warnings] == ["target linkerd runs no edge filter"]
    objects = compiler.render(plan)
    assert not [o for o in objects if o["kind"] in ("EnvoyFilter", "DestinationRule", "VirtualService")]
    (route,) = [o for o in objects if o["kind"] == "HTTPRoute"]
    copy = route["spec"]["rules"][0]
    assert [m["headers"][0]["name"] for m in copy["matches"]] == ["x-meshgen-routing-key", "baggage", "tracestate"]
    assert [m["headers"][0]["type"] for m in copy["matches"]] == ["Exact", "RegularExpression", "RegularExpression"]


def test_the_envoy_backend_runs_what_the_target_runs(tmp_path: Path) -> None:
    """Without the normaliser the local mesh runs no Lua filter (as istiod's proxies get no EnvoyFilter) and
    routes each sandbox copy by its own key conditions in one list; on sidecars, the normaliser and the key's list
    selected by the routing header (golden/target-ambient-baggage proves both through real Envoy and istiod)."""
    def built(spec: dict[str, Any]) -> tuple[set[str], dict[str, Any]]:
        config = configuration.build(compiler.plan_of(compile_for(spec, tmp_path)))
        filters = {f["name"] for listener in config.listeners for chain in listener["filter_chains"]
                   for hcm in chain["filters"] for f in hcm["typed_config"].get("http_filters", [])}
        vhosts = {v["name"]: v for rc in config.route_configs for v in rc["virtual_hosts"]}
        return filters, vhosts["reviews.bookinfo.svc.cluster.local:9080"]

    filters, reviews = built({"backend": "gateway-api", "target": "istio-ambient"})
    assert normaliser.FILTER_NAME not in filters and "matcher" not in reviews
    keyed = [r for r in reviews["routes"] if any(h["name"] != ":path" for h in r["match"].get("headers", []))]
    assert [h["name"] for r in keyed for h in r["match"]["headers"]] == ["x-meshgen-routing-key", "baggage",
                                                                        "tracestate"]
    filters, reviews = built({"backend": "gateway-api"})
    assert normaliser.FILTER_NAME in filters and "routes" not in reviews and "matcher" in reviews


# What a waypoint's Envoy gets from istiod for a sandbox copy matching baggage: a safe_regex header match.
BAGGAGE = targets.member_regex("baggage", "meshgen-routing-key", "pr1")
TRACESTATE = targets.member_regex("tracestate", "meshgen-routing-key", "pr1")


class Oracle(EnvoyProcess):
    """One Envoy answering "key" where a header matches a regex, "none" otherwise (direct responses)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, "regex-oracle")
        self.port = free_port()

    def bootstrap(self) -> dict[str, Any]:
        routes = [{"match": {"prefix": "/", "headers": [{"name": header, "string_match": {"safe_regex": {
            "regex": regex}}}]}, "direct_response": {"status": 200, "body": {"inline_string": header}}}
            for header, regex in (("baggage", BAGGAGE), ("tracestate", TRACESTATE))]
        routes.append({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "none"}}})
        hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                        "HttpConnectionManager",
               "stat_prefix": "oracle", "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                                                            "routes": routes}]},
               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
        return {"static_resources": {"listeners": [{
            "name": "oracle", "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}]}}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    envoy = Oracle(tmp_path_factory.mktemp("oracle"))
    envoy.start()
    try:
        yield envoy
    finally:
        envoy.stop()


def matched(oracle: Oracle, headers: list[tuple[str, str]]) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", oracle.port, timeout=10)
    try:
        connection.putrequest("GET", "/")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        return connection.getresponse().read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(("headers", "expected"), [
    ([("baggage", "meshgen-routing-key=pr1")], "baggage"),
    ([("baggage", "userid=7, meshgen-routing-key = pr1 ;p=1,other=x")], "baggage"),
    ([("baggage", "userid=7"), ("baggage", "meshgen-routing-key=pr1")], "baggage"),  # repeated lines: one list
    ([("baggage", "meshgen-routing-key=pr10")], "none"),  # another key
    ([("baggage", "xmeshgen-routing-key=pr1")], "none"),  # another member
    ([("baggage", "meshgen-routing-key=xpr1")], "none"),
    ([("baggage", "userid=meshgen-routing-key=pr1")], "none"),  # inside another member's value
    ([("tracestate", "vendor=a,meshgen-routing-key=pr1")], "tracestate"),
    ([("tracestate", "meshgen-routing-key=pr1x")], "none"),
])
def test_the_baggage_and_tracestate_regexes_through_real_envoy(oracle: Oracle, headers: list[tuple[str, str]],
                                                               expected: str) -> None:
    assert matched(oracle, headers) == expected
