package embedded

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"libbioxen/core"
)

// TestLua51Compat runs scripts in lua5.1 and in the embedded engine
// (trusted and sandboxed) and compares what they print, error messages
// included. Chunks compiled by loadstring are named with "=" so the
// messages do not depend on how chunk names are shown.
func TestLua51Compat(t *testing.T) {
	luaBin, err := exec.LookPath("lua5.1")
	if err != nil {
		t.Skip("lua5.1 not on PATH")
	}
	for _, c := range lua51CompatCases {
		t.Run(c.name, func(t *testing.T) {
			want := string(runLuaFile(t, luaBin, c.src))
			for _, trusted := range []bool{true, false} {
				got := string(runEmbeddedScript(t, c.src, trusted))
				if got != want {
					t.Errorf("trusted=%v\nlua5.1:\n%s\nembedded:\n%s", trusted, want, got)
				}
			}
		})
	}
}

// luaTry is a prelude: try(src) prints what loadstring(src, "=s") and then
// calling the chunk give (numbers exactly).
const luaTry = `
local function show(v)
  if type(v) == "number" then return string.format("%.17g", v) end
  return tostring(v)
end
function try(src)
  local f, err = loadstring(src, "=s")
  if not f then print(src, "ERR", err) return end
  local r = {pcall(f)}
  for i = 1, #r do r[i] = show(r[i]) end
  print(src, table.concat(r, " "))
end
`

