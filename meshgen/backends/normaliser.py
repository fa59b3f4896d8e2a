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

from collections.abc import Sequence

from meshgen.spec.models import MeshPolicy
from meshgen.spec.names import ROUTING_KEY_MAX

FILTER_NAME = "meshgen.routing_key"
LUA_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
NAME_RULE = ("'+' read as a space and percent-escapes decoded, again while that changes it (up to 4 times: a chain "
             "of decoding hops), then every byte that cannot be part of a token removed from both ends (spaces, "
             "tabs, and the bytes of whitespace a decoder's strip() removes, such as U+00A0), lower-cased; a name "
             "shorter than the shortest routing member name is none (decoding and stripping only shorten it)")

_TEMPLATE = r"""-- meshgen routing-key normaliser, generated from MeshPolicy @POLICY@. Do not edit: run meshgen compile.
-- Linear in the header size: every scan moves forward once (see meshgen/backends/normaliser.py).
local ROUTING_HEADER = @HEADER@
local SOURCES = {
@SOURCES@
}
local MAX_KEY = @MAX_LEN@
-- The baggage and tracestate member names the policy reads keys from (lower case), and their shortest and longest.
local MEMBER_NAMES = {@MEMBER_NAMES@}
local SHORTEST, LONGEST = @SHORTEST@, @LONGEST@
local byte, find, lower, sub = string.byte, string.find, string.lower, string.sub

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

-- "2D" -> "-": every two hex digits, in either case, and the byte they stand for.
local HEX = {}
local DIGITS = "0123456789abcdefABCDEF"
for i = 1, #DIGITS do
  for j = 1, #DIGITS do
    local h = sub(DIGITS, i, i) .. sub(DIGITS, j, j)
    HEX[h] = string.char(tonumber(h, 16))
  end
end

-- application/x-www-form-urlencoded decoding, as propagators decode baggage: "+" is a space, "%XX" a byte, a "%"
-- without two hex digits stays. One pass of plain finds and byte loops (no pattern: LuaJIT compiles it), a run of
-- "+" in one piece.
local PIECES = {}  -- reused: a filter's Lua state serves one request at a time, and decoded() never yields
local function decoded(s)
  local pct, plus = find(s, "%", 1, true), find(s, "+", 1, true)
  if pct == nil and plus == nil then return s end
  local out, count, pos = PIECES, 0, 1
  while pct ~= nil or plus ~= nil do
    local at = (plus == nil or (pct ~= nil and pct < plus)) and pct or plus
    if at > pos then
      count = count + 1
      out[count] = sub(s, pos, at - 1)
    end
    count = count + 1
    if at == plus then
      local stop = at + 1
      while byte(s, stop) == 43 do stop = stop + 1 end
      out[count], pos = string.rep(" ", stop - at), stop
      plus = find(s, "+", pos, true)
    else
      local c = HEX[sub(s, at + 1, at + 2)]
      out[count], pos = c or "%", c and at + 3 or at + 1
      pct = find(s, "%", pos, true)
      if plus ~= nil and plus < pos then plus = find(s, "+", pos, true) end
    end
  end
  count = count + 1
  out[count] = sub(s, pos)
  return table.concat(out, "", 1, count)
end

-- The routing member name (one of MEMBER_NAMES) that the first n bytes of a list member, its name, read as the way
-- any propagator may read them (NAME_RULE in meshgen/backends/normaliser.py), or nil. Straight-line in the usual
-- case (no "%" or "+"), and no loop of its own, so LuaJIT compiles the loops that call it.
function routing_member(entry, n)
  if n < SHORTEST then return nil end  -- decoding and stripping only ever shorten a name
  local raw = n == #entry and entry or sub(entry, 1, n)
  local first, last = byte(raw, 1), byte(raw, n)
  if TOKEN[first] and TOKEN[last] and find(raw, "%", 1, true) == nil and find(raw, "+", 1, true) == nil then
    if n > LONGEST then return nil end
    local name = lower(raw)
    return MEMBER_NAMES[name] and name or nil
  end
  local once = decoded(raw)  -- up to 4 times, unrolled: once per decoding hop
  local twice = once == raw and once or decoded(once)
  local thrice = twice == once and twice or decoded(twice)
  local name = lower(trim(thrice == twice and thrice or decoded(thrice), nil, TOKEN))
  return MEMBER_NAMES[name] and name or nil
end

-- The member of a W3C list that starts at `start`: where the next one starts (nil: there is none), the routing
-- member name it reads as (nil: none; its name ends at the first "=" or ";"), the member as written (empty between
-- two commas), and the position of its "=" (nil when a ";" or nothing comes first: no value). Plain finds only;
-- each caller loops itself (no callback, no loop here), so LuaJIT compiles every loop.
function next_member(list, start)
  local n = #list
  if start > n then return nil end
  local stop = find(list, ",", start, true) or n + 1
  local entry = sub(list, start, stop - 1)
  local eq, semi = find(entry, "=", 1, true), find(entry, ";", 1, true)
  local ends = eq
  if semi ~= nil and (eq == nil or semi < eq) then ends, eq = semi, nil end
  return stop + 1, routing_member(entry, ends and ends - 1 or #entry), entry, eq
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
  local start, name, entry, eq = next_member(list, 1)
  while start ~= nil do
    if name == wanted and eq ~= nil then return key_value(sub(entry, eq + 1), decode) end
    start, name, entry, eq = next_member(list, start)
  end
  return nil
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

# Only while the routing header changes on a cluster (meshgen.kube.transition): routes may match an older header
# too, so the key is taken from any of them and written into all of them.
_ALSO = """
local ALSO_HEADERS = {@ALSO@}
local normalise_policy_header = normalise
function normalise(headers)
  local present = headers:getAtIndex(ROUTING_HEADER, 0)
  if present == nil or present == "" then
    for _, name in ipairs(ALSO_HEADERS) do
      local value = headers:getAtIndex(name, 0)
      if value ~= nil and value ~= "" then headers:replace(ROUTING_HEADER, value) break end
    end
  end
  normalise_policy_header(headers)
  local key = headers:getAtIndex(ROUTING_HEADER, 0)
  for _, name in ipairs(ALSO_HEADERS) do
    if key ~= nil then headers:replace(name, key) else headers:remove(name) end
  end
