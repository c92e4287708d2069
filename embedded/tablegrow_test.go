package embedded_test

import (
	"strings"
	"testing"

	"libbioxen/core"
)

// TestLongArrayGrowths: a store that grows a table's array part by more
// than 64K slots (a long hole, or keys of the hash part taken over in a
// row) is built in a new array part, and a new hash part when many keys
// stay (gopher-lua's table.go growArray), so that a stop can leave the
// table as it was. Each shape reaches one of its paths; afterwards every
// key holds its value, pairs visits each key once, and #t is a border.
func TestLongArrayGrowths(t *testing.T) {
	check := `
local function check(t, want, n)
  for k, v in pairs(want) do
    if t[k] ~= v then error("t[" .. tostring(k) .. "] = " .. tostring(t[k]) .. ", want " .. tostring(v)) end
  end
  local seen = 0
  for k, v in pairs(t) do
    seen = seen + 1
    if want[k] ~= v then error("pairs: " .. tostring(k) .. " = " .. tostring(v)) end
  end
  if seen ~= n then error("pairs visited " .. seen .. " keys, want " .. n) end
  local b = #t
  if (b > 0 and t[b] == nil) or t[b + 1] ~= nil then error("#t = " .. b .. " is no border") end
end
`
	for name, code := range map[string]string{
		// Filled backwards: 100K keys of the hash part taken over by the
		// store of t[65] (the hash part is emptied).
		"backwards": `local t, want = {}, {}
			for i = 1e5, 1, -1 do t[i] = i want[i] = i end
			check(t, want, 1e5)
			t[#t + 1] = "x" want[1e5 + 1] = "x" check(t, want, 1e5 + 1)`,
		// The same with other keys in the hash part: a new hash part
		// without the keys taken over.
		"backwards, other keys": `local t, want = {}, {}
			for i = 1e5, 1, -1 do t[i] = i want[i] = i t[i + 0.5] = -i want[i + 0.5] = -i end
			t[-1] = "neg" want[-1] = "neg" t.s = "str" want.s = "str"
			check(t, want, 2e5 + 2)`,
		// A hole of 70K slots with one key of the hash part in it.
		"long hole, few keys": `local t, want = {}, {}
			t[100000] = "x" want[100000] = "x"
			for i = 1, 7e4 do t[i] = i want[i] = i end
			t[1.4e5] = "y" want[1.4e5] = "y"
			check(t, want, 7e4 + 2)`,
		// A hole of 70K slots, more keys in the hash part, some in it:
		// looked up slot by slot, a few deleted.
		"long hole, many keys": `local t, want = {}, {}
			for i = 1, 1e5 do t[i + 0.25] = i want[i + 0.25] = i end
			for i = 100000, 100009 do t[i] = i want[i] = i end
			for i = 1, 7e4 do t[i] = i want[i] = i end
			t[1.4e5] = "y" want[1.4e5] = "y"
			check(t, want, 1e5 + 7e4 + 11)
			for i = 100000, 100009 do t[i] = nil want[i] = nil end
			check(t, want, 1e5 + 7e4 + 1)`,
		// A long hole and a run of keys after it.
		"hole then run": `local t, want = {}, {}
			for i = 2.1e5, 140001, -1 do t[i] = i want[i] = i end
			for i = 1, 7e4 do t[i] = i want[i] = i end
			t[1.4e5] = "y" want[1.4e5] = "y"
			check(t, want, 7e4 + 7e4 + 1)
			if #t ~= 2.1e5 then error("#t = " .. #t) end`,
		// table.insert and rawset grow through the same path.
		"insert, rawset": `local t, want = {}, {}
			for i = 1e5, 102, -1 do t[i] = i want[i] = i end
			for i = 1, 100 do t[i] = i want[i] = i end
			table.insert(t, "c") want[101] = "c"
			check(t, want, 1e5)
			local u, uw = {}, {}
			for i = 1e5, 1, -1 do rawset(u, i, i) uw[i] = i end
			check(u, uw, 1e5)`,
	} {
		t.Run(name, func(t *testing.T) {
			out := runLua(t, core.Options{}, check+code+` print("ok")`)
			if strings.TrimSpace(out) != "ok" {
				t.Fatal(out)
			}
		})
	}
}
