package embedded

import (
	"context"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"libbioxen/core"
)

// TestIdleStateParksItsCallStack: between calls a state keeps a one-entry
// segment table instead of gopher-lua's 20 KB one, in both call modes and
// after errors, and every call still reaches the full 20,000-frame depth.
func TestIdleStateParksItsCallStack(t *testing.T) {
	if !parkLayout.ok {
		t.Fatal("gopher-lua's call-stack layout changed: idle states keep 20 KB segment tables")
	}
	eng, err := Open(core.Options{Name: "park"})
	if err != nil {
		t.Fatal(err)
	}
	e := eng.(*Engine)
	defer e.Close()
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
	eng, err := Open(core.Options{Name: "sweep"})
	if err != nil {
		t.Fatal(err)
	}
	e := eng.(*Engine)
	defer e.Close()
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
