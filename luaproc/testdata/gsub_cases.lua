-- string.gsub cases for TestGsubMatchesTheInterpreter: run by the process
-- engine and by the interpreter itself, whose outputs must be equal. Most
-- cases take the driver's LuaJIT fast path (a one-character pattern over a
-- string of 256 bytes or more); the others, and the replacements that
-- raise errors, are the real gsub's. Deterministic: its own generator.
local function run()
  local x = 12345
  local function R(a, b)
    x = (x * 16807) % 2147483647
    return a + x % (b - a + 1)
  end
  local function pick(t) return t[R(1, #t)] end
  local one = { ".", "a", "A", "%a", "%l", "%z", "%%", "%.", "[ab]", "[^a]", "[%]a]", "[a-c]",
    "[]]", "[^]]", "\255", "[\0-a]", "]", "%w", "%s", "%x", "%S", "%d", "[%a%d]", "[^%s]" }
  local other = { "aa", "a*", "a+", "^a", "a$", "(a)", "%b()", "%fa", "%1", "[a", "%", "", "[]", ".-",
    "[^]", "(", "a-", "%a+", "()" }
  local chars = { "a", "b", "c", "A", "1", " ", "\0", "\255", "%", "]", "[", "-", "\n", "(", ")" }
  local vals = { "T", "", "uv", false, 3, 2.25, -0, 1e100, {}, true, "%0", "%1", "%2", "%%", "%" }
  local function str()
    local alpha, t = {}, {}
    for i = 1, R(1, 6) do alpha[i] = pick(chars) end
    for i = 1, R(250, 700) do t[i] = pick(alpha) end
    return table.concat(t)
  end
  local function repl()
    local k = R(1, 6)
    if k <= 2 then return pick(vals) end
    if k <= 4 then
      local t = {}
      for i = 1, R(0, 6) do t[pick(chars)] = pick(vals) end
      return t
    end
    if k == 5 then return setmetatable({}, { __index = function(_, c) return c .. "!" end }) end
    return function(c) return "<" .. c .. ">" end
  end
  local function limit()
    local k = R(1, 10)
    if k == 1 then return 0 end
    if k == 2 then return R(-3, 60) end
    if k == 3 then return R(100, 500) end
    if k == 4 then return 2.5 end
    if k == 5 then return "7" end
    if k == 6 then return 3e9 end
    return nil
  end
  -- Printable ASCII only: the engine returns other bytes base64-encoded.
  local function esc(v)
    local t = {}
    for j = 1, #v do
      local b = string.byte(v, j)
      t[j] = (b >= 32 and b < 127 and b ~= 92) and string.char(b) or "\\" .. b
    end
    return table.concat(t)
  end
  local out = {}
  for i = 1, 3000 do
    local s, p, r, m = str(), R(1, 5) > 1 and pick(one) or pick(other), repl(), limit()
    local res
    if R(1, 3) == 1 then res = { pcall(string.gsub, s, p, r) } else res = { pcall(string.gsub, s, p, r, m) } end
    local v = res[2]
    if type(v) == "string" and #v > 40 then
      local h = #v
      for j = 1, #v do h = (h * 31 + string.byte(v, j)) % 1000000007 end
      v = #v .. ":" .. h
    end
    out[i] = i .. " " .. esc(p) .. " " .. tostring(res[1]) .. " " .. esc(tostring(v)) .. " " .. tostring(res[3])
  end
  return table.concat(out, "\n")
end
