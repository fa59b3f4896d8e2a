"""The edge filter's Lua (in LuaJIT): who keeps a routing key at the ingress, and what is removed for the others.
Real Envoy proves the same Lua in golden/edge-*/traffic.yaml."""

from __future__ import annotations

import hashlib

import pytest

from meshgen.backends import edge
from meshgen.plan.model import Edge
from meshgen.spec.models import DEFAULT_POLICY, IngressMode
from tests import luaenv

TOKEN = "s3cret-token"
STRIP = edge.edge_source(DEFAULT_POLICY, Edge())
CIDRS = edge.edge_source(DEFAULT_POLICY, Edge(IngressMode.ALLOW_CIDRS, ("10.0.0.0/8", "192.168.1.128/25",
                                                                         "fd00:ab::/32", "203.0.113.7/32")))
TOKENS = edge.edge_source(DEFAULT_POLICY, Edge(IngressMode.TOKEN, (), "x-meshgen-edge-token",
                                               hashlib.sha256(TOKEN.encode()).hexdigest()))
KEY = "x-meshgen-routing-key"


def header(lines: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in lines if k == name]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ([(KEY, "pr1")], []),
        ([("baggage", "meshgen-routing-key=pr1")], []),
        ([("baggage", "userid=7;p=1, meshgen-routing-key=pr1 ,cart=a%20b")], ["userid=7;p=1,cart=a%20b"]),
        ([("baggage", " userid = 7 ;x , a=b ")], [" userid = 7 ;x , a=b "]),  # untouched: byte for byte
        ([("baggage", "a=1"), ("baggage", "meshgen-routing-key=pr1"), ("baggage", "b=2")], ["a=1", "b=2"]),
        ([("baggage", "meshgen-routing-key-x=keep,xmeshgen-routing-key=keep")],
         ["meshgen-routing-key-x=keep,xmeshgen-routing-key=keep"]),
    ],
)
def test_strip_removes_only_routing_members(sent: list[tuple[str, str]], kept: list[str]) -> None:
    after = luaenv.run(STRIP, sent)
    assert header(after, "baggage") == kept
    assert header(after, KEY) == []


def test_strip_tracestate_members() -> None:
    after = luaenv.run(STRIP, [("tracestate", "rojo=00f0,meshgen-routing-key=pr1,congo=t61")])
    assert header(after, "tracestate") == ["rojo=00f0,congo=t61"]


@pytest.mark.parametrize(
    ("remote", "trusted"),
    [("10.1.2.3:5000", True), ("11.0.0.1:5000", False), ("192.168.1.200:1", True), ("192.168.1.127:1", False),
     ("203.0.113.7:9", True), ("203.0.113.8:9", False), ("[fd00:ab::1]:443", True), ("[fd00:ac::1]:443", False),
     ("[::ffff:10.9.9.9]:80", True), ("[::1]:80", False), ("garbage", False), ("", False)],
)
def test_allow_cidrs(remote: str, trusted: bool) -> None:
    after = luaenv.run(CIDRS, [("baggage", "u=1,meshgen-routing-key=pr1")], remote=remote)
    assert header(after, KEY) == (["pr1"] if trusted else [])
    assert header(after, "baggage") == (["u=1,meshgen-routing-key=pr1"] if trusted else ["u=1"])


@pytest.mark.parametrize(("presented", "trusted"), [(TOKEN, True), ("wrong", False), ("", False), (None, False),
                                                    (TOKEN + " ", False)])
def test_token(presented: str | None, trusted: bool) -> None:
    sent = [(KEY, "pr1")] + ([("x-meshgen-edge-token", presented)] if presented is not None else [])
    after = luaenv.run(TOKENS, sent)
    assert header(after, KEY) == (["pr1"] if trusted else [])
    assert header(after, "x-meshgen-edge-token") == []  # never forwarded


