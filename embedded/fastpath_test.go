package embedded

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// TestFastPathsMatchBuiltins: a builtin called from Lua with a fixed
// number of arguments takes its fast path (fastpath.go) when it can, and
// is called as before otherwise. For random arguments, usual and unusual
// (negative, fractional, huge and out-of-range positions, -0, NaN,
// numerals as strings, nil, tables, missing and extra arguments), every
// call must give what the builtin gives when called through pcall (which
// never takes the fast path): the same error or the same results, also
// when more or fewer results are wanted than the call gives.
func TestFastPathsMatchBuiltins(t *testing.T) {
	strs := []string{`""`, `"A"`, `"ACGT"`, `"` + strings.Repeat("ACGTTGCA", 5) + `"`, `("xy"):rep(60)`}
	nums := []string{"0", "1", "2", "3", "4", "-1", "-2", "-4", "-5", "5", "7", "40", "41", "64", "65", "66", "120", "121",
		"1.5", "-1.5", "-z", "0/0", "1/0", "-1/0", "2^53", "-2^53", "2^60", "255", "256", "97", `"2"`, `" 3 "`, "nil", "true", "{}"}
	pick := func(r *rand.Rand, xs []string) string { return xs[r.IntN(len(xs))] }
	r := rand.New(rand.NewPCG(1, 2))
	type call struct{ fn, args string }
	// Edge cases that random picks may miss: ties of 0 and -0, NaN first
	// and later, equal values.
	calls := []call{{"math.max", "0, -z"}, {"math.max", "-z, 0"}, {"math.min", "0, -z"}, {"math.min", "-z, 0"},
		{"math.max", "0/0, 1"}, {"math.max", "1, 0/0"}, {"math.min", "0/0, 1"}, {"math.min", "1, 0/0"},
		{"math.max", "2, 1, 2, -z"}, {"math.min", "-z, 0, -z, 0"}, {"math.floor", "-z"}, {"math.abs", "-z"},
		{"tostring", "-z"}, {"tostring", "0"}, {"tostring", "9999"}, {"tostring", "10000"}, {"tostring", "-1"}}
	for range 1500 {
		fns := []string{"string.byte", "string.sub", "string.char", "math.floor", "math.abs", "math.sqrt", "math.max", "math.min", "type", "tostring"}
		fn := fns[r.IntN(len(fns))]
		var args []string
		if fn == "string.byte" || fn == "string.sub" {
			for k := range r.IntN(5) {
				if k == 0 && r.IntN(8) != 0 {
					args = append(args, pick(r, strs))
				} else {
					args = append(args, pick(r, nums))
				}
			}
		} else {
			for range r.IntN(4) {
				args = append(args, pick(r, append(nums, strs...)))
			}
		}
		calls = append(calls, call{fn, strings.Join(args, ", ")})
	}
	// Each case is checked by a function with a fixed-argument call of its
	// own (CALL with B != 0), wanting 4 results, and a second wanting all
	// (select('#', ...)); pcall(f, ...) calls the builtin as a Go call.
	var b strings.Builder
	b.WriteString(`local z = 0
-- (type through pcall: never its fast path, which is under test)
local function typeof(v) return (select(2, pcall(type, v))) end
local function show(...)
  local out = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    if typeof(v) == "number" then
      if v ~= v then out[i] = "nan" elseif v == 0 and 1 / v < 0 then out[i] = "-0" else out[i] = string.format("%.17g", v) end
    elseif typeof(v) == "string" then out[i] = string.format("%q", (v:gsub("0x%x+", "0x?")))
    else out[i] = typeof(v) end
  end
  return select('#', ...) .. ":" .. table.concat(out, ",")
end
local bad = {}
local cases = {
`)
	for i, c := range calls {
		slowArgs := c.fn
		if c.args != "" {
			slowArgs += ", " + c.args
		}
		fmt.Fprintf(&b, "{%q, function() local a1, a2, a3, a4 = %s(%s) return a1, a2, a3, a4 end, function() return select('#', %s(%s)) end, function() return pcall(%s) end},\n",
			fmt.Sprintf("%d %s(%s)", i, c.fn, c.args), c.fn, c.args, c.fn, c.args, slowArgs)
	}
	b.WriteString(`}
for _, c in ipairs(cases) do
  local name, fixed4, count, slow = c[1], c[2], c[3], c[4]
  local s = {slow()}
  local sn = select('#', slow()) - 1
  local ok4, a1, a2, a3, a4 = pcall(fixed4)
  local okn, n = pcall(count)
  if ok4 ~= s[1] or okn ~= s[1] then
    bad[#bad + 1] = name .. ": fast ok " .. tostring(ok4) .. "/" .. tostring(okn) .. " (" .. tostring(a1) .. "), builtin ok " .. tostring(s[1])
  elseif s[1] then
    local got, exp = show(a1, a2, a3, a4), show(s[2], s[3], s[4], s[5])
    if got ~= exp or n ~= sn then
      bad[#bad + 1] = name .. ": fast " .. got .. " #" .. tostring(n) .. ", builtin " .. exp .. " #" .. sn
    end
  else
    -- (a call through pcall has no name for the function)
    local function norm(e) return (tostring(e):gsub("^[^:]*:%d+: ", ""):gsub(" to [^ ]+ %(", " to ? (")) end
    local e1, e2 = norm(a1), norm(s[2])
    if e1 ~= e2 then
      bad[#bad + 1] = name .. ": fast error " .. e1 .. ", builtin error " .. e2
    end
  end
end
return #bad .. " " .. table.concat(bad, "\n")
`)
	vm := openVM(t, core.Options{})
	res, vals := execValues(t, vm, b.String())
	if len(vals) != 1 || vals[0] != "0 " {
		t.Fatalf("fast paths differ from their builtins:\n%v %s", vals, res.ErrorMessage)
	}

	// The fast paths are installed (else the comparison above is moot).
	st := newState(stateConfig{})
	defer st.close()
	g := st.L.G.Global
	str, math := g.RawGetString("string").(*lua.LTable), g.RawGetString("math").(*lua.LTable)
	for name, fn := range map[string]lua.LValue{"string.byte": str.RawGetString("byte"), "string.sub": str.RawGetString("sub"),
		"string.char": str.RawGetString("char"), "math.floor": math.RawGetString("floor"), "math.abs": math.RawGetString("abs"),
		"math.sqrt": math.RawGetString("sqrt"), "math.max": math.RawGetString("max"), "math.min": math.RawGetString("min"),
		"type": g.RawGetString("type"), "tostring": g.RawGetString("tostring"), "next": g.RawGetString("next"),
		"table.insert":     g.RawGetString("table").(*lua.LTable).RawGetString("insert"),
		"ipairs' iterator": g.RawGetString("ipairs").(*lua.LFunction).Upvalues[0].Value()} {
		if f, ok := fn.(*lua.LFunction); !ok || f.Fast == nil {
			t.Errorf("%s has no fast path", name)
		}
	}
}

