"""Gateway API routes as meshgen reads and writes them: the defaults the API server fills in, istiod's conversion
(plan/http_routes.py), the precedence of specificity and where copies go (plan/specificity.py), and the Gateway
API backend's copies: everything of the rule kept but its name, matches and backendRefs, and a route meshgen
edited reads back as the user's."""

from __future__ import annotations

from typing import Any

import pytest

from meshgen import compiler
from meshgen.baseline.model import ObjectKey
from meshgen.ownership import without_meshgen_routes
from meshgen.plan import http_routes, specificity
from meshgen.plan.routing import HeaderMatch, Match, MatchKind, Origin, Route, StringMatch
from tests.conftest import GOLDEN


def read(rule: dict[str, Any], grpc: bool = False, port: int | None = None) -> Route:
    return http_routes.read_rule(rule, Origin(ObjectKey("HTTPRoute", "ns", "r"), 2, rule, None, "rules"), "ns",
                                 "cluster.local", grpc, port)


def test_a_rule_reads_with_the_api_servers_defaults() -> None:
    route = read({"backendRefs": [{"name": "a", "port": 80}]})
    assert route.name == "ns.r.2", "istiod's name for a rule without one"
    assert route.matches == (Match(path=StringMatch(MatchKind.PREFIX, "/")),)
    assert [(d.host, d.port, d.weight) for d in route.destinations] == [("a.ns.svc.cluster.local", 80, None)]
    assert route.retries is None and route.timeout is None


@pytest.mark.parametrize(("path", "expected"), [
    ({"type": "PathPrefix", "value": "/a/"}, StringMatch(MatchKind.SEGMENT_PREFIX, "/a")),
    ({"value": "/a"}, StringMatch(MatchKind.SEGMENT_PREFIX, "/a")),
    ({"type": "PathPrefix", "value": "/"}, StringMatch(MatchKind.PREFIX, "/")),
    ({"type": "Exact", "value": "/a/"}, StringMatch(MatchKind.EXACT, "/a/")),
    ({"type": "RegularExpression", "value": "/a/[0-9]+"}, StringMatch(MatchKind.REGEX, "/a/[0-9]+")),
])
def test_paths_read_as_istiod_converts_them(path: dict[str, str], expected: StringMatch) -> None:
    assert read({"matches": [{"path": path}]}).matches[0].path == expected


def test_headers_queries_methods_and_a_parents_port() -> None:
    match = read({"matches": [{"headers": [{"name": "X-A", "value": "1"},
                                           {"name": "x-b", "type": "RegularExpression", "value": "b.*"}],
                               "queryParams": [{"name": "q", "value": "1"}], "method": "POST"}]}, port=9080).matches[0]
    assert [(h.name, h.value.kind if h.value else None) for h in match.headers] == [
        ("x-a", MatchKind.EXACT), ("x-b", MatchKind.REGEX)]
    assert match.method == StringMatch(MatchKind.EXACT, "POST") and match.port == 9080
    assert [(q.name, q.value) for q in match.query] == [("q", StringMatch(MatchKind.EXACT, "1"))]


@pytest.mark.parametrize(("method", "expected"), [
    ({"service": "s.S", "method": "M"}, StringMatch(MatchKind.EXACT, "/s.S/M")),
    ({"service": "s.S"}, StringMatch(MatchKind.PREFIX, "/s.S/")),
    ({"method": "M"}, StringMatch(MatchKind.REGEX, "/[^/]+/M")),
    ({"type": "RegularExpression", "service": "s.*"}, StringMatch(MatchKind.REGEX, "/s.*/.+")),
])
def test_grpc_methods_become_paths(method: dict[str, str], expected: StringMatch) -> None:
    assert read({"matches": [{"method": method}]}, grpc=True).matches[0].path == expected


def test_a_grpc_rule_without_matches_matches_everything() -> None:
    assert read({"backendRefs": [{"name": "a", "port": 90}]}, grpc=True).matches == ()


