package embedded

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// TestIdleStateParksItsCallStack: between calls a state keeps a one-entry
// segment table instead of gopher-lua's 20 KB one, in both call modes and
// after errors, and every call still reaches the full 20,000-frame depth.
func TestIdleStateParksItsCallStack(t *testing.T) {
	if !parkLayout.ok {
		t.Fatal("gopher-lua's call-stack layout changed: idle states keep 20 KB segment tables")
	}
	e := openEngine(t, "park")
	tableLen := func() int {
		return len(*(*[]unsafe.Pointer)(unsafe.Add(frameStack(e.st.L), parkLayout.segments)))
	}
	if !e.st.framesParked || tableLen() != 1 {
		t.Fatalf("a new state is not parked (table of %d)", tableLen())
	}
	deep := `local function r(n) if n == 0 then return 0 end return 1 + r(n - 1) end
local ok, err = pcall(r, 20001)
assert(not ok and err:find("stack overflow"), tostring(err))
return r(19990)`
	cases := []struct {
		code  string
		fresh bool
		want  string
	}{
		{deep, false, "[19990]"},
		{deep, true, "[19990]"},
		{`error("boom")`, false, "[]"},
		{`local function r() return r() + 1 end r()`, true, "[]"}, // an uncaught stack overflow
		{`x = coroutine.wrap(function() coroutine.yield(1) end) return x()`, false, "[1]"},
	}
	for _, c := range cases {
		if e.st.framesParked && tableLen() != 1 {
			t.Fatalf("parked with a table of %d", tableLen())
		}
		res, err := e.Exec(context.Background(), &core.Request{Code: []byte(c.code), ChunkName: "=t", Fresh: c.fresh})
		if err != nil {
			t.Fatalf("%q: %v", c.code, err)
		}
		if string(res.Values) != c.want {
			t.Errorf("%q: values %s (stderr %s), want %s", c.code, res.Values, res.Stderr, c.want)
		}
		if !e.st.framesParked || tableLen() != 1 {
			t.Errorf("%q: state not parked after the call", c.code)
		}
	}
	// A call with a deadline runs on another goroutine: same thing.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.Exec(ctx, &core.Request{Code: []byte(deep), ChunkName: "=t"})
	if err != nil || string(res.Values) != "[19990]" || !e.st.framesParked {
		t.Fatalf("with a deadline: %v %s parked=%v", err, res.Values, e.st.framesParked)
	}
}

// TestIdleStateGivesItsValueStackBack: a value stack grown by a deep call
// (gopher-lua grows it by 1 MiB and never shrinks it) goes back to its
// initial size once the state has been idle for a collection cycle, but not
// while a call runs, and the state still runs deep calls afterwards.
func TestIdleStateGivesItsValueStackBack(t *testing.T) {
	e := openEngine(t, "sweep")
	// capacity reads the value stack as the sweep does: holding the state.
	capacity := func() int {
		st := e.st
		if st.idle.Load() != stateBusy {
			for !st.idle.CompareAndSwap(stateParked, stateSweeping) {
				runtime.Gosched()
			}
			defer st.idle.Store(stateParked)
		}
		reg, _ := valueStack(st.L)
		return cap(*reg)
	}
	deep := `local function r(n) if n == 0 then return 0 end return 1 + r(n - 1) end return r(3000)`
	run := func() {
		t.Helper()
		res, err := e.Exec(context.Background(), &core.Request{Code: []byte(deep), ChunkName: "=t"})
		if err != nil || string(res.Values) != "[3000]" {
			t.Fatalf("deep call: %v %s", err, res.Values)
		}
	}
	run()
	if capacity() <= luaOptions.RegistrySize {
		t.Fatalf("the deep call did not grow the value stack (%d slots)", capacity())
	}
	// Busy: a sweep must not touch it.
	e.st.unpark()
	sweepIdleStates()
	sweepIdleStates()
	sweepIdleStates()
	if capacity() <= luaOptions.RegistrySize {
		t.Fatal("the sweep shrank the value stack of a busy state")
	}
	e.st.park()
	sweepIdleStates() // idle for less than a cycle: kept
	if capacity() <= luaOptions.RegistrySize {
		t.Fatal("the sweep shrank a state parked in the current cycle")
	}
	sweepIdleStates()
	if got := capacity(); got != luaOptions.RegistrySize {
		t.Fatalf("value stack of %d slots after two idle cycles, want %d", got, luaOptions.RegistrySize)
	}
	run() // grows again
	// The sweep also runs after real collections.
	for i := 0; i < 100 && capacity() > luaOptions.RegistrySize; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if got := capacity(); got != luaOptions.RegistrySize {
		t.Fatalf("value stack of %d slots after collections, want %d", got, luaOptions.RegistrySize)
	}
	run()
	// A closed state leaves the sweep's list.
	e.Close()
	sweepIdleStates()
	sweepIdleStates()
	bigMu.Lock()
	defer bigMu.Unlock()
	for _, wp := range bigStates {
		if st := wp.Value(); st != nil && st.idle.Load() == stateClosed {
			t.Fatal("a closed state stayed in the sweep's list")
		}
	}
}

