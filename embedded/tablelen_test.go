package embedded

import (
	"context"
	"testing"
	"time"

	"libbioxen/core"
)

// TestLengthIsABorder: #t is a border (t[#t] is not nil or #t is 0, and
// t[#t + 1] is nil) on arrays with holes anywhere, also past the 64
// trailing slots gopher-lua's patched Len looks at one by one (the binary
// search below them), and table.remove, unpack and ipairs agree with it.
func TestLengthIsABorder(t *testing.T) {
	vm := openVM(t, core.Options{})
	res, err := vm.Exec(context.Background(), []byte(`
		local seed = 7
		local function rnd(n) seed = (seed * 16807) % 2147483647 return seed % n end
		local bad = 0
		for trial = 1, 2000 do
			local t = {}
			local n = 1 + rnd(trial % 2 == 0 and 40 or 400)
			for i = 1, n do t[i] = i end
			for k = 1, rnd(n) do t[1 + rnd(n)] = nil end
			for k = 1, rnd(n) do t[n - k + 1] = nil end
			local b = #t
			if (b > 0 and t[b] == nil) or t[b + 1] ~= nil then bad = bad + 1 end
		end
		-- every count of trailing nils around the 64 looked at one by one
		for n = 1, 300, 7 do
			for k = 0, n do
				local t = {}
				for i = 1, n do t[i] = i end
				for i = n - k + 1, n do t[i] = nil end
				if #t ~= n - k then bad = bad + 1 end
			end
		end
		local s = {}
		for i = 1, 1000 do s[i] = i end
		for i = 1000, 1, -1 do s[i] = nil end
		s[1] = 1
		return bad, #s, #{1, 2, 3, nil}, #{nil, nil, 3}, #{}`), core.ExecOptions{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Values); got != "[0,1,3,3,0]" {
		t.Fatalf("got %s %s", got, res.ErrorMessage)
	}
}

// TestStackPopsAreLinear: gopher-lua's #t scanned every trailing nil, so
// popping a stack was quadratic: 40,000 pops (t[#t] = nil) took 4.9 s
// (lua5.4: 2.4 ms), 400,000 would take minutes, and table.insert(t, v)
// scanned them too. Now a pop or a push costs at most 64 slot checks and a
// binary search. (The timeout is a guard against the
// quadratic cost coming back, with room for slow machines: the loops take
// about 0.3 s here.)
func TestStackPopsAreLinear(t *testing.T) {
	vm := openVM(t, core.Options{})
	res, err := vm.Exec(context.Background(), []byte(`
		local t = {}
		for i = 1, 400000 do t[#t + 1] = i end
		local sum = 0
		while #t > 0 do sum = sum + t[#t]; t[#t] = nil end
		for i = 1, 400000 do table.insert(t, i) end
		while #t > 0 do sum = sum + table.remove(t) end
		for i = 1, 400000 do table.insert(t, i) end
		return sum, #t, t[400000]`), core.ExecOptions{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Values); got != "[160000400000,400000,400000]" {
		t.Fatalf("got %s %s", got, res.ErrorMessage)
	}
}
