"""The routing-key normaliser: a small Lua program Envoy runs first on every request.

It finds the key in the first propagation source of the policy that has one (a plain header, a W3C ``baggage``
member, a W3C ``tracestate`` member) and copies it into the policy's routing header, so every route afterwards
matches one header exactly. Changing a request header from Lua clears Envoy's route cache, so routing sees it.

Parsing rules (W3C Baggage / Trace Context): repeated headers are one comma-joined list; list members are
separated by ``,`` with optional spaces or tabs; a member is ``name=value`` followed by optional ``;property``
parts; the first member with the name wins. A member's name is read the way any propagator may read it
(:data:`NAME_RULE`: decoded, stripped, lower-cased), so the mesh routes on what an OpenTelemetry hop would forward.
Baggage values are ``+``- and percent-decoded, cut at a property (also one a propagator encoded into the value:
OpenTelemetry's Python propagator re-sends ``pr1;p=1`` as ``pr1%3Bp%3D1``) and trimmed. A candidate key is used
only if it is a valid routing key (``[A-Za-z0-9._~-]``, at most 63 characters): anything else is ignored, so a
malformed value can never inject header content. A request that already carries the routing header keeps it; if
it carries the header more than once, the first value wins and the others are dropped, because Envoy's route
header matchers accept a request when *any* value matches while its matcher tree sees the values joined — one
value makes every backend agree.

**Linear time.** Every loop moves forward through the headers once (plain finds, single-class scans, byte loops),
so a request costs work in proportion to its header size, whatever a client sends: a backtracking pattern such as
the former trim ``^[ \t]*(.-)[ \t]*$`` is quadratic (a baggage member with 40,000 spaces inside cost 5.2 s of Envoy
worker time). ``tests/test_lua_cost.py`` counts the work; ``bench/header_cost.py`` measures it through real Envoy.

**Fails closed.** The filter runs under ``pcall``: should anything in it fail, the request goes on without a routing
header (to the baseline, never on an unchecked key), and if even removing that fails, it is refused (503). Envoy
itself would log a Lua error and pass the request on unchanged.

The same text serves both backends: the Istio backend embeds it in an EnvoyFilter, the Envoy backend in its HTTP
filter chain.
"""

from __future__ import annotations

from meshgen.spec.models import MeshPolicy
from meshgen.spec.names import ROUTING_KEY_MAX

FILTER_NAME = "meshgen.routing_key"
LUA_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
NAME_RULE = ("'+' read as a space and percent-escapes decoded, again while that changes it (up to 4 times: a chain "
             "of decoding hops), then every byte that cannot be part of a token removed from both ends (spaces, "
             "tabs, and the bytes of whitespace a decoder's strip() removes, such as U+00A0), lower-cased")

