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
		"type": g.RawGetString("type"), "tostring": g.RawGetString("tostring")} {
		if f, ok := fn.(*lua.LFunction); !ok || f.Fast == nil {
			t.Errorf("%s has no fast path", name)
		}
	}
}
