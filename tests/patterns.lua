-- Lua 5.1 patterns in Lua: string.find, match, gmatch and gsub as lstrlib.c defines them, so that an instruction
-- count sees the work a pattern does (backtracking included), which the C matcher hides from it. A plain find
-- (no pattern) runs in C; patterns.plain_bytes counts the bytes it may have read. %b, %f and back-references are
-- not implemented (the filters do not use them): a pattern with one raises an error.
local byte, sub, char, len = string.byte, string.sub, string.char, string.len
local L_ESC, SPECIALS = 37, "^$*+?.([%-"
local MAXCAPTURES = 32
local CAP_UNFINISHED, CAP_POSITION = -1, -2

local function class_end(ms, p)
  local c = byte(ms.pat, p); p = p + 1
  if c == L_ESC then
    if p > ms.plen then error("malformed pattern (ends with '%')") end
    return p + 1
  end
  if c == 91 then  -- '['
    if byte(ms.pat, p) == 94 then p = p + 1 end
    repeat
      if p > ms.plen then error("malformed pattern (missing ']')") end
      local cc = byte(ms.pat, p); p = p + 1
      if cc == L_ESC and p <= ms.plen then p = p + 1 end
    until byte(ms.pat, p) == 93
    return p + 1
  end
  return p
end

local function match_class(c, cl)
  local lower = cl >= 65 and cl <= 90 and cl + 32 or cl
  local res
  if lower == 97 then res = (c >= 65 and c <= 90) or (c >= 97 and c <= 122)           -- a
  elseif lower == 99 then res = c < 32 or c == 127                                   -- c
  elseif lower == 100 then res = c >= 48 and c <= 57                                 -- d
  elseif lower == 108 then res = c >= 97 and c <= 122                                -- l
  elseif lower == 112 then res = (c >= 33 and c <= 47) or (c >= 58 and c <= 64) or (c >= 91 and c <= 96)
                                  or (c >= 123 and c <= 126)                         -- p
  elseif lower == 115 then res = c == 32 or (c >= 9 and c <= 13)                     -- s
  elseif lower == 117 then res = c >= 65 and c <= 90                                 -- u
  elseif lower == 119 then res = (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122)  -- w
  elseif lower == 120 then res = (c >= 48 and c <= 57) or (c >= 65 and c <= 70) or (c >= 97 and c <= 102)  -- x
  elseif lower == 122 then res = c == 0                                              -- z
  else return cl == c end
  if cl >= 65 and cl <= 90 then return not res end
  return res
end

local function match_bracket_class(ms, c, p, ec)
  local sig = true
  if byte(ms.pat, p + 1) == 94 then sig = false; p = p + 1 end
  p = p + 1
  while p < ec do
    local pc = byte(ms.pat, p)
    if pc == L_ESC then
      p = p + 1
      if match_class(c, byte(ms.pat, p)) then return sig end
    elseif byte(ms.pat, p + 1) == 45 and p + 2 < ec then  -- a-z
      if pc <= c and c <= byte(ms.pat, p + 2) then return sig end
      p = p + 2
    elseif pc == c then
      return sig
    end
    p = p + 1
  end
  return not sig
end

local function single_match(ms, s, p, ep)
  if s > ms.slen then return false end
  local c, pc = byte(ms.src, s), byte(ms.pat, p)
  if pc == 46 then return true end                       -- '.'
  if pc == L_ESC then return match_class(c, byte(ms.pat, p + 1)) end
  if pc == 91 then return match_bracket_class(ms, c, p, ep - 1) end
  return pc == c
end

local do_match

local function max_expand(ms, s, p, ep)
  local i = 0
  while single_match(ms, s + i, p, ep) do i = i + 1 end
  while i >= 0 do
    local res = do_match(ms, s + i, ep + 1)
    if res then return res end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  while true do
    local res = do_match(ms, s, ep + 1)
    if res then return res end
    if single_match(ms, s, p, ep) then s = s + 1 else return nil end
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level + 1
  if level > MAXCAPTURES then error("too many captures") end
  ms.cinit[level], ms.clen[level], ms.level = s, what, level
  local res = do_match(ms, s, p)
  if not res then ms.level = ms.level - 1 end
  return res
end

local function end_capture(ms, s, p)
  local l = nil
  for level = ms.level, 1, -1 do
    if ms.clen[level] == CAP_UNFINISHED then l = level; break end
  end
  if l == nil then error("invalid pattern capture") end
  ms.clen[l] = s - ms.cinit[l]
  local res = do_match(ms, s, p)
  if not res then ms.clen[l] = CAP_UNFINISHED end
  return res
end

