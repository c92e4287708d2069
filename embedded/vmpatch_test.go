package embedded

import (
	"testing"

	"libbioxen/core"
)

// TestForLoopBoxesOneNumber: gopher-lua boxed the numeric for loop's
// counter and, separately, the same value for the loop variable: 16 bytes
// of garbage per iteration where 8 do (the variable now shares the
// counter's boxed number). What the loop computes is unchanged, also when
// the body assigns to the variable.
func TestForLoopBoxesOneNumber(t *testing.T) {
	vm := openVM(t, core.Options{})
	got, alloc := execCounted(t, vm, `for i = 1, 2000000 do end return 1`)
	if got != "[1]" {
		t.Fatalf("got %s", got)
	}
	// 2 million numbers of 8 bytes: 16 MB; two per iteration made 32 MB.
	if alloc > 24<<20 {
		t.Errorf("an empty loop of 2 million iterations allocated %d MiB", alloc>>20)
	}
	cases := []struct{ code, want string }{
		{`local s = 0 for i = 1, 10 do i = i * 100 s = s + i end return s`, `[5500]`},
		{`local t = {} for i = 1, 3 do t[#t + 1] = function() return i end end return t[1](), t[2](), t[3]()`, `[1,2,3]`},
		{`local s = 0 for i = 10, 1, -3 do s = s * 100 + i end return s`, `[10070401]`},
		{`local n = 0 for i = 1.5, 3 do n = n + i end return n`, `[4]`},
		{`local last for i = 2^52 - 2, 2^52 do last = i end return last`, `[4503599627370496]`},
	}
	for _, c := range cases {
		if got, _ := execCounted(t, vm, c.code); got != c.want {
			t.Errorf("%s: got %s, want %s", c.code, got, c.want)
		}
	}
}

// TestSmallIntegersAreNotBoxed: arithmetic on integers in
// [-1024, 65536) shares statically boxed numbers instead of allocating
// (upstream: 0..127); a loop over small scores allocated 8 bytes per
// result. Values just outside the range, fractions and -0 are boxed as
// before: -0 had become +0 through the shared zero (1/(-z * 1) was inf).
func TestSmallIntegersAreNotBoxed(t *testing.T) {
	vm := openVM(t, core.Options{})
	got, alloc := execCounted(t, vm, `local m = 0 for r = 1, 40 do for i = 1, 50000 do m = (m * 3 + i % 100) % 9973 end end return m`)
	if got != "[4664]" {
		t.Fatalf("got %s", got)
	}
	// Four results and a loop counter per step, 2 million steps: 80 MB
	// of boxed numbers before.
	if alloc > 4<<20 {
		t.Errorf("2 million small integer results allocated %d MiB", alloc>>20)
	}
	cases := []struct{ code, want string }{
		{`local z = 0 local x = -z * 1 return 1 / x, tostring(x)`, `[{"$f":"-inf"},"-0"]`},
		{`local z = 0 return 1 / (z * -1), 1 / (-z + 0), 1 / (-z - 0)`, `[{"$f":"-inf"},{"$f":"inf"},{"$f":"-inf"}]`},
		{`local a, b = 65535, -1024 return a + 1, b - 1, a + 0.5, b * 1, (a + 1) - 1, 2^53`, `[65536,-1025,65535.5,-1024,65535,9007199254740992]`},
		{`local n = 0 / 0 local x = n + 1 return x ~= x`, `[true]`},
	}
	for _, c := range cases {
		if got, _ := execCounted(t, vm, c.code); got != c.want {
			t.Errorf("%s: got %s, want %s", c.code, got, c.want)
		}
	}
}
