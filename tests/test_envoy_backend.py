"""The Envoy backend as a compiler: what it emits for a plan, checked without traffic (traffic is test_traffic).

Facts: the output is deterministic and valid for real Envoy (``envoy --mode validate``); sandbox selection is a
matcher tree whose ``on_no_match`` is exactly the sandbox-free route list (invariant 1), no baseline route or
baseline cluster reaches a fork (invariant 2), and each key's list is the baseline list with that key's copies
inserted (invariant 3); Istio semantics are translated faithfully; anything untranslatable fails loudly.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from meshgen import compiler, golden
from meshgen.backends import envoy
from meshgen.backends.envoy import routes as envoy_routes
from meshgen.baseline.loading import load_baseline
from meshgen.errors import InvalidInput
from meshgen.plan import virtual_services
from meshgen.plan.model import Plan, ServicePort
from meshgen.plan.planning import build_plan
from meshgen.plan.routing import Destination, Origin
from meshgen.spec.loading import Specs, load_specs
from meshgen.spec.models import DEFAULT_POLICY
from meshgen.testenv.envoy import envoy_binary
from tests.conftest import BOOKINFO, EXAMPLES, GOLDEN, istio_samples
from tests.strategies import as_documents
from tests.test_properties import PROPERTY, scenarios

COMPILING = [c for c in golden.discover(GOLDEN) if (c.path / golden.EXPECTED).exists()]


def plan_of(case: str) -> Plan:
    path = GOLDEN / case
    policy = path / "policy.yaml"
    inputs = compiler.read_inputs([str(path / "sandboxes.yaml")], [str(path / "baseline")],
                                  str(policy) if policy.exists() else None)
    return compiler.plan_of(inputs)


def without_sandboxes(plan: Plan) -> Plan:
    return build_plan(Specs(), plan.baseline, plan.policy)


def vhosts(config: envoy.EnvoyConfig) -> dict[str, dict[str, Any]]:
    """The mesh's virtual hosts by name."""
    return {v["name"]: v for rc in config.route_configs if rc["name"] != envoy.EDGE_ROUTE_CONFIG
            for v in rc["virtual_hosts"]}


def edge_route_config(config: envoy.EnvoyConfig) -> dict[str, Any]:
    (found,) = [rc for rc in config.route_configs if rc["name"] == envoy.EDGE_ROUTE_CONFIG]
    return found


def all_vhosts(config: envoy.EnvoyConfig) -> dict[str, dict[str, Any]]:
    """The mesh's and the edge's virtual hosts (``edge/<name>``)."""
    edge = {f"edge/{v['name']}": v for v in edge_route_config(config)["virtual_hosts"]}
    return {**vhosts(config), **edge}


def baseline_routes(vhost: dict[str, Any]) -> list[dict[str, Any]]:
    """What a request without a (claimed) key is routed by."""
    if "matcher" in vhost:
        return list(vhost["matcher"]["on_no_match"]["action"]["typed_config"]["routes"])
    return list(vhost["routes"])


