package embedded

import (
	"runtime"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// os.clock. gopher-lua's returned the wall-clock time since the host
// started, so a script timing its own work counted the time it waited (a
// blocking read, a sleep) and the time other goroutines had the CPU. Lua
// 5.1's is C's clock(): the CPU time of the process. In a host running many
// VMs the process's CPU time is everyone's, so the engine's os.clock is the
// CPU time (user and system) the VM's own calls have used, measured with
// the clock of the thread running them (CLOCK_THREAD_CPUTIME_ID), counted
// from the VM's first os.clock call: that call returns ~0, and the count
// goes on across the VM's later calls. Locking the goroutine to its thread
// is what makes the thread's clock the call's; it is done only for VMs
// that have called os.clock, so others pay nothing.

// cpuClock is a state's os.clock account. Owned by the goroutine running
// the state's current call.
type cpuClock struct {
	on     bool          // os.clock was called: measure every call
	inCall bool          // a call is running (state.run)
	locked bool          // this call is measured: locked to its thread
	total  time.Duration // CPU time of the measured calls before this one
	mark   time.Duration // the thread's CPU time when this one's count started
}

// enter starts a call (state.run); leave ends it.
func (c *cpuClock) enter() {
	c.inCall = true
	if c.on {
		c.start()
	}
}

func (c *cpuClock) start() {
	runtime.LockOSThread()
	c.mark = threadCPU()
	c.locked = true
}

func (c *cpuClock) leave() {
	if c.locked {
		c.total += max(threadCPU()-c.mark, 0)
		c.locked = false
		runtime.UnlockOSThread()
	}
	c.inCall = false
}

// read is the VM's CPU time so far.
func (c *cpuClock) read() time.Duration {
	if !c.on {
		c.on = true
		if c.inCall {
			c.start()
		}
	}
	if c.locked {
		return c.total + max(threadCPU()-c.mark, 0)
	}
	return c.total
}

// installClock replaces os.clock.
func (st *state) installClock() {
	st.L.GetGlobal("os").(*lua.LTable).RawSetString("clock", st.L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(st.clock.read().Seconds()))
		return 1
	}))
}
