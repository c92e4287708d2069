package embedded

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
	"golang.org/x/sys/unix"

	"libbioxen/core"
)

// Limits that hold inside a running chunk.
//
// gopher-lua reads the context's flag (ContextFlag) before every
// instruction of every Lua thread that has a context, and calls its Done
// method when the flag is set and every lua.ContextPollEvery instructions.
// Each state's threads (the main one and every coroutine, see
// installCoroutines) share one callCtx, which makes Done the engine's
// instruction hook: every hookEvery instructions it checks the call's CPU
// budget and memory limit on the goroutine running the chunk, where
// reading the Lua state is safe. A call is stopped by setting the flag and
// closing the channel Done returns: gopher-lua then raises an error at
// every following instruction, so pcall, xpcall handlers, coroutines and
// metamethods cannot swallow it; the chunk unwinds to Exec, which reports
// the typed error.
//
// Counting instructions alone does not bound the CPU a call uses: one
// instruction can be a builtin that runs for a long time (a plain
// string.find in 128 MiB took 0.6 s, so 4096 of them ran 40 minutes past a
// 200 ms budget). So a call with a budget also arms a timer for the budget
// left: CPU time cannot pass faster than wall-clock time, so the budget
// cannot run out before the timer fires. The timer only sets a flag, which
// gopher-lua reads with the stop flag (one atomic load per instruction);
// the next instruction (through Done) or poll then reads the thread's CPU clock,
// and either stops the call or arms the timer again for what is left. Long
// builtins poll (Poll, limitTicker, workTicker) every few milliseconds of
// work, so the budget, the deadline and the memory limit reach them too.

// hookEvery is how many instructions run between limit checks (~40 µs of
// gopher-lua code).
const hookEvery = 4096

// doneEvery is how many calls of Done make hookEvery instructions.
const doneEvery = hookEvery / lua.ContextPollEvery

var _ = [1]int{}[hookEvery%lua.ContextPollEvery] // a multiple of it

// Why a call was stopped, besides its caller's context.
var (
	errCPULimit = errors.New("cpu time limit exceeded")
	errMemLimit = errors.New("memory limit exceeded")
)

// callCtx is the context.Context of a state's Lua threads. Between calls it
// is never done.
type callCtx struct {
	st *state

	mu    sync.Mutex
	done  chan struct{} // closed when the current call is stopped
	err   error         // why it was stopped; nil while it runs
	gen   uint64        // call generation: stale stops are ignored
	flags atomic.Uint32 // flagStopped, flagWake (read by Done without the lock)

	// Owned by the goroutine running the chunk.
	steps        uint32
	checking     bool
	deadline     time.Time
	cpuBudget    time.Duration
	cpuStart     time.Duration
	cpuTimer     *time.Timer // sets flagWake once the budget left may be used up
	memLimit     int64
	memUsed      int64         // what the state held at the last walk
	memNext      uint64        // walk again once allocTotal passes this
	allocAtEnter uint64        // allocTotal when the call began
	enteredAt    time.Time     // when the call began (with a memory limit)
	walkAt       time.Time     // when the last walk ended
	walkCost     time.Duration // how long it took
	walkAfter    time.Time     // a walk is due but held back until then (see check)
	walkTime     time.Duration // time spent walking, for the tests
	walkMax      time.Duration // the longest walk, for the tests
	maxSource    int           // the largest chunk load and its kin compile
	stopParent   func() bool
}

// The bits of callCtx.flags.
const (
	flagStopped = 1 << iota // done is closed
	flagWake                // the CPU budget may be used up: check now
)

func newCallCtx(st *state) *callCtx {
	return &callCtx{st: st, done: make(chan struct{})}
}

// Deadline reports the running call's deadline.
func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

// Done is called by gopher-lua every lua.ContextPollEvery instructions and
// whenever the flag is set: count, check the limits now and then, and
// return the closed channel once the call is stopped. Until then it
// returns nil, which gopher-lua's select skips at the cost of a nil check
// (a select on an open channel was a sixth of a tight loop's time). So
// Done is only for that non-blocking poll: code that blocks until a stop
// waits on Stopped.
func (c *callCtx) Done() <-chan struct{} {
	c.steps++
	if f := c.flags.Load(); f != 0 || c.checking && (c.steps%doneEvery == 0 || allocTotal.Load() > c.memNext) {
		return c.slowDone()
	}
	return nil
}

