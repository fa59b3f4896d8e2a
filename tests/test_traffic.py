"""Every golden case's traffic.yaml, through one real Envoy and real echo workloads (the session's local mesh).

Also the expectation model itself: loading with located errors, comparison, and how a mismatch is reported.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshgen import golden, traffic
from meshgen.errors import InvalidInput
from meshgen.testenv.mesh import RunningMesh
from tests.conftest import GOLDEN

ROUTING = [c for c in golden.discover(GOLDEN) if c.traffic is not None]


@pytest.fixture(scope="session")
def mesh() -> Iterator[RunningMesh]:
    """One Envoy for the whole session; each case is applied to it (which also exercises live updates)."""
    with RunningMesh() as running:
        yield running


def test_every_case_that_routes_has_traffic() -> None:
    compiling = [c.name for c in golden.discover(GOLDEN) if (c.path / golden.EXPECTED).exists()]
    assert sorted(c.name for c in ROUTING) == sorted(compiling)
    assert sum(len(traffic.load_checks(c.traffic)) for c in ROUTING if c.traffic) >= 80


@pytest.mark.parametrize("case", ROUTING, ids=[c.name for c in ROUTING])
def test_case_traffic(case: golden.Case, mesh: RunningMesh) -> None:
    outcome = golden.compile_case(case)
    assert outcome.plan is not None, outcome.error
    failures = golden.check_traffic(case, outcome, mesh)
    assert not failures, "\n".join(failures)


def test_golden_command_reports_each_traffic_mismatch(tmp_path: Path, meshgen) -> None:
    shutil.copytree(GOLDEN / "single-fork", tmp_path / "single-fork")
    checks = tmp_path / "single-fork" / golden.TRAFFIC
    checks.write_text(checks.read_text().replace("expect: {servedBy: ratings-v1}",
                                                 "expect: {servedBy: ratings-v1@pr-1234}"))
    result = meshgen("golden", "--cases", str(tmp_path))
    assert result.exit_code == 2
    assert "FAIL  single-fork (+traffic)" in result.output
    assert "request:  the key of a sandbox that forks another service leaves ratings on the baseline: GET " \
           "ratings.bookinfo.svc.cluster.local/ baggage: 'meshgen-routing-key=pr1234'" in result.output
    assert "expected: servedBy=ratings-v1@pr-1234" in result.output
    assert "got:      200 ratings-v1" in result.output
    assert "0 passed, 1 failed" in result.output
    assert meshgen("golden", "--cases", str(tmp_path), "--via", "none").exit_code == 0  # compile checks only


def load_errors(tmp_path: Path, text: str) -> tuple[Path, str]:
    """The rendered errors of loading ``text`` as a traffic.yaml, and its path."""
    path = tmp_path / "traffic.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        traffic.load_checks(path)
    return path, caught.value.render()


def test_traffic_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path, text = load_errors(tmp_path, "- request: {host: a}\n  expect: {}\n- request: {host: b, path: nope}\n"
                                       "  expect: {servedBy: x, colour: red}\n")
    assert f"{path}:3: [1].request.path" in text
    assert f"{path}:4: [1].expect.colour" in text


def test_an_edge_request_goes_to_the_gateway_port_not_a_service_port(tmp_path: Path) -> None:
    path, text = load_errors(tmp_path, "- request: {host: a, via: edge}\n  expect: {}\n"
                                       "- request: {host: a, via: edge, port: 8080}\n  expect: {}\n"
                                       "- request: {host: a, via: edge, port: 9080}\n  expect: {}\n")
    assert f"{path}:5: [2].request" in text and "the edge gateway's port 8080, not a Service port" in text
    assert ":1:" not in text and ":3:" not in text


def test_mismatches_and_hop_paths() -> None:
    body = {"served_by": "productpage-v1", "path": "/", "headers": {"x-a": "1"}, "calls": [
        {"service": "r", "status": 200, "served_by": "reviews-v2", "calls": [
            {"service": "ra", "status": 200, "served_by": "ratings-v1", "calls": []}]},
        {"service": "d", "status": 503, "served_by": "details-v1", "calls": []}]}
    response = traffic.Response(200, (("x-served-by", "productpage-v1"),), body)
    assert traffic.hops(body) == "productpage-v1 -> [reviews-v2 -> ratings-v1, details-v1 (503)]"
    ok = traffic.Expectation.model_validate({"servedBy": "productpage-v1|productpage-v2",
                                             "path": ["productpage-v1", "reviews-v1|reviews-v2", "ratings-v1"],
                                             "requestHeaders": {"x-a": "1", "x-b": None},
                                             "responseHeaders": {"x-served-by": "productpage-v1"}})
    assert traffic.mismatches(ok, response) == []
    bad = traffic.Expectation.model_validate({"status": 504, "path": ["productpage-v1", "ratings-v1"],
                                              "requestHeaders": {"x-a": None}})
    assert traffic.mismatches(bad, response) == [
        "status: expected 504, got 200",
        "path: expected productpage-v1 -> ratings-v1, got productpage-v1 -> [reviews-v2 -> ratings-v1, details-v1"
        " (503)]",
        "requestHeaders.x-a: expected None, got '1'",
    ]
    text = traffic.Response(504, (), "upstream request timeout")
    assert traffic.mismatches(traffic.Expectation.model_validate({"status": 504, "body": "upstream request timeout"}),
                              text) == []


def test_verify_prints_a_pass_fail_table_and_fails_on_a_mismatch(tmp_path: Path, meshgen) -> None:
    case = GOLDEN / "single-fork"
    checks = tmp_path / "traffic.yaml"
    checks.write_text("- name: sandbox key reaches the fork\n"
                      "  request: {host: reviews.bookinfo.svc.cluster.local,\n"
                      "            headers: {x-meshgen-routing-key: pr1234}}\n"
                      "  expect: {servedBy: reviews-v1@pr-1234}\n"
                      "- name: wrong on purpose\n"
                      "  request: {host: ratings.bookinfo.svc.cluster.local}\n"
                      "  expect: {servedBy: ratings-v1@pr-1234}\n")
    args = ("verify", "-f", str(case / golden.SANDBOXES), "--baseline", str(case / golden.BASELINE),
            "--traffic", str(checks))
    result = meshgen(*args)
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["result", "check", "expected", "got", "(via", "envoy)"]
    assert lines[2].startswith("PASS    sandbox key reaches the fork") and lines[2].endswith("200 reviews-v1@pr-1234")
    assert lines[3].startswith("FAIL    wrong on purpose") and lines[3].endswith("200 ratings-v1")
    assert "- servedBy: expected ratings-v1@pr-1234, got ratings-v1" in result.stdout
    assert lines[-1] == "1 passed, 1 failed (via envoy)"
    checks.write_text("\n".join(checks.read_text().splitlines()[:4]) + "\n")
    assert meshgen(*args).exit_code == 0


@pytest.mark.parametrize(("request_body", "error"), [
    ({"host": "a", "protocol": "tcp", "headers": {"x": "1"}}, "headers: a tcp request is a connection and a line"),
    ({"host": "a", "protocol": "tcp", "path": "/x", "method": "POST"}, "path, method: a tcp request"),
    ({"host": "a", "protocol": "tcp", "via": "edge"}, "via: a tcp request"),
    ({"host": "a", "protocol": "tcp", "line": "two\nlines"}, "line: one line of text"),
    ({"host": "a", "line": "hello"}, "line: only a tcp request sends a line"),
])
def test_a_tcp_request_is_a_connection_and_a_line(request_body: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        traffic.Request.model_validate(request_body)
    ok = traffic.Request.model_validate({"host": "a", "protocol": "tcp", "port": 9000})
    assert (ok.sent_line(), ok.protocol) == ("hello", "tcp")
