"""The routing-key normaliser: a small Lua program Envoy runs first on every request.

It finds the key in the first propagation source of the policy that has one (a plain header, a W3C ``baggage``
member, a W3C ``tracestate`` member) and copies it into the policy's routing header, so every route afterwards
matches one header exactly. Changing a request header from Lua clears Envoy's route cache, so routing sees it.

Parsing rules (W3C Baggage / Trace Context): repeated headers are one comma-joined list; list members are
separated by ``,`` with optional spaces or tabs; a baggage member is ``key=value`` followed by optional
``;property`` parts; baggage values are percent-decoded; the first member with the key wins. A candidate key is
used only if it is a valid routing key (``[A-Za-z0-9._~-]``, at most 63 characters): anything else is ignored, so
a malformed value can never inject header content. A request that already carries the routing header keeps it; if
it carries the header more than once, the first value wins and the others are dropped, because Envoy's route
header matchers accept a request when *any* value matches while its matcher tree sees the values joined — one
value makes every backend agree.

The same text serves both backends: the Istio backend embeds it in an EnvoyFilter, the Envoy backend in its HTTP
filter chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshgen.spec.models import MeshPolicy
from meshgen.spec.names import ROUTING_KEY_MAX

FILTER_NAME = "meshgen.routing_key"
LUA_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"

_TEMPLATE = """\
-- meshgen routing-key normaliser, generated from MeshPolicy {policy}. Do not edit: run meshgen compile.
local ROUTING_HEADER = {header}
local SOURCES = {{
{sources}
}}

local function valid(key)
  return key ~= nil and #key > 0 and #key <= {max_len} and string.find(key, "^[%w%._~%-]+$") ~= nil
end

local function trim(s)
  return string.match(s, "^[ \\t]*(.-)[ \\t]*$")
end

local function unescape(s)
  return (string.gsub(s, "%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- All values of a header, joined with "," as HTTP defines for repeated list headers.
local function joined(headers, name)
  local n = headers:getNumValues(name)
  if n == 0 then return nil end
  local parts = {{}}
  for i = 0, n - 1 do parts[#parts + 1] = headers:getAtIndex(name, i) end
  return table.concat(parts, ",")
end

-- The value of the first "key=value" member named `wanted` in a W3C list (baggage or tracestate).
local function member(list, wanted, decode)
  if list == nil then return nil end
  for entry in string.gmatch(list, "[^,]+") do
    local k, v = string.match(entry, "^[ \\t]*([^=; \\t]+)[ \\t]*=(.*)$")
    if k == wanted then
      v = trim(string.match(v, "^([^;]*)"))
      if decode then v = unescape(v) end
      return v
    end
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
"""

# Only while the routing header changes on a cluster (meshgen.kube.transition): routes may match an older header
# too, so the key is taken from any of them and written into all of them.
_ALSO = """
local ALSO_HEADERS = {{{headers}}}
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
"""

_MESH_ENTRY = """
function envoy_on_request(handle)
  normalise(handle:headers())
end
"""


def lua_string(value: str) -> str:
    """A Lua string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def normaliser_source(policy: MeshPolicy, also: Sequence[str] = ()) -> str:
    """The normaliser's functions (``normalise(headers)`` and what it needs), without an entry point. ``also``:
    routing headers it writes besides the policy's, while a change of the routing header is in progress."""
    sources = "\n".join(
        f"  {{{lua_string(s.kind)}, {lua_string(s.key)}}}," for s in policy.spec.propagation
    )
    source = _TEMPLATE.format(
        policy=policy.metadata.name,
        header=lua_string(policy.spec.routing_header),
        sources=sources,
        max_len=ROUTING_KEY_MAX,
    )
    if also:
        source += _ALSO.format(headers=", ".join(lua_string(h) for h in also))
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