// slowDone is Done when a flag is set or a check is due.
func (c *callCtx) slowDone() <-chan struct{} {
	if c.flags.Load()&flagStopped == 0 {
		c.check()
	}
	if c.flags.Load()&flagStopped != 0 {
		return c.done
	}
	return nil
}

// Stopped returns the channel closed when the running call is stopped,
// for code that blocks until then (and gopher-lua, lua.Stopper, while it
// makes a large slice aside). Call it on the chunk's goroutine.
func (c *callCtx) Stopped() <-chan struct{} { return c.done }

var _ lua.Stopper = (*callCtx)(nil)

// ContextFlag is the flag gopher-lua reads before every instruction
// (lua.ContextFlagger): nonzero once the call is stopped or the CPU timer
// fired, when Done must be called.
func (c *callCtx) ContextFlag() *atomic.Uint32 { return &c.flags }

var _ lua.ContextFlagger = (*callCtx)(nil)

// Err reports why the call was stopped (nil while it may run).
func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Poll checks the limits now and reports Err: long Go builtins (the
// pattern matcher) call it every few thousand steps, on the goroutine
// running the chunk, as the instruction hook would.
func (c *callCtx) Poll() error {
	c.check()
	if c.flags.Load()&flagStopped == 0 {
		return nil
	}
	return c.Err()
}

// Value carries no values.
func (c *callCtx) Value(any) any { return nil }

// AfterFunc makes contexts derived from this one (gopher-lua derives one
// for every coroutine, then replaced by this one in installCoroutines)
// start no goroutine: the context package uses it instead of watching Done.
// They are never cancelled through it: calling the context package's f
// after a stop raced with the next call, whose begin resets Err to nil
// (f then panics: "missing cancel error"). Code that needs a context
// cancelled on a stop selects on Done itself (see osExecute).
func (c *callCtx) AfterFunc(func()) func() bool {
	return func() bool { return true }
}

// stop ends call gen with err (the first reason wins).
func (c *callCtx) stop(gen uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	c.flags.Or(flagStopped)
}

// begin arms the context for a call under parent and lim. It runs before
// the chunk's goroutine starts.
func (c *callCtx) begin(parent context.Context, lim core.Limits) {
	c.mu.Lock()
	c.gen++
	gen := c.gen
	if c.err != nil {
		c.done = make(chan struct{})
		c.err = nil
		c.flags.And(^uint32(flagStopped))
	}
	c.mu.Unlock()
	c.deadline, _ = parent.Deadline()
	c.stopParent = nil
	if parent.Done() != nil {
		c.stopParent = context.AfterFunc(parent, func() {
			err := context.Cause(parent)
			if err == nil {
				err = parent.Err()
			}
			c.stop(gen, err)
		})
	}
	c.cpuBudget = lim.MaxCPUTime
	c.memLimit = lim.MaxMemoryBytes
	c.maxSource = lim.MaxSourceBytes
	c.checking = c.cpuBudget > 0 || c.memLimit > 0
	if c.memLimit <= 0 {
		c.memNext = ^uint64(0)
	}
}

// end disarms the context and returns why the call was stopped (nil: it
// was not).
func (c *callCtx) end() error {
	if c.stopParent != nil {
		c.stopParent()
		c.stopParent = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++ // later stops of this call are stale
	c.deadline = time.Time{}
	c.checking = false
	return c.err
}

// enter starts the call's accounting on the goroutine that runs the chunk;
// the returned func ends it.
func (c *callCtx) enter() func() {
	c.steps = 0
	c.st.count = memCount{} // the state may have been reset between calls
	mem, cpu := c.memLimit > 0, c.cpuBudget > 0
	if mem {
		memWatchStart()
		c.allocAtEnter, c.enteredAt = allocTotal.Load(), time.Now()
		if c.memNext == 0 {
			// Never walked: a new state holds ~100 KiB, nothing next to a
			// limit. Its first walk waits for 1/16 of the limit to be
			// allocated, like every later one at least does.
			c.memNext = allocTotal.Load() + uint64(c.memLimit)/16
		}
	}
	if cpu {
		// The thread's CPU clock measures this goroutine only while it
		// stays on the thread.
		runtime.LockOSThread()
		c.cpuStart = threadCPU()
		if c.cpuTimer == nil {
			c.cpuTimer = time.AfterFunc(c.cpuBudget, func() { c.flags.Or(flagWake) })
		} else {
			c.cpuTimer.Reset(c.cpuBudget)
		}
	}
	return func() {
		if cpu {
			c.cpuTimer.Stop()
			runtime.UnlockOSThread()
		}
		if mem {
			memWatchStop()
		}
	}
}

// stopNow stops the running call from its own goroutine.
func (c *callCtx) stopNow(err error) {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	c.stop(gen, err)
}

// check runs on the chunk's goroutine every hookEvery instructions, when
// the CPU timer fired, and when a builtin polls.
func (c *callCtx) check() {
	woken := false
	if c.flags.Load()&flagWake != 0 {
		c.flags.And(^uint32(flagWake))
		woken = true
	}
	if !c.checking {
		return
	}
	if c.cpuBudget > 0 {
		used := threadCPU() - c.cpuStart
		if used > c.cpuBudget {
			c.stopNow(errCPULimit)
			return
		}
		if woken {
			// The thread did not run all the time: wait for what is left.
			c.cpuTimer.Reset(max(c.cpuBudget-used, time.Millisecond))
		}
	}
	if c.memLimit > 0 {
		if !c.walkAfter.IsZero() && !time.Now().Before(c.walkAfter) {
			c.walkAfter, c.memNext = time.Time{}, 0
		}
		// What the state holds can only have grown by what the process
		// allocated since the last walk: walk again once that could have
		// used up half of the room left.
		//
		// But the process's allocation count grows with every VM's
		// garbage, and a walk costs time in proportion to what the state
		// holds: a VM holding 3 million tables walked again and again
		// while another VM made garbage, and a loop that took 0.14 s took
		// 6.9 s. A walk therefore waits until three times its last
		// duration has passed since it, so that walking takes about a
		// quarter of the call's time at most; the VM can meanwhile outgrow
		// its limit by what it allocates itself in that time.
		if allocTotal.Load() > c.memNext && c.walkCost > 0 {
			if next := c.walkAt.Add(3 * c.walkCost); time.Now().Before(next) {
				c.walkAfter, c.memNext = next, ^uint64(0)
			}
		}
		if allocTotal.Load() > c.memNext {
			c.walk()
		}
	}
}

// walk measures what the state holds and stops the call when it is over
// the memory limit.
func (c *callCtx) walk() {
	start := time.Now()
	c.memUsed = c.st.memUsage(c.memLimit, c.done)
	c.walkAt = time.Now()
	c.walkCost = c.walkAt.Sub(start)
	c.walkTime += c.walkCost
	c.walkMax = max(c.walkMax, c.walkCost)
	c.memNext = allocTotal.Load() + c.walkStep()
	if c.memUsed > c.memLimit {
		c.stopNow(errMemLimit)
	}
}

// finalCheck runs when a chunk whose state is kept (a persistent VM's) has
// ended, on its goroutine, with its values off the stack. A walk sees
// only what the state holds: a value a builtin is still building is not
// there yet, and a walk while string.rep built 256 MiB left the next one
// due only once the process allocated 1 MiB more. A chunk that stored
// such a value last (g = string.rep("a", 2^28 - 1)) thus ended unchecked,
// and its VM kept 256 MiB under a 1 MiB limit for as long as its next
// calls allocated little. So the state is walked once more when the call
// allocated more than a walk's step (or a walk is due).
func (c *callCtx) finalCheck() {
	if c.memLimit <= 0 || c.flags.Load()&flagStopped != 0 {
		return
	}
	now := allocTotal.Load()
	if now <= c.memNext && c.walkAfter.IsZero() && now-c.allocAtEnter < c.walkStep() {
		return
	}
	// Held back as check holds walks back (at most a quarter of the time
	// walking), unless the call itself ran long enough to pay for one
	// more (the walks a builtin's polls made while it built its result
	// may have been the last ones), or the process allocated the VM's
	// whole limit during the call: the call's own result may be what put
	// it over, and a walk, which stops past the limit, costs little next
	// to that allocation. (The time alone failed under load: a small
	// walk slowed down by other processes held back the last one.)
	if next := c.walkAt.Add(3 * c.walkCost); c.walkCost > 0 && time.Now().Before(next) && time.Since(c.enteredAt) < 3*c.walkCost &&
		now-c.allocAtEnter < uint64(c.memLimit) {
		c.walkAfter, c.memNext = next, ^uint64(0)
		return
	}
	c.walkAfter = time.Time{}
	c.walk()
}

// walkStep is how much the process may allocate between two walks: half
// of the room left under the limit at the last walk, at least 1/16 of the
// limit and 1 MiB (a walk costs time in proportion to what the state
// holds).
func (c *callCtx) walkStep() uint64 {
	return max(uint64(max(c.memLimit-c.memUsed, 0))/2, uint64(c.memLimit)/16, 1<<20)
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// luaFunctionArg raises Lua 5.1's error for a coroutine body that is a Go
// function (a builtin): gopher-lua ran it, but its coroutine never died
// (coroutine.create(print) stayed "running" and resumed again) and a
// yield in it lost its values.
func luaFunctionArg(L *lua.LState) {
	if fn, ok := L.Get(1).(*lua.LFunction); ok && fn.IsG {
		L.ArgError(1, "Lua function expected")
	}
}

// installCoroutines makes every coroutine run under the state's callCtx:
// gopher-lua gives a new thread a context derived from the creating call's
// one, which is cancelled when that call ends (a coroutine made in one
// call failed in the next with "context canceled"), or none at all when
// the call had none (a loop in it could then not be stopped).
func (st *state) installCoroutines() {
	L := st.L
	co := L.GetGlobal("coroutine").(*lua.LTable)
	create := co.RawGetString("create").(*lua.LFunction)
	wrap := co.RawGetString("wrap").(*lua.LFunction)
	co.RawSetString("create", L.NewFunction(func(L *lua.LState) int {
		luaFunctionArg(L)
		defer smallThreads(L)()
		n := create.GFunction(L)
		if th, ok := L.Get(-1).(*lua.LState); ok {
			th.SetContext(st.ctx)
			smallNumberPages(th)
		}
		return n
	}))
	yield := co.RawGetString("yield").(*lua.LFunction)
	co.RawSetString("yield", L.NewFunction(func(L *lua.LState) int {
		// gopher-lua cannot suspend a nested Go call: a yield inside
		// pcall, a sort comparator, a gsub callback, a metamethod or a
		// for-in iterator returned from that Go call as if done and
		// later crashed the resume. Lua 5.1 raises this error instead
		// (a Lua error: pcall catches it).
		for fr := topFrame(L).parent(); !fr.IsNil(); fr = fr.parent() {
			if fr.isG() || fr.calledByVM() {
				L.Error(lua.LString("attempt to yield across metamethod/C-call boundary"), 0)
			}
		}
		if L.Parent != nil {
			reserveStack(L.Parent, L.GetTop()) // the values passed out
		}
		return yield.GFunction(L)
	}))
	// Nested resumes run on the Go stack (gopher-lua runs a coroutine
	// inside the Go call that resumes it) and nothing bounded them: with
	// the memory limit off, `local function f() return coroutine.wrap(f)()
	// end` nested until it took gigabytes and neared Go's stack limit,
	// which kills the process. Lua counts them as C calls: past 200,
	// "C stack overflow".
	enter, leave := st.enterResume, st.leaveResume
	resume := co.RawGetString("resume").(*lua.LFunction)
	co.RawSetString("resume", L.NewFunction(func(L *lua.LState) int {
		held, ok := enter(L)
		if !ok {
			L.Push(lua.LFalse)
			L.Push(lua.LString("C stack overflow"))
			return 2
		}
		defer leave(held)
		th, _ := L.Get(1).(*lua.LState)
		if th != nil && th != L && resuming(L, th) {
			// gopher-lua resumed it and crashed (a nil dereference).
			L.Push(lua.LFalse)
			L.Push(lua.LString("cannot resume normal coroutine"))
			return 2
		}
		if th != nil && endedByTailYield(th) {
			L.Insert(lua.LTrue, 2)
			return L.GetTop() - 1
		}
		if small, own := st.lendThread(L, th); own {
			defer st.parkThread(th, small)
		}
		if th != nil {
			reserveStack(th, L.GetTop()-1) // the values passed in
		}
		n := resume.GFunction(L)
		st.raiseExit(L) // os.exit inside the coroutine
		// Lua's words for gopher-lua's.
		if n == 2 && L.Get(-2) == lua.LFalse {
			switch L.Get(-1) {
			case lua.LString("can not resume a dead thread"):
				L.Replace(-1, lua.LString("cannot resume dead coroutine"))
			case lua.LString("can not resume a running thread"):
				L.Replace(-1, lua.LString("cannot resume running coroutine"))
			}
		}
		return n
	}))
	co.RawSetString("wrap", L.NewFunction(func(L *lua.LState) int {
		luaFunctionArg(L)
		defer smallThreads(L)()
		n := wrap.GFunction(L)
		fn, ok := L.Get(-1).(*lua.LFunction)
		if !ok || len(fn.Upvalues) == 0 {
			return n
		}
		th, ok := fn.Upvalues[0].Value().(*lua.LState)
		if !ok {
			return n
		}
		th.SetContext(st.ctx)
		smallNumberPages(th)
		// The same Go function with the same upvalue (the thread),
		// counted.
		aux := fn.GFunction
		L.Replace(-1, L.NewClosure(func(L *lua.LState) int {
			held, ok := enter(L)
			if !ok {
				L.RaiseError("C stack overflow")
			}
			defer leave(held)
			if th != L && resuming(L, th) {
				L.RaiseError("cannot resume normal coroutine")
			}
			switch {
			case th.Dead: // gopher-lua: "input:1: can not resume a dead thread"
				wrapError(L, "cannot resume dead coroutine")
			case th == L.G.CurrentThread:
				wrapError(L, "cannot resume running coroutine")
			case endedByTailYield(th):
				return L.GetTop()
			}
			if small, own := st.lendThread(L, th); own {
				defer st.parkThread(th, small)
			}
			reserveStack(th, L.GetTop())
			returned := false
			defer func() {
				if !returned {
					// An error in the coroutine: gopher-lua passes it on
					// but leaves the coroutine running (and the current
					// thread), so the next call said "running". It is dead.
					th.Dead = true
					th.Parent = nil
					if L.G.CurrentThread == th {
						L.G.CurrentThread = L
					}
				}
			}()
			n := aux(L)
			returned = true
			return n
		}, th))
		return n
	}))
}

// wrapError raises msg from a coroutine.wrap function as Lua 5.1 does: with
// the position of its caller when that is a Lua function.
func wrapError(L *lua.LState, msg string) {
	level := 1
	if caller := topFrame(L).parent(); caller.IsNil() || caller.isG() {
		level = 0
	}
	L.Error(lua.LString(msg), level)
}

// endedByTailYield reports a coroutine suspended in `return
// coroutine.yield(...)` in its main function, and then marks it dead: its
// resume is the function's return, with the resume's arguments as its
// results, which the caller gives back. gopher-lua's tail call of yield
// drops the function's frame, so the coroutine has no frame left and its
// resume crashed with a Go nil dereference (a fresh coroutine has no
// running frame either, but holds its function's).
func endedByTailYield(th *lua.LState) bool {
	if th.Dead || !topFrame(th).IsNil() || !parkLayout.ok {
		return false
	}
	cs := frameStack(th)
	if cs == nil || *(*uint16)(unsafe.Add(cs, parkLayout.segIdx)) != 0 || *(*uint8)(unsafe.Add(cs, parkLayout.segSp)) != 0 {
		return false
	}
	th.Dead = true
	return true
}

// maxCCalls bounds nested coroutine resumes and protected calls, which
// gopher-lua runs as nested Go calls, as Lua's C-call limit
// (LUAI_MAXCCALLS) does.
const maxCCalls = 200

// enterCCall counts one more nested resume or protected call; false when
// that would pass maxCCalls ("C stack overflow").
func (st *state) enterCCall(*lua.LState) bool {
	if st.cCalls >= maxCCalls {
		return false
	}
	st.cCalls++
	return true
}

// leaveCCall ends what enterCCall counted.
func (st *state) leaveCCall() { st.cCalls-- }

// maxResumedFrames bounds the call frames of all the threads suspended in
// a chain of nested resumes, below the running one. Each thread has its own
// call stack (luaOptions.CallStackSize frames), and a frame that gopher-lua
// runs in a nested Go call (a metamethod, a gsub callback, a sort
// comparator, __tostring, a for-in iterator) holds Go stack, a few KB each:
// 200 nested resumes of threads each 9,000 such frames deep overflowed Go's
// 1 GB stack after a minute, which kills the process (no recover). With
// this bound the Go stack stays under (maxResumedFrames + CallStackSize)
// nested calls, about a tenth of the limit at the deepest nesting measured.
// Lua 5.1 counts those nested calls as C calls across the whole chain
// (lua_setlevel) and stops at 200 with "C stack overflow", the same error
// as here.
const maxResumedFrames = 20000

// enterResume counts a resume from L (enterCCall) and the frames L holds
// while it waits; false ("C stack overflow") past maxCCalls or
// maxResumedFrames. held goes to leaveResume.
func (st *state) enterResume(L *lua.LState) (held int, ok bool) {
	if top := topFrame(L); !top.IsNil() {
		held = top.index() + 1
	}
	if st.resumedFrames+held > maxResumedFrames || !st.enterCCall(L) {
		return 0, false
	}
	st.resumedFrames += held
	return held, true
}

// leaveResume ends what enterResume counted.
func (st *state) leaveResume(held int) {
	st.resumedFrames -= held
	st.leaveCCall()
}

// limitTicker returns a function long Go builtins call once per step: every
// 4096 steps it polls the call's limits (deadline, CPU, memory) and raises
// the stop as a Lua error. With L nil it does nothing.
func limitTicker(L *lua.LState) func() {
	if L == nil {
		return func() {}
	}
	tk := workTicker{L: L}
	steps := 0
	return func() {
		if steps++; steps&0xfff == 0 {
			tk.poll()
		}
	}
}

// pollWork is about how many bytes of work (a few milliseconds at most) a
// builtin does between two polls of the call's limits.
const pollWork = 1 << 20

// pollBytes is how many bytes a byte-by-byte loop (upper, reverse, %q,
// gsub of one byte) handles between two polls: ~50 us, 2-5 ms under the
// race detector (256 KiB overran a 30 ms deadline by up to 86 ms there,
// on a loaded 2-core machine).
const pollBytes = 1 << 16

// inPieces calls fn on [0, n) in pieces of pollBytes, polling the call's
// limits between two pieces (a byte-by-byte loop over a large string).
func inPieces(L *lua.LState, n int, fn func(start, end int)) {
	tk := workTicker{L: L}
	for start := 0; start < n; start += pollBytes {
		if start > 0 {
			tk.poll()
		}
		fn(start, min(start+pollBytes, n))
	}
}

// workTicker polls the call's limits (deadline, CPU, memory) for a long Go
// builtin once per pollWork of the work it reports, and raises the stop as
// a Lua error. The zero work of small calls costs an add and a compare.
// With L nil (no call: numerals in source code) it never polls.
type workTicker struct {
	L    *lua.LState
	work int
}

// add reports n bytes of work.
func (t *workTicker) add(n int) {
	if t.work += n; t.work >= pollWork {
		t.poll()
	}
}

func (t *workTicker) poll() {
	t.work = 0
	if t.L == nil {
		return
	}
	if err := pollLimits(t.L); err != nil {
		t.L.RaiseError("%s", err)
	}
}