def test_backends_weights_and_filters() -> None:
    route = read({"backendRefs": [{"name": "a", "port": 80, "weight": 3}, {"name": "b", "port": 80},
                                  {"name": "c", "port": 80, "weight": 0}],
                  "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
                      "set": [{"name": "x", "value": "1"}], "remove": ["y"]}},
                      {"type": "URLRewrite", "urlRewrite": {"hostname": "h", "path": {
                          "type": "ReplacePrefixMatch", "replacePrefixMatch": "/new/"}}}],
                  "timeouts": {"request": "1m30s"}})
    assert [(d.host.split(".")[0], d.weight, d.index) for d in route.destinations] == [("a", 3, 0), ("b", 1, 1)]
    assert route.headers.request.set == (("x", "1"),) and route.headers.request.remove == ("y",)
    assert route.rewrite is not None and (route.rewrite.prefix, route.rewrite.authority) == ("/new", "h")
    assert route.timeout == 90.0


def test_no_weighted_backend_answers_500_and_a_redirect_defaults_to_302() -> None:
    assert read({"backendRefs": [{"name": "a", "port": 80, "weight": 0}]}).direct_response.status == 500  # type: ignore[union-attr]
    redirect = read({"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]}).redirect
    assert redirect is not None and (redirect.code, redirect.scheme) == (302, "https")


def test_an_extension_filter_is_unread_naming_its_field() -> None:
    route = read({"filters": [{"type": "ExtensionRef", "extensionRef": {"name": "x"}}],
                  "backendRefs": [{"name": "a", "port": 80}]})
    assert [u.path for u in route.unread] == [("filters", 0, "type")]


def rule(path: str | None, headers: int = 0, name: str = "r") -> Route:
    match = Match(path=StringMatch(MatchKind.PREFIX, path) if path else None,
                  headers=tuple(HeaderMatch(f"h{i}", StringMatch(MatchKind.EXACT, "1")) for i in range(headers)))
    return Route(Origin(None, 0), name=name, matches=(match,))


def test_specificity_orders_as_istiod_and_keeps_the_written_order_for_ties() -> None:
    routes = [rule("/", name="catch-all"), rule("/api", name="api"), rule("/", 1, name="one-header"),
              rule("/", 1, name="another"), rule(None, name="no-path")]
    assert [r.name for r in specificity.ordered([(r, 0) for r in routes])] == [
        "api", "one-header", "another", "catch-all", "no-path"]
    # A copy (one header match more) of the catch-all ties with the header rules: written order decides.
    assert [r.name for r in specificity.ordered([(routes[0], 1), *((r, 0) for r in routes[1:])])] == [
        "api", "catch-all", "one-header", "another", "no-path"]


def test_a_copy_goes_after_the_last_rule_it_ties_with() -> None:
    routes = [rule("/", 1, name="before"), rule("/", name="split"), rule("/", 1, name="beta"), rule("/x", 1)]
    assert specificity.anchor(routes, 1) == 3, "after beta (a tie), before /x (more specific anyway)"
    assert specificity.anchor([rule("/", name="split"), rule("/x")], 0) == 0, "no tie: directly before"


def test_the_gateway_api_backend_copies_rules_and_the_copies_come_off_again() -> None:
    case = GOLDEN / "httproute-edited"
    inputs = compiler.read_inputs([str(case / "sandboxes.yaml")], [str(case / "baseline")], str(case / "policy.yaml"))
    objects = compiler.render(compiler.plan_of(inputs))
    (edited,) = [o for o in objects if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "reviews"]
    written = inputs.baseline.get("HTTPRoute", "bookinfo", "reviews")
    assert written is not None
    by_name = {r["name"]: r for r in written.spec["rules"]}
    for copy in (r for r in edited["spec"]["rules"] if r["name"].startswith("meshgen-")):
        original = next(by_name[n] for n in by_name if {k: v for k, v in by_name[n].items()
                                                       if k not in ("name", "matches", "backendRefs")}
                        == {k: v for k, v in copy.items() if k not in ("name", "matches", "backendRefs")})
        assert len(copy["backendRefs"]) == len(original["backendRefs"])
        assert all(m["headers"][-1]["name"] == "x-meshgen-routing-key" for m in copy["matches"])
    assert without_meshgen_routes(edited)["spec"] == written.spec, "removing meshgen's rules restores the route"
