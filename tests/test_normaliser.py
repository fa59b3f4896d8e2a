"""The routing-key normaliser's Lua, run in LuaJIT (Envoy's Lua) against a small headers object.

These are unit tests of the parsing rules; the same Lua is proven against real Envoy in the traffic tests.
"""

from __future__ import annotations

import pytest

from meshgen.backends import normaliser
from meshgen.errors import Location
from meshgen.spec.loading import validate_model
from meshgen.spec.models import DEFAULT_POLICY, MeshPolicy
from tests.conftest import POLICIES

# Envoy embeds LuaJIT 2.1 (Lua 5.1 semantics), so the tests run on the same dialect.
lupa = pytest.importorskip("lupa.luajit21")

# A stand-in for Envoy's header map with the methods the normaliser uses; repeated headers keep their order.
HEADERS_LUA = """
return function(pairs_)
  local h = {list = pairs_}
  function h:get(name)
    for _, p in ipairs(self.list) do if p[1] == name then return p[2] end end
    return nil
  end
  function h:getNumValues(name)
    local n = 0
    for _, p in ipairs(self.list) do if p[1] == name then n = n + 1 end end
    return n
  end
  function h:getAtIndex(name, i)
    local n = 0
    for _, p in ipairs(self.list) do
      if p[1] == name then
        if n == i then return p[2] end
        n = n + 1
      end
    end
    return nil
  end
  function h:remove(name)
    local kept = {}
    for _, p in ipairs(self.list) do if p[1] ~= name then table.insert(kept, p) end end
    self.list = kept
  end
  function h:replace(name, value)
    local kept = {}
    for _, p in ipairs(self.list) do if p[1] ~= name then table.insert(kept, p) end end
    table.insert(kept, {name, value})
    self.list = kept
  end
  return h
end
"""


def run(policy: MeshPolicy, headers: list[tuple[str, str]]) -> str | None:
    """Run envoy_on_request over ``headers``; return the routing header afterwards (asserting it is single)."""
    runtime = lupa.LuaRuntime()
    runtime.execute(normaliser.lua_source(policy))
    make = runtime.execute(HEADERS_LUA)
    pairs = runtime.table_from([runtime.table_from([k, v]) for k, v in headers])
    header_map = make(pairs)
    handle = runtime.eval("function(h) return {headers = function(self) return h end} end")(header_map)
    runtime.globals().envoy_on_request(handle)
    assert header_map.getNumValues(header_map, policy.spec.routing_header) <= 1
    return header_map.get(header_map, policy.spec.routing_header)


def test_runs_on_luajit() -> None:
    assert lupa.LuaRuntime().lua_implementation.startswith("LuaJIT 2.1")


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