// TestFastIteratorsMatch: next and ipairs' iterator take their fast paths
// in generic for loops (OP_TFORLOOP) and in calls with fixed arguments,
// and next leaves scans longer than fastScanSlots and invalid keys to the
// builtin. Loops with one, two and three variables, over a table with
// holes, gaps of more than 64 slots, deleted keys and keys of every kind,
// also while the loop changes and clears fields, must visit what next
// called through pcall (never the fast path) visits, and direct calls must
// give the same results and errors.
func TestFastIteratorsMatch(t *testing.T) {
	const code = `local function mk()
  local T = {10, 20, nil, 40}
  for i = 6, 200 do T[i] = i end
  for i = 80, 150 do T[i] = nil end
  T.a, T.b, T[1.5], T[true] = "A", "B", "f", "t"
  T[-3] = "neg"
  T[2^40] = "big"
  for i = 1, 100 do T["k" .. i] = i end
  for i = 1, 90 do T["k" .. i] = nil end
  return T
end
local function show(...)
  local out = {}
  for i = 1, select('#', ...) do out[i] = tostring((select(i, ...))) end
  return table.concat(out, ",")
end
local bad = {}
-- generic for loops (the fast path) against next called through pcall
local T = mk()
local seq1, seq2, seq3 = {}, {}, {}
for k, v in pairs(T) do seq1[#seq1 + 1] = show(k, v) end
for k in next, T do seq3[#seq3 + 1] = show(k) end
local k = nil
while true do
  local ok, nk, nv = pcall(next, T, k)
  if not ok or nk == nil then break end
  seq2[#seq2 + 1] = show(nk, nv)
  k = nk
end
if table.concat(seq1, ";") ~= table.concat(seq2, ";") then bad[#bad + 1] = "pairs order" end
if #seq3 ~= #seq2 then bad[#bad + 1] = "one-variable loop: " .. #seq3 .. " keys, " .. #seq2 end
local n3 = 0
for k, v, extra in pairs(T) do if extra ~= nil then bad[#bad + 1] = "third variable " .. tostring(extra) end n3 = n3 + 1 end
if n3 ~= #seq2 then bad[#bad + 1] = "three-variable loop" end
-- ipairs against its iterator called through pcall
local iaux = ipairs({})
local s1, s2 = {}, {}
for i, v in ipairs(T) do s1[#s1 + 1] = show(i, v) end
local i = 0
while true do
  local r = {pcall(iaux, T, i)}
  if r[2] == nil then break end
  s2[#s2 + 1] = show(r[2], r[3])
  i = r[2]
end
if table.concat(s1, ";") ~= table.concat(s2, ";") then bad[#bad + 1] = "ipairs" end
-- a traversal that changes and clears fields (which Lua allows)
local U, V = mk(), mk()
local c1, c2 = {}, {}
for k, v in pairs(U) do c1[#c1 + 1] = show(k) if type(v) == "number" then U[k] = v * 2 else U[k] = nil end end
local k2 = nil
while true do
  local ok, nk, nv = pcall(next, V, k2)
  if not ok or nk == nil then break end
  c2[#c2 + 1] = show(nk)
  if type(nv) == "number" then V[nk] = nv * 2 else V[nk] = nil end
  k2 = nk
end
if table.concat(c1, ";") ~= table.concat(c2, ";") then bad[#bad + 1] = "changing traversal" end
-- direct calls with fixed arguments (the fast path) against pcall
local cases = {
  {next, T}, {next, T, nil}, {next, T, 1}, {next, T, 2}, {next, T, 4}, {next, T, 79}, {next, T, 200},
  {next, T, "a"}, {next, T, 1.5}, {next, T, true}, {next, T, -3}, {next, T, 2^40}, {next, T, "k95"}, {next, T, "zz"},
  {next, T, 3}, {next, T, 0}, {next, {}}, {next, {}, 1}, {next, "x"}, {next},
  {iaux, T, 0}, {iaux, T, 1}, {iaux, T, 2}, {iaux, T, 3}, {iaux, T, 1.5}, {iaux, T, -1}, {iaux, T, 199}, {iaux, T, 200}, {iaux, "x", 0}, {iaux, T},
}
for ci, c in ipairs(cases) do
  local f, a, b = c[1], c[2], c[3]
  local n = #c - 1
  local want = {pcall(f, unpack(c, 2, n + 1))}
  local got
  local cnt, wcnt
  if n == 0 then got = {pcall(function() local x, y, z = f() return x, y, z end)} cnt = pcall(function() return select('#', f()) end) and select('#', f())
  elseif n == 1 then got = {pcall(function() local x, y, z = f(a) return x, y, z end)} cnt = pcall(function() return select('#', f(a)) end) and select('#', f(a))
  else got = {pcall(function() local x, y, z = f(a, b) return x, y, z end)} cnt = pcall(function() return select('#', f(a, b)) end) and select('#', f(a, b)) end
  wcnt = want[1] and select('#', pcall(f, unpack(c, 2, n + 1))) - 1
  if cnt ~= wcnt then bad[#bad + 1] = "case " .. ci .. ": " .. tostring(cnt) .. " results vs " .. tostring(wcnt) end
  local w = want[1] and show(want[2], want[3], want[4]) or tostring(want[2]):gsub("^[^:]*:%d+: ", ""):gsub(" to [^ ]+ %(", " to ? (")
  local g = got[1] and show(got[2], got[3], got[4]) or tostring(got[2]):gsub("^[^:]*:%d+: ", ""):gsub(" to [^ ]+ %(", " to ? (")
  if want[1] ~= got[1] or w ~= g then bad[#bad + 1] = "case " .. ci .. ": " .. g .. " vs " .. w end
end
return #bad .. " " .. table.concat(bad, " | ") .. " " .. #seq1 .. " " .. #s1`
	returnsText(t, code, "0  143 2")
}