// openEngine opens an embedded engine, closed when the test ends.
func openEngine(t *testing.T, name string) *Engine {
	t.Helper()
	return openEngineOpts(t, core.Options{Name: name})
}

// openEngineOpts opens an embedded engine with opts, closed when the test ends.
func openEngineOpts(t *testing.T, opts core.Options) *Engine {
	t.Helper()
	eng, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng.(*Engine)
}

// rawValues runs code on a new embedded VM and returns its values' JSON.
func rawValues(t *testing.T, code string) string {
	t.Helper()
	res, _ := execValues(t, openVM(t, core.Options{}), code)
	if res.ReturnCode != 0 {
		t.Fatalf("error: %s", res.Stderr)
	}
	return string(res.Values)
}

// TestCoroutinesAreSmall: a suspended coroutine costs a few KB, as in Lua
// (gopher-lua's took 26.7 KB: 20,000 of them were 511 MB), so 20,000 fit
// in a 256 MB memory limit; the memory estimate and the Go heap agree.
func TestCoroutinesAreSmall(t *testing.T) {
	code := `
local before = collectgarbage("count")
cos = {}
for i = 1, 20000 do
  cos[i] = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b end)
  assert(coroutine.resume(cos[i], i))
end
local after = collectgarbage("count")
local s = 0
for i = 1, #cos do local ok, v = coroutine.resume(cos[i], i) s = s + v end
return s, math.floor((after - before) * 1024 / 20000)`
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	// Persistent: the coroutines stay alive in cos after the call.
	vm := openVM(t, core.Options{Persistent: true, Limits: core.Limits{MaxMemoryBytes: 256 << 20}})
	res, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{Timeout: time.Minute})
	if err != nil || res.ReturnCode != 0 {
		t.Fatalf("%v %s", err, res.Stderr)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(vm)
	var sum, per float64
	if _, err := fmt.Sscanf(string(res.Values), "[%g,%g]", &sum, &per); err != nil || sum != 200010000 {
		t.Fatalf("values %s", res.Values)
	}
	heap := (int64(m1.HeapAlloc) - int64(m0.HeapAlloc)) / 20000
	t.Logf("per coroutine: estimate %.0f B, Go heap %d B", per, heap)
	if per > 8000 || heap > 8000 {
		t.Errorf("a coroutine costs %.0f B (estimate) / %d B (heap), want under 8 KB", per, heap)
	}
	if heap > 2*int64(per) || int64(per) > 3*heap {
		t.Errorf("estimate %.0f B and heap %d B disagree", per, heap)
	}
}

