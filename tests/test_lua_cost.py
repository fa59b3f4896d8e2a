"""The routing-key filters cost work in proportion to the header size, whatever a client sends: one request's
operations counted deterministically (tests/luaenv.py: LuaJIT bytecode, Lua 5.1's pattern matcher run in Lua so its
backtracking counts, bytes the string builtins produce), never timed. Eight times the header must cost at most
``LINEAR`` times the operations: linear work gives about 8, the former trim pattern gave 62.
bench/header_cost.py measures the same through real Envoy."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshgen.backends import edge, normaliser
from meshgen.plan.model import Edge
from meshgen.spec.models import DEFAULT_POLICY, IngressMode
from tests import luaenv
from tests.test_normaliser import compat_policy

LINEAR = 12
SMALL, LARGE = 500, 4000  # LARGE is 8 x SMALL

FILTERS = {
    "mesh": normaliser.lua_source(DEFAULT_POLICY),
    "mesh signadot-compat": normaliser.lua_source(compat_policy()),
    "edge strip": edge.edge_source(DEFAULT_POLICY, Edge()),
    "edge allowCidrs": edge.edge_source(DEFAULT_POLICY, Edge(IngressMode.ALLOW_CIDRS, ("10.0.0.0/8",))),
    "edge token": edge.edge_source(DEFAULT_POLICY, Edge(IngressMode.TOKEN, (), "x-meshgen-edge-token",
                                                        hashlib.sha256(b"t").hexdigest())),
}

Shape = Callable[[int], list[tuple[str, str]]]
# Headers of about n bytes, each shaped to make some scan work hard.
SHAPES: dict[str, Shape] = {
    "spaces inside a baggage value": lambda n: [("baggage", "meshgen-routing-key=pr1" + " " * n + "x")],
    "tabs inside a tracestate value": lambda n: [("tracestate", "meshgen-routing-key=a" + "\t" * n + "b")],
    "spaces around a member": lambda n: [("baggage", " " * n + "meshgen-routing-key=pr1" + " " * n)],
    "many members": lambda n: [("baggage", "a=1," * (n // 4) + "meshgen-routing-key=pr1")],
    "many names as long as a routing name": lambda n: [("baggage", "meshgen-routing-kez=1," * (n // 22))],
    "many encoded names": lambda n: [("baggage", "%6Deshgen-routing-kez=1," * (n // 24))],
    "many twice-encoded names": lambda n: [("baggage", "%256Deshgen-routing-kez=1," * (n // 26))],
    "many header lines": lambda n: [("baggage", "a=1")] * (n // 40) + [("baggage", "meshgen-routing-key=pr1")],
    "a member without =": lambda n: [("baggage", "x" * n)],
    "percent escapes in a value": lambda n: [("baggage", "meshgen-routing-key=" + "%41" * (n // 3))],
    "percent escapes in a name": lambda n: [("baggage", "%25" * (n // 3) + "=1")],
    "plus signs in a name": lambda n: [("baggage", "meshgen-routing-key" + "+" * n + "=pr1")],
    "semicolons": lambda n: [("baggage", "meshgen-routing-key=pr1" + ";p" * (n // 2))],
    "commas only": lambda n: [("baggage", "," * n)],
    "equals signs": lambda n: [("baggage", "=" * n)],
    "a long routing header": lambda n: [("x-meshgen-routing-key", "k" * n)],
    "underscored headers": lambda n: [(f"x_h{i}", "v") for i in range(n // 20)],
    "a long edge token": lambda n: [("x-meshgen-edge-token", "t" * n)],
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", FILTERS)
def test_cost_is_linear_in_the_header_size(name: str, shape: str) -> None:
    source, make = FILTERS[name], SHAPES[shape]
    small = luaenv.operations(source, make(SMALL))
    large = luaenv.operations(source, make(LARGE), budget=small * LINEAR * 2)
    assert large <= small * LINEAR, f"{large / small:.1f}x the operations for {LARGE // SMALL}x the header"


def test_the_count_sees_a_quadratic_pattern() -> None:
    """The former trim, ``^[ \\t]*(.-)[ \\t]*$``, on a value with spaces inside: the measure must tell it apart."""
    source = """
    function envoy_on_request(handle)
      local v = handle:headers():getAtIndex("baggage", 0)
      string.match(v, "^[ \\t]*(.-)[ \\t]*$")
    end
    """
    make = SHAPES["spaces inside a baggage value"]
    small = luaenv.operations(source, make(SMALL))
    large = luaenv.operations(source, make(LARGE), budget=small * 100)
    assert large > small * 40


PATTERNS = ["^[ \t]*(.-)[ \t]*$", "[^ \t]", "%%(%x%x)", "%+", "[%%+]", "^[%w%._~%-]+$", "[^,]+",
            "^[ \t]*([^=; \t]+)[ \t]*=(.*)$", "^([^;]*)", "^%[(.*)%]:%d+$", "^([%d%.]+):%d+$",
            "^(%d+)%.(%d+)%.(%d+)%.(%d+)$", "(a*(.)%w(%s*))", "()ab()", "[a-c%]]+", "x?y-z*$", "[^%a]"]


@given(st.sampled_from(PATTERNS), st.text(alphabet=" \t=;,%+abcxyz09.-[]:", max_size=40), st.integers(-3, 45))
def test_the_counted_matcher_matches_as_lua_does(pattern: str, subject: str, init: int) -> None:
    lua = luaenv.pattern_functions()
    compare = lua.eval("""function(p, s, i)
      local function pack(...) return {n = select("#", ...), ...} end
      local function same(a, b)
        if a.n ~= b.n then return false end
        for k = 1, a.n do if a[k] ~= b[k] then return false end end
        return true
      end
      local function all(it) local out = {} for a, b in it do out[#out + 1] = tostring(a) .. "|" .. tostring(b) end
        return table.concat(out, ",") end
      local hex = function(h) return "<" .. h .. ">" end
      return same(pack(string.find(s, p, i)), pack(patterns.find(s, p, i)))
         and same(pack(string.match(s, p, i)), pack(patterns.match(s, p, i)))
         and all(string.gmatch(s, p)) == all(patterns.gmatch(s, p))
         and same(pack(string.gsub(s, p, hex)), pack(patterns.gsub(s, p, hex)))
         and same(pack(string.gsub(s, p, "[%0]")), pack(patterns.gsub(s, p, "[%0]")))
    end""")
    assert compare(pattern, subject, init)
