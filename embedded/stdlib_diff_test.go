package embedded

import (
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestStdlibDiff runs a fixed list of calls of the Lua 5.1 base and standard
// libraries in the real lua5.1 (the reference) and in the embedded engine
// and compares the serialized results: every value with its type (numbers
// both as tostring shows them and exactly), or, when the call raises, just
// that both raise (error texts are compared only for the log: see
// -v output).
//
// Calls on which the two disagree today are listed in stdlibKnownDiffs with
// a note; the test fails when a call outside that list disagrees, and when a
// listed call agrees again (so the list stays accurate: drop the entry when
// a difference is fixed).

// stdlibHarness defines T(i, f): it calls f in protected mode and prints one
// line: i, then "ok" and the serialized values, or "E" and the error.
const stdlibHarness = `
local function pack(...) return {n = select('#', ...), ...} end
local function esc(s)
  local out = {}
  for i = 1, #s do
    local b = string.byte(s, i, i)
    if b < 32 or b > 126 or b == 92 then out[#out + 1] = "\\" .. b
    else out[#out + 1] = string.sub(s, i, i) end
  end
  return table.concat(out)
end
-- exact shows a number exactly, independently of tostring (which both
-- interpreters may get wrong): sign, 53-bit mantissa in two halves, exponent.
local function exact(v)
  if v ~= v then return "nan" end
  if v == 1/0 then return "inf" end
  if v == -1/0 then return "-inf" end
  if v == 0 then if 1/v < 0 then return "-0" end return "0" end
  local m, e = math.frexp(v)
  local sign = ""
  if m < 0 then sign = "-"; m = -m end
  m = m * 2^53
  local hi = math.floor(m / 2^26)
  local lo = m - hi * 2^26
  return sign .. tostring(hi) .. ":" .. tostring(lo) .. "p" .. tostring(e)
end
local function ser1(v)
  local ty = type(v)
  if ty == "number" then
    local s = "n" .. tostring(v)
    if v ~= math.floor(v) or v >= 1e14 or v <= -1e14 or (v == 0 and 1/v < 0) then
      s = s .. "~" .. exact(v)
    end
    return s
  elseif ty == "string" then return '"' .. esc(v) .. '"'
  elseif ty == "nil" or ty == "boolean" then return tostring(v)
  end
  return ty
end
local function ser(t, i, j)
  local out = {}
  for k = i, j do out[#out + 1] = ser1(t[k]) end
  return table.concat(out, ", ")
end
-- A shows a table's keys -1..24 (those not nil) and its length.
function A(t)
  local out = {}
  for k = -1, 24 do
    if t[k] ~= nil then out[#out + 1] = tostring(k) .. "=" .. ser1(t[k]) end
  end
  return "{" .. table.concat(out, " ") .. " #" .. tostring(#t) .. "}"
end
function INS(t, ...) local r = pack(table.insert(t, ...)); return r.n, A(t) end
function REM(t, ...) local r = pack(table.remove(t, ...)); return r.n, r[1], A(t) end
function SORT(t, ...) table.sort(t, ...); return A(t) end
function ITER(f, s, c)
  local out, n = {}, 0
  for k, v in f, s, c do
    n = n + 1
    if n > 30 then break end
    out[#out + 1] = ser1(k) .. "=" .. ser1(v)
  end
  return table.concat(out, " ")
end
function DT(t)
  local out = {}
  for _, k in ipairs{"year", "month", "day", "hour", "min", "sec", "wday", "yday", "isdst"} do
    out[#out + 1] = k .. "=" .. ser1(t[k])
  end
  return table.concat(out, " ")
end
function T(i, f)
  local r = pack(pcall(f))
  if r[1] then
    print(i .. "\tok\t" .. ser(r, 2, r.n))
  elseif type(r[2]) == "string" then
    print(i .. "\tE\t" .. esc(r[2]))
  else
    print(i .. "\tE\t<" .. ser1(r[2]) .. ">")
  end
end
`

// stdlibCases are Lua 5.1 expressions (one a line; "--" lines are comments),
// each run as `return <expr>`.
const stdlibCases = `
-- string.byte
string.byte("abc")
string.byte("abc", 2)
string.byte("abc", -1)
string.byte("abc", 0)
string.byte("abc", 10)
string.byte("abc", 1, -1)
string.byte("abc", -10, 10)
string.byte("abc", 3, 1)
string.byte("abc", 2, 2)
string.byte("")
string.byte("", 1)
string.byte("abc", 1.5)
string.byte("abc", "2")
string.byte("abc", "x")
string.byte()
string.byte(nil)
string.byte(123)
string.byte("\255")
string.byte("a\0b", 1, 3)
("abc"):byte(-2, -1)
("abc"):byte(nil, 2)
-- string.char
string.char()
string.char(72, 105)
string.char(256)
string.char(-1)
string.char(255, 0)
string.char(65.7)
string.char("65")
string.char("x")
string.char(nil)
string.char(65, nil)
-- string.sub
("hello"):sub(2)
("hello"):sub(2, 3)
("hello"):sub(-3)
("hello"):sub(-3, -2)
("hello"):sub(0)
("hello"):sub(0, 0)
("hello"):sub(10)
("hello"):sub(3, 2)
("hello"):sub(-100, 100)
("hello"):sub(2.7)
("hello"):sub(2, 3.9)
("hello"):sub("2", "3")
("hello"):sub(2, 1e10)
("hello"):sub(-1e10, 2)
("hello"):sub(1, -1e10)
string.sub("hello")
string.sub("hello", nil)
string.sub("hello", "x")
string.sub(12345, 2, 3)
string.sub(1e15, 1, 3)
string.sub(nil, 1)
string.sub("", 1, 1)
-- string.len, #
string.len("")
string.len("\0\0")
string.len(123)
string.len(1.5)
string.len(1e15)
string.len(-0.0)
string.len(nil)
string.len({})
string.len()
#"abc"
#""
-- lower, upper
string.lower("AbC1\200Z")
string.upper("AbC1\200z")
string.lower(12)
string.upper(1.5e300)
string.upper(nil)
string.lower()
("MiXeD"):lower()
string.lower("\195\137")
string.upper("\195\169")
-- rep
string.rep("ab", 3)
string.rep("ab", 0)
string.rep("ab", -1)
string.rep("", 5)
string.rep("x", 2.9)
string.rep("x", "3")
string.rep("x", "x")
string.rep("x")
string.rep(nil, 2)
string.rep("a", 3, ",")
string.rep(0.1, 2)
string.rep(7, 2)
-- reverse
string.reverse("")
string.reverse("abc")
string.reverse(123)
string.reverse("a\0b")
string.reverse(nil)
string.reverse()
string.reverse("\200\201")
string.reverse("h\195\169llo")
string.format("%5s|", "\195\169")
string.format("%.1s", "\195\169")
string.format("%x", "255")
string.format("%.2f", "3")
string.format("%5d|", "3")
string.format("%05d", "3")
-- format %d %i
string.format("%d", 3)
string.format("%d", 3.7)
string.format("%d", -3.7)
string.format("%d", "10")
string.format("%d", "0x10")
string.format("%d", " 7 ")
string.format("%d", "x")
string.format("%d")
string.format("%d", nil)
string.format("%d", true)
string.format("%d", 2^31)
string.format("%d", 2^53)
string.format("%d", -2^63)
string.format("%d", 1e100)
string.format("%d", 1/0)
string.format("%d", 0/0)
string.format("%+d", 5)
string.format("% d", 5)
string.format("%05d", -42)
string.format("%-5d|", 3)
string.format("%5d|", -3)
string.format("%.3d", 7)
string.format("%i", 42)
string.format("%5i|", 42)
string.format("%i", -0.5)
string.format("%d", 1, 2)
string.format("%d %d", 1)
string.format("%d %s", 1, "x")
-- format %f %e %g
string.format("%5.2f", 3.14159)
string.format("%-8.3f|", 2.5)
string.format("%f", 1)
string.format("%.0f", 0.5)
string.format("%.0f", 1.5)
string.format("%.0f", 2.5)
string.format("%10.4f|", -1/3)
string.format("%.20f", 0.1)
string.format("%f", 1e20)
string.format("%f", 1/0)
string.format("%f", -1/0)
string.format("%f", 0/0)
string.format("%5.1f|", -0.0)
string.format("%f", "1.5")
string.format("%f", "x")
string.format("%e", 12345.678)
string.format("%.3e", 0)
string.format("%E", 1e-10)
string.format("%e", 1/0)
string.format("%e", -1/0)
string.format("%12.3e|", 5)
string.format("%g", 100000)
string.format("%g", 1000000)
string.format("%g", 1e-5)
string.format("%g", 0.0001)
string.format("%.3g", 3.14159)
string.format("%g", 2^53)
string.format("%#g", 1)
string.format("%g", -0.0)
string.format("%G", 1e-20)
string.format("%g", 1/0)
string.format("%g", 0.1)
string.format("%g", 1/3)
string.format("%g", 0.1 + 0.2)
string.format("%g", 123456789)
string.format("%.14g", 0.1)
string.format("%.17g", 0.1)
string.format("%10.3g|", 1234567)
string.format("%-10g|", 1.5)
-- format %s %q
string.format("%s", "x")
string.format("%s", 1)
string.format("%s", 1.5)
string.format("%s", 1e15)
string.format("%s", 0.1)
string.format("%s", 2^63)
string.format("%s", -0.0)
string.format("%s", 1/0)
string.format("%s", nil)
string.format("%s", true)
string.format("%s", {})
string.format("%s")
string.format("%10s|", "ab")
string.format("%-10s|", "ab")
string.format("%.2s", "abcdef")
string.format("%5.1s|", "abc")
string.format("%s", "a\0b")
string.format("%s %s", 1, 2)
string.format("%s", setmetatable({}, {__tostring = function() return "T" end}))
string.format("%q", 'he said "hi"\n')
string.format("%q", "a\0b")
string.format("%q", "\r\t\\")
string.format("%q", "\200\1")
string.format("%q", 1)
string.format("%q", 0.1)
string.format("%q", nil)
string.format("%q", "")
loadstring("return " .. string.format("%q", "a\0b\200\n\r"))() == "a\0b\200\n\r"
string.format("%q", "\195\169")
-- format %x %X %o %c
string.format("%x", 255)
string.format("%X", 255)
string.format("%x", -1)
string.format("%#x", 255)
string.format("%08X", 48879)
string.format("%x", 3.5)
string.format("%x", 2^53)
string.format("%x", "ff")
string.format("%o", 8)
string.format("%o", -8)
string.format("%#o", 8)
string.format("%c", 65)
string.format("%c", 256)
string.format("%c", 0)
string.format("%c", 65.9)
string.format("%c%c%c", 76, 117, 97)
string.format("%5c|", 65)
string.format("%c", "x")
-- format %% and bad formats
string.format("%%")
string.format("100%%")
string.format("%5%")
string.format("%y", 1)
string.format("%", 1)
string.format("abc%")
string.format("%123d", 1)
string.format("%99d", 1):len()
string.format("%.99f", 1):len()
string.format("%------5d", 1)
string.format("%-----5d|", 1)
string.format("%a", 1)
string.format("%b", 5)
string.format("%u", 5)
string.format("%v", 5)
string.format("%T", 5)
string.format("%t", true)
string.format("%U", 65)
string.format("%F", 1.5)
string.format("%#5.0f|", 3)
string.format(nil)
string.format(12)
string.format()
string.format("no conversions", 1, 2)
string.format("%s=%d", "x", 5)
string.format("%5.2s|%-3d|%x", "abc", 7, 255)
-- tostring
tostring(nil)
tostring(true)
tostring(false)
tostring(12)
tostring(-5)
tostring(1.5)
tostring(-1.5)
tostring(-0.0)
tostring(0 * -1)
tostring(1e14)
tostring(1e15)
tostring(1e16)
tostring(123456789012345)
tostring(99999999999999)
tostring(2^31)
tostring(2^53)
tostring(2^63)
tostring(-2^63)
tostring(2^64)
tostring(1e100)
tostring(1e308 * 10)
tostring(0.1)
tostring(0.1 + 0.2)
0.1 + 0.2 == 0.3
tostring(1 - 0.9)
tostring(100 / 3)
tostring(-1.5e-7)
tostring(1/3)
tostring(100)
tostring(3.14159265358979)
tostring(1e-5)
tostring(5e-324)
tostring(2^24)
tostring(1/0)
tostring(-1/0)
tostring(0/0)
tostring(math.huge - math.huge)
tostring("x")
tostring()
tostring(print):sub(1, 10)
tostring({}):sub(1, 7)
tostring(setmetatable({}, {__tostring = function() return "X" end}))
tostring(setmetatable({}, {__tostring = function() return 42 end}))
tostring(setmetatable({}, {__tostring = function() return nil end}))
tostring(setmetatable({}, {__tostring = "notfn"}))
-- number to string in concatenation
1e15 .. ""
1e14 .. ""
0.1 .. ""
2^53 .. ""
-0.0 .. ""
1/0 .. ""
123456789012345 .. ""
10 .. 20
1.5 .. "|"
-- tonumber
tonumber("10")
tonumber("010")
tonumber("0b101")
tonumber("1_0")
tonumber("12345678901234567890")
tonumber("  1e2  ")
tonumber(" -7 ")
tonumber("1E2")
tonumber("  12  ")
tonumber("0x10")
tonumber("0X1f")
tonumber("-0x10")
tonumber("0x")
tonumber("0x1p4")
tonumber("1e2")
tonumber("1E-2")
tonumber("1e")
tonumber("")
tonumber(" ")
tonumber("inf")
tonumber("nan")
tonumber("infinity")
tonumber(".5")
tonumber("5.")
tonumber(".")
tonumber("-0")
tonumber("+5")
tonumber("1e500")
tonumber("1 2")
tonumber("12a")
tonumber("\t12\n")
tonumber("1_000")
tonumber(nil)
tonumber()
tonumber(true)
tonumber({})
tonumber(5)
tonumber(-0.0)
tonumber("10", 2)
tonumber("ff", 16)
tonumber("-0", 16)
tonumber(tonumber("-0"), 36)
tonumber("FF", 16)
tonumber("zz", 36)
tonumber("ZZ", 36)
tonumber("z", 35)
tonumber("10", 1)
tonumber("10", 37)
tonumber("10", 0)
tonumber("10", -2)
tonumber("8", 8)
tonumber("777", 8)
tonumber(" 11 ", 2)
tonumber("-ff", 16)
tonumber("-10", 2)
tonumber("+10", 2)
tonumber(10, 16)
tonumber("1.5", 10)
tonumber("1.5", 16)
tonumber("", 16)
tonumber(" ", 16)
tonumber("0x10", 16)
tonumber("0x10", 10)
tonumber("10", 2.9)
tonumber("10", "16")
tonumber("10", "x")
tonumber(nil, 16)
tonumber("1e2", 16)
tonumber("99999999999999999999", 10)
tonumber("99999999999999999999", 36)
tonumber("ffffffffffffffffff", 16)
tonumber("1111111111111111111111111111111111111111111111111111111", 2)
tonumber("10", 10)
tonumber("1e1", 10)
tonumber("0x10", nil)
-- select
select('#')
select('#', nil, nil)
select(2, 'a', 'b', 'c')
select(-1, 'a', 'b', 'c')
select(-3, 'a', 'b', 'c')
select(-4, 'a', 'b', 'c')
select(0, 'a')
select(5, 'a')
select(1.5, 'a', 'b')
select('2', 'a', 'b')
select('#x', 'a')
select('x')
select()
select(nil, 'a')
select(2^31, 'a')
-- type
type(nil)
type(1)
type("x")
type({})
type(print)
type(type)
type(coroutine.create(print))
type()
type(type(nil))
-- rawequal, rawget, rawset, # on tables
rawequal(1, 1)
rawequal("a", "a")
rawequal({}, {})
rawequal(1, "1")
rawequal(0, -0.0)
rawequal(0/0, 0/0)
rawequal(1)
rawequal()
rawget({10}, 1)
rawget({10}, "1")
rawget("x", 1)
rawget({})
rawget(setmetatable({}, {__index = function() return 1 end}), 1)
A(rawset({}, 1, 2))
rawset({}, nil, 1)
rawset({}, 0/0, 1)
rawset({}, 1)
A(rawset({}, 2.0, "x"))
type(rawset({}, 1, 2))
type(rawlen)
#{1, 2, 3}
#{1, nil, 3}
#{nil, nil, 3}
#{n = 1}
#{}
-- availability of 5.1 functions
type(table.getn)
type(table.setn)
type(table.maxn)
type(table.foreach)
type(table.foreachi)
type(table.unpack)
type(table.pack)
type(string.gfind)
type(math.mod)
type(math.pow)
type(math.log10)
type(math.ldexp)
type(math.frexp)
type(math.cosh)
type(math.atan2)
type(unpack)
type(loadstring)
type(setfenv)
type(getfenv)
type(gcinfo)
type(newproxy)
type(string.dump)
type(bit32)
type(utf8)
_VERSION
-- next, pairs, ipairs
ITER(pairs({10, 20, 30}))
ITER(pairs({}))
ITER(ipairs({10, 20, 30}))
ITER(ipairs({1, 2, nil, 4}))
ITER(ipairs({}))
ITER(ipairs({[0] = 0, 1, 2}))
ITER(ipairs({[2] = 2}))
ITER(pairs({1, 2, 3, x = 1}))
ITER(next, {5, 6})
ITER(ipairs(setmetatable({}, {__index = function(_, k) if k < 4 then return k * 10 end end})))
ipairs(nil)
ipairs("abc")
ipairs()
pairs(nil)
pairs()
select('#', ipairs({}))
select('#', pairs({}))
next({})
next({10})
next({10}, 1)
next({10}, 2)
next({10}, "x")
next()
next({}, nil)
next({x = 1})
next(nil)
-- unpack
unpack({1, 2, 3})
unpack({1, 2, 3}, 2)
unpack({1, 2, 3}, 2, 3)
unpack({1, 2, 3}, -1, 1)
unpack({1, 2, 3}, 3, 2)
unpack({}, 1, 3)
unpack({1, 2, 3}, 1.5)
unpack({1, 2, 3}, 1, 2.5)
unpack({1, 2, 3}, "2")
unpack({1, 2, 3}, nil, 2)
unpack({1, nil, 3})
unpack({n = 2})
unpack({[0] = 0, 1}, 0)
unpack(nil)
unpack("abc")
unpack()
unpack({1, 2, 3}, "x")
select('#', unpack({}, 1, 5000))
select('#', unpack({}, 1, 20000))
select('#', unpack({}, 1, 1e8))
unpack({1, 2}, 2^31 - 1)
-- table.insert
INS({1, 2, 3}, 4)
INS({1, 2, 3}, 1, 0)
INS({1, 2, 3}, 2, 9)
INS({1, 2, 3}, 4, 9)
INS({1, 2, 3}, 5, 9)
INS({1, 2, 3}, 0, 9)
INS({1, 2, 3}, -1, 9)
INS({}, 1, 9)
INS({}, 2, 9)
INS({1, 2, 3}, 1, 2, 3)
INS({1, 2, 3})
INS(nil, 1)
INS("x", 1)
INS({1, 2, 3}, "2", 9)
INS({1, 2, 3}, 1.5, 9)
INS({1, 2, 3}, nil)
INS({1, 2, 3}, "x", 1)
INS({1, 2, 3}, nil, 1)
INS({n = 5}, "x")
INS({1, nil, 3}, "x")
-- table.remove
REM({})
REM({1, 2, 3})
REM({1, 2, 3}, 1)
REM({1, 2, 3}, 2)
REM({1, 2, 3}, 3)
REM({1, 2, 3}, 4)
REM({1, 2, 3}, 5)
REM({1, 2, 3}, 0)
REM({1, 2, 3}, -1)
REM({}, 1)
REM({}, 0)
REM({[0] = "z"}, 0)
REM({1, 2, 3}, "1")
REM({1, 2, 3}, 1.5)
REM({1, 2, 3}, "x")
REM({1, 2, 3}, nil)
REM(nil)
REM()
REM({n = 3})
REM({1, 2, 3}, 2, 3)
-- table.sort
SORT({3, 1, 2})
SORT({"b", "a", "c", "B"})
SORT({3, 1, 2}, function(a, b) return a > b end)
SORT({})
SORT({1})
SORT({5, 2, 8, 1, 9, 3, 7, 4, 6, 0, 11, 15, 13, 12, 14, 10})
SORT({-1, 2.5, -3.5, 0, 1e100, -1/0, 1/0})
SORT({3, 1, "x"})
SORT({"x", 1})
SORT({{}, {}})
SORT({true, false})
SORT({1, nil, 3})
SORT({3, 1, 2}, 1)
SORT({3, 1, 2}, "x")
SORT({3, 1, 2}, nil)
(function(t, f) table.sort(t, f); return A(t) end)({2, 1})
SORT(nil)
SORT("abc")
SORT({2, 1}, function(a, b) error("boom") end)
SORT({2, 1}, function(a, b) error({}) end)
SORT({5, 4, 3, 2, 1, 6, 7, 8, 9, 10, 11, 12}, function(a, b) return true end)
SORT({1, 2, 3}, function(a, b) return true end)
SORT({5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5}, function(a, b) return a <= b end)
SORT({3, 2, 1}, function(a, b) return false end)
SORT({3, 1, 2}, function(a, b) return nil end)
SORT((function() local t = {3, 1, 2}; table.remove(t); return t end)(), function(a, b) return a > b end)
SORT((function() local t = {"c", "a", "b", "d"}; t[4] = nil; return t end)(), function(a, b) return a < b end)
SORT({3, 1, 2}, function(a, b) return 1 end)
(function() local t = {{3}, {1}, {2}}; table.sort(t, function(a, b) return a[1] < b[1] end); return t[1][1], t[2][1], t[3][1] end)()
SORT(setmetatable({3, 1, 2}, {__index = function() return 0 end}))
-- table.concat
table.concat({1, 2, 3})
table.concat({1, 2, 3}, ", ")
table.concat({1, 2.5, "x"}, "-")
table.concat({}, "x")
table.concat({1, 2, 3}, "-", 2)
table.concat({1, 2, 3}, "-", 2, 3)
table.concat({1, 2, 3}, "-", 3, 2)
table.concat({1, 2, 3}, "-", 3, 3)
table.concat({1, {}, 3})
table.concat({1, 2, 3}, "-", 1, 5)
table.concat({1, 2}, 3)
table.concat({0.1, 1e15, 2^53, -0.0, 1/0, 1e100}, " ")
table.concat({1, 2, 3}, nil, 2)
table.concat({1, 2, 3}, "", "2")
table.concat({1, 2, 3}, "", 1.5)
table.concat(nil)
table.concat()
table.concat({true})
table.concat({1, 2, 3}, "", 0)
table.concat({"a", "b"}, "", -1, -2)
table.concat({"a", "b"}, {})
table.concat({[0] = "z", "a"}, ",", 0)
table.concat({"a", nil, "c"})
-- table.maxn, getn, setn, foreach
table.maxn({})
table.maxn({1, 2, 3})
table.maxn({[10] = 1, 2})
table.maxn({[1.5] = 1})
table.maxn({[-1] = 1})
table.maxn({x = 1})
table.maxn({1, nil, 3})
table.maxn({[1/0] = 1})
table.maxn({[2^26] = 1, 5})
table.maxn({[2^53] = 1})
table.maxn({[2^31] = 1, [-2^40] = 2})
table.maxn(nil)
table.getn({1, 2, 3})
table.getn({})
table.getn({n = 5})
table.getn(nil)
table.setn({}, 1)
ITER(pairs((function() local o = {}; table.foreachi({7, 8}, function(i, v) o[i] = v * 2 end); return o end)()))
table.foreach({5}, function(k, v) return "stop" .. v end)
table.foreachi({5, 6}, function(i, v) if i == 2 then return v end end)
-- math.floor, ceil, abs
math.floor(1.5)
math.floor(-1.5)
math.floor(-0.0)
math.floor(-0.5)
math.floor(2^53 + 1)
math.floor(1e100)
math.floor(1/0)
math.floor(0/0)
math.floor("2.5")
math.floor()
math.floor("x")
math.floor("010")
math.floor(" 0x1p4 ")
math.floor("1_0")
math.floor("0b1")
math.abs("0b11")
math.max("0x10", 1)
math.fmod("7", "3")
math.floor(1.5, "x")
math.abs(" 10 ", "#")
math.sqrt("4", "%")
math.fmod(0.5, 10, "abc")
math.ldexp(1, 3, "x")
math.pow(3, "10", {})
math.max(1, "x")
math.atan2(1, "x")
math.floor(("1"):rep(900) .. "e-700")
tonumber(("1"):rep(900) .. "e-700")
tonumber(("0"):rep(900) .. "1.25")
(("1"):rep(900) .. "e-700") + 0
os.difftime(5.7, 2.2)
math.ceil(1.2)
math.ceil(-1.2)
math.ceil(-0.5)
math.ceil(0.5)
math.ceil(1e100)
math.abs(-3)
math.abs(-0.0)
math.abs(-1/0)
math.abs("-2")
math.abs(nil)
-- math.max, min
math.max(1, 5, 3)
math.max(-1)
math.max()
math.max(1, "10")
math.max(1, 0/0)
math.max(0/0, 1)
math.max(1, nil)
math.max(-0.0, 0)
math.max(0, -0.0)
math.min(3, 1.5, 2)
math.min(1, 0/0)
math.min(0/0, 1)
math.min(-1/0, 1/0)
math.min("x")
-- math.fmod, mod, modf
math.fmod(7, 3)
math.fmod(-7, 3)
math.fmod(7, -3)
math.fmod(-7, -3)
math.fmod(7, 0)
math.fmod(-7, 1/0)
math.fmod(1/0, 1)
math.fmod(5.5, 2)
math.fmod(0, 0)
math.fmod(7)
math.fmod(-6, 3)
math.mod(7, 3)
math.mod(-7, 3)
math.mod(7, -3)
math.mod(1.5, -2^31)
math.rad(1e308)
math.log(1e-310)
math.log(2^-1074)
math.log10(1e-310)
math.log10(2^-1074)
math.log10(2^-1022)
math.log(2^-1022)
math.atan2(-1e-310, -1e308)
math.atan2(1e-310, -1e308)
math.atan2(-1e-300, -1e300)
math.atan2(-1, -1)
string.format("%.12g", math.pow(2^-1074, -0.25))
string.format("%.12g", math.pow(1e-310, 0.0025))
string.format("%.12g", math.pow("3e-320", 1/3))
math.deg(1e-300)
math.modf(3.7)
math.modf(-3.7)
math.modf(1/0)
math.modf(-1/0)
math.modf(0/0)
math.modf(-0.0)
math.modf(5)
math.modf(-5)
math.modf()
-- constants, sqrt, pow, exp, log
math.huge
-math.huge
math.huge == 1/0
math.huge > 1e308
-math.huge == -1/0
math.huge * 2 == math.huge
1e308 * 10 == math.huge
math.pi
math.sqrt(2)
math.sqrt(-1)
math.sqrt(0)
math.sqrt(-0.0)
math.sqrt(1/0)
math.pow(2, 10)
math.pow(2, 0.5)
math.pow(-8, 1/3)
math.pow(0, 0)
math.pow(2, -1)
math.pow(0/0, 0)
math.pow(2)
2^-1
2^0.5
(-2)^2
-2^2
2^1024
(-8)^(1/3)
math.exp(0)
math.exp(1)
math.exp(710)
math.exp(-1/0)
math.log(1)
math.log(0)
math.log(-1)
math.log(math.exp(2))
math.log(8, 2)
math.log(100, 10)
math.log10(100)
math.log10(0)
math.log10(2)
-- frexp, ldexp
math.frexp(8)
math.frexp(0)
math.frexp(-3)
math.frexp(0.1)
math.frexp(1/0)
math.frexp(0/0)
math.frexp(5e-324)
math.ldexp(0.5, 4)
math.ldexp(1, 1024)
math.ldexp(1, -1074)
math.ldexp(1, -1075)
math.ldexp(1, 1.5)
math.ldexp(3, -1)
math.ldexp(1)
math.ldexp(1, "2")
-- trigonometry and friends
math.sin(1)
math.cos(1)
math.tan(1)
math.asin(1)
math.acos(0.5)
math.atan(1)
math.atan2(1, -1)
math.atan2(0, -1)
math.atan2(-0.0, -1)
math.sinh(1)
math.cosh(1)
math.tanh(1)
math.deg(math.pi)
math.rad(180)
math.asin(2)
-- arithmetic operators on negative numbers and zero
7 % 3
-7 % 3
7 % -3
-7 % -3
7 % 0
-7 % 0
0 % 0
5.5 % 2
-5.5 % 2
5.5 % -2
5 % math.huge
-5 % math.huge
5 % -math.huge
math.huge % 2
0 % 5
-0.0 % 5
7 / 2
-7 / 2
1 / 0
-1 / 0
0 / 0
1 / -0
1 / (0 * -1)
math.floor(-7 / 2)
math.floor(7 / -2)
math.floor(-7 / 0)
3 % 1.5
1e308 + 1e308
-(0)
"10" + 1
"0x10" + 0
"1e1" * 2
" 5 " + 0
"abc" + 1
"10" % 3
"-2" ^ 2
"1e2" + 0
"010" + 0
"0b101" + 0
"1_000" + 0
"0o17" + 0
"012" * 1
"08" + 0
"-010" + 0
"inf" + 0
"0x1p4" + 0
"  0x10  " + 0
010
-"2"
10 .. -20
1 < 2
1 < "2"
"a" < "b"
"Z" < "a"
"" < "a"
"a\0b" < "a\0c"
0 == -0
"1" == 1
0/0 == 0/0
{} < {}
-- base functions: assert, error, pcall, metatables, load
pcall(function() error(42) end)
pcall(function() error("m") end)
pcall(function() error("m", 2) end)
pcall(function() error() end)
pcall(function() local x = nil; return x.y end)
pcall(function() return 1 + {} end)
pcall(function() return #nil end)
-- type errors name the operand as Lua does (typeerrors.go)
pcall(function() return undefinedGlobal.x end)
pcall(function() undefinedGlobal() end)
pcall(function() return undefinedGlobal() end)
pcall(function() local t = {}; t.a.b = 1 end)
pcall(function() local t = {a = {}}; return t.a.b.c end)
pcall(function() local t = {}; t:nomethod() end)
pcall(function() local t = {}; return t.f(1) end)
pcall(function() local t = {}; local i = 2; return t[i].x end)
pcall(function() local s = "abc"; return s + 1 end)
pcall(function() local s = "abc"; s() end)
pcall(function() local n = 5; return n.x end)
pcall(function() local n = 5; return n() end)
pcall(function() local b = true; return -b end)
pcall(function() return #print end)
pcall(function() return print + 1 end)
pcall(function() local u; return (function() return u.x end)() end)
pcall(function() local x; return "a" .. x end)
pcall(function() local t = {}; return "a" .. t.k .. "b" end)
pcall(function() return undefinedGlobal .. 1 end)
pcall(function() local t = {}; return "a" .. t end)
pcall(function() return nil < nil end)
pcall(function() return print <= print end)
pcall(function() return 1 + "x" end)
pcall(function(a) return a.b end)
pcall(function(...) local a, b = ...; return b.c end, 1)
pcall(function() return ({})() end)
pcall(nil, 1)
pcall(string.rep)
(function() return 1 + "10", "3" * "4", -"2", "10" % 3 end)()
(function() return getmetatable(nil), getmetatable(1), getmetatable(print), getmetatable(true) end)()
(function() local t = {}; for i = 3, 1, -1 do t[i] = i * 10 end; return #t, table.concat(t, ","), unpack(t) end)()
(function() local t = {}; t[0] = "z"; t[-1] = "y"; return unpack(t, -1, 1) end)()
(function() local t = {1, 2, 3}; t[2] = nil; return #t, table.maxn(t) end)()
type(math.random())
math.random(1, 1)
math.random(1)
math.random(0)
math.random(3, 1)
math.random(1, 2, 3)
math.random(-3.5, -3.2)
math.random(2.7) <= 2
math.random(0.5)
math.random(" 5 ", "5")
math.randomseed()
assert(1, 2, 3)
assert(false)
assert(nil, "msg")
assert(false, 42)
assert()
pcall(error)
pcall(error, "x", 0)
pcall(error, {})
pcall(error, nil)
pcall(error, 42)
pcall(error, 42, 0)
pcall(error, 1.5, 2)
pcall(error, -3)
type(select(2, pcall(error, nil, {})))
type(select(2, pcall(error, "x", "y")))
select('#', pcall(error))
pcall()
pcall(nil)
pcall(pcall)
xpcall(function() error("e", 0) end, function(m) return "h:" .. m end)
xpcall(function() return 1, 2 end, print)
xpcall(error)
getmetatable("abc").__index == string
getmetatable({})
getmetatable(1)
getmetatable(setmetatable({}, {__metatable = "locked"}))
setmetatable(setmetatable({}, {__metatable = "locked"}), {})
setmetatable({}, nil) ~= nil
setmetatable(1, {})
setmetatable({}, 1)
setmetatable({})
setmetatable({}, nil, 1)
(function() setmetatable(1, {__index = function() return "leak" end}); local r = (5).x; setmetatable(1, nil); return r end)()
loadstring("return 1 + 1")()
select('#', loadstring("x="))
type(loadstring("x=")), type(select(2, loadstring("x=")))
loadstring(nil)
(loadstring("return ...", "c"))(1, 2)
pcall(loadstring("return 1", 65))
type(load(function() end, 2^53))
pcall(load((function() local p, i = {"return ", 5}, 0; return function() i = i + 1; return p[i] end end)()))
type(load((function() local p, i = {"return ", {}}, 0; return function() i = i + 1; return p[i] end end)()))
type(select(2, load((function() local p, i = {"return 1", true}, 0; return function() i = i + 1; return p[i] end end)())))
collectgarbage("count", "x")
type(collectgarbage("step", "1"))
select('#', (function(...) return ... end)(nil, nil))
coroutine.resume(coroutine.create(function(a) return a + 1 end), 1)
coroutine.resume(coroutine.create(function() error("c", 0) end))
coroutine.status(coroutine.create(print))
coroutine.wrap(function(a, b) coroutine.yield(a + b); return 0 end)(1, 2)
coroutine.resume(coroutine.create(tostring), nil)
coroutine.running()
coroutine.yield()
-- os
os.time({year = 2000, month = 1, day = 1, hour = 0})
os.time({year = 2000, month = 1, day = 1})
os.time({year = 2000, month = 13, day = 1, hour = 0})
os.time({year = 2000, month = 1, day = 0, hour = 0})
os.time({year = 2000, month = 1, day = 1, hour = 0, min = -30})
os.time({year = 2000, month = 1, day = 1, hour = 0, sec = 86400})
os.time({year = 2000, month = 1, day = 1, hour = 0, isdst = false})
os.time({year = 2000, month = 1, day = 1, hour = 0, isdst = true})
os.time({year = 1970, month = 1, day = 1, hour = 0})
os.time(os.date("*t", -1))
os.time({year = 1900, month = 1, day = 1, hour = 0})
os.time({year = 3000, month = 1, day = 1, hour = 0})
os.time({year = "2000", month = 1, day = 1, hour = 0})
os.time({year = 2000, month = 1, day = 1.5, hour = 0})
os.time({year = 2000, month = 1, day = "x", hour = 0})
os.time({year = 2000})
os.time({month = 1, day = 1})
os.time({})
os.time(1)
os.time("x")
type(os.time())
type(os.time(nil))
os.date("!%Y-%m-%d", 0)
os.date("!%a %A", 0)
os.date("!%x", 86400 * 40)
os.date("!%I %p", 13 * 3600)
os.date("!%T %R %F", 0)
os.date("!%j", 86400 * 40)
DT(os.date("!*t", 86400 * 200))
os.date("!%H:%M:%S", 3661)
os.date("!%Y-%m-%d %H:%M:%S", 1e9)
os.date("!%c", 0)
os.date("!%x %X", 0)
os.date("!%j %a %A %b %B %p %y %w %d %e %D %U %W %Z", 86400 * 40)
os.date("!%Y", 1.5)
os.date("!%Y", -1)
os.date("!%Y-%m-%d", 1e10)
os.date("!%Y", 1e18)
os.date("!%Y", "86400")
os.date("!%Y", "x")
os.date("!%%", 0)
os.date("!", 0)
os.date("!%", 0)
os.date("!%Q", 0)
os.date("!%E", 0)
os.date("!%Ey", 0)
os.date("!abc %d def", 0)
DT(os.date("!*t", 0))
DT(os.date("!*t", 86400 * 365.25 * 30))
DT(os.date("*t", 0))
os.date("%Y-%m-%d", 0)
type(os.date())
type(os.date("*t"))
type(os.clock())
os.clock() >= 0
os.difftime(10, 5)
os.difftime(10)
os.difftime()
os.difftime("10", "4")
`

// stdlibKnownDiffs are the calls on which the embedded engine and lua5.1
// disagree today (see the test's comment), with a note each.
var stdlibKnownDiffs = map[string]string{
	`os.time({year = 2000, month = 1, day = 1.5, hour = 0})`: sdDate54,
	`os.date("!%", 0)`:            sdDate54,
	`os.date("!%Q", 0)`:           sdDate54,
	`os.date("!%E", 0)`:           sdDate54,
	`os.date("!%Ey", 0)`:          sdDate54,
	`string.format("%d", 1e100)`:  sdFmtIntRng,
	`string.format("%d", 1/0)`:    sdFmtIntRng,
	`string.format("%d", 0/0)`:    sdFmtIntRng,
	`string.format("%s", nil)`:    sdFmtS,
	`string.format("%s", true)`:   sdFmtS,
	`string.format("%s", {})`:     sdFmtS,
	`string.format("%s", "a\0b")`: sdFmtNul,
	`string.format("%s", setmetatable({}, {__tostring = function() return "T" end}))`: sdFmtS,
	`string.format("%c", 256)`:                           sdFmtC,
	`string.format("%c", 0)`:                             sdFmtNul,
	`string.format("%F", 1.5)`:                           sdFmtGo,
	`tostring(setmetatable({}, {__tostring = "notfn"}))`: sdToStringMeta,
	`tonumber("inf")`:                                    sdGlibc,
	`tonumber("nan")`:                                    sdGlibc,
	`tonumber("infinity")`:                               sdGlibc,
	`tonumber("-ff", 16)`:                                sdStrtoul,
	`tonumber("-10", 2)`:                                 sdStrtoul,
	`tonumber("0x10", 16)`:                               sdToNumHex,
	`tonumber("99999999999999999999", 36)`:               sdStrtoul,
	`tonumber("ffffffffffffffffff", 16)`:                 sdStrtoul,
	`select(2^31, 'a')`:                                  sdUB,
	`A(rawset({}, 2.0, "x"))`:                            sdBorder,
	`type(table.setn)`:                                   sdMissing,
	`type(table.foreach)`:                                sdMissing,
	`type(table.foreachi)`:                               sdMissing,
	`type(gcinfo)`:                                       sdMissing,
	`select('#', unpack({}, 1, 20000))`:                  sdUnpackLimit,
	`INS({1, 2, 3}, 5, 9)`:                               sdInsPos,
	`INS({1, 2, 3}, 0, 9)`:                               sdInsPos,
	`INS({1, 2, 3}, -1, 9)`:                              sdInsPos,
	`INS({}, 2, 9)`:                                      sdInsPos,
	`SORT({5, 4, 3, 2, 1, 6, 7, 8, 9, 10, 11, 12}, function(a, b) return true end)`:                                   sdSortInvalid,
	`SORT({1, 2, 3}, function(a, b) return true end)`:                                                                 sdSortInvalid,
	`SORT({5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5}, function(a, b) return a <= b end)`:                                    sdSortInvalid,
	`SORT({3, 1, 2}, function(a, b) return 1 end)`:                                                                    sdSortInvalid,
	`table.concat({0.1, 1e15, 2^53, -0.0, 1/0, 1e100}, " ")`:                                                          sdKZero,
	`table.maxn({[1.5] = 1})`:                                                                                         sdMaxn,
	`table.maxn({[1/0] = 1})`:                                                                                         sdMaxn,
	`ITER(pairs((function() local o = {}; table.foreachi({7, 8}, function(i, v) o[i] = v * 2 end); return o end)()))`: sdMissing,
	`table.foreach({5}, function(k, v) return "stop" .. v end)`:                                                       sdMissing,
	`table.foreachi({5, 6}, function(i, v) if i == 2 then return v end end)`:                                          sdMissing,
	`math.fmod(7, 0)`:                     sdNaN,
	`math.fmod(1/0, 1)`:                   sdNaN,
	`math.fmod(0, 0)`:                     sdNaN,
	`math.pow(-8, 1/3)`:                   sdNaN,
	`(-8)^(1/3)`:                          sdNaN,
	`math.log(-1)`:                        sdNaN,
	`math.tan(1)`:                         sdULP,
	`math.acos(0.5)`:                      sdULP,
	`7 % 0`:                               sdNaN,
	`-7 % 0`:                              sdNaN,
	`0 % 0`:                               sdNaN,
	`5 % math.huge`:                       sdHuge,
	`-5 % math.huge`:                      sdHuge,
	`5 % -math.huge`:                      sdHuge,
	`math.huge % 2`:                       sdHuge,
	`"inf" + 0`:                           sdGlibc,
	`pcall(pcall)`:                        sdErrText,
	`pcall(function() return ({})() end)`: sdErrText,
	`pcall(string.rep)`:                   sdErrText,
	`os.time(os.date("*t", -1))`:          sdTimeNeg,
	`os.date("!%Y", 1e18)`:                sdTimeNeg,
}

// Notes for stdlibKnownDiffs. "BUG:" marks differences a Lua 5.1 program
// would plausibly trip over; "minor:" marks formatting differences, error
// versus no error on nonsense arguments, and lua5.1 or glibc quirks.
const (
	// Number formatting and values.
	sdKZero = "lua5.1 bug: its compiler keeps 0 and -0.0 in one constant slot, so 1/0 after -0.0 in the same function computes 1/-0 = -inf"
	sdNaN   = "minor: NaN prints as Go's NaN (lua5.1 on x86-64 glibc: -nan or nan; the sign and spelling are platform-dependent anyway)"
	sdULP   = "minor: last-bit difference between Go's math package and glibc's libm"
	sdHuge  = "minor: x % +-inf follows Lua 5.4 (C fmod: 5 % math.huge is 5); lua5.1 computes a - floor(a/b)*b, which is nan"
	sdUB    = "minor: lua5.1 casts an out-of-range float to int (undefined behaviour in C); nothing to match"

	// string.
	sdFmtGo     = "minor: string.format accepts %F (C99); lua5.1 rejects it"
	sdFmtS      = "deliberate (Lua 5.4): string.format %s converts any value as tostring does (nil, booleans, tables, __tostring); lua5.1 raises 'string expected'"
	sdFmtNul    = "minor: lua5.1 truncates %s and %c at a NUL byte (a 5.1 quirk); the engine keeps the bytes"
	sdFmtIntRng = "deliberate (Lua 5.4): %d of a number outside the 64-bit range (1e100, inf, nan) raises 'number has no integer representation'; lua5.1 casts it (undefined behaviour in C)"
	sdDate54    = "deliberate (Lua 5.4): os.date raises 'invalid conversion specifier' for a conversion C does not define (lua5.1 hands it to strftime, which copies it), accepts the E/O modifiers, and os.time requires integer fields"
	sdFmtC      = "minor: %c of 256 writes byte 0 (lua5.1's sprintf result stops at it and writes nothing)"

	// tostring / tonumber.
	sdToStringMeta = "minor: a non-function __tostring is ignored; lua5.1 tries to call it and raises"
	sdToNumHex     = "minor: tonumber rejects \"-0x10\" and a 0x prefix with an explicit base (lua5.1/strtoul accept them)"
	sdGlibc        = "minor: lua5.1 uses glibc strtod, which accepts hex floats, \"inf\", \"nan\"; Lua 5.2+ rejects them too"
	sdStrtoul      = "minor: lua5.1 quirk: strtoul negates \"-ff\" modulo 2^64 and saturates on overflow; the engine gives -255 (like Lua 5.2+) or nil on overflow"

	// Base library.
	sdMissing     = "minor: 5.1 compatibility function missing in gopher-lua (table.setn/foreach/foreachi, gcinfo)"
	sdUnpackLimit = "minor: unpack allows up to 1e6 results (lua5.1's C stack limit is about 8000)"
	sdErrText     = "minor: runtime error message text differs (the message pcall returns)"

	// table.
	sdBorder      = "minor: # of a table with holes is a different but valid border (gopher-lua keeps positive integer keys in the array part)"
	sdInsPos      = "deliberate (Lua 5.4): table.insert(t, pos, v) requires 1 <= pos <= #t+1 ('position out of bounds'); lua5.1 moves elements for any position"
	sdSortInvalid = "minor: with an invalid order function the resulting order, or the error lua5.1 raises, is implementation-specific"
	sdMaxn        = "minor: table.maxn considers only integer keys (lua5.1: any positive number key)"

	// os.
	sdTimeNeg = "minor: lua5.1 returns nil for times mktime/gmtime cannot represent (-1, year beyond int)"
)

// stdlibErrPrefix matches the position Lua puts in front of error messages
// (the chunk names differ: a file for lua5.1, "input" for the engine).
var stdlibErrPrefix = regexp.MustCompile(`(\[string "[^"]*"\]|/[^ :"]*|input):\d+: `)

// runStdlibCases runs each of cases (an expression list) as T(i, function()
// return <case> end) under stdlibHarness and extra, in lua5.1 (luaBin) and
// in the embedded engine (trusted or sandboxed), and returns both outputs,
// a line per case. Both run in this process's time zone (os.time of a date
// table is local time); the C locale is what gopher-lua implements.
func runStdlibCases(t *testing.T, luaBin, extra string, cases []string, trusted bool) (want, got []string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(stdlibHarness)
	b.WriteString(extra)
	for i, c := range cases {
		fmt.Fprintf(&b, "T(%d, function() return %s\nend)\n", i, c)
	}
	script := b.String()
	want = parseStdlibOutput(t, "lua5.1", runLuaFile(t, luaBin, script), len(cases))
	got = parseStdlibOutput(t, "embedded", runEmbeddedScript(t, script, trusted), len(cases))
	return want, got
}

func parseStdlibOutput(t *testing.T, who string, out []byte, n int) []string {
	t.Helper()
	res := make([]string, n)
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		idx, rest, ok := strings.Cut(line, "\t")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || i < 0 || i >= n {
			t.Fatalf("%s: unexpected output line %q", who, line)
		}
		res[i] = stdlibErrPrefix.ReplaceAllString(rest, "")
	}
	return res
}