// TestFastInsertMatches: table.insert(t, v) takes its fast path when v
// goes into t's array part without a growth (LTable.AppendInPlace), and
// the builtin otherwise. On tables with trailing nils, integer keys in the
// hash part (one right after the array part, which a growth takes over),
// string keys, a full array part, a metatable (which insert
// ignores), and values of each kind, nil included, a call with fixed
// arguments must leave the table as the builtin called through pcall does.
func TestFastInsertMatches(t *testing.T) {
	const code = `local function mk(kind)
  local t = {}
  if kind == 2 then t = {1, 2, 3}
  elseif kind == 3 then for i = 1, 10 do t[i] = i end t[10] = nil t[9] = nil
  elseif kind == 4 then t = {[5] = "five", [2] = "two"} t[1] = "one"
  elseif kind == 5 then t = {a = 1, b = 2} t[1] = "one"
  elseif kind == 6 then for i = 1, 32 do t[i] = i end
  elseif kind == 7 then for i = 1, 33 do t[i] = i end
  elseif kind == 8 then t = setmetatable({1}, {__newindex = function() error("no") end, __len = function() return 99 end})
  elseif kind == 9 then for i = 1, 200 do t[i] = i end for i = 100, 200 do t[i] = nil end
  elseif kind == 10 then t[1.5] = "x" t[1] = 1
  elseif kind == 11 then t[70] = "far" for i = 1, 68 do t[i] = i end
  end
  return t
end
local function dump(t)
  local keys = {}
  for k, v in pairs(t) do keys[#keys + 1] = tostring(k) .. "=" .. tostring(type(v) == "table" and "tbl" or v) end
  table.sort(keys)
  return #t .. ":" .. table.concat(keys, ",")
end
local bad = {}
local vals = {1, "x", false, "nil", "tbl"}
for kind = 1, 11 do
  for vi, v0 in ipairs(vals) do
    local v = v0
    if v0 == "nil" then v = nil elseif v0 == "tbl" then v = {} end
    local a, b = mk(kind), mk(kind)
    local ok1, e1 = pcall(function() table.insert(a, v) end)
    local ok2, e2 = pcall(table.insert, b, v)
    local d1, d2 = dump(a), dump(b)
    if ok1 ~= ok2 or d1 ~= d2 then bad[#bad + 1] = kind .. "/" .. vi .. ": " .. tostring(ok1) .. " " .. d1 .. " vs " .. tostring(ok2) .. " " .. d2 end
    -- and a second insert after the first
    pcall(function() table.insert(a, 7) end)
    pcall(table.insert, b, 7)
    if dump(a) ~= dump(b) then bad[#bad + 1] = kind .. "/" .. vi .. " twice" end
  end
  local a, b = mk(kind), mk(kind)
  local ok1 = pcall(function() table.insert(a, 1, "first") end)
  local ok2 = pcall(table.insert, b, 1, "first")
  if ok1 ~= ok2 or dump(a) ~= dump(b) then bad[#bad + 1] = kind .. " at 1" end
end
local ok1, e1 = pcall(function() table.insert({}) end)
local ok2, e2 = pcall(table.insert, {})
if ok1 ~= ok2 then bad[#bad + 1] = "one argument" end
-- a loop of inserts grows the array part many times
local big = {}
for i = 1, 100000 do table.insert(big, i) end
local s = 0
for i = 1, #big do s = s + big[i] end
return #bad .. " " .. table.concat(bad, " | ") .. " " .. #big .. " " .. s`
	returnsText(t, code, "0  100000 5000050000")
}
