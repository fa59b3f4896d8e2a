"""The edge filter: what runs at an ingress gateway before the normaliser, so outsiders cannot pick a fork.

A routing key is a capability: whoever sets it chooses which code serves the request. At the edge (Istio's GATEWAY
context; the Envoy backend's edge listeners) the filter removes, unless the client is trusted:

- the routing header and every plain header the policy reads a key from;
- the routing members of ``baggage`` and ``tracestate``: every member whose name *reads* as one of the policy's
  routing member names (baggage's or tracestate's, in either header) the way any propagator may read it
  (:data:`~meshgen.backends.normaliser.NAME_RULE`: ``meshgen%2Drouting%2Dkey``, ``meshgen-routing-key+`` and
  ``MESHGEN-ROUTING-KEY`` all do; ``%`` and ``+`` are token characters, so syntax alone would let them through,
  and OpenTelemetry's baggage propagator decodes them into a real key for the next hop). Every other member is
  kept byte for byte, and a header left empty is dropped;
- every header whose name has an underscore, for everyone (see ``drop_underscored``).

Trust depends on ``MeshPolicy.spec.ingress.mode``: ``strip`` trusts nobody; ``allowCidrs`` trusts clients whose
address (Envoy's downstream remote address, which honours Envoy's own trusted-XFF settings) is in a listed
block; ``token`` trusts clients presenting the edge token in a header. The token is never in the configuration:
the filter holds its SHA-256 and hashes what the client sent (a small SHA-256 in LuaJIT's ``bit`` library, only
emitted in token mode). The token header is removed in every case, so it never travels past the edge. For a trusted
client the normaliser then runs as on any sidecar (for the others, stripping left it nothing to find). All of it
runs under ``pcall``, in linear time, as the normaliser does: a failure strips every key source (baggage and
tracestate whole) or, failing that, refuses the request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from meshgen.backends.normaliser import lua_string, normaliser_source
from meshgen.plan.model import Edge
from meshgen.spec.models import IngressMode, MeshPolicy

_EDGE = r"""
-- meshgen edge filter: routing keys from untrusted clients are removed before routing.

-- A list without its routing members (every member next_member reads as one); the others byte for byte.
local function without_members(list)
  local kept, count, dropped = {}, 0, false
  local start, name, entry = next_member(list, 1)
  while start ~= nil do
    if name ~= nil then
      dropped = true
    elseif entry ~= "" then
      count = count + 1
      kept[count] = entry
    end
    start, name, entry = next_member(list, start)
  end
  if not dropped then return list end
  if count == 0 then return nil end
  return table.concat(kept, ",", 1, count)
end

