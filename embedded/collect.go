package embedded

import (
	"runtime"

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
func (st *state) memUsedKB(L *lua.LState) lua.LNumber {
	kb := float64(st.memUsage(0, st.ctx.stoppedCh())) / 1024
	st.raiseStop(L)
	return lua.LNumber(kb)
}

// installCollectGarbage is collectgarbage for a trusted state: "collect"
// and "step" run a collection (of the whole process, as gopher-lua's
// did), "count" is memUsedKB, "stop" and "restart" do nothing (the Go
// collector cannot be stopped for one VM), "setpause" and "setstepmul"
// record and return the previous value, as Lua 5.1's results go.
func (st *state) installCollectGarbage() {
	pause, stepmul := 200, 200
	st.L.SetGlobal("collectgarbage", st.L.NewFunction(func(L *lua.LState) int {
		switch opt := L.OptString(1, "collect"); opt {
		case "collect":
			runtime.GC()
			L.Push(lua.LNumber(0))
		case "count":
			L.Push(st.memUsedKB(L))
		case "step":
			runtime.GC()
			L.Push(lua.LTrue) // the step finished a cycle
		case "stop", "restart":
			L.Push(lua.LNumber(0))
		case "setpause":
			old := pause
			pause = optInt(L, 2, 0)
			L.Push(lua.LNumber(old))
		case "setstepmul":
			old := stepmul
			stepmul = optInt(L, 2, 0)
			L.Push(lua.LNumber(old))
		default:
			L.ArgError(1, "invalid option '"+opt+"'")
		}
		return 1
	}))
}
