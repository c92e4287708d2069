package embedded

import "testing"

// TestStr2Number: Lua numerals (Lua 5.1 reads hexadecimal through strtod,
// so 0xffffffffffffffff is 2^64 - 1, not Lua 5.4's wrapped -1).
func TestStr2Number(t *testing.T) {
	for s, want := range map[string]float64{
		"86400": 86400, " 10\t": 10, "-5": -5, "+5": 5, "1e3": 1000, ".5": 0.5, "5.": 5, "010": 10, "1E-2": 0.01,
		"0x10": 16, "-0X1f": -31, "0x.8": 0.5, "0x1p4": 16, "0xffffffffffffffff": 18446744073709551615,
	} {
		if got, ok := str2number(s); !ok || got != want {
			t.Errorf("%q: got %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"", " ", "abc", "1e", "0x", "--5", "+-5", "5-", "inf", "nan", "1_000", "0x1_0", "1 2", "0b11", "0o17", ".", "e5"} {
		if got, ok := str2number(s); ok {
			t.Errorf("%q: got %v, want no number", s, got)
		}
	}
}
