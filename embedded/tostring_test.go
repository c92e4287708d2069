package embedded

import (
	"math"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// TestFmtNumber: numbers are written as C's "%.14g" writes them (Lua 5.1,
// LuaJIT), with glibc's inf and nan.
func TestFmtNumber(t *testing.T) {
	for _, c := range []struct {
		f    float64
		want string
	}{
		{0, "0"}, {math.Copysign(0, -1), "-0"}, {1, "1"}, {-1, "-1"}, {42, "42"}, {9999, "9999"}, {10000, "10000"},
		{99999999999999, "99999999999999"}, {1e14, "1e+14"}, {123456789012345, "1.2345678901234e+14"},
		{1e15, "1e+15"}, {-1e15, "-1e+15"}, {1 << 53, "9.007199254741e+15"}, {1e300, "1e+300"},
		{0.1 + 0.2, "0.3"}, {1 - 0.9, "0.1"}, {1.0 / 3, "0.33333333333333"}, {2.0 / 3, "0.66666666666667"},
		{0.5, "0.5"}, {-2.25, "-2.25"}, {1e-4, "0.0001"}, {1e-5, "1e-05"}, {1e-7, "1e-07"}, {123.456, "123.456"},
		{math.Pi, "3.1415926535898"}, {1e100 / 3, "3.3333333333333e+99"},
		{math.Inf(1), "inf"}, {math.Inf(-1), "-inf"}, {math.NaN(), "nan"}, {math.Copysign(math.NaN(), -1), "-nan"},
	} {
		if got := fmtNumber(lua.LNumber(c.f)); got != c.want {
			t.Errorf("%v: %q, want %q", c.f, got, c.want)
		}
	}
}