func TestStdlibDiff(t *testing.T) {
	luaBin, err := exec.LookPath("lua5.1")
	if err != nil {
		t.Skip("lua5.1 not on PATH")
	}
	var cases []string
	seen := map[string]bool{}
	for _, l := range strings.Split(stdlibCases, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "--") {
			continue
		}
		if seen[l] {
			t.Fatalf("duplicate case %q", l)
		}
		seen[l] = true
		cases = append(cases, l)
	}
	for k := range stdlibKnownDiffs {
		if !seen[k] {
			t.Errorf("stdlibKnownDiffs names %q, which is not a case", k)
		}
	}
	// Trusted: the sandbox drops a few globals (getfenv, newproxy,
	// string.dump ...) on purpose; the library itself is the same.
	want, got := runStdlibCases(t, luaBin, "", cases, true)
	var msgDiffs []string
	bad := 0
	for i, c := range cases {
		w, g := want[i], got[i]
		if w == "" || g == "" {
			t.Errorf("%s: no result (lua5.1 %q, embedded %q)", c, w, g)
			continue
		}
		werr, gerr := strings.HasPrefix(w, "E\t"), strings.HasPrefix(g, "E\t")
		same := w == g || (werr && gerr)
		if werr && gerr {
			if wm, gm := w[2:], g[2:]; wm != gm {
				msgDiffs = append(msgDiffs, fmt.Sprintf("%s\n      lua5.1:   %s\n      embedded: %s", c, wm, gm))
			}
		}
		note, known := stdlibKnownDiffs[c]
		switch {
		case !same && !known:
			bad++
			t.Errorf("%s\n  lua5.1:   %s\n  embedded: %s", c, w, g)
		case same && known:
			t.Errorf("%s: agrees with lua5.1 now (%s); remove it from stdlibKnownDiffs", c, w)
		case !same && known:
			t.Logf("known: %s  [%s]\n  lua5.1:   %s\n  embedded: %s", c, note, w, g)
		}
	}
	sort.Strings(msgDiffs)
	for _, m := range msgDiffs {
		t.Logf("error text differs: %s", m)
	}
	t.Logf("%d calls, %d known differences, %d new, %d error texts differ", len(cases), len(stdlibKnownDiffs), bad, len(msgDiffs))
}
