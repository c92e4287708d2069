package embedded

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
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

// TestModuloMatchesFmod: `%` on integers takes a fast path in int64
// (math.Mod took a quarter of a counting loop's time); it must give what
// the float path gives (fmod, then the divisor's sign), for integers up
// to 2^53 of both signs, fractions, zeros, infinities and NaN. A zero
// result is +0, as in Lua 5.1: math.Mod made -6 % 3 -0.
func TestModuloMatchesFmod(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 3))
	pick := func() float64 {
		switch rng.IntN(8) {
		case 0:
			return float64(rng.IntN(101) - 50)
		case 1:
			return float64(rng.Int64N(1<<54) - 1<<53)
		case 2:
			return float64(1<<53-rng.IntN(3)) * float64(1-2*rng.IntN(2))
		case 3:
			return (rng.Float64() - 0.5) * 1e6
		case 4:
			return []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), 0.5, -0.25}[rng.IntN(7)]
		default:
			return float64(rng.IntN(2000001) - 1000000)
		}
	}
	lit := func(x float64) string {
		switch {
		case math.IsNaN(x):
			return "0/0"
		case math.IsInf(x, 1):
			return "1/0"
		case math.IsInf(x, -1):
			return "-1/0"
		case x == 0 && math.Signbit(x):
			return "-z"
		}
		return strconv.FormatFloat(x, 'g', 17, 64)
	}
	ref := func(a, b float64) float64 {
		v := math.Mod(a, b)
		if b > 0 && v < 0 || b < 0 && v > 0 {
			v += b
		}
		if v == 0 {
			v = 0
		}
		return v
	}
	var code strings.Builder
	code.WriteString("local z = 0 local bad, n = {}, 0\nlocal function check(a, b, e)\n" +
		"  n = n + 1\n  local r = a % b\n" +
		"  if not (r == e and (r ~= 0 or 1 / r > 0) or r ~= r and e ~= e) then bad[#bad + 1] = string.format('%.17g %% %.17g = %.17g, want %.17g', a, b, r, e) end\nend\n")
	for i := 0; i < 4000; i++ {
		a, b := pick(), pick()
		fmt.Fprintf(&code, "check(%s, %s, %s)\n", lit(a), lit(b), lit(ref(a, b)))
	}
	// Constant folding takes the same path.
	code.WriteString("check(-6, 3, 0) n = n + 1 if 1 / (-6 % 3) < 0 then bad[#bad + 1] = 'folded -6 % 3 is -0' end\n")
	code.WriteString("return n, #bad, bad[1], bad[2]")
	vm := openVM(t, core.Options{})
	_, vals := execValues(t, vm, code.String())
	if len(vals) < 2 || vals[0] != int64(4002) || vals[1] != int64(0) {
		t.Fatalf("got %v", vals)
	}
}