end

local fail_closed_policy_header = fail_closed
function fail_closed(handle, headers, names, err)
  local all = {}
  for _, name in ipairs(names) do all[#all + 1] = name end
  for _, name in ipairs(ALSO_HEADERS) do all[#all + 1] = name end
  fail_closed_policy_header(handle, headers, all, err)
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


def member_names(policy: MeshPolicy) -> list[str]:
    """The baggage and tracestate member names ``policy`` reads keys from, as the filters compare them: lower case."""
    return sorted({s.key.lower() for s in policy.spec.propagation if s.kind != "header"})


def lua_set(names: list[str]) -> str:
    """A Lua table literal with ``names`` as its keys."""
    return "{" + ", ".join(f"[{lua_string(n)}] = true" for n in names) + "}"


def normaliser_source(policy: MeshPolicy, also: Sequence[str] = ()) -> str:
    """The normaliser's functions (``normalise(headers)`` and what it needs), without an entry point. ``also``:
    routing headers it writes besides the policy's, while a change of the routing header is in progress."""
    sources = "\n".join(
        f"  {{{lua_string(s.kind)}, {lua_string(s.key if s.kind == 'header' else s.key.lower())}}},"
        for s in policy.spec.propagation
    )
    names = member_names(policy)
    lengths = [len(n) for n in names] or [1]
    source = (_TEMPLATE.replace("@POLICY@", policy.metadata.name)
              .replace("@HEADER@", lua_string(policy.spec.routing_header))
              .replace("@SOURCES@", sources).replace("@MAX_LEN@", str(ROUTING_KEY_MAX))
              .replace("@MEMBER_NAMES@", lua_set(names)[1:-1])
              .replace("@SHORTEST@", str(min(lengths))).replace("@LONGEST@", str(max(lengths))))
    if also:
        source += _ALSO.replace("@ALSO@", ", ".join(lua_string(h) for h in also))
    return source


def lua_source(policy: MeshPolicy, also: Sequence[str] = ()) -> str:
    """The sidecar (mesh) filter: normalise the key on every request; byte-identical for identical policies."""
    return normaliser_source(policy, also) + _MESH_ENTRY


def lua_filter(source: str) -> dict[str, object]:
    """The Envoy HTTP filter entry (``name`` + ``typed_config``) running the Lua ``source``."""
    return {
        "name": FILTER_NAME,
        "typed_config": {"@type": LUA_FILTER_TYPE, "default_source_code": {"inline_string": source}},
    }