@pytest.mark.parametrize("message", [b"", b"abc", b"x" * 55, b"x" * 56, b"x" * 63, b"x" * 64, bytes(range(256)) * 5])
def test_sha256_matches_hashlib(message: bytes) -> None:
    lua = luaenv.runtime(TOKENS)
    assert lua.globals().sha256_hex(message) == hashlib.sha256(message).hexdigest()


def test_the_token_is_not_in_the_filter() -> None:
    assert TOKEN not in TOKENS and hashlib.sha256(TOKEN.encode()).hexdigest() in TOKENS
    assert "function sha256_hex" not in STRIP  # the hash is only emitted where a token is used


@pytest.mark.parametrize("member", [
    "meshgen%2Drouting%2Dkey=pr1",      # OpenTelemetry's propagator decodes names: the next hop forwards a real key
    "meshgen-routing-key+=pr1",         # '+' is a space to a form decoder, stripped after
    "+meshgen-routing-key=pr1",
    "%20meshgen-routing-key=pr1",
    "meshgen-routing-key%09=pr1",
    "meshgen-routing-key%C2%A0=pr1",    # U+00A0: Python's str.strip() removes it
    "MESHGEN-ROUTING-KEY=pr1",
    "meshgen%252Drouting%252Dkey=pr1",  # encoded twice, for a chain of decoding hops
    "meshgen-routing-key;p=1",          # no '=': not a member, but it reads as one
    "meshgen%2drouting%2dkey = pr1",
])
def test_strip_removes_members_that_read_as_routing_members(member: str) -> None:
    after = luaenv.run(STRIP, [("baggage", f"userid=7,{member},cart=1")])
    assert header(after, "baggage") == ["userid=7,cart=1"]


@pytest.mark.parametrize("member", ["meshgen-routing-keyx=1", "xmeshgen-routing-key=1", "meshgen-routing%20key=1",
                                    "meshgen%2Drouting-keys=1", "routing-key=1"])
def test_strip_keeps_members_that_do_not(member: str) -> None:
    after = luaenv.run(STRIP, [("baggage", member)])
    assert header(after, "baggage") == [member]


def test_strip_reads_tracestate_names_the_same_way() -> None:
    after = luaenv.run(STRIP, [("tracestate", "rojo=00f0,meshgen%2Drouting%2Dkey=pr1")])
    assert header(after, "tracestate") == ["rojo=00f0"]


@pytest.mark.parametrize("source", [STRIP, CIDRS, TOKENS])
def test_headers_with_underscores_are_dropped_for_everyone(source: str) -> None:
    """WSGI and CGI read x_meshgen_routing_key as the routing header: it never passes the edge, trusted or not."""
    sent = [("x_meshgen_routing_key", "pr1"), ("x-other", "1"), ("x_trace", "a"), ("x-meshgen-edge-token", TOKEN)]
    after = luaenv.run(source, sent, remote="10.1.2.3:5000")
    assert [k for k, _ in after if "_" in k] == []
    assert header(after, "x-other") == ["1"]


@pytest.mark.parametrize("source", [STRIP, CIDRS, TOKENS])
def test_a_failure_inside_the_filter_strips_every_key_source(source: str) -> None:
    sent = [(KEY, "pr1"), ("baggage", "u=1,meshgen-routing-key=pr1"), ("tracestate", "a=1"), ("x-other", "1")]
    token = [("x-meshgen-edge-token", TOKEN)] if source is TOKENS else []  # the token goes too, where there is one
    after, handle = luaenv.respond(source, sent + token, remote="10.1.2.3:5000", failing=("getNumValues",))
    assert after == [("x-other", "1")]
    assert "getNumValues failed" in handle.logged[1]
    assert handle.responded is None


def test_a_failure_that_cannot_even_strip_refuses_the_request() -> None:
    _, handle = luaenv.respond(STRIP, [(KEY, "pr1")], failing=("getNumValues", "remove"))
    assert handle.responded[1] == "503"
