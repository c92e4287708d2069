package embedded

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

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

// TestLongNumerals: a numeral longer than maxParsedNumeral is cut to its
// significant digits before strconv.ParseFloat reads it, and reads as the
// double nearest to its exact value (big.Rat's Float64), whatever the
// leading zeros, the place of the point, the exponent and the digits past
// the ones kept. (ParseFloat itself is wrong past 800 digits before the
// point: it takes 1336 digits and e-549 for 6e250, not +Inf.)
func TestLongNumerals(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	digits := func(n int, zeros bool) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + rng.IntN(10))
			if zeros && rng.IntN(4) > 0 {
				b[i] = '0'
			}
		}
		return string(b)
	}
	// Exactly between two doubles: 2^53 + 1, then a long tail that decides
	// the rounding (all zeros: to even; one nonzero digit far away: up).
	half := "9007199254740993"
	cases := []string{
		half + "." + strings.Repeat("0", 5000),
		half + "." + strings.Repeat("0", 5000) + "1",
		half + strings.Repeat("0", 900) + "e-900",
		half + strings.Repeat("0", 900) + "1e-900",
		"0." + strings.Repeat("0", 3000) + half + "e3016",
		strings.Repeat("0", 4000) + "1.5",
		strings.Repeat("0", 4000),
		strings.Repeat("0", 2000) + "." + strings.Repeat("0", 2000),
		strings.Repeat("7", 2000) + "e-2000",
		"6" + strings.Repeat("0", 1300) + "e-1100",
		"0." + strings.Repeat("0", 2000) + "1e2001",
		"1" + strings.Repeat("0", 400) + "e-" + strings.Repeat("0", 2000) + "400",
	}
	for i := 0; i < 300; i++ {
		s := digits(1+rng.IntN(1500), i%2 == 0)
		if rng.IntN(2) == 0 {
			p := rng.IntN(len(s) + 1)
			s = s[:p] + "." + s[p:] + "0"
		}
		if rng.IntN(2) == 0 {
			s += fmt.Sprintf("e%d", rng.IntN(1400)-700)
		}
		cases = append(cases, strings.Repeat("0", rng.IntN(1200))+s)
	}
	long := 0
	for _, s := range cases {
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("%.40s...: not a number for big.Rat", s)
		}
		want, _ := r.Float64()
		if len(s) > maxParsedNumeral {
			long++
		}
		got, ok := str2number(s)
		if !ok || math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("%.60s... (%d bytes): got %v, %v; want %v", s, len(s), got, ok, want)
		}
		if got, ok := str2number(" -" + s + "\n"); !ok || got != -want {
			t.Errorf("-%.60s...: got %v, %v; want %v", s, got, ok, -want)
		}
	}
	if long < 100 {
		t.Fatalf("only %d numerals were long", long)
	}
	// Exponents past any double's, whatever the digits.
	for s, want := range map[string]float64{
		strings.Repeat("7", 2000) + "e-999999999999":                 0,
		strings.Repeat("7", 2000) + "e+999999999999":                 math.Inf(1),
		"0." + strings.Repeat("0", 2000) + "1e999999999999999999999": math.Inf(1),
	} {
		if got, ok := str2number(s); !ok || got != want {
			t.Errorf("%.30s...: got %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{strings.Repeat("1", 2000) + "x", strings.Repeat("1", 2000) + "e", "." + strings.Repeat("1", 2000) + ".", strings.Repeat(" ", 3000)} {
		if got, ok := str2number(s); ok {
			t.Errorf("%.30s...: got %v, want no number", s, got)
		}
	}
}
