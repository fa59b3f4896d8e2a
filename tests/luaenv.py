"""Running meshgen's generated Lua in LuaJIT 2.1 (Envoy's Lua) against a small stand-in for Envoy's request handle:
a header map with the methods the filters use (repeated headers keep their order) and a stream info that knows the
client's address. Unit tests of the filters' rules; real Envoy proves the same Lua in the traffic tests.

:func:`operations` counts the work one request costs, deterministically (no clock): LuaJIT bytecode instructions
executed (interpreter only, so a count hook sees every one), with Lua's pattern functions run by ``patterns.lua``
(Lua 5.1's matcher, in Lua, so its backtracking is counted too; the C matcher would hide it), and every byte the
string builtins produce (``sub``, ``rep``, ``lower``, ``char``, ``table.concat``...) charged as one operation.
String concatenation with ``..`` is not seen: the filters build strings with ``table.concat``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

lupa = pytest.importorskip("lupa.luajit21")

HANDLE_LUA = """
-- A header map like Envoy's: header lines in order, and a map by name (Envoy builds one for any map of more than a
-- few headers), so a lookup or removal costs what the values of that name do, not the whole map. pairs() visits
-- each header name once (Envoy's __pairs visits each line; LuaJIT here has no __pairs, so the names are the
-- table's own keys and the methods come from its metatable).
return function(pairs_, remote)
  local entries, by_name = {}, {}
  local methods = {}
  local h = setmetatable({}, {__index = methods})
  function methods:add(name, value)
    local entry = {name, value, true}
    entries[#entries + 1] = entry
    local same = by_name[name]
    if same == nil then same = {}; by_name[name] = same; rawset(self, name, value) end
    same[#same + 1] = entry
  end
  for _, p in ipairs(pairs_) do h:add(p[1], p[2]) end
  function methods:get(name)
    local same = by_name[name]
    if same == nil then return nil end
    local values = {}
    for i, entry in ipairs(same) do values[i] = entry[2] end
    return table.concat(values, ",")
  end
  function methods:getNumValues(name)
    local same = by_name[name]
    return same == nil and 0 or #same
  end
  function methods:getAtIndex(name, i)
    local same = by_name[name]
    local entry = same and same[i + 1]
    return entry and entry[2]
  end
  function methods:remove(name)
    for _, entry in ipairs(by_name[name] or {}) do entry[3] = false end
    by_name[name] = nil
    rawset(self, name, nil)
  end
  function methods:replace(name, value)
    self:remove(name)
    self:add(name, value)
  end
  function methods:lines()
    local out = {}
    for _, entry in ipairs(entries) do
      if entry[3] then out[#out + 1] = {entry[1], entry[2]} end
    end
    return out
  end
  local info = {}
  function info:downstreamRemoteAddress() return remote end
  local handle = {logged = {}, responded = nil}
  function handle:headers() return h end
  function handle:streamInfo() return info end
  function handle:logErr(message) self.logged[#self.logged + 1] = message end
  function handle:respond(headers, body) self.responded = {headers[":status"], body} end
  return handle, h
end
"""


def runtime(source: str) -> Any:
    """A fresh LuaJIT state with ``source`` loaded."""
    lua = lupa.LuaRuntime()
    lua.execute(source)
    return lua


def run(source: str, headers: list[tuple[str, str]], remote: str = "127.0.0.1:40000") -> list[tuple[str, str]]:
    """Run ``envoy_on_request`` of ``source`` over ``headers``; the header lines afterwards, in order. The filter
    must not have failed (a failure strips keys too, so it could pass a test for the wrong reason)."""
    lines, handle = respond(source, headers, remote)
    assert not list(handle.logged.values()) and handle.responded is None, list(handle.logged.values())
    return lines


def respond(source: str, headers: list[tuple[str, str]], remote: str = "127.0.0.1:40000",
            failing: tuple[str, ...] = ()) -> tuple[list[tuple[str, str]], Any]:
    """Run ``envoy_on_request`` of ``source``; (the header lines afterwards, the handle: ``logged`` errors and
    ``responded``: the local reply, if the filter sent one). The header map methods named in ``failing`` raise, as
    any call into Envoy might."""
    lua = runtime(source)
    pairs = lua.table_from([lua.table_from([k, v]) for k, v in headers])
    handle, header_map = lua.execute(HANDLE_LUA)(pairs, remote)
    for method in failing:
        lua.globals().getmetatable(header_map).__index[method] = lua.eval(
            f"function() error('{method} failed (test)') end")
    lua.globals().envoy_on_request(handle)
    return [(p[1], p[2]) for p in header_map.lines(header_map).values()], handle


PATTERNS = Path(__file__).with_name("patterns.lua")

_COUNTING = """
local patterns = ...
jit.off()
local charged = 0
local function charging(f)
  return function(...)
    local out = f(...)
    if type(out) == "string" then charged = charged + #out end
    return out
  end
end
local byte = string.byte
string.byte = function(s, i, j)
  charged = charged + math.max(0, (j or i or 1) - (i or 1) + 1)
  return byte(s, i, j)
end
for _, name in ipairs({"sub", "rep", "lower", "upper", "char", "format", "reverse"}) do
  string[name] = charging(string[name])
end
table.concat = charging(table.concat)
for _, name in ipairs({"find", "match", "gmatch", "gsub"}) do string[name] = patterns[name] end
return function(run, budget)
  local count = 0
  charged, patterns.plain_bytes = 0, 0
  debug.sethook(function()
    count = count + 100
    if count + charged + patterns.plain_bytes > budget then error("meshgen-test: operation budget exceeded") end
  end, "", 100)
  local ok, err = pcall(run)
  debug.sethook()
  if not ok and not string.find(tostring(err), "budget exceeded", 1, true) then error(err) end
  return count + charged + patterns.plain_bytes
end
"""


def operations(source: str, headers: list[tuple[str, str]], budget: int = 10**9,
               remote: str = "127.0.0.1:40000") -> int:
    """The operations one request through ``envoy_on_request`` of ``source`` costs (see the module's docstring);
    counting stops a little past ``budget``, so a runaway filter fails a test quickly."""
    lua = lupa.LuaRuntime()
    patterns = lua.execute(PATTERNS.read_text(encoding="utf-8"))
    measure = lua.execute(_COUNTING, patterns)
    lua.execute(source)
    pairs = lua.table_from([lua.table_from([k, v]) for k, v in headers])
    handle, _ = lua.execute(HANDLE_LUA)(pairs, remote)
    entry = lua.globals().envoy_on_request
    return int(measure(lambda: entry(handle), budget))


def pattern_functions() -> Any:
    """A LuaJIT state whose ``patterns`` global is patterns.lua's find/match/gmatch/gsub, beside the C ones (to
    check that the counted matcher matches as Lua's does)."""
    lua = lupa.LuaRuntime()
    lua.globals().patterns = lua.execute(PATTERNS.read_text(encoding="utf-8"))
    return lua
