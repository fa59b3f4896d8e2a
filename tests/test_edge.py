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