var lua51CompatCases = []struct{ name, src string }{
	// A coroutine's body must be a Lua function: gopher-lua ran a builtin,
	// but that coroutine never died (coroutine.create(print) stayed
	// "running" and resumed again), and a yield in it lost its values.
	{"coroutine_body_is_lua", `
for _, f in ipairs({print, pcall, select, coroutine.yield, string.rep}) do
  local ok1, e1 = pcall(coroutine.create, f)
  local ok2, e2 = pcall(coroutine.wrap, f)
  print(ok1, ok2, tostring(e1):match("Lua function expected"), tostring(e2):match("Lua function expected"))
end
local co = coroutine.create(function(...) return ... end)
print(coroutine.resume(co, 7)) print(coroutine.status(co))
print(pcall(coroutine.wrap(function(a) return a * 2 end), 21))
`},
	// A bound that is a call or ... gives its first value only: the
	// rewrite passed all of them to the conversion (an error, and a Go
	// panic on four values; found by review).
	{"for_multivalue_bounds", `
local function f() return 3, "x" end
for i = 1, f() do io.write(i, " ") end print()
local function va(...) for i = 1, ... do io.write(i, " ") end print() end
va(3, "abc")
local function st() return 1, 2, "x", "y" end
print(pcall(function() local n = 0 for i = 1, 2, st() do n = n + 1 end return n end))
local function none() end
print((select(2, pcall(function() for i = 1, none() do end end)):match(":%d+: (.*)")))
`},
	// Chunk names as Lua's luaO_chunkid writes them: gopher-lua printed a
	// loadstring's whole source in every message.
	{"chunk_names", `
print(pcall(loadstring("local x = nil\nreturn x.y")))
print(pcall(loadstring("error('short')")))
print(pcall(loadstring(string.rep("x = 1 ", 20) .. "error('long')")))
print(pcall(loadstring("error('named')", "=" .. string.rep("n", 80))))
print(pcall(loadstring("error('file')", "@/" .. string.rep("d/", 40) .. "f.lua")))
print(pcall(loadstring("error('cr')\r\nreturn")))
print((select(2, loadstring("x = = 1")):match("^.-%]")))
print((select(2, loadstring("x = = 1", "=mine")):match("^[^:]*")))
`},
	{"collectgarbage_count", `
print(type(collectgarbage("count")), select("#", collectgarbage("count")), collectgarbage("count") > 0)
local k0 = collectgarbage("count")
local t = {} for i = 1, 100000 do t[i] = {i} end
local k1 = collectgarbage("count")
print(k1 - k0 > 1000, math.floor(k1) ~= k1 or true)
t = nil collectgarbage() collectgarbage()
print(collectgarbage("count") < k1)
print(collectgarbage("collect"), collectgarbage())
`},
	{"math_random", `
-- (gopher-lua's argument errors do not quote the function's name)
local function P(...) local r = {pcall(...)} if not r[1] then r[2] = string.gsub(string.gsub(r[2], "^.-:%d+: ", ""), "to '(%w+)'", "to %1") end print(unpack(r)) end
P(function() return math.random(0) end)
P(function() return math.random(3, 1) end)
P(function() return math.random(1, 2, 3) end)
P(function() return math.random("x") end)
P(function() return math.random(0.5) end)
P(function() return type(math.random()) end)
P(function() return math.randomseed() end)
print(math.random(-3.5, -3.2), math.random(2.7) <= 2, math.random(1,1), math.random(" 5 ", "5"))
math.randomseed(42) local a = {math.random(), math.random(10), math.random(5, 8)}
math.randomseed(42) local b = {math.random(), math.random(10), math.random(5, 8)}
math.randomseed(42.9) local c = {math.random(), math.random(10), math.random(5, 8)}
print(a[1] == b[1] and a[2] == b[2] and a[3] == b[3], a[1] == c[1] and a[2] == c[2])
local ok = true
for i = 1, 2000 do
  local x, y, z = math.random(), math.random(7), math.random(-2, 3)
  if not (x >= 0 and x < 1 and y >= 1 and y <= 7 and y == math.floor(y) and z >= -2 and z <= 3 and z == math.floor(z)) then ok = false end
end
print(ok)
`},
	{"for_numeric_string_bounds", `
local function pcall(f, ...)
  local ok, err = _G.pcall(f, ...)
  if ok then return ok, err end
  return ok, (string.gsub(err, "^.-:(%d+):", "line %1:"))
end
local function run(a, b, c)
  local n, last = 0, nil
  for x = a, b, c do n = n + 1 last = x end
  return n, last
end
local function run2(a, b)
  local n = 0
  for x = a, b do n = n + 1 end
  return n
end
print(run("1", "3", "1"), run(1, " 0x3 ", 1), run(1, 6, "2"), run("10", "1", "-3"), run2("2", "5"), run2(1, "1e1"))
local n = "3" local c = 0 for i = 1, n do c = c + 1 end print(c)
for i = "1", 2 do print(i, type(i)) end
print(pcall(run, "x", 1, 1))
print(pcall(run, 1, {}, 1))
print(pcall(run, 1, 2, "step"))
print(pcall(run, nil, nil, nil))
print(pcall(run2, 1, nil))
print(pcall(run, 1, 2, 0/0), run(0/0, 2, 1))
print(pcall(function() for i = 1,
  "oops" do end end))
local t = {} for i = 1, 3 do t[#t+1] = function() return i end end print(t[1](), t[2](), t[3]())
for i = -0.0, 0 do print(1/i) end
local z = -0.0 for i = z, 0 do print(1/i) end
local k = 0 for i = 10, 1, -1 do k = k + i end print(k)
local outer = 0 for i = 1, 3 do for j = i, 3 do for m = j, "3" do outer = outer + 1 end end end print(outer)
local s = 0 for i = 1, 5 do if i == 4 then break end s = s + i end print(s)
`},
	{"numerals", luaTry + `
try("return 0x8000000000000000, 0xFFFFFFFFFFFFFFFF, 0xcbf29ce484222325")
try("return 0x7FFFFFFFFFFFFFFF, 0x10000000000000000, -0x8000000000000000, 0XaBc, 0x0")
try("return 9223372036854775807, 9223372036854775808, 18446744073709551616")
try("return 123456789012345678901234567890, 0xFFFFFFFFFFFFFFFFFF")
try("return 1e400, -1e999, 1e-400, 0.1e1, 5., .5, 1E2, 1e-2")
try("return 010, 0010, 0010.5, 00, 09, 08")
try("local t = {0x8000000000000000} return t[1] == 2^63, 0xFFFFFFFFFFFFFFFF == 2^64")
try("return 1e400 == math.huge, -1e999 == -math.huge")
try("local x = 2 return x * 1e400, 0x8000000000000000 .. ''")
`},
	{"malformed_numerals", luaTry + `
try("return 1e")
try("return 2E-")
try("return 1.5e")
try("return 5e+")
try("return 0e")
try("return 3 + 1e")
try("local t = {1e, 2} return t[1]")
try("print(1e)")
try("x = 1\ny = 2\nreturn 1_000")
try("return 0b101")
try("return 0o17")
try("return 1.2.3")
try("return 3..2")
try("return 0x")
try("return 0xg")
try("return 1e5x")
try("return 3a")
try("return 'a' .. 1e")
try("-- 1e\nreturn 1 --[[ 2e ]] + 2")
try("return [[ 1e ]], '1e', \"2e\"")
try("return 1..2")
try("return 1 ..2")
`},
	{"decimal_escapes", luaTry + `
try("return '\\300'")
try("return 'abc\\300'")
try("return \"x\\256y\"")
try("return 'a\\0b\\999'")
try("return 'a\\\nb\\400'")
try("return '\\255', '\\065\\066', '\\0651', '\\q'")
try("return [[\\300]]")
try("-- '\\300'\nreturn 1")
`},
	// `return coroutine.yield(...)`, a tail call of yield: gopher-lua drops
	// the function's frame, and the next resume crashed with a Go nil
	// dereference (found by review). The resume's arguments are the
	// function's results.
	{"tail_call_yield", `
local co = coroutine.create(function(a) return coroutine.yield(a + 1) end)
print(coroutine.resume(co, 1))
print(coroutine.status(co))
print(coroutine.resume(co, "x", nil, 3))
print(coroutine.status(co), coroutine.resume(co))
local gen = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return coroutine.yield(b * 2) end)
print(gen(1), gen(10), gen(7))
print(pcall(gen))
local function f(x) return coroutine.yield(x) end
local nested = coroutine.wrap(function(a) local b = f(a + 1) local c = f(b * 2) return c + 1 end)
print(nested(1), nested(10), nested(7))
local empty = coroutine.create(function() return coroutine.yield() end)
print(coroutine.resume(empty))
print(coroutine.resume(empty))
print(coroutine.status(empty))
local again
again = coroutine.wrap(function() return again() end)
local function where(ok, msg) return ok, (msg:gsub("^.-:(%d+):", "line %1:")) end
print(where(pcall(again)))
print(where(pcall(function() again() end)))
`},
}

