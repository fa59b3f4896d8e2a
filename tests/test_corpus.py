"""The corpus's own parts, without a mesh: which sample files make which baselines (read from the Go module cache),
what is generated for a baseline, and the rule that says what a key must change in an answer.

The corpus itself runs in tests/kube/test_corpus.py, through real istiod and the Envoy backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshgen import traffic
from meshgen.baseline.loading import load_baseline
from meshgen.corpus import answers, checking, probes, samples
from meshgen.documents import parse_documents
from meshgen.spec.loading import load_specs
from meshgen.testenv import istiomesh
from tests.conftest import BOOKINFO, istio_samples


@pytest.fixture(scope="module")
def corpus() -> samples.Corpus:
    return samples.discover(istio_samples())


def test_every_sample_file_makes_a_baseline_or_is_skipped_with_a_reason(corpus: samples.Corpus) -> None:
    """Nothing is dropped silently: each manifest under samples/ is in some baseline or listed as skipped."""
    files = {str(p.relative_to(corpus.root)) for p in corpus.root.rglob("*") if p.suffix in (".yaml", ".yml", ".json")}
    used = {f for e in corpus.entries for f in e.files}
    skipped = {s.path for s in corpus.skipped}
    assert files == used | skipped
    assert not used & skipped
    assert all(s.reason for s in corpus.skipped)


def test_bookinfo_networking_files_run_one_at_a_time_over_the_platform_with_what_they_need(
        corpus: samples.Corpus) -> None:
    by_name = {e.name: e for e in corpus.entries}
    platform = "bookinfo/platform/kube/bookinfo.yaml"
    reviews = by_name["bookinfo/networking/virtual-service-reviews-v3"]
    assert reviews.files == (platform, "bookinfo/networking/destination-rule-all.yaml",
                             "bookinfo/networking/virtual-service-reviews-v3.yaml")
    assert by_name["bookinfo/networking/virtual-service-ratings-db"].files[2:4] == (
        "bookinfo/platform/kube/bookinfo-ratings-v2.yaml", "bookinfo/platform/kube/bookinfo-db.yaml")
    assert by_name["bookinfo/networking/destination-rule-all"].files == (
        platform, "bookinfo/networking/destination-rule-all.yaml")
    assert {e.namespace for e in corpus.entries if e.group == "bookinfo"} == {"bookinfo", "bookinfo-2", "bookinfo-3"}
    reasons = {s.path: s.reason for s in corpus.skipped}
    assert "unchanged" in reasons["bookinfo/platform/kube/bookinfo-ratings-discovery.yaml"]


def test_gateway_api_routes_run_over_the_services_they_send_to(corpus: samples.Corpus) -> None:
    """The Gateway API task's routes send to per-version Services (bookinfo-versions.yaml), so each runs over
    those; a route attached to a Gateway runs with its Gateway; a TCPRoute is not read, a waypoint not run."""
    by_name = {e.name: e for e in corpus.entries}
    versions = "bookinfo/platform/kube/bookinfo-versions.yaml"
    assert by_name["bookinfo/gateway-api/route-reviews-90-10"].files == (
        "bookinfo/platform/kube/bookinfo.yaml", versions, "bookinfo/gateway-api/route-reviews-90-10.yaml")
    assert by_name["ambient-argo/application/route-reviews-90-10"].files[-2:] == (
        "ambient-argo/application/bookinfo-versions.yaml", "ambient-argo/application/route-reviews-90-10.yaml")
    assert by_name["helloworld/gateway-api/helloworld-route"].files[1:] == (
        "helloworld/gateway-api/helloworld-versions.yaml", "helloworld/gateway-api/helloworld-gateway.yaml",
        "helloworld/gateway-api/helloworld-route.yaml")
    reasons = {s.path: s.reason for s in corpus.skipped}
    assert reasons["tcp-echo/gateway-api/tcp-echo-20-v2.yaml"] == "holds no kind meshgen reads (it holds TCPRoute)"
    assert "waypoint" in reasons["ambient-argo/application/reviews-waypoint.yaml"]


@pytest.fixture(scope="module")
def prepared(corpus: samples.Corpus) -> tuple[list[checking.Case], dict[str, checking.Outcome]]:
    return checking.prepare(corpus, istiomesh.refusal)


def test_gamma_routes_are_baselines_of_the_gateway_api_backend_judged_through_istiod(
        prepared: tuple[list[checking.Case], dict[str, checking.Outcome]]) -> None:
    """Every baseline with an HTTPRoute compiles with spec.backend gateway-api (and nothing else does); those whose
    routes attach to Services only run through istiod too, those with a Gateway API Gateway through the Envoy
    backend only, the table saying why."""
    cases, outcomes = prepared
    assert not [f for o in outcomes.values() for f in o.failures]
    gateway_api = {c.entry.name: c for c in cases if c.backend == checking.GATEWAY_API}
    assert {n for n, c in gateway_api.items() if c.istio_refusal is None} == {
        "bookinfo/gateway-api/route-all-v1", "bookinfo/gateway-api/route-reviews-50-v3",
        "bookinfo/gateway-api/route-reviews-90-10", "bookinfo/gateway-api/route-reviews-v1",
        "bookinfo/gateway-api/route-reviews-v3", "ambient-argo/application/route-reviews-90-10"}
    assert {n for n, c in gateway_api.items() if c.istio_refusal is not None} == {
        "bookinfo/gateway-api/bookinfo-gateway", "helloworld/gateway-api/helloworld-gateway",
        "helloworld/gateway-api/helloworld-route", "httpbin/gateway-api/httpbin-gateway"}
    assert all("(gateway.networking.k8s.io) is one the istio test environment cannot serve" in c.istio_refusal
               for c in gateway_api.values() if c.istio_refusal is not None)
    assert all(any(p.request.via == "edge" and p.origin.startswith("HTTPRoute") for p in c.generated.probes)
               for n, c in gateway_api.items() if c.istio_refusal is not None)
    # ambient-argo's ingress-gateway.yaml is bookinfo-gateway.yaml: compiled, and said to route as it.
    notes = [n for o in outcomes.values() for n in o.notes]
    assert any(n.startswith("ambient-argo/application/ingress-gateway: compiled, not run: it routes as "
                            "bookinfo/gateway-api/bookinfo-gateway") for n in notes)
    assert any(n.startswith("tcp-echo/gateway-api/tcp-echo-all-v1: TCPRoute tcp-echo not read") for n in notes)
    # No baseline holds both a VirtualService and an HTTPRoute (meshgen refuses a host routed by both).
    for case in cases:
        held = {d.body.get("kind") for d in case.documents}
        assert not {"VirtualService", "HTTPRoute"} <= held, case.entry.name
    assert {c.backend for c in cases if c.entry.name.startswith("bookinfo/networking/")} == {"istio"}


def test_a_gamma_catch_all_rule_takes_every_request_from_its_service(
        prepared: tuple[list[checking.Case], dict[str, checking.Outcome]]) -> None:
    """route-reviews-90-10.yaml sends every request for reviews to reviews-v1 or reviews-v2 (the Services): with
    reviews-v3's key a hop through reviews stays as it was, though reviews-v3's fork takes over the reviews host
    (a request to the reviews-v3 host would reach the fork)."""
    cases, _ = prepared
    case = next(c for c in cases if c.entry.name == "bookinfo/gateway-api/route-reviews-90-10")
    generated = case.generated
    reviews = "reviews.bookinfo.svc.cluster.local"
    assert generated.destinations[reviews] == {"reviews-v1.bookinfo.svc.cluster.local",
                                               "reviews-v2.bookinfo.svc.cluster.local"}
    variant = next(v for v in generated.variants if v.name == "bookinfo-reviews-v3")
    assert reviews in variant.forks
    probe = next(p for p in generated.probes if p.request.host == reviews)
    assert probe.origin == "HTTPRoute bookinfo/reviews rules[0]" and probe.request.port == 9080
    answer = _canonical({"status": 200, "servedBy": "reviews-v2", "path": "/"})
    assert answers.expected(answer, probe, variant, generated) == {answer}


def test_a_later_file_replaces_what_an_earlier_one_defined(corpus: samples.Corpus) -> None:
    """tcp-echo-20-v2.yaml is applied over tcp-echo-all-v1.yaml, as Istio's traffic-shifting task does: one
    VirtualService tcp-echo remains, the later one."""
    entry = next(e for e in corpus.entries if e.name == "tcp-echo/tcp-echo-20-v2")
    documents, _ = entry.documents(corpus.root)
    services = [d.body for d in documents if d.body["kind"] == "VirtualService"]
    assert len(services) == 1
    assert [d["weight"] for d in services[0]["spec"]["tcp"][0]["route"]] == [80, 20]


def _canonical(answer: object) -> str:
    """An answer as :func:`meshgen.corpus.answers.answer_of` writes it."""
    return json.dumps(answer, sort_keys=True, separators=(",", ":"))


@pytest.fixture(scope="module")
def bookinfo() -> probes.Generated:
    baseline = load_baseline(parse_documents(BOOKINFO.read_text(), "bookinfo.yaml"))
    return probes.generate(baseline, ["bookinfo"], "t")


def test_generation_forks_each_http_workload_and_adds_a_virtual_workload_and_a_route_group(
        bookinfo: probes.Generated) -> None:
    specs = load_specs(parse_documents("\n".join(json.dumps(s) for s in bookinfo.specs), "specs"))
    forked = sorted(f.fork_of.name for s in specs.sandboxes for f in s.spec.forks)
    workloads = sorted(d.body["metadata"]["name"] for d in parse_documents(BOOKINFO.read_text(), "b")
                       if d.body["kind"] == "Deployment")
    assert forked == workloads
    assert [len(s.spec.virtual) for s in specs.sandboxes if s.spec.virtual] == [1]
    (group,) = specs.route_groups
    paired = [s for s in specs.sandboxes if group.spec.match.matches(s.metadata.labels)]
    assert len(paired) == 2
    assert [v.name for v in bookinfo.variants[:2]] == ["no key", "unclaimed key"]
    assert {p.request.host for p in bookinfo.probes} == {f"{s}.bookinfo.svc.cluster.local"
                                                          for s in ("productpage", "details", "reviews", "ratings")}


def test_a_fork_replaces_every_hop_served_through_a_host_it_takes_over(bookinfo: probes.Generated) -> None:
    """reviews-v1's fork takes over the reviews host, so with its key a hop through reviews is the fork's, whichever
    version served it without the key; the productpage hop and ratings below stay."""
    variant = next(v for v in bookinfo.variants if v.name == "t-reviews-v1")
    probe = next(p for p in bookinfo.probes if p.request.host.startswith("productpage."))
    reviews = "reviews.bookinfo.svc.cluster.local"
    ratings = "ratings.bookinfo.svc.cluster.local"
    answer = _canonical({"status": 200, "servedBy": "productpage-v1", "path": "/", "calls": [
        {"service": reviews, "status": 200, "servedBy": "reviews-v2", "path": "/", "calls": [
            {"service": ratings, "status": 200, "servedBy": "ratings-v1", "path": "/"}]}]})
    (changed,) = answers.expected(answer, probe, variant, bookinfo)
    assert json.loads(changed)["calls"][0]["servedBy"] == "reviews-v1@t-reviews-v1"
    assert json.loads(changed)["calls"][0]["calls"][0]["servedBy"] == "ratings-v1"
    assert json.loads(changed)["servedBy"] == "productpage-v1"
    assert answers.expected(answer, probe, probes.UNCLAIMED, bookinfo) == {answer}


def test_a_hop_through_a_host_the_fork_does_not_take_over_stays() -> None:
    """With bookinfo-versions.yaml's per-version Services, reviews-v1's fork takes over reviews and reviews-v1,
    never reviews-v2: a request for reviews-v2 keeps its answer."""
    text = BOOKINFO.read_text() + "\n---\n" + "\n---\n".join(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: reviews-{v}, namespace: bookinfo}}\n"
        f"spec: {{selector: {{app: reviews, version: {v}}}, ports: [{{name: http, port: 9080}}]}}"
        for v in ("v1", "v2"))
    generated = probes.generate(load_baseline(parse_documents(text, "b")), ["bookinfo"], "t")
    variant = next(v for v in generated.variants if v.name == "t-reviews-v1")
    assert set(variant.forks) == {"reviews.bookinfo.svc.cluster.local", "reviews-v1.bookinfo.svc.cluster.local"}
    probe = next(p for p in generated.probes if p.request.host.startswith("reviews-v2."))
    answer = _canonical({"servedBy": "reviews-v2", "status": 200, "path": "/"})
    assert answers.expected(answer, probe, variant, generated) == {answer}


def test_an_answer_keeps_what_routes_decide_and_drops_what_differs_between_meshes(
        bookinfo: probes.Generated) -> None:
    body = {"served_by": "ratings-v1", "path": "/x", "headers": {"x-request-id": "1", "x-forwarded-for": "a"},
            "calls": [{"service": "s", "status": 500, "error": "fault filter abort"}]}
    response = traffic.Response(200, (("x-envoy-upstream-service-time", "3"),), body)
    assert json.loads(answers.answer_of(response, bookinfo)) == {
        "status": 200, "servedBy": "ratings-v1", "path": "/x",
        "calls": [{"service": "s", "status": 500, "error": "fault filter abort"}]}
    assert json.loads(answers.answer_of(traffic.Response(503, (), "no healthy upstream\n"), bookinfo)) == {
        "status": 503, "body": "no healthy upstream"}


@pytest.mark.parametrize(("pattern", "sample"), [
    ("jason", "jason"), (r"^/api/v\d+/.*", "/api/v0/"), ("(foo|bar)-[a-z]+", "foo-a"), (r"a\.b?c*", "a."),
    ("x{2}", "xx"), ("ab{0,3}", "a"), (r"(a)\1", None)])
def test_regex_samples_match_in_full(pattern: str, sample: str | None) -> None:
    assert probes.regex_sample(pattern) == sample


def test_batches_never_share_a_namespace_an_edge_a_tcp_port_or_two_backends(corpus: samples.Corpus) -> None:
    cases, _ = checking.prepare(corpus, lambda plan: None)
    packed = checking.batches(cases)
    assert sorted(i for b in packed for i in b) == list(range(len(cases)))
    for batch in packed:
        members = [cases[i] for i in batch]
        namespaces = [n for c in members for n in c.namespaces]
        assert len(namespaces) == len(set(namespaces))
        assert sum(any(p.request.via == "edge" for p in c.generated.probes) for c in members) <= 1
        assert sum(c.proxies for c in members) <= checking.MAX_PROXIES or len(members) == 1
        assert len({c.backend for c in members}) == 1


def test_the_table_sums_each_group() -> None:
    outcomes = [checking.Outcome("a", {"f1", "f2"}, 1, 2, 10, 30, 12, 12),
                checking.Outcome("b", {"f2"}, 1, 0, 3, 5, 3, 2, ["b/x: disagree"])]
    text = checking.table(outcomes, [samples.Skipped("p.yaml", "why")])
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "2", "2", "2", "13", "35", "15", "14", "1"]
    assert "p.yaml: why" in text and "b/x: disagree" in text


def test_istio_samples_are_read_where_the_build_put_them() -> None:
    assert (istio_samples() / "bookinfo" / "platform" / "kube" / "bookinfo.yaml").is_file()
    assert Path(str(istio_samples())).parent.name.startswith("istio@")
