"""Bounded input grammars: generated names always valid and prefixed, durations bounded, routing-key headers never
ones that HTTP, Envoy or tracing own, label keys and values as the apiserver reads them."""

from __future__ import annotations

import datetime
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshgen.kube import storing
from meshgen.plan.routes import owned_table_name
from meshgen.spec import names

# The grammars as Kubernetes states them (apimachinery validation), written out here rather than taken from the
# code under test.
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
sandbox_names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?\Z")
service_names = st.from_regex(r"\A[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")
deployment_names = st.lists(label, min_size=1, max_size=8).map(".".join).filter(lambda n: len(n) <= 253)
label_values = st.from_regex(r"\A([A-Za-z0-9]([-A-Za-z0-9_.]{0,70}[A-Za-z0-9])?)?\Z")


@given(deployment_names, sandbox_names)
def test_a_fork_name_is_a_dns_subdomain_of_at_most_63(base: str, sandbox: str) -> None:
    name = names.fit_name(base, sandbox)
    assert DNS_1123_SUBDOMAIN.fullmatch(name) and len(name) <= 63, name
    assert name.endswith(f"-{sandbox}")
    assert name == names.fit_name(base, sandbox)


@given(service_names, sandbox_names)
def test_a_fork_service_name_is_a_dns_1035_label(base: str, sandbox: str) -> None:
    name = names.fit_name(base, sandbox)
    assert DNS_1035_LABEL.fullmatch(name) and len(name) <= 63, name


@given(service_names)
def test_an_owned_virtual_service_name_is_prefixed_and_at_most_63(service: str) -> None:
    name = owned_table_name(service)
    assert name.startswith("meshgen-") and len(name) <= 63 and DNS_1123_LABEL.fullmatch(name), name


@given(label_values, sandbox_names)
def test_a_fork_label_value_is_a_label_value(value: str, sandbox: str) -> None:
    name = names.fit_name(value, sandbox)
    assert LABEL_VALUE.fullmatch(name) and len(name) <= 63, name


def test_names_that_fit_are_unchanged_and_long_ones_distinct() -> None:
    assert names.fit_name("reviews-v1", "pr-1234") == "reviews-v1-pr-1234"
    assert owned_table_name("reviews") == "meshgen-reviews"
    service = "s" * 63  # a 63-character Service used to give m-<hash>-<service>: 72 characters, no meshgen- prefix
    assert owned_table_name(service) == f"meshgen-{'s' * 48}-" + owned_table_name(service)[-6:]
    dotted = "inventory-api1.canary.eu-west-1.example.internal"  # cut at 15 characters used to leave "inventory-api1."
    assert names.fit_name(dotted, "s" * 40).startswith("inventory-api1-")
    assert names.fit_name("x" * 60 + "a", "pr-1") != names.fit_name("x" * 60 + "b", "pr-1")


@pytest.mark.parametrize(("text", "seconds"), [
    ("365d", 365 * 86400), ("52w1d", 365 * 86400), ("10000000w", 365 * 86400), ("9" * 5000 + "s", 365 * 86400),
    ("2h\n", None), ("\u0663h", None), ("1y", None),
])
def test_durations_are_capped_at_a_year_and_ascii_only(text: str, seconds: int | None) -> None:
    assert names.parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "problem"), [
    ("365d", None), ("8760h", None), ("366d", "longer than 365d"), ("10000000w", "longer than 365d"),
    ("9" * 5000 + "s", "longer than 365d"), ("0s", "not a positive duration"), ("2h\n", "not a positive duration"),
])
def test_duration_problems(text: str, problem: str | None) -> None:
    found = names.duration_problem(text)
    assert (found is None) if problem is None else (found is not None and problem in found and len(found) < 120)


def test_a_stored_ttl_too_long_for_any_date_still_expires() -> None:
    """10000000w (stored before TTLs were bounded, or by another writer) made get and gc raise OverflowError."""
    stored = {"metadata": {"name": "forever", "creationTimestamp": "2026-12-01T00:00:00Z"},
              "spec": {"ttl": {"duration": "10000000w"}}}
    assert storing.expires_at(stored) == datetime.datetime(2027, 12, 1, tzinfo=datetime.UTC)


@pytest.mark.parametrize("header", [
    "host", ":authority", ":path", "baggage", "tracestate", "traceparent", "content-length", "transfer-encoding",
    "connection", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization", "proxy-connection",
    "x-forwarded-for", "x-forwarded-proto", "x-envoy-original-path", "x-envoy-decorator-operation", "x-request-id",
    "cookie", "authorization", "b3", "x-b3-traceid", "forwarded", "via", "Host", "X-Forwarded-For",
    "x_meshgen_routing_key",
])
def test_reserved_headers_cannot_carry_a_key(header: str) -> None:
    assert names.key_header_problem(header) is not None


@pytest.mark.parametrize("header", ["x-meshgen-routing-key", "x-acme-routing-key", "uberctx-sd-routing-key",
                                    "ot-baggage-sd-routing-key", "x-meshgen-edge-token", "x-forward", "hosts"])
def test_ordinary_headers_can(header: str) -> None:
    assert names.key_header_problem(header) is None


@pytest.mark.parametrize(("key", "ok"), [
    ("app", True), ("example.com/team", True), ("app.kubernetes.io/name", True), ("a_b.c-d", True),
    ("team/", False), ("/team", False), ("Example.com/team", False), ("-app", False), ("app-", False),
    ("a" * 63, True), ("a" * 64, False), ("a b", False), ("x/y/z", False), ("app\n", False),
])
def test_label_keys(key: str, ok: bool) -> None:
    assert (names.label_key_problem(key) is None) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("", True), ("v1", True), ("A_b.c-D", True), ("-front-", False), ("a" * 63, True), ("a" * 64, False),
    ("a b", False), ("é", False),
])
def test_label_values(value: str, ok: bool) -> None:
    assert (names.label_value_problem(value) is None) is ok