local function strip_members(headers, name)
  local n = headers:getNumValues(name)
  if n == 0 then return end
  local values = {}
  for i = 0, n - 1 do values[#values + 1] = headers:getAtIndex(name, i) end
  headers:remove(name)
  for _, value in ipairs(values) do
    local kept = without_members(value)
    if kept ~= nil then headers:add(name, kept) end
  end
end

function strip(headers)
  for _, name in ipairs(STRIP_HEADERS) do headers:remove(name) end
  strip_members(headers, "baggage")
  strip_members(headers, "tracestate")
end

-- Header names with "_" never pass the edge: CGI and WSGI servers read x_meshgen_routing_key and
-- x-meshgen-routing-key as one variable (HTTP_X_MESHGEN_ROUTING_KEY), so the first would smuggle a key past the
-- strip above. The request goes on without them (what Envoy's headers_with_underscores_action: DROP_HEADER does,
-- here in the one filter every backend and gateway runs). The map cannot change while pairs() walks it.
function drop_underscored(headers)
  local names = {}
  for name in pairs(headers) do
    if find(name, "_", 1, true) then names[#names + 1] = name end
  end
  for _, name in ipairs(names) do headers:remove(name) end
end

-- "10.1.2.3:5000", "[fd00::1]:5000" -> a list of bytes (4 or 16), or nil.
function parse_address(address)
  if address == nil then return nil end
  local host = string.match(address, "^%[(.*)%]:%d+$") or string.match(address, "^([%d%.]+):%d+$") or address
  local a, b, c, d = string.match(host, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a ~= nil then return {tonumber(a), tonumber(b), tonumber(c), tonumber(d)} end
  local mapped = string.match(host, "^::[fF][fF][fF][fF]:([%d%.]+)$")
  if mapped ~= nil then return parse_address(mapped) end
  local head, tail = host, ""
  local gap = string.find(host, "::", 1, true)
  if gap ~= nil then head, tail = string.sub(host, 1, gap - 1), string.sub(host, gap + 2) end
  local function groups(part)
    local out = {}
    for g in string.gmatch(part, "[^:]+") do
      local v = tonumber(g, 16)
      if v == nil or #g > 4 then return nil end
      out[#out + 1] = v
    end
    return out
  end
  local hs, ts = groups(head), groups(tail)
  if hs == nil or ts == nil then return nil end
  local missing = 8 - #hs - #ts
  if (gap == nil and missing ~= 0) or missing < 0 then return nil end
  local words = {}
  for _, v in ipairs(hs) do words[#words + 1] = v end
  for _ = 1, missing do words[#words + 1] = 0 end
  for _, v in ipairs(ts) do words[#words + 1] = v end
  local bytes = {}
  for _, w in ipairs(words) do
    bytes[#bytes + 1] = math.floor(w / 256)
    bytes[#bytes + 1] = w % 256
  end
  return bytes
end

local function in_block(bytes, block)
  local net, bits = block[1], block[2]
  if #bytes ~= #net then return false end
  local i = 1
  while bits >= 8 do
    if bytes[i] ~= net[i] then return false end
    bits, i = bits - 8, i + 1
  end
  if bits == 0 then return true end
  local scale = 2 ^ (8 - bits)
  return math.floor(bytes[i] / scale) == math.floor(net[i] / scale)
end

function trusted_address(address)
  local bytes = parse_address(address)
  if bytes == nil then return false end
  for _, block in ipairs(ALLOW) do
    if in_block(bytes, block) then return true end
  end
  return false
end
"""

_SHA256 = r"""
local bit = require("bit")
local band, bnot, bxor, rshift = bit.band, bit.bnot, bit.bxor, bit.rshift
local ror, tobit, tohex = bit.ror, bit.tobit, bit.tohex
local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

-- SHA-256 of a string, as 64 hex digits (FIPS 180-4). Sums of 32-bit words stay exact in doubles; tobit wraps.
function sha256_hex(message)
  local length = #message
  local bits = length * 8
  local tail = {}
  for i = 7, 0, -1 do tail[#tail + 1] = string.char(math.floor(bits / 2 ^ (8 * i)) % 256) end
  message = message .. "\128" .. string.rep("\0", (55 - length) % 64) .. table.concat(tail)
  local h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}
  for i = 1, 8 do h[i] = tobit(h[i]) end
  local w = {}
  for chunk = 1, #message, 64 do
    for t = 0, 15 do
      local a, b, c, d = string.byte(message, chunk + 4 * t, chunk + 4 * t + 3)
      w[t] = tobit(((a * 256 + b) * 256 + c) * 256 + d)
    end
    for t = 16, 63 do
      local x, y = w[t - 15], w[t - 2]
      local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
      local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
      w[t] = tobit(w[t - 16] + s0 + w[t - 7] + s1)
    end
    local a, b, c, d, e, f, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
    for t = 0, 63 do
      local s1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = tobit(hh + s1 + ch + K[t + 1] + w[t])
      local s0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      hh, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + s0 + maj)
    end
    h[1], h[2], h[3], h[4] = tobit(h[1] + a), tobit(h[2] + b), tobit(h[3] + c), tobit(h[4] + d)
    h[5], h[6], h[7], h[8] = tobit(h[5] + e), tobit(h[6] + f), tobit(h[7] + g), tobit(h[8] + hh)
  end
  local out = {}
  for i = 1, 8 do out[i] = tohex(h[i], 8) end
  return table.concat(out)
end
"""

_ENTRY = """
local function trusted(handle, headers)
  if EDGE_MODE == "allowCidrs" then
    return trusted_address(handle:streamInfo():downstreamRemoteAddress())
  elseif EDGE_MODE == "token" then
    local presented = headers:getAtIndex(TOKEN_HEADER, 0)
    return presented ~= nil and presented ~= "" and sha256_hex(presented) == TOKEN_SHA256
  end
  return false
end

local function edge_request(handle, headers)
  drop_underscored(headers)
  local ok = trusted(handle, headers)
  if TOKEN_HEADER ~= nil then headers:remove(TOKEN_HEADER) end  -- the token never travels past the edge
  if ok then
    normalise(headers)
  else
    strip(headers)  -- and nothing is left for the normaliser to find
  end
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local ok, err = pcall(edge_request, handle, headers)
  if not ok then fail_closed(handle, headers, FAIL_CLOSED, err) end
end
"""


def _lua_blocks(cidrs: tuple[str, ...]) -> str:
    blocks = []
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr)
        octets = ", ".join(str(b) for b in network.network_address.packed)
        blocks.append(f"  {{{{{octets}}}, {network.prefixlen}}},  -- {cidr}")
    return "{\n" + "\n".join(blocks) + "\n}" if blocks else "{}"


def edge_source(policy: MeshPolicy, edge: Edge, also: Sequence[str] = ()) -> str:
    """The edge filter's Lua for ``policy`` and the plan's :class:`Edge`; byte-identical for identical inputs.
    ``also``: routing headers besides the policy's while a change of it is in progress (stripped like it)."""
    spec = policy.spec
    headers = list(dict.fromkeys([spec.routing_header, *also] + [s.key for s in spec.propagation
                                                                 if s.kind == "header"]))
    # On a failure inside the filter, everything a key may travel in goes, the token too.
    fail_closed = [*headers, "baggage", "tracestate", *([edge.token_header] if edge.token_header else [])]
    config = [
        f"local EDGE_MODE = {lua_string(edge.mode.value)}",
        f"local STRIP_HEADERS = {{{', '.join(lua_string(h) for h in headers)}}}",
        f"local FAIL_CLOSED = {{{', '.join(lua_string(h) for h in fail_closed)}}}",
        f"local ALLOW = {_lua_blocks(edge.cidrs) if edge.mode is IngressMode.ALLOW_CIDRS else '{}'}",
        f"local TOKEN_HEADER = {lua_string(edge.token_header) if edge.token_header else 'nil'}",
        f"local TOKEN_SHA256 = {lua_string(edge.token_sha256) if edge.token_sha256 else 'nil'}",
    ]
    sha256 = _SHA256 if edge.mode is IngressMode.TOKEN else ""
    return normaliser_source(policy, also) + "\n" + "\n".join(config) + "\n" + _EDGE + sha256 + _ENTRY
