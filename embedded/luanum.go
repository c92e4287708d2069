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
func str2number(s string) (float64, bool) { return readNumeral(nil, s) }

// readNumeral is str2number for a call on L: a long string (a numeral
// of 200 MB took 0.9 s to read) is read with polls of the call's limits.
// With L nil it does not poll: numerals in source code are bounded by
// the source limit.
func readNumeral(L *lua.LState, s string) (float64, bool) {
	tk := workTicker{L: L}
	s = trimPolled(s, &tk)
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var f float64
	var ok bool
	if len(s) > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		f, ok = hexNumber(s[2:], &tk)
	} else {
		f, ok = decNumber(s, &tk)
	}
	if neg {
		f = -f
	}
	return f, ok
}

// trimPolled is strings.Trim(s, luaSpace), counting a byte of work per
// space.
func trimPolled(s string, tk *workTicker) string {
	for s != "" && strings.IndexByte(luaSpace, s[0]) >= 0 {
		s = s[1:]
		tk.add(1)
	}
	for s != "" && strings.IndexByte(luaSpace, s[len(s)-1]) >= 0 {
		s = s[:len(s)-1]
		tk.add(1)
	}
	return s
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// decNumber reads digits [. digits] [e [sign] digits] (no sign).
func decNumber(s string, tk *workTicker) (float64, bool) {
	i, digits, point := 0, 0, -1
	for i < len(s) && isDigit(s[i]) {
		i++
		digits++
		tk.add(1)
	}
	if i < len(s) && s[i] == '.' {
		point = i
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
			tk.add(1)
		}
	}
	if digits == 0 {
		return 0, false
	}
	mantissa := i
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
			tk.add(1)
		}
		if i == start {
			return 0, false
		}
	}
	if i != len(s) {
		return 0, false
	}
	if len(s) > maxParsedNumeral {
		s = shortNumeral(s, mantissa, point, tk)
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

// maxParsedNumeral is the longest numeral handed to strconv.ParseFloat as
// it is; a longer one is first made short (shortNumeral). ParseFloat keeps
// 800 digits and is wrong past them before the point (it counted them as
// 800: 1336 digits and e-549 read as 6e250, not +Inf).
const maxParsedNumeral = 800

// sigDigits is how many significant digits shortNumeral keeps: a double
// halfway between two others has at most 767, so these and a sticky digit
// for the rest round as all of them would.
const sigDigits = 780

// shortNumeral writes the valid decimal numeral s (mantissa: the length
// of its digits and point, point: the point's index or -1) as
// "0.<digits>e<exponent>" with at most sigDigits+1 significant digits and
// the same value once rounded to a double.
func shortNumeral(s string, mantissa, point int, tk *workTicker) string {
	intDigits := mantissa
	if point >= 0 {
		intDigits = point
	}
	// digit k of the mantissa, the point skipped
	digit := func(k int) byte {
		if k >= intDigits && point >= 0 {
			k++
		}
		return s[k]
	}
	n := mantissa
	if point >= 0 {
		n--
	}
	z := 0 // first nonzero digit
	for z < n && digit(z) == '0' {
		z++
		tk.add(1)
	}
	if z == n {
		return "0"
	}
	var b strings.Builder
	b.WriteString("0.")
	end := min(n, z+sigDigits)
	for k := z; k < end; k++ {
		b.WriteByte(digit(k))
	}
	for k := end; k < n; k++ {
		if digit(k) != '0' {
			b.WriteByte('1') // sticky: the dropped digits are not all zero
			break
		}
		tk.add(1)
	}
	// 0.d1d2... times 10^(intDigits-z), times 10^e.
	exp := intDigits - z
	if mantissa < len(s) {
		e, sign, k := 0, 1, mantissa+1
		if s[k] == '+' || s[k] == '-' {
			if s[k] == '-' {
				sign = -1
			}
			k++
		}
		for ; k < len(s); k++ {
			tk.add(1)
			if e < 1e9 {
				e = e*10 + int(s[k]-'0')
			}
		}
		exp += sign * e
	}
	// Past these a double is 0 or infinite whatever the digits.
	exp = max(-100000, min(exp, 100000))
	b.WriteString("e")
	b.WriteString(strconv.Itoa(exp))
	return b.String()
}

// hexNumber reads hexdigits [. hexdigits] [p [sign] digits] (after "0x").
func hexNumber(s string, tk *workTicker) (float64, bool) {
	var m float64
	exp, digits, i := 0, 0, 0
	frac := false
	for ; i < len(s); i++ {
		tk.add(1)
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
			tk.add(1)
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

// toNumber converts a number or a numeral string, as Lua's arithmetic does,
// for a call on L (nil: none; see readNumeral).
func toNumber(L *lua.LState, v lua.LValue) (float64, bool) {
	switch x := v.(type) {
	case lua.LNumber:
		return float64(x), true
	case lua.LString:
		return readNumeral(L, string(x))
	}
	return 0, false
}

// argNumber is luaL_checknumber: a number or a numeral string.
func argNumber(L *lua.LState, n int) float64 {
	v := L.Get(n)
	if f, ok := toNumber(L, v); ok {
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

// optString is luaL_optstring: argString, or def when the argument is
// absent or nil.
func optString(L *lua.LState, n int, def string) string {
	if L.Get(n) == lua.LNil {
		return def
	}
	return argString(L, n)
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
		if f, ok := toNumber(L, L.Get(1)); ok {
			L.Push(lua.LNumber(f))
		} else {
			L.Push(lua.LNil)
		}
		return 1
	}
	if base < 2 || base > 36 {
		L.ArgError(2, "base out of range")
	}
	tk := workTicker{L: L}
	s := trimPolled(argString(L, 1), &tk)
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	var f float64
	for i := 0; i < len(s); i++ {
		tk.add(1)
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
	if neg && f != 0 { // "-0" is 0: Lua reads an integer (strtoul), which has no -0
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
		x, ok1 := toNumber(L, a)
		y, ok2 := toNumber(L, b)
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
	x, ok := toNumber(L, L.Get(1))
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

// numberArgs wraps a gopher-lua function whose first n arguments are
// numbers (the math library's; n < 0: all of them): a numeral string
// becomes the number Lua reads in it, and any other string is Lua's "number
// expected" error. gopher-lua reads strings with Go's syntax ("010" is 8,
// "0b11" and "1_0" are numbers), refuses them where it wants an integer
// (math.ldexp), and read a numeral of 200 MB for a second without polling
// the call's limits. Arguments past n are left alone, unread, as Lua's
// functions leave them (math.floor(1.5, "x") is 1).
func numberArgs(fn lua.LGFunction, n int) lua.LGFunction {
	return func(L *lua.LState) int {
		top := L.GetTop()
		if n >= 0 && n < top {
			top = n
		}
		for i := 1; i <= top; i++ {
			if s, ok := L.Get(i).(lua.LString); ok {
				f, ok := readNumeral(L, string(s))
				if !ok {
					argTypeError(L, i, "number")
				}
				L.Replace(i, lua.LNumber(f))
			}
		}
		return fn(L)
	}
}

// mathArity is how many arguments each math function reads (-1: all);
// the rest read one.
var mathArity = map[string]int{"atan2": 2, "fmod": 2, "ldexp": 2, "mod": 2, "pow": 2, "max": -1, "min": -1}

// logNormal is log(x) for a logarithm log and its log(2), ln2: a subnormal
// x is multiplied by 2^54 first and 54 log(2) taken off.
func logNormal(x float64, log func(float64) float64, ln2 float64) float64 {
	if x > 0 && x < 0x1p-1022 {
		return log(x*0x1p54) - 54*ln2
	}
	return log(x)
}

// Lua 5.1's math functions where gopher-lua's compute something else.
var mathFixes = map[string]lua.LGFunction{
	// math.mod is Lua 5.1's old name of fmod (C's fmod: the sign of the
	// dividend); gopher-lua's was the % operator (floored).
	"mod": func(L *lua.LState) int {
		L.Push(lua.LNumber(math.Mod(float64(L.CheckNumber(1)), float64(L.CheckNumber(2)))))
		return 1
	},
	// C's modf: the fraction of +-inf is +-0 (Go's math.Modf gives NaN).
	"modf": func(L *lua.LState) int {
		x := float64(L.CheckNumber(1))
		ip, fp := math.Modf(x)
		if math.IsInf(x, 0) {
			fp = math.Copysign(0, x)
		}
		L.Push(lua.LNumber(ip))
		L.Push(lua.LNumber(fp))
		return 2
	},
	// Go's math.Log (the amd64 assembly) is wrong for subnormal numbers:
	// math.log(1e-310) was -709.09 (glibc: -713.80), math.log10(1e-310)
	// -307.95 (-310). They are scaled into the normal range first.
	"log": func(L *lua.LState) int {
		L.Push(lua.LNumber(logNormal(float64(L.CheckNumber(1)), math.Log, math.Ln2)))
		return 1
	},
	"log10": func(L *lua.LState) int {
		L.Push(lua.LNumber(logNormal(float64(L.CheckNumber(1)), math.Log10, math.Ln2/math.Ln10)))
		return 1
	},
	// math.Pow takes math.Log of the base for a fractional exponent, so
	// it is wrong for a subnormal base too: math.pow(2^-1074, -0.25) was
	// 9.7e+76 (glibc: 6.7e+80).
	"pow": func(L *lua.LState) int {
		x, y := float64(L.CheckNumber(1)), float64(L.CheckNumber(2))
		if a := math.Abs(x); a > 0 && a < 0x1p-1022 && y != math.Trunc(y) && !math.IsInf(y, 0) {
			// x^y = (x 2^54)^y 2^(-54y); where the first part overflows
			// or underflows, so does the result.
			L.Push(lua.LNumber(math.Pow(x*0x1p54, y) * math.Exp2(-54*y)))
			return 1
		}
		L.Push(lua.LNumber(math.Pow(x, y)))
		return 1
	},
	// Go's math.Atan2 picks the quadrant from atan(y/x), which is +0
	// when y/x underflows: math.atan2(-1e-310, -1e308) was pi, not -pi.
	"atan2": func(L *lua.LState) int {
		y, x := float64(L.CheckNumber(1)), float64(L.CheckNumber(2))
		r := math.Atan2(y, x)
		if x < 0 && y < 0 && r > 0 {
			r = -r
		}
		L.Push(lua.LNumber(r))
		return 1
	},
	// x / (pi/180) and x * (pi/180), as lua5.1 computes them (gopher-lua's
	// x * pi / 180 overflowed for math.rad(1e308) and differed in the last
	// bit).
	"deg": func(L *lua.LState) int {
		L.Push(lua.LNumber(float64(L.CheckNumber(1)) / (math.Pi / 180)))
		return 1
	},
	"rad": func(L *lua.LState) int {
		L.Push(lua.LNumber(float64(L.CheckNumber(1)) * (math.Pi / 180)))
		return 1
	},
}

// baseSelect is select(n, ...): n is "#" (or, as Lua 5.1 reads it, any
// string that starts with '#'), a number, or a numeral string (gopher-lua
// took "2" for an invalid string).
func baseSelect(sel lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if s, ok := L.Get(1).(lua.LString); ok {
			if strings.HasPrefix(string(s), "#") {
				L.Replace(1, lua.LString("#"))
			} else {
				L.Replace(1, lua.LNumber(argNumber(L, 1)))
			}
		}
		return sel(L)
	}
}

// osDifftime is Lua 5.1's os.difftime(t2 [, t1]): both read as numbers and
// cut to whole seconds (time_t), t1 0 when absent. gopher-lua's wanted both
// and refused numeral strings.
func osDifftime(L *lua.LState) int {
	t2 := argNumber(L, 1)
	t1 := 0.0
	if L.Get(2) != lua.LNil {
		t1 = argNumber(L, 2)
	}
	L.Push(lua.LNumber(float64(timeT(t2)) - float64(timeT(t1))))
	return 1
}

// timeT is C's (time_t)f: toward zero, and within int64.
func timeT(f float64) int64 {
	switch {
	case f != f:
		return 0
	case f >= 1<<63:
		return math.MaxInt64
	case f < -(1 << 63):
		return math.MinInt64
	}
	return int64(f)
}
