package embedded

import (
	"math"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Numbers as Lua writes and reads them. gopher-lua formats numbers with Go's
// shortest representation (0.1 + 0.2 prints 0.30000000000000004) and reads
// them with Go's parsers ("010" is octal 8, "1e2" is not a number for
// tonumber, "0b101" and "1_000" are numbers). The engine's own builtins use
// these functions instead: Lua's "%.14g" and Lua's numeral syntax.

// luaSpace is the set of characters C's isspace accepts.
const luaSpace = " \t\n\v\f\r"

// fmtNumber formats n as Lua 5.1 does ("%.14g"; inf, -inf, nan and -nan as
// glibc writes them).
func fmtNumber(n lua.LNumber) string {
	f := float64(n)
	if f == math.Trunc(f) && f > -1e14 && f < 1e14 && (f != 0 || !math.Signbit(f)) {
		if f >= 0 && f < numSmallInts {
			return string(smallInts()[int(f)].(lua.LString))
		}
		return strconv.FormatInt(int64(f), 10)
	}
	return formatG(f, 14, false)
}

// formatG is C's %.<prec>g of a finite or infinite f (alt: the # flag,
// which keeps trailing zeros).
func formatG(f float64, prec int, alt bool) string {
	switch {
	case math.IsNaN(f):
		if math.Signbit(f) {
			return "-nan"
		}
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	if prec <= 0 {
		prec = 1
	}
	// C picks the style from the exponent of the %e conversion.
	e := strconv.FormatFloat(f, 'e', prec-1, 64)
	i := strings.LastIndexByte(e, 'e')
	exp, _ := strconv.Atoi(e[i+1:])
	if exp < -4 || exp >= prec {
		if alt {
			return e
		}
		return trimFraction(e[:i]) + e[i:]
	}
	s := strconv.FormatFloat(f, 'f', prec-1-exp, 64)
	if alt {
		if !strings.Contains(s, ".") {
			s += "."
		}
		return s
	}
	return trimFraction(s)
}

// trimFraction drops trailing zeros of a fraction, and its point.
func trimFraction(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// str2number reads a Lua numeral: optional spaces, an optional sign, a
// decimal number with optional fraction and exponent or a hexadecimal one
// (0x, optional fraction and binary exponent p), optional spaces. Unlike C's
// strtod, "inf" and "nan" are not numbers (as in Lua 5.4).
func str2number(s string) (float64, bool) {
	s = strings.Trim(s, luaSpace)
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var f float64
	var ok bool
	if len(s) > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		f, ok = hexNumber(s[2:])
	} else {
		f, ok = decNumber(s)
	}
	if neg {
		f = -f
	}
	return f, ok
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// decNumber reads digits [. digits] [e [sign] digits] (no sign).
func decNumber(s string) (float64, bool) {
	i, digits := 0, 0
	for i < len(s) && isDigit(s[i]) {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == start {
			return 0, false
		}
	}
	if i != len(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		// Out of range: ParseFloat returns ±Inf or 0, as strtod does.
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			return 0, false
		}
	}
	return f, true
}

// hexNumber reads hexdigits [. hexdigits] [p [sign] digits] (after "0x").
func hexNumber(s string) (float64, bool) {
	var m float64
	exp, digits, i := 0, 0, 0
	frac := false
	for ; i < len(s); i++ {
		c := s[i]
		if c == '.' && !frac {
			frac = true
			continue
		}
		d := digitValue(c)
		if d >= 16 {
			break
		}
		m = m*16 + float64(d)
		digits++
		if frac {
			exp -= 4
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(s) && (s[i] == 'p' || s[i] == 'P') {
		i++
		sign := 1
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			if s[i] == '-' {
				sign = -1
			}
			i++
		}
		start, e := i, 0
		for i < len(s) && isDigit(s[i]) {
			if e < 100000 {
				e = e*10 + int(s[i]-'0')
			}
			i++
		}
		if i == start {
			return 0, false
		}
		exp += sign * e
	}
	if i != len(s) {
		return 0, false
	}
	return math.Ldexp(m, exp), true
}

// digitValue is the value of an alphanumeric digit (0-35), or 99.
func digitValue(c byte) int {
	switch {
	case isDigit(c):
		return int(c - '0')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	}
	return 99
}

// toNumber converts a number or a numeral string, as Lua's arithmetic does.
func toNumber(v lua.LValue) (float64, bool) {
	switch x := v.(type) {
	case lua.LNumber:
		return float64(x), true
	case lua.LString:
		return str2number(string(x))
	}
	return 0, false
}

// argNumber is luaL_checknumber: a number or a numeral string.
func argNumber(L *lua.LState, n int) float64 {
	v := L.Get(n)
	if f, ok := toNumber(v); ok {
		return f
	}
	argTypeError(L, n, "number")
	return 0
}

// argInt is luaL_checkint: argNumber truncated toward zero, and clamped
// to ±2^53 so that index arithmetic cannot overflow (NaN is 0).
func argInt(L *lua.LState, n int) int {
	const limit = 1 << 53
	f := argNumber(L, n)
	switch {
	case f >= limit:
		return limit
	case f <= -limit:
		return -limit
	case f != f:
		return 0
	}
	return int(f)
}

// optInt is luaL_optint: argInt, or def when the argument is absent or nil.
func optInt(L *lua.LState, n, def int) int {
	if L.Get(n) == lua.LNil {
		return def
	}
	return argInt(L, n)
}

// argString is luaL_checklstring: a string, or a number written as Lua
// writes it.
func argString(L *lua.LState, n int) string {
	if s, ok := luaString(L.Get(n)); ok {
		return s
	}
	argTypeError(L, n, "string")
	return ""
}

// luaString is v as a string where Lua converts: a string, or a number
// written as Lua writes it (`..`, string arguments).
func luaString(v lua.LValue) (string, bool) {
	switch x := v.(type) {
	case lua.LString:
		return string(x), true
	case lua.LNumber:
		return fmtNumber(x), true
	}
	return "", false
}

// argTypeError raises Lua's "bad argument #n to 'f' (T expected, got X)",
// with "no value" for a missing argument.
func argTypeError(L *lua.LState, n int, want string) {
	got := "no value"
	if n <= L.GetTop() {
		got = L.Get(n).Type().String()
	}
	L.ArgError(n, want+" expected, got "+got)
}

// baseToNumber is tonumber(e [, base]).
func baseToNumber(L *lua.LState) int {
	if L.GetTop() < 1 {
		L.ArgError(1, "value expected")
	}
	base := 10
	if L.Get(2) != lua.LNil {
		base = argInt(L, 2)
	}
	if base == 10 {
		if f, ok := toNumber(L.Get(1)); ok {
			L.Push(lua.LNumber(f))
		} else {
			L.Push(lua.LNil)
		}
		return 1
	}
	if base < 2 || base > 36 {
		L.ArgError(2, "base out of range")
	}
	s := strings.Trim(argString(L, 1), luaSpace)
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	var f float64
	for i := 0; i < len(s); i++ {
		d := digitValue(s[i])
		if d >= base {
			L.Push(lua.LNil)
			return 1
		}
		f = f*float64(base) + float64(d)
	}
	if s == "" {
		L.Push(lua.LNil)
		return 1
	}
	if neg {
		f = -f
	}
	L.Push(lua.LNumber(f))
	return 1
}

// stringArith makes the string metatable's arithmetic metamethods: Lua
// converts numeral strings in arithmetic (gopher-lua would otherwise parse
// them with Go's integer syntax, where "010" is 8).
//
// Not inlined: hiddenFns knows its closures by their code.
//
//go:noinline
func stringArith(op func(a, b float64) float64) lua.LGFunction {
	return func(L *lua.LState) int {
		a, b := L.Get(1), L.Get(2)
		x, ok1 := toNumber(a)
		y, ok2 := toNumber(b)
		if !ok1 || !ok2 {
			bad := a
			if ok1 {
				bad = b
			}
			raiseTypeError(L, bad, "perform arithmetic on")
		}
		L.Push(lua.LNumber(op(x, y)))
		return 1
	}
}

// stringUnm is __unm (gopher-lua calls it with the operand alone).
func stringUnm(L *lua.LState) int {
	x, ok := toNumber(L.Get(1))
	if !ok {
		raiseTypeError(L, L.Get(1), "perform arithmetic on")
	}
	L.Push(lua.LNumber(-x))
	return 1
}

// luaMod is gopher-lua's modulo (Lua's: the result has the divisor's sign).
func luaMod(a, b float64) float64 {
	v := math.Mod(a, b)
	if (b > 0 && v < 0) || (b < 0 && v > 0) {
		v += b
	}
	return v
}

// installStringMeta gives strings a metatable of their own (gopher-lua uses
// the string table itself, so string.__index was visible): method calls
// and arithmetic on numeral strings.
func installStringMeta(L *lua.LState, str *lua.LTable) {
	str.RawSetString("__index", lua.LNil)
	mt := L.NewTable()
	mt.RawSetString("__index", str)
	ops := map[string]func(a, b float64) float64{
		"__add": func(a, b float64) float64 { return a + b },
		"__sub": func(a, b float64) float64 { return a - b },
		"__mul": func(a, b float64) float64 { return a * b },
		"__div": func(a, b float64) float64 { return a / b },
		"__mod": luaMod,
		"__pow": math.Pow,
	}
	for name, op := range ops {
		mt.RawSetString(name, L.NewFunction(stringArith(op)))
	}
	mt.RawSetString("__unm", L.NewFunction(stringUnm))
	L.SetMetatable(lua.LString(""), mt)
}
