"""The routing-key normaliser's Lua, run in LuaJIT (Envoy's Lua) against a small headers object.

These are unit tests of the parsing rules; the same Lua is proven against real Envoy in the traffic tests.
"""

from __future__ import annotations

import pytest

from meshgen.backends import normaliser
from meshgen.errors import Location
from meshgen.spec.models import DEFAULT_POLICY, MeshPolicy
from meshgen.validation import validate_model
from tests import luaenv
from tests.conftest import POLICIES


def run(policy: MeshPolicy, headers: list[tuple[str, str]]) -> str | None:
    """The routing header after the mesh normaliser ran over ``headers`` (asserting there is at most one)."""
    after = luaenv.run(normaliser.lua_source(policy), headers)
    values = [v for k, v in after if k == policy.spec.routing_header]
    assert len(values) <= 1
    return values[0] if values else None


def test_runs_on_luajit() -> None:
    assert luaenv.lupa.LuaRuntime().lua_implementation.startswith("LuaJIT 2.1")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        ([("x-meshgen-routing-key", "direct")], "direct"),
        ([("baggage", "meshgen-routing-key=pr1234")], "pr1234"),
        ([("baggage", "userid=7,meshgen-routing-key=pr1234;p=1")], "pr1234"),
        ([("baggage", " userid = 7 ,  meshgen-routing-key = pr1234 ; prop ; x=y ")], "pr1234"),
        ([("baggage", "meshgen-routing-key=pr%31234")], "pr1234"),
        ([("baggage", "meshgen-routing-key=pr%2D1")], "pr-1"),
        ([("baggage", "meshgen-routing-key=first,meshgen-routing-key=second")], "first"),
        ([("baggage", "a=1"), ("baggage", "meshgen-routing-key=second-header")], "second-header"),
        ([("baggage", "meshgen-routing-key=one"), ("baggage", "meshgen-routing-key=two")], "one"),
        ([("baggage", "xmeshgen-routing-key=no,meshgen-routing-key-x=no")], None),
        ([("baggage", "meshgen-routing-key=")], None),
        ([("baggage", "meshgen-routing-key=bad%20value")], None),  # decodes to a space: not a routing key
        ([("baggage", "meshgen-routing-key=" + "k" * 64)], None),
        ([("tracestate", "vendor=abc,meshgen-routing-key=ts1")], "ts1"),
        ([("tracestate", "meshgen-routing-key=pr%31")], None),  # tracestate values are not percent-decoded
        ([("baggage", "meshgen-routing-key=bag"), ("tracestate", "meshgen-routing-key=ts")], "bag"),
        ([("x-meshgen-routing-key", "hdr"), ("baggage", "meshgen-routing-key=bag")], "hdr"),
        ([("x-meshgen-routing-key", ""), ("baggage", "meshgen-routing-key=bag")], "bag"),
        ([("baggage", "meshgen-routing-key=bad\r\nx-evil: 1")], None),
        ([("x-meshgen-routing-key", "one"), ("x-meshgen-routing-key", "two")], "one"),
        ([("x-meshgen-routing-key", ""), ("x-meshgen-routing-key", "two")], None),
        # Names read as propagators read them, so the mesh routes on what an OpenTelemetry hop forwards.
        ([("baggage", "meshgen%2Drouting%2Dkey=pr1")], "pr1"),
        ([("baggage", "MESHGEN-ROUTING-KEY=pr1")], "pr1"),
        ([("baggage", "meshgen-routing-key+=pr1")], "pr1"),
        # OpenTelemetry's Python propagator re-sends "pr1;p=1" as one encoded value.
        ([("baggage", "meshgen-routing-key=pr1%3Bp%3D1")], "pr1"),
        ([("baggage", "meshgen-routing-key=pr1+")], "pr1"),
        ([("baggage", "meshgen-routing-key=pr1" + " " * 40_000 + "x")], None),  # linear, and not a key
        ([("baggage", "meshgen-routing-key=" + " " * 40_000 + "pr1" + " " * 40_000)], "pr1"),
    ],
)
def test_default_policy(headers: list[tuple[str, str]], expected: str | None) -> None:
    assert run(DEFAULT_POLICY, headers) == expected


def compat_policy() -> MeshPolicy:
    from ruamel.yaml import YAML

    body = YAML(typ="safe").load((POLICIES / "signadot-compat.yaml").read_text())
    return validate_model(MeshPolicy, body, Location("signadot-compat.yaml"))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("baggage", "sd-routing-key=sd1")], "sd1"),
        ([("tracestate", "sd-routing-key=sd2")], "sd2"),
        ([("uberctx-sd-routing-key", "jaeger")], "jaeger"),
        ([("ot-baggage-sd-routing-key", "ot")], "ot"),
        ([("baggage", "meshgen-routing-key=ours")], None),
        ([("ot-baggage-sd-routing-key", "ot"), ("baggage", "sd-routing-key=bag")], "bag"),
    ],
)
def test_signadot_compat_policy(headers: list[tuple[str, str]], expected: str | None) -> None:
    assert run(compat_policy(), headers) == expected


def test_generated_source_is_deterministic() -> None:
    assert normaliser.lua_source(DEFAULT_POLICY) == normaliser.lua_source(DEFAULT_POLICY)
    assert "sd-routing-key" in normaliser.lua_source(compat_policy())


def test_a_failure_inside_the_filter_sends_the_request_to_the_baseline() -> None:
    """No request is routed on a key nobody checked: the routing header goes, and the request is not refused."""
    sent = [("x-meshgen-routing-key", "pr1"), ("baggage", "meshgen-routing-key=pr1")]
    after, handle = luaenv.respond(normaliser.lua_source(DEFAULT_POLICY), sent, failing=("getNumValues",))
    assert after == [("baggage", "meshgen-routing-key=pr1")]
    assert "getNumValues failed" in handle.logged[1] and handle.responded is None
    after, handle = luaenv.respond(normaliser.lua_source(DEFAULT_POLICY), sent, failing=("getNumValues", "remove"))
    assert handle.responded[1] == "503"
