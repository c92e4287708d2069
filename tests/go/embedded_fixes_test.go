package gotests

import (
	"strings"
	"testing"

	"libbioxen/core"
)

// Regression tests for gopher-lua behaviours the embedded engine corrects.
func TestEmbeddedLuaSemantics(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		vm := open(t, core.Options{Trusted: trusted})
		cases := []struct{ code, want string }{
			{"local a, b = 1, 2 a, b = b, a return a, b", "[2,1]"},                                     // yuin/gopher-lua#440
			{"local t = {1, 2, 3} t[1], t[3] = t[3], t[1] return t", "[[3,2,1]]"},                      // array swap
			{"local x, y = 0, 0 x, y = x + 1, x + y return x, y", "[1,0]"},                             // #440's example
			{"local m, n = 48, 18 while n ~= 0 do m, n = n, m % n end return m", "[6]"},                // gcd
			{"local p, q = (function() return 7, 8 end)() p, q = q, p return p, q", "[8,7]"},           // multiple results
			{`return ("abc"):upper(), ("hello"):sub(2, 3)`, `["ABC","el"]`},                            // string methods
			{"local c = 0 local function inc() c = c + 1 end pcall(error, 'x') inc() return c", "[1]"}, // pcall keeps upvalues
			{"local c = 0 local function inc() c = c + 1 end local ok = pcall(function() inc() error('e') end) inc() return c, ok", "[2,false]"},
			{"return xpcall(function() error('e1', 0) end, function(m) return 'handled ' .. m end)", `[false,"handled e1"]`},
			{"return select('#', pcall(function() end))", "[1]"},
			{`return string.byte("abc")`, "[97]"},                                                       // j defaults to i
			{`return string.byte("abc", -1), string.byte("abc", 0)`, "[99]"},                            // byte 0: no values
			{`return string.byte("abc", 2, 10)`, "[98,99]"},                                             // clamped
			{`return (select(2, pcall(string.char, 256)):match("invalid value"))`, `["invalid value"]`}, // no wrap to 0
			{`return string.char(104, 105), string.char()`, `["hi",""]`},                                //
			{`return tostring(0.1 + 0.2), tostring(1e15), tostring(1/0), tostring(-0.0)`, `["0.3","1e+15","inf","-0"]`},
			{`return tonumber("1e-5") == 0.00001, tonumber(" 010 "), tonumber("0x10"), tonumber("1_000"), tonumber("ff", 16)`, `[true,10,16,null,255]`},
			{`return "010" + 1, "1e2" * 2, -"3"`, `[11,200,-3]`},
			{`return math.huge == 1/0, -math.huge == -1/0`, `[true,true]`},
			{`return string.format("%5.2f|%d|%x|%g|%s|%q", 3.14159, 7.9, 255, 1/3, nil, "a\n")`, `[" 3.14|7|ff|0.333333|nil|\"a\\\n\""]`},
			{`return (select(2, pcall(string.format, "%d")):match("bad argument #2 .*got no value"))`, `["bad argument #2 to (anonymous) (number expected, got no value"]`},
			{`return string.format("%#x|%#X|%#o|%#x|%5.1s|%-3d|%+.2e", 0, 255, 8, 255, "abc", 7, 12345)`, `["0|0XFF|010|0xff|    a|7  |+1.23e+04"]`},
			{"local function f(l) error('x', l) end\nlocal function g(l) f(l) end\n" +
				"return select(2, pcall(g, 1)), select(2, pcall(g, 2)), select(2, pcall(g, 3)), select(2, pcall(error, 'y'))",
				`["input:1: x","input:2: x","x","y"]`}, // levels as in Lua; a Go function has no position
			{`return (select(2, pcall(table.concat, {}, "", 1, 1e15)):match("invalid value %(at index 1%)"))`, `["invalid value (at index 1)"]`}, // at once
			{`return 1/3 .. "", 1e15 .. "", 1/0 .. "|", 2 .. 3`, `["0.33333333333333","1e+15","inf|","23"]`},                                     // .. writes numbers as tostring
			{`local function f() return "a", "b" end local function g(...) return "<" .. ... end return "x" .. f(), f() .. "y", g("p", "q")`, `["xa","ay","<p"]`},
			{`return (select(2, pcall(function() return "a" .. {} end)):match("attempt to concatenate a table value"))`, `["attempt to concatenate a table value"]`},
			{`local mt = {__concat = function(a, b) return (type(a) == "table" and "T" or a) .. "+" .. (type(b) == "table" and "T" or b) end}
			  local t = setmetatable({}, mt) return t .. "x", "x" .. t, 1 .. t .. 2, (1 .. t) .. 2`, `["T+x","x+T","1T+2","1+T2"]`},
			{`local s = string.rep("x", 2^27) local t = setmetatable({}, {__concat = function() return "x" end})
			  local ok1, e1 = pcall(function() return s .. s .. "x" end)
			  local ok2, e2 = pcall(function() return s .. s .. s .. t end)
			  return ok1, e1:match("resulting string too large"), ok2, e2:match("resulting string too large"), #(s .. 1 .. t)`,
				`[false,"resulting string too large",false,"resulting string too large",134217729]`}, // .. is capped like string.rep
			// gopher-lua compiler bugs the engine rewrites around (#490, #514, #540).
			{`local function F() return false end local r = true r = F() and true local s = 1 s = (F() or nil) and 2
			  local u = true u = u and (F() and true) return r, s, u`, `[false,null,false]`},
			{`local junk = {1, 2, 3, 4, 5} local ks = {} for k in next, {10, 20, 30} do ks[#ks + 1] = k end
			  local n = 0 for _ in function(s, c) if not c then return 1 end end, nil, nil do n = n + 1 end return ks, n`, `[[1,2,3],1]`},
			{`local t = {} for k, v in pairs({a = 1}) do if false then local x end t[#t + 1] = k end
			  local w = 0 while true do if false then w = -1 end w = w + 1 if w == 3 then break end end return 1, #t, w`, `[1,1,3]`},
			{`local function f() return "F", "G" end local t = {1, k = f()} local function pk(...) return {..., n = select("#", ...)} end
			  local p = pk(1, 2, 3) local c = {1, k = "a" .. #t} return #t, t[2], t.k, p[1], p[2], p.n, #c, c.k`, `[1,null,"F",1,null,3,1,"a1"]`},
			{`local t = {} local v, w = "v", "w" G1, t.x = v, w local i = 1 i, t[i] = i + 1, "at1" return G1, t.x, i, t[1], t[2]`, `["v","w",2,"at1",null]`},
			{`local function f(w) w = (tostring(w)) return w end return f(5)`, `["5"]`},                                    // gopher-lua passed tostring itself
			{`local s = "x" s = (s:rep(2)) local a, b = (string.gsub("aa", "a", "b")) return s, a, b`, `["xx","bb",null]`}, // one value
			{`return loadstring("local a, b = 1, 2 a, b = b, a return a .. b")()`, `["21"]`},                               // load compiles with the fixes
			{`local t = {3, 1, 2} table.sort(t, nil) return t`, `[[1,2,3]]`},
			{`local t = {1, 2, 3} return select("#", table.remove(t, 0)), #t`, `[0,3]`},
			{`return (select(2, pcall(setmetatable, 1, {})):match("table expected, got number"))`, `["table expected, got number"]`},
			{`return string.byte(string.lower("A\200B"), 1, -1)`, `[97,200,98]`},
			{`return ("hello"):sub(-3, -2), ("hello"):sub(0), ("hello"):sub(3, 3), ("hello"):sub(9)`, `["ll","hello","l",""]`},
			// A closure made in a call that fails keeps its upvalues' values
			// (gopher-lua reset the registers first: they read nil).
			{`local fs = {} pcall(function() local x = 1 fs[1] = function() x = x + 1 return x end error("e") end)
			  local a, b, c = 10, 20, 30 return fs[1](), fs[1](), a + b + c`, `[2,3,60]`},
			{`local fs = {} xpcall(function() local x = 5 fs[1] = function() return x end error("e") end, function(m) return m end)
			  return fs[1]()`, `[5]`},
			{`local keep, fs = 0, {} local bump = function() keep = keep + 1 end
			  pcall(function() local y = 100 fs[1] = function() y = y + 1 return y end
			    pcall(function() local z = 7 fs[2] = function() z = z + 1 return z end bump() error("inner") end)
			    bump() error("outer") end)
			  bump() return fs[1](), fs[2](), fs[1](), fs[2](), keep`, `[101,8,102,9,3]`},
			{`return xpcall(error, function(m) error("again") end)`, `[false,"error in error handling"]`}, // as in Lua 5.1-5.4
			{`return xpcall(error, function(m) return nil + 1 end)`, `[false,"error in error handling"]`},
			{`return debug.traceback("m", 1):match("^m\nstack traceback:\n\tinput:1: in main chunk"), debug.traceback({}) ~= nil, debug.traceback(7):sub(1, 2)`, `["m\nstack traceback:\n\tinput:1: in main chunk",true,"7\n"]`},
			// A yield gopher-lua cannot suspend (inside a Go call or a call
			// the VM makes) is Lua 5.1's error; it crashed the next resume.
			{`local out = {}
			  for _, f in ipairs({
			    function() return pcall(coroutine.yield, 1) end,
			    function() local ok, e = pcall(function() coroutine.yield(1) end) return ok, e end,
			    function() table.sort({3, 2, 1}, function(a, b) coroutine.yield() return a < b end) end,
			    function() string.gsub("ab", ".", function(c) coroutine.yield() end) end,
			    function() local t = setmetatable({}, {__index = function() coroutine.yield() end}) return t.x end,
			    function() local t = setmetatable({}, {__add = function() coroutine.yield() end}) return t + 1 end,
			    function() for x in function(s, c) if not c then coroutine.yield() return 1 end end do end end,
			  }) do
			    local co = coroutine.create(f)
			    local ok, a, b = coroutine.resume(co)
			    out[#out + 1] = tostring(ok) .. " " .. tostring(a) .. " " .. tostring(b) .. " " .. coroutine.status(co)
			  end
			  local gen = coroutine.wrap(function() for i = 1, 3 do local function deep(n) if n == 0 then coroutine.yield(i) else return (deep(n - 1)) end end deep(5) end end)
			  local setmt = setmetatable({}, {__call = function(self, v) coroutine.yield(v) return "called" end})
			  local co = coroutine.create(function() return setmt(9) end)
			  local _, y = coroutine.resume(co)
			  local _, r = coroutine.resume(co)
			  return out, gen() + gen() + gen(), y, r`,
				`[["true false attempt to yield across metamethod/C-call boundary dead",` +
					`"true false attempt to yield across metamethod/C-call boundary dead",` +
					`"false attempt to yield across metamethod/C-call boundary nil dead",` +
					`"false attempt to yield across metamethod/C-call boundary nil dead",` +
					`"false attempt to yield across metamethod/C-call boundary nil dead",` +
					`"false attempt to yield across metamethod/C-call boundary nil dead",` +
					`"false attempt to yield across metamethod/C-call boundary nil dead"],6,9,"called"]`},
			// Nested resumes stop at Lua's C-call limit (they nested on the Go
			// stack without bound).
			{`local n = 0 local function f() n = n + 1 return coroutine.wrap(f)() end local ok, e = pcall(f)
			  local d = 0 local function g() d = d + 1 local ok2, e2 = coroutine.resume(coroutine.create(g)) return e2 end
			  local function walk(k) if k == 0 then coroutine.yield(0) return end for v in coroutine.wrap(function() walk(k - 1) end) do coroutine.yield(v + 1) end end
			  local deepest for v in coroutine.wrap(function() walk(150) end) do deepest = v end
			  return n > 150 and n <= 201, ok, e:match("C stack overflow"), g(), d, deepest`,
				`[true,false,"C stack overflow","C stack overflow",201,150]`},
			{`local co = coroutine.create(function() end) coroutine.resume(co) local a, b = coroutine.resume(co)
			  local co2 co2 = coroutine.create(function() return coroutine.resume(co2) end) local c, d, e = coroutine.resume(co2)
			  return a, b, c, d, e`, `[false,"cannot resume dead coroutine",true,false,"cannot resume running coroutine"]`}, // Lua's words
			{`local co = coroutine.create(function() coroutine.yield() end) coroutine.resume(co)
			  return (debug.traceback(co, "in co"):gsub("\n.*", ""))`, `["in co"]`},
		}
		for _, c := range cases {
			res := run(t, vm, c.code)
			if !res.Success || string(res.Values) != c.want {
				t.Errorf("trusted=%v %s: %s %s, want %s", trusted, c.code, res.Values, res.Stderr, c.want)
			}
		}
	}
}

// TestFailedChunkKeepsClosures: a chunk that fails after storing a closure
// in a global leaves the closure working for the next call of the same VM.
func TestFailedChunkKeepsClosures(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		vm := open(t, core.Options{Trusted: trusted, Persistent: true})
		res := run(t, vm, `local n = 41 function bump() n = n + 1 return n end error("fails")`)
		if res.Success || !strings.Contains(string(res.Stderr), "stack traceback:") {
			t.Fatalf("trusted=%v: the chunk should fail with a traceback: %s", trusted, res.Stderr)
		}
		res = run(t, vm, `local pad1, pad2, pad3 = "a", "b", "c" return bump(), bump()`)
		if !res.Success || string(res.Values) != "[42,43]" {
			t.Errorf("trusted=%v: %s %s, want [42,43]", trusted, res.Values, res.Stderr)
		}
	}
}
