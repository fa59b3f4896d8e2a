"""Running meshgen's generated Lua in LuaJIT 2.1 (Envoy's Lua) against a small stand-in for Envoy's request handle:
a header map with the methods the filters use (repeated headers keep their order) and a stream info that knows the
client's address. Unit tests of the filters' rules; real Envoy proves the same Lua in the traffic tests."""

from __future__ import annotations

from typing import Any

import pytest

lupa = pytest.importorskip("lupa.luajit21")

HANDLE_LUA = """
return function(pairs_, remote)
  local h = {list = pairs_}
  function h:get(name)
    local values = {}
    for _, p in ipairs(self.list) do if p[1] == name then values[#values + 1] = p[2] end end
    if #values == 0 then return nil end
    return table.concat(values, ",")
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
  function h:add(name, value) table.insert(self.list, {name, value}) end
  function h:replace(name, value)
    self:remove(name)
    self:add(name, value)
  end
  local info = {}
  function info:downstreamRemoteAddress() return remote end
  return {headers = function(self) return h end, streamInfo = function(self) return info end}, h
end
"""


def runtime(source: str) -> Any:
    """A fresh LuaJIT state with ``source`` loaded."""
    lua = lupa.LuaRuntime()
    lua.execute(source)
    return lua


def run(source: str, headers: list[tuple[str, str]], remote: str = "127.0.0.1:40000") -> list[tuple[str, str]]:
    """Run ``envoy_on_request`` of ``source`` over ``headers``; the header lines afterwards, in order."""
    lua = runtime(source)
    pairs = lua.table_from([lua.table_from([k, v]) for k, v in headers])
    handle, header_map = lua.execute(HANDLE_LUA)(pairs, remote)
    lua.globals().envoy_on_request(handle)
    return [(p[1], p[2]) for p in header_map.list.values()]