// TestCoroutineFramesAcrossYields: a coroutine still reaches the full call
// depth, yields from deep and shallow frames in any order (its frame table
// is lent while it runs and taken back when it yields within 8 frames),
// nested in other coroutines and through coroutine.wrap.
func TestCoroutineFramesAcrossYields(t *testing.T) {
	code := `
local function r(n) if n == 0 then return 0 end return 1 + r(n - 1) end
local function dig(n, f) if n == 0 then return f() end return dig(n - 1, f) end
local out = {}
local co = coroutine.create(function()
  out[#out + 1] = r(19990)
  local ok, err = pcall(r, 20001)
  out[#out + 1] = (not ok) and err:find("stack overflow") ~= nil
  for depth = 1, 40, 3 do
    local got = dig(depth, function() return coroutine.yield(depth) end)
    out[#out + 1] = got
  end
  local inner = coroutine.wrap(function()
    dig(30, function() coroutine.yield("deep") end)
    coroutine.yield("shallow")
    return r(5000)
  end)
  out[#out + 1] = inner() .. inner() .. inner()
  return "done"
end)
local ok, v = coroutine.resume(co)
while coroutine.status(co) ~= "dead" do
  ok, v = coroutine.resume(co, v * 2)
  assert(ok, v)
end
out[#out + 1] = v
for i = 1, #out do out[i] = tostring(out[i]) end
return table.concat(out, " ")`
	got := rawValues(t, code)
	want := `["19990 true 2 8 14 20 26 32 38 44 50 56 62 68 74 80 deepshallow5000 done"]`
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

// TestResumeNormalCoroutine: resuming a coroutine that is waiting in a
// resume of its own is Lua 5.1's error, with the caller's position for a
// coroutine.wrap function (gopher-lua resumed it and failed with a nil
// dereference).
func TestResumeNormalCoroutine(t *testing.T) {
	code := `
local A, W
A = coroutine.create(function()
  local B = coroutine.create(function() return coroutine.resume(A) end)
  return coroutine.resume(B)
end)
W = coroutine.wrap(function()
  return pcall(coroutine.wrap(function() return W() end))
end)
local r = {coroutine.resume(A)}
local w = {W()}
return tostring(r[1]) .. " " .. tostring(r[2]) .. " " .. tostring(r[3]) .. " " .. tostring(r[4]),
  coroutine.status(A), tostring(w[1]) .. " " .. tostring(w[2])`
	got := rawValues(t, code)
	want := `["true true false cannot resume normal coroutine","dead","false input:8: cannot resume normal coroutine"]`
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

// TestIdleStateKeepsNoSpareTables: the frame tables a call's resumes used
// are not kept by the idle state.
func TestIdleStateKeepsNoSpareTables(t *testing.T) {
	e := openEngine(t, "spares")
	code := `local cos = {}
for i = 1, 10 do cos[i] = coroutine.wrap(function() coroutine.yield(i) return i end) end
local s = 0
for i = 1, 10 do s = s + cos[i]() end
for i = 1, 10 do s = s + cos[i]() end
return s`
	res, err := e.Exec(context.Background(), &core.Request{Code: []byte(code), ChunkName: "=t"})
	if err != nil || string(res.Values) != "[110]" {
		t.Fatalf("%v %s %s", err, res.Values, res.Stderr)
	}
	if len(e.st.spares) != 0 {
		t.Errorf("the idle state keeps %d spare frame tables", len(e.st.spares))
	}
}

// TestDeepSuspendedCoroutineIsSmall: a coroutine suspended deep keeps a
// frame table of the segments its frames use (it kept the full 20 KB one),
// and resumes and finishes correctly.
func TestDeepSuspendedCoroutineIsSmall(t *testing.T) {
	e := openEngine(t, "deep")
	exec := func(code, want string) {
		t.Helper()
		res, err := e.Exec(context.Background(), &core.Request{Code: []byte(code), ChunkName: "=t"})
		if err != nil || string(res.Values) != want {
			t.Fatalf("%s: %v %s %s", code, err, res.Values, res.Stderr)
		}
	}
	exec(`local function dig(n) if n == 0 then return coroutine.yield(1) + 1 end return dig(n - 1) + 1 end
co = coroutine.create(function() return dig(100) end)
return coroutine.resume(co)`, "[true,1]")
	th := e.st.L.GetGlobal("co").(*lua.LState)
	table := *(*[]unsafe.Pointer)(unsafe.Add(frameStack(th), parkLayout.segments))
	if len(table) < 13 || len(table) > 14 {
		t.Errorf("a coroutine suspended 100 frames deep keeps a table of %d segments, want 13-14", len(table))
	}
	exec(`return coroutine.resume(co, 10)`, "[true,111]")
}

// TestStateClosedTwice: closing a state twice, or setting up a call on a
// closed one, returns (a second close spun forever waiting for a state
// that was neither parked nor busy).
func TestStateClosedTwice(t *testing.T) {
	st := newState(stateConfig{})
	st.close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.retire()
		st.unpark()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("retire or unpark of a closed state did not return")
	}
}

// TestIdleStateShrinksGrownCoroutines: a suspended coroutine whose value
// stack grew on a deep call (by 4,096 slots, 64 KB, never given back) gets
// a stack of the size it holds once its state has been idle for a
// collection cycle; what it holds survives, and the memory estimate drops.
func TestIdleStateShrinksGrownCoroutines(t *testing.T) {
	e := openEngine(t, "threads")
	exec := func(code, want string) {
		t.Helper()
		res, err := e.Exec(context.Background(), &core.Request{Code: []byte(code), ChunkName: "=t"})
		if err != nil || string(res.Values) != want {
			t.Fatalf("%s: %v %s %s", code, err, res.Values, res.Stderr)
		}
	}
	exec(`local function r(n) if n == 0 then return 0 end return 1 + r(n - 1) end
cos = {}
for i = 1, 50 do
  cos[i] = coroutine.create(function(k)
    local s, t = "v" .. k, {k}
    local depth = r(500)
    local more = coroutine.yield(depth)
    return s .. t[1] .. more
  end)
  assert(select(2, coroutine.resume(cos[i], i)) == 500)
end
return #cos`, "[50]")
	caps := func() (lo, hi int) {
		lo = 1 << 30
		cos := e.st.L.GetGlobal("cos").(*lua.LTable)
		for i := 1; i <= 50; i++ {
			reg, _ := valueStack(cos.RawGetInt(i).(*lua.LState))
			lo, hi = min(lo, cap(*reg)), max(hi, cap(*reg))
		}
		return lo, hi
	}
	if lo, _ := caps(); lo <= threadRegistrySize {
		t.Fatalf("the deep calls did not grow the coroutines' value stacks (%d slots)", lo)
	}
	before := e.st.memUsage(0, nil)
	sweepIdleStates()
	sweepIdleStates()
	if _, hi := caps(); hi != threadRegistrySize {
		t.Fatalf("value stacks of up to %d slots after two idle cycles, want %d", hi, threadRegistrySize)
	}
	after := e.st.memUsage(0, nil)
	if before-after < 50*4096*sizeSlot {
		t.Errorf("memory estimate %d -> %d bytes: the coroutines' stacks still counted", before, after)
	}
	t.Logf("memory estimate %d -> %d bytes", before, after)
	exec(`local out = {}
for i = 1, 50 do
  local ok, v = coroutine.resume(cos[i], "!")
  out[i] = ok and v
end
return out[1], out[50], coroutine.status(cos[7])`, `["v11!","v5050!","dead"]`)
}

// TestManyValuesOnACoroutineStack: pushing a million values onto a
// coroutine's value stack (unpack, string.byte, the values a resume or a
// yield passes) grows it once, not by 4,096 slots per push past the end,
// each growth copying it whole: unpack inside unpack in a coroutine took
// 9 s in one Go call, past any deadline (found by review, red team).
func TestManyValuesOnACoroutineStack(t *testing.T) {
	vm := openVM(t, core.Options{})
	res, err := vm.Exec(context.Background(), []byte(`
local function f(d, ...) if d == 0 then return select('#', unpack({}, 1, 999999)) end return (f(d - 1, unpack({}, 1, 999999))) end
local nested = coroutine.create(function() return f(2) end)
local bytes = coroutine.wrap(function(s) return select('#', s:byte(1, -1)) end)
local passed = coroutine.wrap(function(...) coroutine.yield(unpack({}, 1, 999999)) return select('#', ...) end)
return select(2, coroutine.resume(nested)), bytes(string.rep("a", 1e6)), select('#', passed(unpack({}, 1, 999999))), passed()`),
		core.ExecOptions{Timeout: 5 * time.Second})
	if err != nil || string(res.Values) != "[999999,1000000,999999,999999]" {
		t.Fatalf("%v %v", err, res)
	}
}
