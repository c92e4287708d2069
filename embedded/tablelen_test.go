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

// TestSparseIntegerKeys: gopher-lua filled the array part up to any
// integer key below 2^26, in one store: t[2^26 - 1] = 1 took 15 s and 3 GB
// of RSS that no limit could stop. A key more than twice the array part's
// length (and 64) past its end now goes to the hash part, as in Lua, and
// the array part takes such keys over as it grows to them. Results are
// lua5.1's.
func TestSparseIntegerKeys(t *testing.T) {
	vm := openVM(t, core.Options{})
	cases := []struct{ code, want string }{
		{`local t = {} t[2^26 - 1] = 1 t[2^25] = 2 t[1e7] = 3 return #t, t[2^26 - 1], t[2^25], t[1e7], t[2^25 + 1]`, `[0,1,2,3,null]`},
		{`local t = {} for i = 100000, 1, -1 do t[i] = i end local s = 0 for _, v in ipairs(t) do s = s + v end return #t, s`, `[100000,5000050000]`},
		{`local t = {} t[1000] = "x" for i = 1, 999 do t[i] = i end return #t, t[1000]`, `[1000,"x"]`},
		{`local t = {} t[1000] = "x" for i = 1, 999 do t[i] = i end t[1000] = nil return #t, t[1000]`, `[999,null]`},
		{`local t = {} t[1e6] = 1 t[1e6] = nil return next(t)`, `[null]`},
		{`local t = {} t[10] = 1 t[20] = 2 t[1] = 0 local n = 0 for k in pairs(t) do n = n + k end return n, table.maxn(t)`, `[31,20]`},
		{`local t = {} for i = 1, 10 do t[i * 1000] = i end local c = 0 for k in pairs(t) do c = c + 1 end return c, table.maxn(t), #t`, `[10,10000,0]`},
		{`local t = {[1000000] = 1, [2] = 2, "a"} return t[1], t[2], t[1000000], #t`, `["a",2,1,2]`},
		{`local t = {} t[3] = 3 t[2] = 2 t[1] = 1 return #t, unpack(t)`, `[3,1,2,3]`},
		{`local t = {} t[5000] = 5 rawset(t, 4000, 4) return rawget(t, 5000), rawget(t, 4000), #t`, `[5,4,0]`},
		{`local t = {} t[200] = 2 t[100] = 1 local k, v = next(t) local k2 = next(t, k) return k + k2, next(t, k2)`, `[300,null]`},
		{`local t = {1, 2, nil} return #t`, `[2]`},
		// table.insert(t, v) takes over t[#t + 2] from the hash part (it
		// left it there: #t was 65, and t[66] was stored twice).
		{`local t = {[66] = 66} for i = 1, 64 do t[i] = i end table.insert(t, 65) local n = #t table.insert(t, "x") local c = 0 for k in pairs(t) do c = c + 1 if c > 1000 then break end end return n, c, t[66]`, `[66,67,66]`},
		// An assignment to an existing key of the hash part keeps it there
		// (it grew the array part over it, and the traversal visited "x"
		// twice).
		{`local t = {x = 1} t[100] = 1 t.y = 2 for i = 1, 50 do t[i] = i end local c = 0 for k, v in pairs(t) do c = c + 1 t[k] = v end return c`, `[53]`},
		{`local t = {} t[100] = 1 for i = 1, 50 do t[i] = i end t[100] = 2 t[51] = 51 local c = 0 for k, v in pairs(t) do c = c + 1 end return c, t[100]`, `[52,2]`},
		{`return table.maxn({[2^26] = 1}), table.maxn({[2^53] = 1, [3] = 3})`, `[67108864,9007199254740992]`},
		{`local t = {} for i = 1, 64 do t[i] = i end t[200] = 200 for i = 65, 199 do t[i] = i end return #t, table.concat(t, ",", 198)`, `[200,"198,199,200"]`},
	}
	for _, c := range cases {
		got, alloc := execCounted(t, vm, c.code)
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.code, got, c.want)
		}
		if alloc > 64<<20 {
			t.Errorf("%s: allocated %d MiB", c.code, alloc>>20)
		}
	}
}
