package embedded

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// TestStdlibFuzz is the randomized companion of TestStdlibDiff: it draws
// a few thousand calls of every library function the sandbox offers (base,
// string and its methods, table, math, os.clock/date/time/difftime,
// coroutine) with arguments from a pool of edge values (zeros, infinities,
// NaN, numeral strings in every syntax, patterns, NUL bytes, nil, booleans,
// tables, functions), with missing and extra arguments, runs them in
// lua5.1 and in the sandboxed embedded engine with stdlibHarness, and
// compares the results the same way (values and types exactly; errors:
// both raise).
//
// Calls whose lua5.1 result is undefined behaviour, platform-specific or a
// documented deliberate difference (docs/engines.md) are not generated:
// fzSkip says which and why. Every real difference this found is fixed and
// its call is in TestStdlibDiff's fixed list.
//
// STDLIB_FUZZ_SEED=n STDLIB_FUZZ_CALLS=n go test ./embedded -run StdlibFuzz
// runs another sample.
func TestStdlibFuzz(t *testing.T) {
	luaBin, err := exec.LookPath("lua5.1")
	if err != nil {
		t.Skip("lua5.1 not on PATH")
	}
	seed, calls := uint64(1), 200
	if s := os.Getenv("STDLIB_FUZZ_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	if s := os.Getenv("STDLIB_FUZZ_CALLS"); s != "" {
		calls, _ = strconv.Atoi(s)
	}
	start := time.Now()
	cases, counts := genFuzzCases(rand.New(rand.NewPCG(seed, 7)), calls)
	for _, f := range fzFuncs {
		// fzSkip must leave most calls of a function (those without
		// parameters have few distinct argument lists).
		if want := min(calls/2, 4*len(f.params)+1); counts[f.name] < want {
			t.Errorf("%s: only %d calls generated (want %d or more)", f.name, counts[f.name], want)
		}
	}
	want, got := runStdlibCases(t, luaBin, fuzzHarness, cases, false)
	bad := 0
	for i, c := range cases {
		w, g := fzNormalize(want[i]), fzNormalize(got[i])
		if w == "" || g == "" {
			t.Errorf("%s: no result (lua5.1 %q, embedded %q)", c, w, g)
			continue
		}
		werr, gerr := strings.HasPrefix(w, "E\t"), strings.HasPrefix(g, "E\t")
		if w == g || (werr && gerr) {
			continue
		}
		if bad++; bad <= fzShow {
			t.Errorf("%s\n  lua5.1:   %s\n  embedded: %s", c, w, g)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d calls differ from lua5.1", bad, len(cases))
	}
	t.Logf("%d calls (seed %d), %v", len(cases), seed, time.Since(start))
}

// fzShow is how many differences the test shows.
const fzShow = 40

// fuzzHarness adds helpers to stdlibHarness (whose locals it uses).
const fuzzHarness = `
NZ, INF, NINF, NAN = tonumber("-0"), 1/0, -1/0, 0/0
local function dump(t)
  local out = {}
  for k = -1, 12 do
    if rawget(t, k) ~= nil then out[#out + 1] = k .. "=" .. ser1(rawget(t, k)) end
  end
  for _, k in ipairs{"x", "n", "year", "month", "day", "hour", "min", "sec", "wday", "yday", "isdst"} do
    if rawget(t, k) ~= nil then out[#out + 1] = k .. "=" .. ser1(rawget(t, k)) end
  end
  return "tab{" .. table.concat(out, " ") .. "}"
end
-- W shows tables' contents (type "table" only otherwise).
function W(...)
  local r = pack(...)
  for i = 1, r.n do
    if type(r[i]) == "table" then r[i] = dump(r[i]) end
  end
  return unpack(r, 1, r.n)
end
-- R rounds numbers to 12 digits: C's libm and Go's math may differ in the
-- last bits.
function R(...)
  local r = pack(...)
  for i = 1, r.n do
    local v = r[i]
    if type(v) == "number" and v == v and v ~= 1/0 and v ~= -1/0 and v ~= 0 then
      r[i] = tonumber(string.format("%.12g", v))
    end
  end
  return unpack(r, 1, r.n)
end
-- Z makes -0 0: gopher-lua's arithmetic can give 0 for -0 (docs/engines.md).
function Z(...)
  local r = pack(...)
  for i = 1, r.n do
    if r[i] == 0 then r[i] = 0 end
  end
  return unpack(r, 1, r.n)
end
-- PE keeps an error message's type only (wording differs: see
-- TestStdlibDiff's error texts).
function PE(ok, ...)
  if ok then return W(true, ...) end
  return false, type((...))
end
-- GM lists what a gmatch iterator gives (at most 20 matches).
function GM(...)
  local f = string.gmatch(...)
  local out = {}
  for _ = 1, 20 do
    local r = pack(f())
    if r[1] == nil then break end
    out[#out + 1] = "(" .. ser(r, 1, r.n) .. ")"
  end
  return table.concat(out, " ")
end
-- LD shows what load/loadstring return: the function's results or the
-- error's type.
function LD(f, ...)
  local r = pack(f(...))
  if type(r[1]) == "function" then return "fn", PE(pcall(r[1])) end
  return type(r[1]), type(r[2])
end
-- RD is a load reader giving its arguments one by one.
function RD(...)
  local p, i = pack(...), 0
  return function() i = i + 1; return p[i] end
end
`

// fzVal is one argument of the pool: its Lua source and what the generator
// needs to know about it.
type fzVal struct {
	src  string
	kind byte    // n number, N numeral string (the same number in both), g numeral only for glibc's strtod, s string, z nil, b boolean, t table, f Lua function, F Go function, c coroutine
	num  float64 // the number (n, N)
	str  string  // the string (N, g, s)
	n    int     // the table's length (t)
}

func fzNum(src string, v float64) fzVal { return fzVal{src: src, kind: 'n', num: v} }

func fzStr(s string) fzVal {
	v := fzVal{src: strconv.Quote(s), kind: 's', str: s}
	if f, ok := fzLua51Numeral(s); ok {
		v.kind, v.num = 'N', f
	} else if t := strings.Trim(s, " \t\n\r\v\f"); fzGlibcOnlyRe.MatchString(t) && t != "0x" {
		v.kind = 'g'
	}
	return v
}

// fzLua51Numeral reads s as lua5.1 does (glibc's strtod, which also reads
// hex numerals), for the numerals both interpreters read alike: decimal
// ones and unsigned hex integers. fzGlibcOnly are the ones only strtod
// reads.
func fzLua51Numeral(s string) (float64, bool) {
	t := strings.Trim(s, " \t\n\r\v\f")
	if fzHexRe.MatchString(t) {
		u, err := strconv.ParseUint(t[2:], 16, 64)
		if err != nil {
			return math.Ldexp(1, 64), true // strtod rounds; the pool has none this long
		}
		return float64(u), true
	}
	if !fzDecRe.MatchString(t) {
		return 0, false
	}
	f, _ := strconv.ParseFloat(t, 64) // out of range: +-inf or 0, as strtod
	return f, true
}

var (
	fzHexRe       = regexp.MustCompile(`^0[xX][0-9a-fA-F]+$`)
	fzDecRe       = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
	fzGlibcOnlyRe = regexp.MustCompile(`^[+-]?((?i)inf|infinity|nan|0x[0-9a-f]*\.?[0-9a-f]*(p[+-]?[0-9]+)?)$`)
)

func fzTab(src string, n int) fzVal { return fzVal{src: src, kind: 't', n: n} }

var fzNumbers = []fzVal{
	fzNum("0", 0), fzNum("NZ", 0), fzNum("1", 1), fzNum("-1", -1), fzNum("1.5", 1.5), fzNum("-1.5", -1.5),
	fzNum("2", 2), fzNum("3", 3), fzNum("0.5", 0.5), fzNum("10", 10), fzNum("65", 65), fzNum("255", 255),
	fzNum("256", 256), fzNum("-3", -3), fzNum("2^31", 1<<31), fzNum("-2^31", -(1 << 31)), fzNum("2^53", 1<<53),
	fzNum("1e308", 1e308), fzNum("INF", math.Inf(1)), fzNum("NINF", math.Inf(-1)), fzNum("NAN", math.NaN()),
	fzNum("1e-300", 1e-300), fzNum("123.456", 123.456), fzNum("-0.25", -0.25), fzNum("0.1", 0.1),
	fzNum("1e15", 1e15), fzNum("2^63", 1<<63), fzNum("-2^63", -(1 << 63)), fzNum("2^64", 1<<64),
	fzNum("2^32", 1<<32), fzNum("2^31 - 1", 1<<31-1), fzNum("1e-310", 1e-310), fzNum("-1e-310", -1e-310), fzNum("2^-1074", 0x1p-1074), fzNum("-1e308", -1e308),
	fzNum("100", 100), fzNum("7", 7), fzNum("2^53 + 2", 1<<53+2), fzNum("-2^53", -(1 << 53)), fzNum("4.5", 4.5),
}

var fzNumerals = []fzVal{
	fzStr("10"), fzStr(" 10 "), fzStr("010"), fzStr("0x10"), fzStr("1e2"), fzStr("1.5"), fzStr("-3"),
	fzStr("0b1"), fzStr("1_0"), fzStr("inf"), fzStr("nan"), fzStr(""), fzStr("2"), fzStr(" 0x1A "),
	fzStr("1e"), fzStr("\t5\n"), fzStr("0"), fzStr("-0"), fzStr("3."), fzStr(".5"), fzStr("1e+1"), fzStr("0X1f"),
	fzStr("1e400"), fzStr("-1e400"), fzStr("1e-400"), fzStr("0x"), fzStr("+5"), fzStr("5 x"), fzStr("0x1p4"),
	fzStr("-0x10"), fzStr("."), fzStr("1..2"), fzStr("0o17"), fzStr("0x_1"), fzStr("1e1_0"), fzStr("Inf"),
	fzStr("+Inf"), fzStr("infinity"), fzStr("0x1P-2"), fzStr("1.e5"), fzStr("00"), fzStr("0e0"), fzStr("\v7\f"),
	fzStr("9007199254740993"), fzStr("0x7fffffff"), fzStr("0xffffffffffffffff"), fzStr("1e+"), fzStr("- 1"),
	fzStr("0x10 "), fzStr("1 "), fzStr("\x00"), fzStr("1\x00"), fzStr("  -0.0  "), fzStr("2.5e-3"), fzStr("255"),
	fzStr("-2"), fzStr("4"), fzStr("1.9"), fzStr("-1.9"),
}

var fzStrings = []fzVal{
	fzStr("abc"), fzStr("hello world"), fzStr("%"), fzStr("%d"), fzStr("%s"), fzStr("a\x00b"),
	fzStr("\xff\x80"), fzStr("HeLLo"), fzStr("(a)"), fzStr("[a-"), fzStr("x"), fzStr("%a+"),
	fzStr("the quick brown fox jumps over the lazy dog, 0123456789 times"), fzStr("#"), fzStr("#x"),
	fzStr("a,b,,c"), fzStr("  spaces  "),
}

var fzOthers = []fzVal{
	{src: "nil", kind: 'z'}, {src: "true", kind: 'b'}, {src: "false", kind: 'b'},
	fzTab("{}", 0), fzTab("{1, 2, 3}", 3), fzTab(`{"a", "b", "c"}`, 3), fzTab("{x = 1}", 0),
	fzTab(`{10, 20, x = "y"}`, 2), fzTab("setmetatable({}, {__index = function(t, k) return k end})", 0),
	fzTab(`setmetatable({}, {__tostring = function() return "T" end})`, 0),
	fzTab(`setmetatable({}, {__metatable = "locked"})`, 0),
	{src: "function(...) return ... end", kind: 'f'}, {src: "function() return 1, 2 end", kind: 'f'},
	{src: `function() error("boom") end`, kind: 'f'}, {src: "tostring", kind: 'F'}, {src: "type", kind: 'F'},
	{src: "coroutine.create(function(...) return ... end)", kind: 'c'},
}

// Pools of one parameter's typical values.
var (
	fzPatterns = fzStrs("a", "%a+", "(%w+)", "%d*", "[%a_]+", "^h", "o$", "%", "(", "[a-", "%bxy", "%f[%w]%w+",
		".-", "(.)%1", "%z", "[^%s]+", "", "l+", "%s*", "(h)(e)", "()", "%d", "[%]]", "%w+$", "o", "x*", ".",
		"%l%l", "[a-f]+", "%1", "(()", "%g", "%x+", "%P+", "[^a-z]", "b%a?", "0", "1")
	fzRepls = append(fzStrs("%1", "%0-", "<%1>", "x", "%%", "%2", "%a", "", "%", "[%0]"),
		fzTab(`{hello = "HI", a = 1, l = false}`, 0),
		fzVal{src: "function(s) return s:upper() end", kind: 'f'},
		fzVal{src: "function() return nil end", kind: 'f'},
		fzVal{src: "function() return {} end", kind: 'f'},
		fzVal{src: "function(a, b) return b end", kind: 'f'},
		fzVal{src: "function(s) return #s end", kind: 'f'})
	fzFormats = fzStrs("%d", "%5.2f", "%s", "%q", "%x", "%c", "%g", "%e", "%i", "%o", "%X", "%%", "%",
		"%-5d|", "%05.1f", "%+d", "% d", "%#x", "%#o", "%.3s", "%10s|", "%.0f", "%5c", "%d %s", "%s=%s",
		"%.14g", "%5.1s|", "%u", "%-3c|", "%.3q", "%z", "n=%d", "%+.3e", "%G", "%E", "%#.3g", "%.20f", "x",
		"%5%", "%a", "%.d", "%.0d", "%+5.2s", "%#5x", "%-#8o", "%.99f", "%99d", "%100d", "%1$d", "%ld", "%hd",
		"%.3x", "%08.3f", "%-08d", "%  d", "%++d", "%------d", "%-+ #0d", "%.0e", "%#.0f", "%#g", "%.0g", "%5.3d",
		"%x%X%o", "%q%q", "%c%c", "%.1f", "%.2e", "%10.4g", "%-10.3s|", "%3d|%-3d|", "%.15g", "%.17g", "%e", "%s%%")
	fzDateFormats = fzStrs("%Y-%m-%d %H:%M:%S", "!%Y-%m-%d %H:%M:%S", "*t", "!*t", "%c", "!%c", "%x", "%X",
		"%j", "!%p", "%a %A %b %B", "%y %e %d", "%%", "", "!%H", "!%I %M %w %U %W", "abc")
	fzDateTimes = []fzVal{fzNum("0", 0), fzNum("86400", 86400), fzNum("1e9", 1e9), fzStr("1e9"),
		fzStr("86400"), fzNum("1.5", 1.5), fzNum("1234567890.75", 1234567890.75), {src: "nil", kind: 'z'}}
	fzDateTables = []fzVal{fzTab("{year = 2000, month = 1, day = 1}", 0),
		fzTab("{year = 2000, month = 1, day = 1, hour = 12, min = 30, sec = 15}", 0),
		fzTab(`{year = "2000", month = "1", day = "1"}`, 0), fzTab("{year = 2000, month = 13, day = 40}", 0),
		fzTab("{year = 2000, month = 1}", 0), fzTab("{year = 2000, month = 0, day = 0, hour = -1}", 0),
		fzTab("{year = 1999, month = 12, day = 31, isdst = false}", 0), fzTab(`{year = "x", month = 1, day = 1}`, 0),
		fzTab("{year = 2000, month = 1, day = 1, hour = 1.5}", 0)}
	fzTables = []fzVal{fzTab("{}", 0), fzTab("{1, 2, 3}", 3), fzTab(`{"a", "b", "c"}`, 3), fzTab("{3, 1, 2}", 3),
		fzTab(`{"b", "a", 1}`, 3), fzTab("{1.5, -1, 0, NZ}", 4), fzTab("{x = 1}", 0), fzTab(`{10, 20, x = "y"}`, 2),
		fzTab(`{"x", 1.5, 2^53}`, 3), fzTab(`{"a", {}, "c"}`, 3), fzTab("{[0] = 0, 1, 2}", 2), fzTab("{NAN}", 1),
		fzTab("setmetatable({1, 2}, {__index = function(t, k) return k * 10 end})", 2),
		fzTab(`setmetatable({}, {__newindex = function() error("ro") end})`, 0),
		fzTab(`{"10", "9", "1e1", " 2"}`, 4), fzTab(`{"a\0b", "a", "a\0a", ""}`, 4), fzTab("{-0.5, 1e308, -1/0, 2^53}", 4)}
	fzComparators = []fzVal{{src: "nil", kind: 'z'}, {src: "function(a, b) return a < b end", kind: 'f'},
		{src: "function(a, b) return a > b end", kind: 'f'}, {src: "1", kind: 'n', num: 1}, {src: `"x"`, kind: 's', str: "x"}}
	fzFunctions = []fzVal{{src: "function(...) return ... end", kind: 'f'}, {src: "function() return 1, 2 end", kind: 'f'},
		{src: `function() error("boom") end`, kind: 'f'}, {src: `function() error({}) end`, kind: 'f'},
		{src: "function(...) return select('#', ...) end", kind: 'f'}, {src: "tostring", kind: 'F'},
		{src: "type", kind: 'F'}, {src: "error", kind: 'F'}, {src: "select", kind: 'F'}, {src: "unpack", kind: 'F'},
		{src: "function(...) coroutine.yield(...) return 'done' end", kind: 'f'}}
	fzCoroutines = []fzVal{{src: "coroutine.create(function(...) return ... end)", kind: 'c'},
		{src: "coroutine.create(function(...) coroutine.yield(...) return 'done' end)", kind: 'c'},
		{src: `coroutine.create(function() error("x") end)`, kind: 'c'},
		{src: "(function() local co = coroutine.create(function() end); coroutine.resume(co); return co end)()", kind: 'c'}}
	fzChunks = append(fzStrs("return 1", "return ...", "x =", "return 1 +", "", "return 'a' .. 1", "return nil, 2",
		"error('e')", "return select('#', ...)", "\x1bLua", "return 0x10, 1e2, 010"),
		fzVal{src: `RD("return ", "1")`, kind: 'f'}, fzVal{src: "RD()", kind: 'f'}, fzVal{src: `RD("x =")`, kind: 'f'},
		fzVal{src: `RD("return ", 5)`, kind: 'f'}, fzVal{src: `RD("return 1", "")`, kind: 'f'})
	fzSelectors = append(fzStrs("#", "#x", "1", "-1", "x", " 2", "0x2"), fzNum("1", 1), fzNum("2", 2), fzNum("-1", -1),
		fzNum("-2", -2), fzNum("0", 0), fzNum("1.5", 1.5), fzNum("-1.5", -1.5), fzNum("5", 5))
	fzBases = []fzVal{fzNum("2", 2), fzNum("10", 10), fzNum("16", 16), fzNum("36", 36), fzNum("1", 1),
		fzNum("37", 37), fzStr("16"), fzNum("8", 8), fzNum("16.9", 16.9), {src: "nil", kind: 'z'}, fzStr(" 8 ")}
	fzMetatables = []fzVal{fzTab("{}", 0), fzTab("{__index = {x = 1}}", 0), fzTab(`{__metatable = "p"}`, 0), {src: "nil", kind: 'z'}}
	fzGCOptions  = fzStrs("collect", "count", "step", "bogus", "stop")
)

func fzStrs(ss ...string) []fzVal {
	out := make([]fzVal, len(ss))
	for i, s := range ss {
		out[i] = fzStr(s)
	}
	return out
}

// fzFunc is one function to call: its parameters, one letter each (the
// last repeats when vararg): n number, i C int (luaL_checkint: lua5.1
// truncates the double to 64 bits, then to 32), I integer
// (luaL_checkinteger), s string, a any value, t table, f function, and
// letters naming the pools above (p pattern, r replacement, F format, D
// date format, T date time, d date table, c comparator, o coroutine, C
// chunk, S selector, B base, M metatable, G gc option), x an operand.
type fzFunc struct {
	name   string
	params string
	vararg bool
	// form is the expression: %s the call, %a its arguments, %A them
	// with a comma before, %1 and %2 the first two, %r the rest with a
	// comma before; "" is W(%s).
	form string
}

var fzFuncs = []fzFunc{
	{name: "assert", params: "aa", vararg: true},
	{name: "error", params: "ai", form: "pcall(error%A)"},
	{name: "ipairs", params: "t"}, {name: "pairs", params: "t"}, {name: "next", params: "ta"},
	{name: "pcall", params: "fa", vararg: true, form: "PE(pcall(%a))"},
	{name: "xpcall", params: "ff", form: "PE(xpcall(%a))"},
	{name: "rawequal", params: "aa"}, {name: "rawget", params: "ta"}, {name: "rawset", params: "taa"},
	{name: "select", params: "Sa", vararg: true},
	{name: "setmetatable", params: "tM"}, {name: "getmetatable", params: "a"},
	{name: "tonumber", params: "aB"}, {name: "tostring", params: "a"}, {name: "type", params: "a"},
	{name: "unpack", params: "tii"},
	{name: "load", params: "Cs", form: "LD(load%A)"}, {name: "loadstring", params: "Cs", form: "LD(loadstring%A)"},
	{name: "collectgarbage", params: "Gi", form: "type(collectgarbage(%a))"},

	{name: "string.byte", params: "sII"}, {name: "string.char", params: "i", vararg: true},
	{name: "string.find", params: "spIa"}, {name: "string.format", params: "Fa", vararg: true},
	{name: "string.gmatch", params: "sp", form: "GM(%a)"}, {name: "string.gsub", params: "spri"},
	{name: "string.len", params: "s"}, {name: "string.lower", params: "s"}, {name: "string.match", params: "spI"},
	{name: "string.rep", params: "si"}, {name: "string.reverse", params: "s"}, {name: "string.sub", params: "sII"},
	{name: "string.upper", params: "s"},

	{name: "table.concat", params: "tsii"}, {name: "table.insert", params: "tia", form: "INS(%a)"},
	{name: "table.remove", params: "ti", form: "REM(%a)"}, {name: "table.sort", params: "tc", form: "SORT(%a)"},
	{name: "table.maxn", params: "t"}, {name: "table.getn", params: "t"},

	{name: "math.abs", params: "n"}, {name: "math.acos", params: "n", form: "R(%s)"},
	{name: "math.asin", params: "n", form: "R(%s)"}, {name: "math.atan", params: "n", form: "R(%s)"},
	{name: "math.atan2", params: "nn", form: "R(%s)"}, {name: "math.ceil", params: "n"},
	{name: "math.cos", params: "n", form: "R(%s)"}, {name: "math.cosh", params: "n", form: "R(%s)"},
	{name: "math.deg", params: "n", form: "R(%s)"}, {name: "math.exp", params: "n", form: "R(%s)"},
	{name: "math.floor", params: "n"}, {name: "math.fmod", params: "nn"}, {name: "math.frexp", params: "n"},
	{name: "math.ldexp", params: "ni"}, {name: "math.log", params: "n", form: "R(%s)"},
	{name: "math.log10", params: "n", form: "R(%s)"}, {name: "math.max", params: "n", vararg: true},
	{name: "math.min", params: "n", vararg: true}, {name: "math.mod", params: "nn"}, {name: "math.modf", params: "n"},
	{name: "math.pow", params: "nn", form: "R(%s)"}, {name: "math.rad", params: "n", form: "R(%s)"},
	{name: "math.sin", params: "n", form: "R(%s)"}, {name: "math.sinh", params: "n", form: "R(%s)"},
	{name: "math.sqrt", params: "n"}, {name: "math.tan", params: "n", form: "R(%s)"},
	{name: "math.tanh", params: "n", form: "R(%s)"},
	{name: "math.random", params: "ii", form: "type(%s)"}, {name: "math.randomseed", params: "i"},

	{name: "os.clock", params: "", form: "type(%s)"}, {name: "os.date", params: "DT"},
	{name: "os.time", params: "d"}, {name: "os.difftime", params: "nn"},

	{name: "coroutine.create", params: "f", form: "type(%s)"},
	{name: "coroutine.resume", params: "oa", vararg: true, form: "PE(%s)"},
	{name: "coroutine.running", params: ""}, {name: "coroutine.status", params: "o"},
	{name: "coroutine.wrap", params: "fa", vararg: true, form: "PE(pcall(coroutine.wrap(%1)%r))"},
	{name: "coroutine.yield", params: "a", vararg: true},

	// Operators (their coercions are library code in the engine: the
	// strings' metatable, concat.go, typeerrors.go).
	{name: "+", params: "xx", form: "W(Z((%1) + (%2)))"}, {name: "-", params: "xx", form: "W(Z((%1) - (%2)))"},
	{name: "*", params: "xx", form: "W(Z((%1) * (%2)))"}, {name: "/", params: "xx", form: "W(Z((%1) / (%2)))"},
	{name: "%", params: "xx", form: "W(Z((%1) % (%2)))"}, {name: "^", params: "xx", form: "R(Z((%1) ^ (%2)))"},
	{name: "unm", params: "x", form: "W(Z(-(%1)))"}, {name: "..", params: "xx", form: "W((%1) .. (%2))"},
	{name: "#", params: "x", form: "W(#(%1))"}, {name: "==", params: "xx", form: "W((%1) == (%2))"},
	{name: "<", params: "xx", form: "W((%1) < (%2))"}, {name: "<=", params: "xx", form: "W((%1) <= (%2))"},
}

// fzPool is the pool of parameter letter p: mostly its typical values,
// sometimes any value of the general pool.
func fzPool(r *rand.Rand, p byte) fzVal {
	var pool []fzVal
	switch p {
	case 'n', 'i', 'I':
		pool = append(fzNumbers, fzNumerals...)
	case 'x':
		pool = append(append(append(fzNumbers, fzNumerals...), fzNumbers...), fzStrings...)
	case 's':
		pool = append(append(fzStrings, fzNumerals...), fzNumbers...)
	case 't':
		pool = fzTables
	case 'f':
		pool = fzFunctions
	case 'p':
		pool = fzPatterns
	case 'r':
		pool = fzRepls
	case 'F':
		pool = fzFormats
	case 'D':
		pool = fzDateFormats
	case 'T':
		pool = fzDateTimes
	case 'd':
		pool = fzDateTables
	case 'c':
		pool = fzComparators
	case 'o':
		pool = fzCoroutines
	case 'C':
		pool = fzChunks
	case 'S':
		pool = fzSelectors
	case 'B':
		pool = fzBases
	case 'M':
		pool = fzMetatables
	case 'G':
		pool = fzGCOptions
	}
	if pool == nil || r.IntN(5) == 0 {
		switch r.IntN(4) {
		case 0:
			pool = fzNumbers
		case 1:
			pool = fzNumerals
		case 2:
			pool = fzStrings
		default:
			pool = fzOthers
		}
	}
	return pool[r.IntN(len(pool))]
}

// genFuzzCases draws perFunc calls of every function in fzFuncs (fewer
// when its arguments have fewer distinct combinations) and returns them
// and how many each function got.
func genFuzzCases(r *rand.Rand, perFunc int) ([]string, map[string]int) {
	var out []string
	seen := map[string]bool{}
	counts := map[string]int{}
	for _, f := range fzFuncs {
		made := 0
		for try := 0; made < perFunc && try < perFunc*30; try++ {
			n := len(f.params)
			switch k := r.IntN(10); {
			case k == 0 && n > 0:
				n = r.IntN(n) // missing arguments
			case k == 1:
				n++ // an extra one
			case k <= 3 && n > 1:
				n-- // the last optional one left out
			case k == 4 && f.vararg:
				n += 1 + r.IntN(3)
			}
			args := make([]fzVal, n)
			params := make([]byte, n)
			for i := range args {
				p := byte('a')
				if i < len(f.params) {
					p = f.params[i]
				} else if f.vararg {
					p = f.params[len(f.params)-1]
				}
				params[i] = p
				args[i] = fzPool(r, p)
			}
			if why := fzSkip(f, params, args); why != "" {
				continue
			}
			c := fzRender(r, f, args)
			if seen[c] {
				continue
			}
			seen[c] = true
			out = append(out, c)
			made++
		}
		counts[f.name] = made
	}
	return out, counts
}

func fzRender(r *rand.Rand, f fzFunc, args []fzVal) string {
	srcs := make([]string, len(args))
	for i, a := range args {
		srcs[i] = a.src
	}
	call := f.name + "(" + strings.Join(srcs, ", ") + ")"
	// String functions also as methods of their first argument.
	if strings.HasPrefix(f.name, "string.") && len(args) > 0 && (args[0].kind == 's' || args[0].kind == 'N' || args[0].kind == 'g') && r.IntN(3) == 0 {
		call = "(" + srcs[0] + "):" + f.name[len("string."):] + "(" + strings.Join(srcs[1:], ", ") + ")"
	}
	form := f.form
	if form == "" {
		form = "W(%s)"
	}
	first, second, rest, all := "nil", "nil", "", ""
	if len(srcs) > 1 {
		second = srcs[1]
	}
	for i, s := range srcs {
		if i == 0 {
			first = s
		} else {
			rest += ", " + s
		}
		all += ", " + s
	}
	return strings.NewReplacer("%s", call, "%a", strings.Join(srcs, ", "), "%1", first, "%2", second, "%r", rest, "%A", all).Replace(form)
}

// fzAsNumber is a's value where a number is expected, and whether both
// interpreters read it as that number.
func fzAsNumber(a fzVal) (float64, bool) {
	if a.kind == 'n' || a.kind == 'N' {
		return a.num, true
	}
	return 0, false
}

// fzSkip says why a call is not generated ("" to generate it).
func fzSkip(f fzFunc, params []byte, args []fzVal) string {
	for i, a := range args {
		switch params[i] {
		case 'n', 'i', 'I', 'S', 'B', 'T':
			if a.kind == 'g' {
				return "lua5.1 reads \"inf\" and \"nan\" with glibc's strtod (sdGlibc)"
			}
		}
		v, isNum := fzAsNumber(a)
		if !isNum {
			continue
		}
		switch params[i] {
		case 'i', 'S', 'B':
			if math.IsNaN(v) || math.Abs(v) >= 1<<31 {
				return "lua5.1 casts the double to int: out of range is undefined behaviour"
			}
		case 'I':
			if math.IsNaN(v) || math.Abs(v) >= 1<<63 {
				return "lua5.1 casts the double to ptrdiff_t: out of range is undefined behaviour"
			}
		}
	}
	arg := func(i int) fzVal {
		if i < len(args) {
			return args[i]
		}
		return fzVal{src: "nil", kind: 'z'}
	}
	goFunc := func(i int) bool { return arg(i).kind == 'F' }
	switch f.name {
	case "pcall", "coroutine.resume", "coroutine.wrap":
		// A Go function called with the other arguments gets them
		// unchecked: keep them in its range.
		if goFunc(0) {
			for _, a := range args[1:] {
				if v, ok := fzAsNumber(a); a.kind == 'g' || ok && (math.IsNaN(v) || math.Abs(v) >= 1<<31) {
					return "a Go function's argument outside what lua5.1 defines"
				}
			}
		}
		if f.name == "coroutine.wrap" && goFunc(0) {
			return "coroutine.wrap accepts Go functions (sdCoCreate)"
		}
	case "error":
		if k := arg(1).kind; k != 'n' && k != 'N' && k != 'z' {
			return "the argument error's wording differs ('?' / (anonymous)), and pcall returns it"
		}
	case "tonumber":
		if arg(0).kind == 'g' {
			return "lua5.1 reads \"inf\" and \"nan\" with glibc's strtod (sdGlibc)"
		}
		s, _ := luaString51(arg(0))
		if b, ok := fzAsNumber(arg(1)); ok && b != 10 && (strings.Contains(s, "-") && s != "-0" || strings.Contains(strings.ToLower(s), "x") || strings.Contains(s, "nan")) {
			return "lua5.1's strtoul negates modulo 2^64 and takes a 0x prefix (sdStrtoul, sdToNumHex)"
		}
		if b, ok := fzAsNumber(arg(1)); ok && b != 10 && len(strings.TrimSpace(s)) > 12 {
			return "lua5.1's strtoul saturates at 2^64-1 (sdStrtoul)"
		}
	case "table.sort":
		if k := arg(1).kind; (k == 'f' || k == 'F') && !slices.ContainsFunc(fzComparators, func(v fzVal) bool { return v.src == arg(1).src }) {
			return "an invalid order function: the order, or the error, is implementation-specific (sdSortInvalid)"
		}
	case "coroutine.create":
		if goFunc(0) {
			return "coroutine.create accepts Go functions (sdCoCreate)"
		}
	case "xpcall":
		if arg(1).kind != 'f' && arg(1).kind != 'F' {
			return "xpcall checks that its handler is a function, as Lua 5.2+ does; lua5.1 fails only when it calls it"
		}
	case "getmetatable":
		if k := arg(0).kind; k == 's' || k == 'N' || k == 'g' {
			return "deliberate: the sandbox hides the string metatable (getmetatable gives false)"
		}
	case "load":
		if k := arg(0).kind; k == 's' || k == 'N' || k == 'g' || k == 'n' {
			return "load also takes a string, as Lua 5.2+ does (an extension; lua5.1 raises)"
		}
		if arg(0).kind == 'f' && !strings.HasPrefix(arg(0).src, "RD(") || goFunc(0) {
			return "a reader that never ends, or raises (lua5.1's load returns nil and the message, the engine passes the error on)"
		}
	case "collectgarbage":
		if o := arg(0).str; o != "count" && o != "collect" && o != "step" && arg(0).kind != 'z' {
			return "deliberate: the sandbox allows count, collect and step only"
		}
	case "string.find", "string.match":
		// posrelat: an init past the end finds nothing in the engine
		// (Lua 5.4's rule, documented); lua5.1 starts at the end.
		s, _ := luaString51(arg(0))
		if v, ok := fzAsNumber(arg(2)); ok && v >= float64(len(s))+2 {
			return "deliberate (Lua 5.4): an init past the end finds nothing"
		}
		if strings.Contains(arg(1).str, "%g") {
			return "deliberate (Lua 5.4): %g is a class"
		}
	case "string.gmatch", "string.gsub":
		p := arg(1)
		if p.kind != 's' && p.kind != 'N' && p.kind != 'g' || p.str == "" || strings.ContainsAny(p.str, "*-?") || strings.Contains(p.str, "%f") || p.str == "^" || strings.Contains(p.str, "%g") {
			return "deliberate (Lua 5.4): an empty match right after a match is skipped; %g is a class"
		}
		if f.name == "string.gmatch" && len(args) > 2 {
			return "deliberate (Lua 5.4): gmatch takes an init"
		}
		if r := arg(2); f.name == "string.gsub" && (r.kind == 's' || r.kind == 'N' || r.kind == 'g') && fzBadRepl(r.str) {
			return "deliberate (Lua 5.4): '%' before anything but a digit or '%' in a replacement is an error"
		}
	case "string.rep":
		s, _ := luaString51(arg(0))
		if v, ok := fzAsNumber(arg(1)); ok && v*float64(len(s)+1) > 1e5 {
			return "too long to be interesting"
		}
	case "string.format":
		if why := fzFormatSkip(args); why != "" {
			return why
		}
	case "unpack":
		i, j := 1.0, float64(arg(0).n)
		if v, ok := fzAsNumber(arg(1)); ok {
			i = v
		}
		if v, ok := fzAsNumber(arg(2)); ok {
			j = v
		}
		if j-i >= 7000 {
			return "lua5.1's C stack holds about 8000 results (sdUnpackLimit)"
		}
	case "table.insert":
		if v, ok := fzAsNumber(arg(1)); ok && len(args) == 3 && arg(0).kind == 't' && (v < 1 || v >= float64(arg(0).n+2)) {
			return "deliberate (Lua 5.4): table.insert checks the position (sdInsPos)"
		}
	case "os.date":
		if k := arg(0).kind; (k == 's' || k == 'N' || k == 'g') && strings.Contains(arg(0).str, "%") && !slices.ContainsFunc(fzDateFormats, func(v fzVal) bool { return v.str == arg(0).str }) {
			return "deliberate (Lua 5.4): an unknown conversion is an error (sdDate54)"
		}
		if arg(1).kind == 'z' {
			return "the current time"
		}
		if v, ok := fzAsNumber(arg(1)); ok && (math.IsNaN(v) || math.Abs(v) > 1e15 || v < 0) {
			return "lua5.1 casts the double to time_t: undefined behaviour, or a year gmtime cannot give"
		}
	case "os.time":
		if arg(0).kind == 'z' {
			return "the current time"
		}
		if strings.Contains(arg(0).src, "1.5") {
			return "deliberate (Lua 5.4): os.time's fields must be integers (sdDate54)"
		}
	case "os.difftime":
		for _, a := range args[:min(2, len(args))] {
			if v, ok := fzAsNumber(a); ok && (math.IsNaN(v) || math.Abs(v) >= 1<<63) {
				return "lua5.1 casts the double to time_t: undefined behaviour"
			}
		}
	case "+", "-", "*", "/", "%", "^", "unm", "..":
		for _, a := range args {
			if a.kind == 'g' && f.name != ".." {
				return "lua5.1 reads \"inf\" and \"nan\" with glibc's strtod (sdGlibc)"
			}
		}
		if a, ok := fzAsNumber(arg(0)); ok && f.name == "^" && a != 0 && math.Abs(a) < 0x1p-1022 {
			return "documented: x ^ y of a subnormal x is Go's math.Pow, wrong for it (math.pow is corrected)"
		}
		if f.name == "%" {
			a, aok := fzAsNumber(arg(0))
			b, bok := fzAsNumber(arg(1))
			if aok && bok && (a != math.Trunc(a) || b != math.Trunc(b) || b == 0 || math.Abs(a) > 1<<52 || math.Abs(b) > 1<<52) {
				return "documented: % is Lua 5.4's fmod, exact; lua5.1's a - floor(a/b)*b loses digits on non-integers and beyond 2^52 (sdHuge, sdNaN)"
			}
		}
	case "math.cosh", "math.sinh":
		if v, ok := fzAsNumber(arg(0)); ok && math.Abs(v) >= 709 && math.Abs(v) < 711 {
			return "documented: Go's cosh/sinh overflow to inf from 710 on (glibc: from 710.48)"
		}
	}
	return ""
}

// luaString51 is a as lua5.1 converts it to a string, when it does.
func luaString51(a fzVal) (string, bool) {
	switch a.kind {
	case 's', 'N', 'g':
		return a.str, true
	case 'n':
		return fmtNumber(lua.LNumber(a.num)), true
	}
	return "", false
}

// fzBadRepl reports whether a gsub replacement has a '%' followed by
// anything but a digit or '%'.
func fzBadRepl(r string) bool {
	for i := 0; i < len(r); i++ {
		if r[i] == '%' {
			if i+1 == len(r) || !(r[i+1] == '%' || r[i+1] >= '0' && r[i+1] <= '9') {
				return true
			}
			i++
		}
	}
	return false
}

var fzConvRe = regexp.MustCompile(`%[-+ #0]*[0-9]*(\.[0-9]*)?(.?)`)

// fzFormatSkip says why a string.format call is not generated.
func fzFormatSkip(args []fzVal) string {
	if len(args) == 0 || args[0].kind != 's' && args[0].kind != 'N' {
		return ""
	}
	k := 1
	for _, m := range fzConvRe.FindAllStringSubmatch(args[0].str, -1) {
		c := m[2]
		if c == "%" {
			continue
		}
		if k >= len(args) {
			return ""
		}
		a := args[k]
		k++
		v, isNum := fzAsNumber(a)
		if a.kind == 'g' && c != "s" && c != "q" {
			return "lua5.1 reads \"inf\" and \"nan\" with glibc's strtod (sdGlibc)"
		}
		switch c {
		case "d", "i", "o", "x", "X", "u", "c":
			if isNum && (math.IsNaN(v) || math.Abs(v) >= 1<<63) {
				return "deliberate (Lua 5.4): an integer conversion of a number outside the 64-bit range is an error (sdFmtIntRng)"
			}
			if c == "c" && isNum && (v < 1 || v >= 256) {
				return "%c of a value outside 1..255: lua5.1 writes it through C's (int) and stops at a NUL (sdFmtC)"
			}
		case "s":
			if a.kind != 's' && a.kind != 'N' && a.kind != 'g' && a.kind != 'n' {
				return "deliberate (Lua 5.4): %s converts any value (sdFmtS)"
			}
			if strings.Contains(a.str, "\x00") {
				return "%s stops at a NUL in lua5.1 (sdFmtNul)"
			}
		}
	}
	return ""
}

var (
	fzNaNRe  = regexp.MustCompile(`-nan`)
	fzAddrRe = regexp.MustCompile(`(table|function|thread|userdata): (builtin: )?0x[0-9a-f]+`)
)

// fzNormalize makes NaN's sign (x86-64 glibc prints 0/0 as -nan) and
// addresses the same.
func fzNormalize(s string) string {
	s = fzNaNRe.ReplaceAllString(s, "nan")
	return fzAddrRe.ReplaceAllString(s, "$1: ADDR")
}