_TEMPLATE = r"""-- meshgen routing-key normaliser, generated from MeshPolicy @POLICY@. Do not edit: run meshgen compile.
-- Linear in the header size: every scan moves forward once (see meshgen/backends/normaliser.py).
local ROUTING_HEADER = @HEADER@
local SOURCES = {
@SOURCES@
}
local MAX_KEY = @MAX_LEN@
local byte, find, gsub, lower, sub = string.byte, string.find, string.gsub, string.lower, string.sub

-- RFC 9110 token characters, what a list member's name is made of.
local TOKEN = {}
for c = 48, 57 do TOKEN[c] = true end
for c = 65, 90 do TOKEN[c] = true end
for c = 97, 122 do TOKEN[c] = true end
for _, c in ipairs({33, 35, 36, 37, 38, 39, 42, 43, 45, 46, 94, 95, 96, 124, 126}) do TOKEN[c] = true end
local SPACE = {[9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true}

local function valid(key)
  return key ~= nil and #key > 0 and #key <= MAX_KEY and find(key, "^[%w%._~%-]+$") ~= nil
end

-- s without the bytes `drop` holds (or `keep` does not) at either end.
local function trim(s, drop, keep)
  local first, last = 1, #s
  if keep then
    while first <= last and not keep[byte(s, first)] do first = first + 1 end
    while last >= first and not keep[byte(s, last)] do last = last - 1 end
  else
    while first <= last and drop[byte(s, first)] do first = first + 1 end
    while last >= first and drop[byte(s, last)] do last = last - 1 end
  end
  return sub(s, first, last)
end

local function hex(h) return string.char(tonumber(h, 16)) end

-- application/x-www-form-urlencoded decoding, as propagators decode baggage ("+" is a space).
local function decoded(s)
  return (gsub((gsub(s, "%+", " ")), "%%(%x%x)", hex))
end

-- A list member's name as any propagator may read it (NAME_RULE in meshgen/backends/normaliser.py).
function member_name(raw)
  local name = raw
  for _ = 1, 4 do
    if find(name, "[%%+]") == nil then break end
    local next_name = decoded(name)
    if next_name == name then break end
    name = next_name
  end
  return lower(trim(name, nil, TOKEN))
end

-- Calls visit(name, value, entry) for each non-empty member of a W3C list. The name ends at the first "=" or ";";
-- value (after the "=") is nil for a member with no "=" before its first ";". visit returns true to stop.
function each_member(list, visit)
  local start, n = 1, #list
  while start <= n do
    local stop = find(list, ",", start, true) or n + 1
    if stop > start then
      local entry = sub(list, start, stop - 1)
      local ends = find(entry, "[=;]")
      local name = member_name(ends and sub(entry, 1, ends - 1) or entry)
      local value = ends and byte(entry, ends) == 61 and sub(entry, ends + 1) or nil
      if visit(name, value, entry) then return end
    end
    start = stop + 1
  end
end

-- A member's value without its properties, decoded for baggage, trimmed.
local function key_value(raw, decode)
  local semi = find(raw, ";", 1, true)
  local value = trim(semi and sub(raw, 1, semi - 1) or raw, SPACE)
  if not decode then return value end
  value = decoded(value)
  semi = find(value, ";", 1, true)
  return trim(semi and sub(value, 1, semi - 1) or value, SPACE)
end

-- All values of a header, joined with "," as HTTP defines for repeated list headers.
local function joined(headers, name)
  local n = headers:getNumValues(name)
  if n == 0 then return nil end
  local parts = {}
  for i = 0, n - 1 do parts[#parts + 1] = headers:getAtIndex(name, i) end
  return table.concat(parts, ",")
end

-- The value of the first member named `wanted` (lower case) in a W3C list (baggage or tracestate).
local function member(list, wanted, decode)
  if list == nil then return nil end
  local found = nil
  each_member(list, function(name, value)
    if name == wanted and value ~= nil then
      found = key_value(value, decode)
      return true
    end
    return false
  end)
  return found
end

function routing_key(headers)
  for _, source in ipairs(SOURCES) do
    local kind, name = source[1], source[2]
    local key
    if kind == "header" then
      key = headers:getAtIndex(name, 0)
    elseif kind == "baggage" then
      key = member(joined(headers, "baggage"), name, true)
    else
      key = member(joined(headers, "tracestate"), name, false)
    end
    if key ~= nil and key ~= "" then
      if valid(key) then return key end
      return nil
    end
  end
  return nil
end

function normalise(headers)
  local count = headers:getNumValues(ROUTING_HEADER)
  local present = headers:getAtIndex(ROUTING_HEADER, 0)
  if present ~= nil and present ~= "" then
    if count > 1 then headers:replace(ROUTING_HEADER, present) end
    return
  end
  if count > 0 then headers:remove(ROUTING_HEADER) end  -- empty means absent; drop it so no stale value matches
  local key = routing_key(headers)
  if key ~= nil then headers:replace(ROUTING_HEADER, key) end
end

-- What runs when the filter itself fails: no request may be routed on a key nobody checked. Remove every header
-- in `names` (the routing header, and at the edge everything a key may travel in); refuse the request if even
-- that fails.
function fail_closed(handle, headers, names, err)
  pcall(function() handle:logErr("meshgen routing-key filter failed, request stripped: " .. tostring(err)) end)
  local removed = pcall(function()
    for _, name in ipairs(names) do headers:remove(name) end
  end)
  if not removed then handle:respond({[":status"] = "503"}, "meshgen routing-key filter failed") end
end
"""

_MESH_ENTRY = """
function envoy_on_request(handle)
  local headers = handle:headers()
  local ok, err = pcall(normalise, headers)
  if not ok then fail_closed(handle, headers, {ROUTING_HEADER}, err) end
end
"""


def lua_string(value: str) -> str:
    """A Lua string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def normaliser_source(policy: MeshPolicy) -> str:
    """The normaliser's functions (``normalise(headers)`` and what it needs), without an entry point."""
    # Member names are compared as member_name reads them: lower case.
    sources = "\n".join(
        f"  {{{lua_string(s.kind)}, {lua_string(s.key if s.kind == 'header' else s.key.lower())}}},"
        for s in policy.spec.propagation
    )
    return (_TEMPLATE.replace("@POLICY@", policy.metadata.name)
            .replace("@HEADER@", lua_string(policy.spec.routing_header))
            .replace("@SOURCES@", sources).replace("@MAX_LEN@", str(ROUTING_KEY_MAX)))


def lua_source(policy: MeshPolicy) -> str:
    """The sidecar (mesh) filter: normalise the key on every request; byte-identical for identical policies."""
    return normaliser_source(policy) + _MESH_ENTRY


def lua_filter(source: str) -> dict[str, object]:
    """The Envoy HTTP filter entry (``name`` + ``typed_config``) running the Lua ``source``."""
    return {
        "name": FILTER_NAME,
        "typed_config": {"@type": LUA_FILTER_TYPE, "default_source_code": {"inline_string": source}},
    }