def key_lists(vhost: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    if "matcher" not in vhost:
        return {}
    entries = vhost["matcher"]["matcher_tree"]["exact_match_map"]["map"]
    return {k: v["action"]["typed_config"]["routes"] for k, v in entries.items()}


def clusters_of(routes: list[dict[str, Any]]) -> set[str]:
    out = set()
    for route in routes:
        action = route.get("route") or {}
        out.update([action["cluster"]] if "cluster" in action else
                   [c["name"] for c in (action.get("weighted_clusters") or {}).get("clusters", [])])
    return out


def test_compile_backend_envoy_is_deterministic_and_complete(meshgen) -> None:
    args = ("compile", "-f", str(EXAMPLES / "sandboxes.yaml"), "--baseline", str(EXAMPLES / "baseline"),
            "--backend", "envoy")
    first, second = meshgen(*args), meshgen(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    items = json.loads(meshgen(*args, "-o", "json").stdout)["items"]
    kinds = [o["@type"].rsplit(".", 1)[1] for o in items]
    assert kinds == sorted(kinds, key=["Listener", "Cluster", "RouteConfiguration"].index)
    # every bookinfo Service listens on 9080; the edge gateway has its own
    assert [o["name"] for o in items if o["@type"].endswith("RouteConfiguration")] == ["9080", "http.8080"]


def test_matcher_tree_for_a_claimed_host() -> None:
    plan = plan_of("single-fork")
    vhost = vhosts(envoy.build(plan))["reviews.bookinfo.svc.cluster.local:9080"]
    assert "routes" not in vhost
    tree = vhost["matcher"]["matcher_tree"]
    assert tree["input"]["typed_config"]["header_name"] == "x-meshgen-routing-key"
    (key, routes), = key_lists(vhost).items()
    assert key == "pr1234"
    assert [r["name"] for r in routes] == ["meshgen-pr-1234-0", "meshgen-default"]
    assert routes[0]["route"]["cluster"] == "outbound|9080||reviews-pr-1234.bookinfo.svc.cluster.local"
    assert routes[1] == baseline_routes(vhost)[0]
    assert vhost["domains"][:4] == ["reviews.bookinfo.svc.cluster.local", "reviews.bookinfo.svc.cluster.local:9080",
                                    "reviews.bookinfo", "reviews.bookinfo:9080"]


def test_hosts_without_claims_keep_a_plain_route_list() -> None:
    vhost = vhosts(envoy.build(plan_of("single-fork")))["ratings.bookinfo.svc.cluster.local:9080"]
    assert "matcher" not in vhost
    assert [r["route"]["cluster"] for r in vhost["routes"]] == ["outbound|9080||ratings.bookinfo.svc.cluster.local"]


def test_the_edge_routes_by_gateway_virtual_services_with_sandbox_copies() -> None:
    """golden/_shared/edge-gateway.yaml: one VirtualService for host "*" bound to the edge gateway."""
    config = envoy.build(plan_of("edge-strip"))
    edge = edge_route_config(config)
    assert edge["ignore_port_in_host_matching"] is True
    (vhost,) = edge["virtual_hosts"]
    assert (vhost["name"], vhost["domains"]) == ("*:8080", ["*"])
    assert [r["name"] for r in baseline_routes(vhost)] == ["productpage", "reviews"]
    assert {k: [r["name"] for r in v] for k, v in key_lists(vhost).items()} == {
        "pr1234": ["productpage", "meshgen-pr-1234-0", "reviews"]}
    copy = key_lists(vhost)["pr1234"][1]
    assert copy["route"]["cluster"] == "outbound|9080||reviews-pr-1234.bookinfo.svc.cluster.local"
    assert copy["match"]["headers"] == [{"name": ":authority",
                                         "string_match": {"exact": "reviews.bookinfo.svc.cluster.local"}}]
    (listener,) = [x for x in config.listeners if x["name"] == envoy.EDGE_LISTENER]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert listener["address"]["socket_address"] == {"address": config.addresses.edge, "port_value": 8080}
    assert hcm["use_remote_address"] is True and hcm["rds"]["route_config_name"] == "http.8080"
    assert "meshgen edge filter" in hcm["http_filters"][0]["typed_config"]["default_source_code"]["inline_string"]


def test_without_a_gateway_virtual_service_the_edge_answers_404() -> None:
    assert edge_route_config(envoy.build(plan_of("single-fork")))["virtual_hosts"] == [
        {"name": "blackhole:8080", "domains": ["*"], "routes": []}]


EDGE_VIRTUAL_SERVICES = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: bookinfo}
spec:
  hosts: [bookinfo.example.com]
  gateways: [edge]
  http:
  - {name: a-all, route: [{destination: {host: productpage}}]}
  - {name: a-reviews, match: [{uri: {prefix: /reviews}}], route: [{destination: {host: reviews}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: bookinfo}
spec:
  hosts: [bookinfo.example.com, ratings]
  gateways: [mesh, istio-system/other]
  http:
  - {name: b-ratings, match: [{uri: {prefix: /ratings}}], route: [{destination: {host: ratings}}]}
"""


def test_gateway_virtual_services_sharing_a_host_concatenate_with_catch_all_routes_last(tmp_path: Path) -> None:
    """istiod's gateway route configuration: routes of every VirtualService for a host in one virtual host,
    catch-all routes moved behind the others (SortVHostRoutes); a VirtualService bound to the mesh too counts."""
    (tmp_path / "edge.yaml").write_text(EDGE_VIRTUAL_SERVICES + GATEWAYS)
    inputs = compiler.read_inputs([str(GOLDEN / "single-fork" / "sandboxes.yaml")],
                                  [str(GOLDEN / "_shared" / "bookinfo.yaml"), str(tmp_path / "edge.yaml")])
    config = envoy.build(compiler.plan_of(inputs))
    edge = {v["name"]: v for v in edge_route_config(config)["virtual_hosts"]}
    assert sorted(edge) == ["bookinfo.example.com:8080", "ratings.bookinfo.svc.cluster.local:8080"]
    example = edge["bookinfo.example.com:8080"]
    assert example["domains"] == ["bookinfo.example.com"]
    assert [r["name"] for r in baseline_routes(example)] == ["a-reviews", "b-ratings", "a-all"]
    assert {k: [r["name"] for r in v] for k, v in key_lists(example).items()} == {
        "pr1234": ["meshgen-pr-1234-0", "a-reviews", "b-ratings", "a-all"]}


GATEWAYS = """\
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: bookinfo}
spec: {selector: {istio: ingressgateway}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: other, namespace: istio-system}
spec: {selector: {istio: ingressgateway}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]}
"""


def test_a_virtual_service_bound_to_a_missing_gateway_is_served_nowhere(tmp_path: Path) -> None:
    # istiod builds a gateway's routes from the VirtualServices bound to that Gateway: one naming a Gateway that
    # does not exist routes nothing (istioctl analyze: IST0101). The same VirtualService with its Gateway present
    # is served, so the test tells the two apart.
    served = {}
    for present in (False, True):
        (tmp_path / "edge.yaml").write_text(EDGE_VIRTUAL_SERVICES + (GATEWAYS if present else ""))
        inputs = compiler.read_inputs([str(GOLDEN / "single-fork" / "sandboxes.yaml")],
                                      [str(GOLDEN / "_shared" / "bookinfo.yaml"), str(tmp_path / "edge.yaml")])
        served[present] = sorted(v["name"] for v in edge_route_config(envoy.build(compiler.plan_of(inputs)))[
            "virtual_hosts"])
    assert served == {False: ["blackhole:8080"],
                      True: ["bookinfo.example.com:8080", "ratings.bookinfo.svc.cluster.local:8080"]}


def test_subset_clusters_select_by_labels_and_forks_are_nobodys_endpoint() -> None:
    inputs = compiler.read_inputs([str(EXAMPLES / "sandboxes.yaml")], [str(EXAMPLES / "baseline")])
    config = envoy.build(compiler.plan_of(inputs))
    identity = {(w.address, w.port): w.identity for w in config.addresses.workloads}

    def members(name: str) -> list[str]:
        (cluster,) = [c for c in config.clusters if c["name"] == name]
        found = [e["endpoint"]["address"]["socket_address"] for group in cluster["load_assignment"]["endpoints"]
                 for e in group["lb_endpoints"]]
        return sorted(identity[(a["address"], a["port_value"])] for a in found)

    assert members("outbound|9080||reviews.bookinfo.svc.cluster.local") == ["reviews-v1", "reviews-v2"]
    assert members("outbound|9080|v1|reviews.bookinfo.svc.cluster.local") == ["reviews-v1"]
    assert members("outbound|9080|v2|reviews.bookinfo.svc.cluster.local") == ["reviews-v2"]
    assert members("outbound|9080||reviews-pr-1234.bookinfo.svc.cluster.local") == ["reviews-v1@pr-1234"]
    # the fork host carries the baseline host's DestinationRule policy
    policies = {c["name"]: c["circuit_breakers"]["thresholds"][0]["max_pending_requests"] for c in config.clusters}
    assert policies["outbound|9080||reviews-pr-1234.bookinfo.svc.cluster.local"] == 100
    assert policies["outbound|9080||ratings.bookinfo.svc.cluster.local"] == 4294967295


@pytest.mark.parametrize(("name", "app_protocol", "http2"), [
    ("http", None, False), ("grpc", None, True), ("grpc-api", None, True), ("grpc-web", None, True),
    ("http2-x", None, True), ("http", "grpc", True), ("grpc", "http", False), ("web", "kubernetes.io/h2c", True),
    ("tcp", None, False),
])
def test_ports_istiod_calls_over_http2_are_called_over_http2(name: str, app_protocol: str | None,
                                                               http2: bool) -> None:
    """istiod's ConvertProtocol: appProtocol first, else the port name up to its first '-'."""
    assert ServicePort(name, 9090, "TCP", app_protocol).mesh_protocol.is_http2 is http2
    clusters = {c["name"]: c for c in envoy.build(plan_of("multi-port-service")).clusters}
    assert "typed_extension_protocol_options" in clusters["outbound|9090||api.shop.svc.cluster.local"]
    assert "typed_extension_protocol_options" not in clusters["outbound|8080||api.shop.svc.cluster.local"]


@pytest.mark.parametrize("case", COMPILING, ids=[c.name for c in COMPILING])
def test_output_is_valid_for_real_envoy(case: golden.Case, tmp_path: Path) -> None:
    """``envoy --mode validate`` on the case's resources (RDS inlined: validation does not read RDS files)."""
    config = envoy.build(plan_of(case.name))
    routes = {rc["name"]: rc for rc in config.route_configs}
    listeners = []
    for rendered in config.listeners:
        listener = json.loads(json.dumps(rendered))
        for chain in listener["filter_chains"]:  # a sniffed port's listener has an HTTP and a TCP chain
            typed = chain["filters"][0]["typed_config"]
            if "rds" in typed:
                route_config = dict(routes[typed.pop("rds")["route_config_name"]])
                route_config.pop("@type")
                typed["route_config"] = route_config
        listener.pop("@type")
        listeners.append(listener)
    clusters = [{k: v for k, v in c.items() if k != "@type"} for c in config.clusters]
    path = tmp_path / "static.json"
    path.write_text(json.dumps({"static_resources": {"listeners": listeners, "clusters": clusters}}))
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@PROPERTY
@given(scenarios())
def test_invariants_hold_for_random_plans(scenario) -> None:
    baseline_objs, spec_objs = scenario
    baseline = load_baseline(as_documents(baseline_objs, "baseline.yaml"))
    try:
        plan = build_plan(load_specs(as_documents(spec_objs, "sandboxes.yaml")), baseline, DEFAULT_POLICY)
        config = envoy.build(plan)
    except InvalidInput:
        return
    untouched = all_vhosts(envoy.build(without_sandboxes(plan)))
    fork_clusters = {c["name"] for c in config.clusters if c["name"].rsplit("|", 1)[1] in
                     {s.fork.fqdn for s in plan.fork_services()}}
    owners = {o.routing_key: o for o in plan.owners}
    for name, vhost in all_vhosts(config).items():  # the mesh's and the edge's
        if name not in untouched:
            continue  # a fork Service's own host: not baseline traffic
        base = baseline_routes(vhost)
        assert base == baseline_routes(untouched[name])  # 1: without a key, routing is as with no sandbox at all
        assert not clusters_of(base) & fork_clusters  # 2: baseline routes never reach a fork
        for key, routes in key_lists(vhost).items():  # 3: the baseline list, with this key's copies inserted
            prefix = owners[key].route_prefix
            assert [r for r in routes if not str(r.get("name", "")).startswith(prefix)] == base
            assert all(str(r.get("name", "")).startswith(prefix) for r in routes
                       if clusters_of([r]) & fork_clusters)


ROUTE_FACTS = [
    ({"route": [{"destination": {"host": "reviews"}}]},
     {"match": {"prefix": "/"}, "route": {"cluster": "C(reviews)", "timeout": "0s", "retry_policy": {
         "retry_on": envoy_routes.ISTIO_DEFAULT_RETRY_ON, "num_retries": 2,
         "retry_host_predicate": [envoy_routes._PREVIOUS_HOSTS], "host_selection_retry_max_attempts": "5"}}}),
    ({"timeout": "1m30s", "retries": {"attempts": 0}, "route": [{"destination": {"host": "reviews"}}]},
     {"match": {"prefix": "/"}, "route": {"cluster": "C(reviews)", "timeout": "90s"}}),
    ({"retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "gateway-error,503"},
      "route": [{"destination": {"host": "reviews"}}]},
     {"match": {"prefix": "/"}, "route": {"cluster": "C(reviews)", "timeout": "0s", "retry_policy": {
         "retry_on": "gateway-error,retriable-status-codes", "num_retries": 3, "retriable_status_codes": [503],
         "per_try_timeout": "0.5s", "retry_host_predicate": [envoy_routes._PREVIOUS_HOSTS],
         "host_selection_retry_max_attempts": "5"}}}),
    ({"match": [{"uri": {"exact": "/a"}, "method": {"exact": "POST"}}, {"uri": {"regex": "/b/[0-9]+"}}],
      "rewrite": {"uri": "/x", "authority": "other"}, "retries": {"attempts": 0},
      "route": [{"destination": {"host": "reviews"}}]},
     [{"match": {"path": "/a", "headers": [{"name": ":method", "string_match": {"exact": "POST"}}]},
       "route": {"cluster": "C(reviews)", "timeout": "0s", "prefix_rewrite": "/x", "host_rewrite_literal": "other"}},
      {"match": {"safe_regex": {"regex": "/b/[0-9]+"}},
       "route": {"cluster": "C(reviews)", "timeout": "0s", "prefix_rewrite": "/x", "host_rewrite_literal": "other"}}]),
    ({"match": [{"headers": {"x-a": {}}, "withoutHeaders": {"x-b": {}, "x-c": {"prefix": "v"}},
                 "queryParams": {"q": {"exact": "1"}}}], "retries": {"attempts": 0},
      "route": [{"destination": {"host": "a"}, "weight": 75}, {"destination": {"host": "b", "subset": "s"},
                                                               "weight": 25}]},
     {"match": {"prefix": "/", "headers": [
         {"name": "x-a", "present_match": True},
         {"name": "x-b", "present_match": True, "invert_match": True},
         {"name": "x-c", "string_match": {"prefix": "v"}, "invert_match": True, "treat_missing_header_as_empty": True}],
         "query_parameters": [{"name": "q", "string_match": {"exact": "1"}}]},
      "route": {"weighted_clusters": {"clusters": [{"name": "C(a)", "weight": 75}, {"name": "C(b/s)", "weight": 25}]},
                "timeout": "0s"}}),
    ({"directResponse": {"status": 418, "body": {"string": "teapot"}},
      "headers": {"response": {"set": {"x-a": "1"}, "add": {"x-b": "2"}, "remove": ["x-c"]}},
      "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 0.1}}}},
     {"match": {"prefix": "/"}, "direct_response": {"status": 418, "body": {"inline_string": "teapot"}},
      "response_headers_to_add": [
          {"header": {"key": "x-a", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
          {"header": {"key": "x-b", "value": "2"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}],
      "response_headers_to_remove": ["x-c"],
      "typed_per_filter_config": {envoy_routes.FAULT_FILTER: {
          "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
          "abort": {"http_status": 500, "percentage": {"numerator": 1000, "denominator": "MILLION"}}}}}),
]


def _cluster(destination: Destination) -> str:
    subset = destination.subset
    return f"C({destination.host.split('.')[0]}{f'/{subset}' if subset else ''})"


def _translated(istio_route: dict[str, Any], port: int) -> list[dict[str, Any]]:
    """An Istio ``http`` entry, read as istiod reads it and translated for ``port``."""
    route = virtual_services.read_route(istio_route, Origin(None, 0, istio_route), "bookinfo", "cluster.local")
    return envoy_routes.translate(route, envoy_routes.RouteSource(port, _cluster))


@pytest.mark.parametrize(("istio_route", "expected"), ROUTE_FACTS)
def test_istio_route_translation(istio_route: dict[str, Any], expected: Any) -> None:
    assert _translated(istio_route, 9080) == (expected if isinstance(expected, list) else [expected])


def test_match_blocks_for_another_port_are_dropped() -> None:
    route = {"match": [{"port": 9080, "uri": {"prefix": "/a"}}, {"port": 9090}], "retries": {"attempts": 0},
             "route": [{"destination": {"host": "api"}}]}
    assert [r["match"] for r in _translated(route, 9090)] == [{"prefix": "/"}]


VS_HEAD = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
"""


@pytest.mark.parametrize(("extra", "message"), [
    (VS_HEAD + "  - match: [{gateways: [mesh]}]\n    route: [{destination: {host: reviews}}]\n",
     "VirtualService bookinfo/reviews: http.0.match.0.gateways: not supported by the envoy backend"),
    (VS_HEAD + "  - route: [{destination: {host: reviews}}]\n    mirrorPercent: 5\n",
     "VirtualService bookinfo/reviews: http.0.mirrorPercent: not supported by the envoy backend"),
    (VS_HEAD + "  - route: [{destination: {host: reviews}}]\n    timeout: soon\n",
     "http.0.timeout: 'soon' is not a duration"),
    ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: bookinfo}\n"
     "spec:\n  host: reviews\n  trafficPolicy: {proxyProtocol: {version: V1}}\n",
     "DestinationRule bookinfo/r: trafficPolicy.proxyProtocol: not supported by the envoy backend"),
])
def test_untranslatable_fields_fail_the_compile_naming_object_and_field(extra: str, message: str, tmp_path: Path,
                                                                       meshgen) -> None:
    (tmp_path / "extra.yaml").write_text(extra)
    result = meshgen("compile", "-f", str(GOLDEN / "single-fork" / "sandboxes.yaml"), "--baseline",
                     str(GOLDEN / "_shared" / "bookinfo.yaml"), "--baseline", str(tmp_path / "extra.yaml"),
                     "--backend", "envoy")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "extra.yaml" in result.stderr
    assert "Traceback" not in result.stderr
    assert meshgen("compile", "-f", str(GOLDEN / "single-fork" / "sandboxes.yaml"), "--baseline",
                   str(GOLDEN / "_shared" / "bookinfo.yaml"), "--baseline", str(tmp_path / "extra.yaml"),
                   ).exit_code == 0  # the Istio backend passes such fields through untouched


@pytest.mark.parametrize(("destination", "cluster", "why"), [
    ("{host: reviews, subset: v9}", "outbound|9080|v9|reviews.bookinfo.svc.cluster.local",
     "no DestinationRule defines subset 'v9'"),
    ("{host: httpbin.example.com}", "outbound|9080||httpbin.example.com",
     "host httpbin.example.com is not a Service of the baseline"),
    ("{host: reviews, port: {number: 9999}}", "outbound|9999||reviews.bookinfo.svc.cluster.local",
     "reviews.bookinfo.svc.cluster.local has no port 9999"),
])
def test_a_destination_without_a_cluster_names_one_as_istiod_does_and_warns(destination: str, cluster: str,
                                                                            why: str, tmp_path: Path) -> None:
    """istiod routes to the cluster a destination names whether or not it exists (``GetDestinationCluster``);
    Envoy answers a route to a missing cluster with 503 (``golden/missing-destinations`` proves it through both
    meshes). So the compile succeeds, the route names that cluster, and one warning says why."""
    (tmp_path / "extra.yaml").write_text(VS_HEAD + f"  - route: [{{destination: {destination}}}]\n")
    inputs = compiler.read_inputs([str(GOLDEN / "single-fork" / "sandboxes.yaml")],
                                  [str(GOLDEN / "_shared" / "bookinfo.yaml"), str(tmp_path / "extra.yaml")])
    config = envoy.build(compiler.plan_of(inputs))
    assert cluster not in {c["name"] for c in config.clusters}
    assert cluster in json.dumps([r for r in config.route_configs if r["name"].startswith("9080")])
    assert [w.subject for w in config.warnings if why in w.message] == [f"cluster {cluster}"]


@pytest.mark.parametrize(("text", "seconds"), [("1.5s", "1.5s"), ("500ms", "0.5s"), ("1m30s", "90s"), ("2h", "7200s"),
                                                ("250us", "0.00025s")])
def test_durations(text: str, seconds: str) -> None:
    assert envoy_routes.seconds(text, ()) == seconds


def test_bookinfos_mtls_destination_rules_compile_with_one_warning_per_rule_and_field() -> None:
    """Istio's own destination-rule-all-mtls.yaml (ISTIO_MUTUAL on every host, read from the Go module cache):
    accepted as transport-only, one warning per DestinationRule and field however many subset clusters it makes,
    and no transport socket (the local mesh is plaintext)."""
    samples = istio_samples() / "bookinfo"
    inputs = compiler.read_inputs([str(GOLDEN / "single-fork" / "sandboxes.yaml")],
                                  [str(samples / "platform" / "kube" / "bookinfo.yaml"),
                                   str(samples / "networking" / "destination-rule-all-mtls.yaml")],
                                  namespace="bookinfo")
    config = envoy.build(compiler.plan_of(inputs))
    assert [(w.subject, w.message.split(" is ")[0]) for w in config.warnings] == [
        (f"DestinationRule bookinfo/{name}", "trafficPolicy.tls") for name in ("details", "productpage", "ratings",
                                                                             "reviews")]
    assert len([c for c in config.clusters if "|v" in c["name"]]) > 4  # several subset clusters per rule
    assert not any("transport_socket" in c for c in config.clusters)


def test_port_level_settings_replace_the_host_policy_on_their_port_and_hashing_reaches_routes() -> None:
    config = envoy.build(plan_of("istio-accepted-fields"))
    clusters = {c["name"]: c for c in config.clusters}
    reviews = clusters["outbound|9080|v1|reviews.bookinfo.svc.cluster.local"]
    options = reviews["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    # the port-level entry replaces the host's connectionPool whole: 20 requests per connection and no idle
    # timeout (istiod does not inherit the host's 30s), and neither the host's keepalive
    assert options["common_http_protocol_options"] == {"max_requests_per_connection": 20}
    assert reviews["lb_policy"] == "RING_HASH" and "upstream_connection_options" not in reviews
    vhost = vhosts(config)["reviews.bookinfo.svc.cluster.local:9080"]
    assert {str(r["route"].get("hash_policy")) for r in vhost["routes"]} == {
        str([{"header": {"header_name": "end-user"}}])}


def test_listeners_follow_the_port_protocol() -> None:
    config = envoy.build(plan_of("tcp-ports"))
    listeners = {x["name"]: x for x in config.listeners}

    def filters(name: str) -> list[list[str]]:
        return [[f["name"] for f in chain["filters"]] for chain in listeners[name]["filter_chains"]]

    assert filters("inventory.shop.svc.cluster.local_8080") == [["envoy.filters.network.http_connection_manager"]]
    assert filters("inventory.shop.svc.cluster.local_9100") == [["envoy.filters.network.tcp_proxy"]]
    sniffed = listeners["inventory-legacy.shop.svc.cluster.local_8000"]
    assert filters(sniffed["name"]) == [["envoy.filters.network.http_connection_manager"],
                                        ["envoy.filters.network.tcp_proxy"]]
    assert [f["name"] for f in sniffed["listener_filters"]] == ["envoy.filters.listener.http_inspector"]
    # route configurations exist only for ports some host serves HTTP on, and hold only those hosts
    assert sorted(rc["name"] for rc in config.route_configs) == ["8000", "8080", "http.8080"]
    proxied = listeners["tcp-echo.shop.svc.cluster.local_9000"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert proxied["weighted_clusters"] == {"clusters": [
        {"name": "outbound|9000|v2|tcp-echo.shop.svc.cluster.local", "weight": 100}]}


def test_udp_ports_get_no_listener_and_no_cluster(tmp_path: Path) -> None:
    (tmp_path / "dns.yaml").write_text("""\
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: bookinfo}
spec:
  selector: {app: ratings}
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]
""")
    inputs = compiler.read_inputs([str(GOLDEN / "single-fork" / "sandboxes.yaml")],
                                  [str(BOOKINFO), str(tmp_path / "dns.yaml")])
    config = envoy.build(compiler.plan_of(inputs))
    # one listener and one cluster for port 53: the TCP port's (dns-tcp has no known prefix, and 53 is a
    # well-known port, so TCP); the UDP port is not proxied
    dns = [x for x in config.listeners if x["name"].startswith("dns.")]
    assert [x["name"] for x in dns] == ["dns.bookinfo.svc.cluster.local_53"]
    assert dns[0]["filter_chains"][0]["filters"][0]["name"] == "envoy.filters.network.tcp_proxy"
    assert [c["name"] for c in config.clusters if c["name"].endswith("|dns.bookinfo.svc.cluster.local")] == [
        "outbound|53||dns.bookinfo.svc.cluster.local"]


@pytest.mark.parametrize(("port_name", "extra", "message"), [
    ("tls", "  tls:\n  - match: [{sniHosts: [tcp-echo.example.com], port: 9000}]\n"
            "    route: [{destination: {host: tcp-echo}}]\n", "tls.0.match: tls routes match the SNI of a connection"),
    ("tcp", "  tcp:\n  - match: [{port: 9000, sourceLabels: {app: web}}]\n"
            "    route: [{destination: {host: tcp-echo}}]\n",
     "tcp.0.match.0.sourceLabels: matching a TCP connection by its source or destination address or workload"),
])
def test_tcp_routes_the_backend_cannot_model_fail_the_compile(port_name: str, extra: str, message: str,
                                                              tmp_path: Path) -> None:
    """What a TCP connection cannot tell the one Envoy of the local mesh (SNI: the echoes speak no TLS; the calling
    workload: a TCP connection carries no header) is refused, naming the VirtualService and field."""
    (tmp_path / "echo.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: tcp-echo, namespace: bookinfo}\n"
        f"spec: {{selector: {{app: ratings}}, ports: [{{name: {port_name}, port: 9000}}]}}\n---\n"
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: tcp-echo, namespace: bookinfo}\nspec:\n  hosts: [tcp-echo]\n" + extra)
    inputs = compiler.read_inputs([str(GOLDEN / "single-fork" / "sandboxes.yaml")],
                                  [str(BOOKINFO), str(tmp_path / "echo.yaml")])
    with pytest.raises(InvalidInput) as raised:
        envoy.build(compiler.plan_of(inputs))
    assert f"VirtualService bookinfo/tcp-echo: {message}" in raised.value.render()