// TestNumeralsEveryCompilePath checks the numeral fixes on the top-level
// chunk and on files run by dofile (the loaders' own compile path).
func TestNumeralsEveryCompilePath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.lua"), []byte("return 0x8000000000000000, 1e400"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.lua"), []byte("return 1\n+ 2E-"), 0o600); err != nil {
		t.Fatal(err)
	}
	vm, err := core.Open(core.Options{Engine: "embedded", Trusted: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	exec := func(src string) *core.Result {
		res, err := vm.Exec(context.Background(), []byte(src), core.ExecOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for src, want := range map[string]string{
		"return 1e":   "malformed number near '1e'",
		"x = 1.5e":    "malformed number near '1.5e'",
		"x = '\\300'": "escape sequence too large near ''",
		"x = = 1e":    "near '='", // the parser's error comes first, as in Lua
	} {
		res := exec(src)
		if res.Success || !strings.Contains(res.ErrorMessage, want) || (src == "x = = 1e" && strings.Contains(res.ErrorMessage, "malformed")) {
			t.Errorf("%q: %+v, want an error with %q", src, res.ErrorMessage, want)
		}
	}
	res := exec(fmt.Sprintf(`local a, b = dofile(%q)
print(a, b, 0xFFFFFFFFFFFFFFFF, -1e999)
print(loadfile(%q))`, filepath.Join(dir, "m.lua"), filepath.Join(dir, "bad.lua")))
	want := fmt.Sprintf("9.2233720368548e+18\tinf\t1.844674407371e+19\t-inf\nnil\t%s:2: malformed number near '2E-'\n", filepath.Join(dir, "bad.lua"))
	if !res.Success || string(res.Stdout) != want {
		t.Errorf("got %q (%s), want %q", res.Stdout, res.ErrorMessage, want)
	}
}

// BenchmarkNumericFor measures numeric loops: with numeral bounds (not
// rewritten), with a variable bound (one conversion call per loop run) and
// short inner loops with a variable bound (the worst case of that call).
func BenchmarkNumericFor(b *testing.B) {
	for _, c := range []struct{ name, src string }{
		{"literal_1e7", "for i = 1, 1e7 do end"},
		{"local_1e7", "local n = 1e7 for i = 1, n do end"},
		{"inner10_1e5", "local n = 10 for i = 1, 1e5 do for j = 1, n do end end"},
	} {
		b.Run(c.name, func(b *testing.B) {
			vm, err := core.Open(core.Options{Engine: "embedded", Trusted: true})
			if err != nil {
				b.Fatal(err)
			}
			defer vm.Close()
			// Exec without a deadline runs on this goroutine: its thread's
			// CPU time is the chunk's, which a loaded machine disturbs less
			// than the wall clock.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0 := threadCPU()
			for b.Loop() {
				res, err := vm.Exec(context.Background(), []byte(c.src), core.ExecOptions{})
				if err != nil || !res.Success {
					b.Fatal(err, res.ErrorMessage)
				}
			}
			b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestRandomPerVM checks that each VM has its own generator: a fresh VM
// gives the same numbers every time (as Lua 5.1 does), a seed gives the
// same numbers in every VM, and one VM's draws do not move another's.
func TestRandomPerVM(t *testing.T) {
	open := func() *core.VM {
		vm, err := core.Open(core.Options{Engine: "embedded"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { vm.Close() })
		return vm
	}
	run := func(vm *core.VM, src string) string {
		res, err := vm.Exec(context.Background(), []byte(src), core.ExecOptions{})
		if err != nil || !res.Success {
			t.Fatalf("%s: %v %s", src, err, res.ErrorMessage)
		}
		return string(res.Stdout)
	}
	const draw = `local t = {} for i = 1, 8 do t[i] = string.format("%.17g", math.random()) end print(table.concat(t, " "), math.random(1000), math.random(-5, 5))`
	a, b := open(), open()
	fresh := run(a, draw)
	run(a, draw) // a moves on; b must not
	if got := run(b, draw); got != fresh {
		t.Errorf("fresh VMs differ (or share a generator):\n%s\n%s", fresh, got)
	}
	seeded := run(a, "math.randomseed(12345)"+draw)
	if got := run(b, "math.randomseed(12345)"+draw); got != seeded {
		t.Errorf("same seed, different numbers:\n%s\n%s", seeded, got)
	}
	if seeded == fresh || run(a, "math.randomseed(2)"+draw) == seeded {
		t.Errorf("seeds do not change the sequence")
	}
	if run(a, draw) == run(a, draw) {
		t.Errorf("the sequence repeats between calls")
	}
}

// TestCollectGarbageTrusted compares the options only a trusted VM has
// (the sandbox allows count, collect and step) with lua5.1.
func TestCollectGarbageTrusted(t *testing.T) {
	luaBin, err := exec.LookPath("lua5.1")
	if err != nil {
		t.Skip("lua5.1 not on PATH")
	}
	const src = `
print(collectgarbage("stop"), collectgarbage("restart"))
print(collectgarbage("setpause", 150), collectgarbage("setpause", 200), collectgarbage("setstepmul", 300), collectgarbage("setstepmul", 200))
local ok, err = pcall(collectgarbage, "bogus")
print(ok, err:match("bad argument #1 to .*%(invalid option 'bogus'%)$") ~= nil)
print(type(collectgarbage("count")), collectgarbage("count") > 0)
`
	want := string(runLuaFile(t, luaBin, src))
	got := string(runEmbeddedScript(t, src, true))
	if got != want {
		t.Errorf("lua5.1:\n%s\nembedded:\n%s", want, got)
	}
}

// TestOSClockIsCPUTime checks that os.clock counts the VM's CPU time: not
// a blocking wait (lua5.1 agrees), but a busy loop, and on across calls.
func TestOSClockIsCPUTime(t *testing.T) {
	const wait = `local t0 = os.clock()
local p = io.popen("sleep 0.6") p:read("*a") p:close()
print(os.clock() - t0 < 0.3)`
	if luaBin, err := exec.LookPath("lua5.1"); err == nil {
		if want := string(runLuaFile(t, luaBin, wait)); want != "true\n" {
			t.Fatalf("lua5.1: %q", want)
		}
	}
	if got := string(runEmbeddedScript(t, wait, true)); got != "true\n" {
		t.Errorf("a blocking wait counted as CPU time: %q", got)
	}
	for _, trusted := range []bool{true, false} {
		vm, err := core.Open(core.Options{Engine: "embedded", Trusted: trusted})
		if err != nil {
			t.Fatal(err)
		}
		defer vm.Close()
		run := func(src string) string {
			res, err := vm.Exec(context.Background(), []byte(src), core.ExecOptions{})
			if err != nil || !res.Success {
				t.Fatalf("%s: %v %s", src, err, res.ErrorMessage)
			}
			return string(res.Stdout)
		}
		const busy = `local t0 = os.clock() local x = 0 while os.clock() - t0 < 0.05 do x = x + 1 end
print(type(t0), os.clock() - t0 >= 0.05, string.format("%.17g", os.clock()))`
		got := strings.Fields(run(busy))
		if len(got) != 3 || got[0] != "number" || got[1] != "true" {
			t.Fatalf("trusted=%v: %q", trusted, got)
		}
		// Between calls the clock does not run; in the next call it goes on.
		if got := run(`local c = os.clock() print(c >= ` + got[2] + `, c - ` + got[2] + ` < 0.05)`); got != "true\ttrue\n" {
			t.Errorf("trusted=%v: across calls: %q", trusted, got)
		}
	}
}

// TestFormFeedIsBlank: Lua's lexer skips a vertical tab or form feed
// between tokens as a blank; gopher-lua's called it an invalid token, so
// a chunk with a form feed (a page break) between two statements did not
// compile, nor did loadstring take it. Those in strings stay. Found by
// FuzzCompile, which checks the engine against luac5.1.
func TestFormFeedIsBlank(t *testing.T) {
	script := "local s = '\f\v'\f\vprint(#s, s == '\\f\\v')\n" +
		"print(loadstring('return\\f1\\v+\\v1')())\n" +
		"print(loadstring('x = 1e\\f'))"
	got := string(runEmbeddedScript(t, script, true))
	if want := "2\ttrue\n2\nnil\t[string \"x = 1e\f\"]:1: malformed number near '1e'\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestDashBracketEqualsIsALineComment: "--[=" not followed by a long
// bracket ("--[=0", "--[==x") is a line comment to Lua 5.1; gopher-lua
// called it an invalid multiline comment (found by FuzzParseManifest's
// reference, gopher-lua, checked against luac5.1).
func TestDashBracketEqualsIsALineComment(t *testing.T) {
	script := "--[=0\nprint(1) --[==x\nprint(loadstring('--[=\\nreturn 2')())\n--[=[ long ]=] print(3)"
	if got := string(runEmbeddedScript(t, script, true)); got != "1\n2\n3\n" {
		t.Errorf("got %q", got)
	}
}
