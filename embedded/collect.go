package embedded

import (
	"runtime"
	"sync/atomic"

	lua "github.com/yuin/gopher-lua"
)

// collectgarbage. gopher-lua's ran a process-wide runtime.GC() for every
// option and returned nothing, so collectgarbage("count") was nil and
// `collectgarbage("count") * 1024` raised. Lua 5.1 answers "count" with
// the kilobytes in use. The engine answers with memUsedKB, the estimate of
// what the VM's own state holds that the memory limit also uses
// (memory.go: a walk of everything reachable from the state, so its cost
// grows with the state's size); it is not the process's heap, which
// other VMs share.

// memUsedKB is the estimate of the memory st's Lua state holds, in KB.
// The walk stops when the call is stopped (a deadline, the CPU budget),
// and then so does the call: it grows with the state (about a second for
// three million tables) and no deadline could stop it.
//
// A walk per count made a loop that reports its memory every thousand
// iterations quadratic (10.8 s where lua5.1 took 0.17 s). The state can
// only grow by allocating, so a count within one call reuses the last
// walk plus everything the process allocated since (an upper bound of the
// growth) until that reaches a sixteenth of the last walk (at least
// 256 KiB): a walk of n bytes comes at most once per n/16 bytes allocated.
// What the state drops shows at the next walk, or at once after
// collectgarbage("collect") or ("step"), as in Lua, where garbage counts
// until it is collected.
func (st *state) memUsedKB(L *lua.LState) lua.LNumber {
	c := &st.count
	if c.valid {
		if grown := processAllocs() - c.allocs; grown < max(uint64(c.bytes)/16, 256<<10) {
			return lua.LNumber(float64(c.bytes+int64(grown)) / 1024)
		}
	}
	countWalks.Add(1)
	bytes := st.memUsage(0, st.ctx.Stopped())
	st.raiseStop(L)
	// After the walk, which allocates its own bookkeeping (the state
	// cannot change meanwhile: the walk runs on the chunk's goroutine).
	*c = memCount{valid: true, bytes: bytes, allocs: processAllocs()}
	return lua.LNumber(float64(bytes) / 1024)
}

// countWalks counts memUsedKB's walks (for tests).
var countWalks atomic.Int64

// memCount is the last walk memUsedKB made in the current call.
type memCount struct {
	valid  bool
	bytes  int64  // what the walk found
	allocs uint64 // processAllocs after it
}

// installCollectGarbage is collectgarbage for a trusted state: "collect"
// and "step" run a collection (of the whole process, as gopher-lua's
// did), "count" is memUsedKB, "stop" and "restart" do nothing (the Go
// collector cannot be stopped for one VM), "setpause" and "setstepmul"
// record and return the previous value, as Lua 5.1's results go.
func (st *state) installCollectGarbage() {
	pause, stepmul := 200, 200
	st.L.SetGlobal("collectgarbage", st.L.NewFunction(func(L *lua.LState) int {
		opt := L.OptString(1, "collect")
		arg := optInt(L, 2, 0) // a number if given, as in Lua
		switch opt {
		case "collect":
			runtime.GC()
			st.count.valid = false
			L.Push(lua.LNumber(0))
		case "count":
			L.Push(st.memUsedKB(L))
		case "step":
			runtime.GC()
			st.count.valid = false
			L.Push(lua.LTrue) // the step finished a cycle
		case "stop", "restart":
			L.Push(lua.LNumber(0))
		case "setpause":
			old := pause
			pause = arg
			L.Push(lua.LNumber(old))
		case "setstepmul":
			old := stepmul
			stepmul = arg
			L.Push(lua.LNumber(old))
		default:
			L.ArgError(1, "invalid option '"+opt+"'")
		}
		return 1
	}))
}
