package embedded

import (
	"context"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// TestTracebackMatchesGopherLua: our linear traceback prints exactly what
// gopher-lua's own (quadratic) one prints, for stacks with Lua and Go
// frames, tail calls (also in the bottom frame), coroutines, cut tracebacks
// and every level. gopher-lua's debug.traceback is the reference.
func TestTracebackMatchesGopherLua(t *testing.T) {
	if frameLayoutErr != nil {
		t.Fatal(frameLayoutErr)
	}
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("ours", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(strings.TrimSpace(traceback(L, L.OptInt(2, 1)))))
		return 1
	}))
	var checked int
	L.SetGlobal("check", L.NewFunction(func(L *lua.LState) int {
		checked++
		a, b := L.CheckString(1), L.CheckString(2)
		if a != b {
			t.Errorf("%s: traceback differs\n--- gopher-lua:\n%s\n--- ours:\n%s", L.CheckString(3), a, b)
		}
		return 0
	}))
	err := L.DoString(`
		local fns = {debug.traceback, ours}
		local function both(where)
			for lv = 0, 40 do
				local out = {}
				for k = 1, 2 do
					local tb = fns[k]
					out[k] = tb(nil, lv)
				end
				check(out[1], out[2], where .. " level " .. lv)
			end
			local out = {}
			for k = 1, 2 do
				local tb = fns[k]
				out[k] = tb(nil, 100000)
			end
			check(out[1], out[2], where .. " level 100000")
		end
		local function rec(n, tail, where)
			if n == 0 then both(where) return 0 end
			if tail and n % 3 == 0 then return rec(n - 1, tail, where) end
			return rec(n - 1, tail, where) + 1
		end
		for _, n in ipairs({0, 1, 5, 9, 25, 60}) do
			rec(n, false, "plain " .. n)
			rec(n, true, "tail calls " .. n)
		end
		pcall(rec, 4, true, "under pcall")
		table.sort({3, 1, 2}, function(a, b) rec(3, true, "in sort") return a < b end)
		string.gsub("ab", ".", function() rec(2, false, "in gsub") end)
		local mt = setmetatable({}, {__index = function() rec(30, true, "in __index") end})
		local _ = mt.x
		local co = coroutine.wrap(function() rec(7, true, "in a coroutine") coroutine.yield() end)
		co()
		local function tailer(n) if n == 0 then return both("tail chain") end return tailer(n - 1) end
		tailer(50)
		return tailer(3)
	`)
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20*42 {
		t.Fatalf("only %d comparisons ran", checked)
	}
}

// TestDeepErrorIsFast: an uncaught error 20,000 frames deep (a call-stack
// overflow, or error() at the bottom) and debug.traceback there return in
// well under the time gopher-lua's quadratic traceback took (1.1 s here).
func TestDeepErrorIsFast(t *testing.T) {
	vm := openVM(t, core.Options{})
	for _, src := range []string{
		`local function f(n) return f(n + 1) + 1 end return f(1)`,
		`local function f(n) if n == 19000 then error("bottom") end return f(n + 1) + 1 end return f(1)`,
		`local function f(n) if n == 19000 then return #debug.traceback("x") end return f(n + 1) + 1 end return f(1)`,
		`local function f(n) if n == 19000 then error("bottom") end return f(n + 1) + 1 end
		 return xpcall(function() return f(1) end, function(m) error("again") end)`,
	} {
		start := time.Now()
		res, err := vm.Exec(context.Background(), []byte(src), core.ExecOptions{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if d := time.Since(start); d > time.Second { // gopher-lua's: 1.1 s, ~10 s under -race
			t.Errorf("%s: took %v", src, d)
		}
		t.Logf("%s\n=> %s %s", src, res.Values, firstLines(string(res.Stderr), 4))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// TestTracebackHidesEngineFrames: a traceback taken in xpcall's handler
// starts, as in lua5.1, at the function that raised: neither the type
// error's metamethod (typeerrors.go) nor xpcall's error function shows.
// [C] is gopher-lua's [G], and the chunk names differ.
func TestTracebackHidesEngineFrames(t *testing.T) {
	luaBin, err := exec.LookPath("lua5.1")
	if err != nil {
		t.Skip("lua5.1 not on PATH")
	}
	script := `
local function show(f) print((select(2, xpcall(f, debug.traceback)))) end
show(function() local q; return q.w end)
show(function() return nosuch() end)
show(function() local s = "x"; return s + 1 end)
show(function() local t = {}; return "a" .. t.k end)
show(function() error("raised") end)
show(function() return #nil end)
`
	want := string(runLuaFile(t, luaBin, script))
	want = strings.ReplaceAll(want, "[C]", "[G]")
	want = regexp.MustCompile(`[^\s<]*script\.lua`).ReplaceAllString(want, "input")
	vm := openVM(t, core.Options{})
	res, err := vm.Exec(context.Background(), []byte(script), core.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Stdout); got != want {
		t.Errorf("tracebacks differ\n--- lua5.1:\n%s\n--- embedded:\n%s", want, got)
	}
}

// TestTracebackOfManyTailCalls: a frame that lost millions of tail calls
// has as many "(tailcall): ?" levels, and the traceback listed them all
// before keeping 15 lines: f(1e8) took 8 s and 2.9 GB for one
// debug.traceback(). Found by review (red team).
func TestTracebackOfManyTailCalls(t *testing.T) {
	e := openEngine(t, "tailcalls")
	run := func(code string) string {
		t.Helper()
		res, err := e.Exec(context.Background(), &core.Request{Code: []byte(code), ChunkName: "=t"})
		if err != nil || res.ReturnCode != 0 {
			t.Fatalf("%s: %v %s", code, err, res.Stderr)
		}
		return string(res.Values)
	}
	run(`co = coroutine.create(function()
  local function f(n) if n > 0 then return f(n - 1) end coroutine.yield() end
  f(3e6)
end)
assert(coroutine.resume(co))`)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	tb := run(`return debug.traceback(co)`)
	runtime.ReadMemStats(&after)
	if !strings.Contains(tb, `(tailcall): ?\n\t...`) || strings.Count(tb, `\n\t`) != 15 {
		t.Errorf("traceback %s", tb)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("one traceback allocated %d bytes", got)
	}
}