function do_match(ms, s, p)
  while true do
    if p > ms.plen then return s end
    local pc = byte(ms.pat, p)
    if pc == 40 then                                      -- '('
      if byte(ms.pat, p + 1) == 41 then return start_capture(ms, s, p + 2, CAP_POSITION) end
      return start_capture(ms, s, p + 1, CAP_UNFINISHED)
    elseif pc == 41 then                                  -- ')'
      return end_capture(ms, s, p + 1)
    elseif pc == 36 and p == ms.plen then                 -- '$' at the end
      return s == ms.slen + 1 and s or nil
    elseif pc == L_ESC and (byte(ms.pat, p + 1) == 98 or byte(ms.pat, p + 1) == 102
                            or (byte(ms.pat, p + 1) >= 48 and byte(ms.pat, p + 1) <= 57)) then
      error("patterns.lua: %b, %f and back-references are not implemented")
    end
    local ep = class_end(ms, p)
    local m = single_match(ms, s, p, ep)
    local epc = byte(ms.pat, ep)
    if epc == 63 then                                     -- '?'
      if m then
        local res = do_match(ms, s + 1, ep + 1)
        if res then return res end
      end
      p = ep + 1
    elseif epc == 42 then return max_expand(ms, s, p, ep)               -- '*'
    elseif epc == 43 then return m and max_expand(ms, s + 1, p, ep) or nil  -- '+'
    elseif epc == 45 then return min_expand(ms, s, p, ep)               -- '-'
    else
      if not m then return nil end
      s, p = s + 1, ep
    end
  end
end

local function capture(ms, i, s, e)
  if i > ms.level then
    if i == 1 then return sub(ms.src, s, e - 1) end
    error("invalid capture index")
  end
  local l = ms.clen[i]
  if l == CAP_UNFINISHED then error("unfinished capture") end
  if l == CAP_POSITION then return ms.cinit[i] end
  return sub(ms.src, ms.cinit[i], ms.cinit[i] + l - 1)
end

local function captures(ms, s, e, whole)
  local n = (ms.level == 0 and whole) and 1 or ms.level
  local out = {}
  for i = 1, n do out[i] = capture(ms, i, s, e) end
  return unpack(out, 1, n)
end

local function state(src, pat)
  return {src = src, slen = len(src), pat = pat, plen = len(pat), level = 0, cinit = {}, clen = {}}
end

local plain_find, c_gsub = string.find, string.gsub
local patterns = {plain_bytes = 0}

local function has_specials(pat)
  for i = 1, len(pat) do
    if plain_find(SPECIALS, sub(pat, i, i), 1, true) then return true end
  end
  return false
end

local function find_aux(find, src, pat, init, plain)
  src, pat = tostring(src), tostring(pat)
  local slen = len(src)
  init = init or 1
  if init < 0 then init = slen + init + 1 end
  if init < 1 then init = 1 elseif init > slen + 1 then init = slen + 1 end
  if find and (plain or not has_specials(pat)) then
    local first, last = plain_find(src, pat, init, true)
    patterns.plain_bytes = patterns.plain_bytes + (last or slen) - init + 1
    return first, last
  end
  local anchor = byte(pat, 1) == 94
  local p = anchor and 2 or 1
  local s1 = init
  repeat
    local ms = state(src, pat)
    local e = do_match(ms, s1, p)
    if e then
      if find then return s1, e - 1, captures(ms, s1, e, false) end
      return captures(ms, s1, e, true)
    end
    s1 = s1 + 1
  until s1 > slen + 1 or anchor
  return nil
end

function patterns.find(src, pat, init, plain) return find_aux(true, src, pat, init, plain) end
function patterns.match(src, pat, init) return find_aux(false, src, pat, init, false) end

function patterns.gmatch(src, pat)
  src, pat = tostring(src), tostring(pat)
  local pos = 1
  return function()
    while pos <= len(src) + 1 do
      local ms = state(src, pat)
      local e = do_match(ms, pos, 1)
      if e then
        local start = pos
        pos = (e == pos) and e + 1 or e
        return captures(ms, start, e, true)
      end
      pos = pos + 1
    end
    return nil
  end
end

function patterns.gsub(src, pat, repl, max_n)
  src, pat = tostring(src), tostring(pat)
  local anchor = byte(pat, 1) == 94
  local p = anchor and 2 or 1
  local s, n, out = 1, 0, {}
  while max_n == nil or n < max_n do
    local ms = state(src, pat)
    local e = do_match(ms, s, p)
    if e then
      n = n + 1
      local whole = sub(src, s, e - 1)
      local value
      if type(repl) == "function" then value = repl(captures(ms, s, e, true))
      elseif type(repl) == "table" then value = repl[(captures(ms, s, e, true))]
      else
        value = c_gsub(repl, "%%([%d%%])", function(d)
          if d == "%" then return "%" end
          if d == "0" then return whole end
          return tostring(capture(ms, tonumber(d), s, e))
        end)
      end
      if value == nil or value == false then value = whole end
      out[#out + 1] = tostring(value)
    end
    if e and e > s then s = e
    elseif s <= len(src) then out[#out + 1] = sub(src, s, s); s = s + 1
    else break end
    if anchor then break end
  end
  out[#out + 1] = sub(src, s)
  return table.concat(out), n
end

return patterns
