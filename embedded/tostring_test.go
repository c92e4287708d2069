package embedded

import (
	"math"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// TestNumberString: the fast tostring of numbers prints what gopher-lua's
// LNumber.String prints.
func TestNumberString(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1, 42, 1e15, -1e15, 9007199254740993, 1e18, 1e19, -1e19, 1e300,
		0.5, -2.25, 1e-7, math.Inf(1), math.Inf(-1), math.NaN(), 123456789012, 1 << 62, -(1 << 63)} {
		n := lua.LNumber(f)
		if got, want := numberString(n), n.String(); got != want {
			t.Errorf("%v: %q, want %q", f, got, want)
		}
	}
}
